//! The storefront's consumer: the order-status and availability projections, copied from
//! their compacted topics into Redis so status polls and product pages never touch Kafka.
//!
//! Single writer: each record is applied by the one group member owning its partition, and
//! the write is conditional on a newer sequence (a Lua script), so redelivery after a crash
//! or a rebalance cannot move a projection backwards.

use events::checkout::OrderStatus;
use events::inventory::ProductAvailability;
use runtime::{HandlerError, Input, Outputs, Processor};
use serde::{Deserialize, Serialize};

use crate::redis_store::Store;

/// What `GET /v1/orders/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    /// ACCEPTED (request queued, saga not started yet), PROCESSING, PLACED, COMPENSATING,
    /// FAILED or STUCK.
    pub status: String,
    pub saga_state: Option<String>,
    pub failure: Option<FailureView>,
    pub currency: String,
    pub total_minor: i64,
    pub created_at: i64,
    pub placed_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureView {
    pub code: String,
    pub message: String,
}

/// Availability as the product page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityView {
    pub in_stock: bool,
    pub available_quantity: i32,
    pub updated_at: i64,
}

fn symbol<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "UNKNOWN".into())
}

impl OrderView {
    pub fn from_status(s: &OrderStatus) -> Self {
        OrderView {
            order_id: s.order_id.clone(),
            user_id: s.user_id.clone(),
            status: symbol(&s.status),
            saga_state: Some(symbol(&s.saga_state)),
            failure: s.failure.as_ref().map(|f| FailureView {
                code: symbol(&f.code),
                message: f.message.clone(),
            }),
            currency: s.currency.clone(),
            total_minor: s.total_minor,
            created_at: s.created_at,
            placed_at: s.placed_at,
            updated_at: s.occurred_at,
        }
    }
}

pub fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

pub fn availability_key(product_id: &str) -> String {
    format!("avail:{product_id}")
}

pub struct Projections {
    pub store: Store,
    pub status_topic: String,
    pub availability_topic: String,
}

fn transient(e: redis::RedisError) -> HandlerError {
    HandlerError::Transient(format!("redis: {e}"))
}

impl Processor for Projections {
    async fn handle(&mut self, input: &Input, _out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        if input.value.is_none() {
            // A tombstone in a compacted projection: nothing to show, nothing to remove that
            // the TTL will not.
            return Ok(());
        }
        if input.topic == self.status_topic {
            let status: OrderStatus = input.decode()?;
            let doc = serde_json::to_string(&OrderView::from_status(&status))
                .map_err(|e| HandlerError::Fatal(format!("order view: {e}")))?;
            self.store
                .project(&order_key(&status.order_id), status.saga_sequence, &doc)
                .await
                .map_err(transient)?;
        } else if input.topic == self.availability_topic {
            let a: ProductAvailability = input.decode()?;
            let view = AvailabilityView {
                in_stock: a.in_stock,
                available_quantity: a.available_quantity,
                updated_at: a.occurred_at,
            };
            let doc = serde_json::to_string(&view)
                .map_err(|e| HandlerError::Fatal(format!("availability view: {e}")))?;
            self.store
                .project(&availability_key(&a.product_id), a.sequence, &doc)
                .await
                .map_err(transient)?;
        } else {
            return Err(HandlerError::Invalid(format!(
                "storefront does not read `{}`",
                input.topic
            )));
        }
        Ok(())
    }
}
