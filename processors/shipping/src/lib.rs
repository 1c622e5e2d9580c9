//! The shipping processor. Consumes `orders.order-placed.v1`; for every fulfillment center
//! that holds part of the order it emits SHIPMENT_REQUESTED then LABEL_CREATED on
//! `shipping.shipment-events.v1`, keyed by order id (so one order's shipment events stay in
//! order).
//!
//! Idempotent: shipment ids, tracking numbers and event ids are derived from the order, so a
//! redelivered order yields byte-for-byte the same events except `occurred_at`, and consumers
//! drop the duplicates by event id. Stateless: it needs no store, so any instance can take
//! any partition.

pub mod plan;

use std::time::{SystemTime, UNIX_EPOCH};

use events::orders::OrderPlaced;
use runtime::{HandlerError, Input, Outputs, Processor};
use topology::ShippingParams;

pub const OUTPUT_TOPIC: &str = "shipping.shipment-events.v1";

pub struct Shipping {
    params: ShippingParams,
    output: String,
}

impl Shipping {
    pub fn new(params: ShippingParams, outputs: &[String]) -> Self {
        let output = outputs
            .first()
            .cloned()
            .unwrap_or_else(|| OUTPUT_TOPIC.to_string());
        Self { params, output }
    }
}

impl Processor for Shipping {
    async fn handle(&mut self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let order: OrderPlaced = input.decode()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let events = plan::plan_shipments(&order, &self.params, now)
            .map_err(|rejection| HandlerError::invalid(rejection.to_string()))?;
        for event in &events {
            out.send(&self.output, &event.order_id, event)?;
        }
        Ok(())
    }
}
