//! The shipping processor. Consumes `orders.order-placed.v1`; for every fulfillment center
//! that holds part of the order it emits SHIPMENT_REQUESTED then LABEL_CREATED on
//! `shipping.shipment-events.v1`, keyed by order id (so one order's shipment events stay in
//! order).
//!
//! Idempotent: shipment ids, tracking numbers and event ids are derived from the order, so a
//! redelivered order yields byte-for-byte the same events except `occurred_at`, and consumers
//! drop the duplicates by event id. Stateless: it needs no store, so any instance can take
//! any partition. The instance owning an order's partition is the single writer of that
//! order's shipment events; a second writer after a rebalance writes the same events.
//!
//! [`plan`] is the decision, pure (no I/O, no clock); this file only ties it to the runtime.
//! The smallest processor of the fleet: the one to copy when adding a processor
//! (ARCHITECTURE.md, "Adding a processor").

pub mod plan;

use events::orders::OrderPlaced;
use events::shipping::ShipmentEvent;
use runtime::{Clock, HandlerError, Input, Outputs, Processor, RuntimeError, Topic};
use topology::{ProcessorSpec, ShippingParams};

pub struct Shipping {
    params: ShippingParams,
    shipments: Topic<ShipmentEvent>,
    clock: Clock,
}

impl Shipping {
    pub fn new(params: ShippingParams, shipments: Topic<ShipmentEvent>) -> Self {
        Self {
            params,
            shipments,
            clock: Clock::system(),
        }
    }

    /// Shipping on the topics `spec` binds to its ports.
    pub fn from_spec(params: ShippingParams, spec: &ProcessorSpec) -> Result<Self, RuntimeError> {
        Ok(Self::new(params, Topic::output(spec, "shipments")?))
    }

    /// Reads the time from `clock` (tests: a paused one) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl Processor for Shipping {
    async fn handle(&mut self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let order: OrderPlaced = input.decode()?;
        let events = plan::plan_shipments(&order, &self.params, self.clock.now_ms())
            .map_err(|rejection| HandlerError::invalid(rejection.to_string()))?;
        for event in &events {
            out.send(&self.shipments, &event.order_id, event)?;
        }
        Ok(())
    }
}
