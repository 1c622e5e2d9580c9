//! The storefront's consumer: each order's status, projected from the checkout saga's
//! transitions (the newest per order), each product's availability, from its compacted
//! topic, and image-quality's newest verdict on each product image, into Redis so status
//! polls and product pages never touch Kafka.
//!
//! Single writer: each record is applied by the one group member owning its partition, and
//! the write is conditional on a newer sequence (a Lua script), so redelivery after a crash
//! or a rebalance cannot move a projection backwards.
//!
//! Image verdicts (`img:{product}`, one hash field per image) follow the same rule per
//! field: a verdict's key is its image id, so all verdicts on one image are on one partition,
//! applied in log order by the member owning it; the images of one product may be on several
//! partitions (and members), but each writes only its own images' fields, with a Lua script
//! that replaces a field only with a verdict at least as new (`occurred_at`). A redelivered
//! verdict rewrites the same value, and a member that applies an old verdict late (during a
//! rebalance, before it learns it lost the partition) cannot replace a newer one: races leave
//! the newest verdict per image whatever the interleaving.

use events::checkout::SagaTransition;
use events::images::ImageCheckResult;
use events::inventory::ProductAvailability;
use runtime::{HandlerError, Input, Outputs, Processor};
use serde::{Deserialize, Serialize};

use crate::images::{self, Verdict};
use crate::metrics::Metrics;
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
    /// The order as a saga transition leaves it.
    pub fn from_transition(t: &SagaTransition) -> Self {
        OrderView {
            order_id: t.order_id.clone(),
            user_id: t.user_id.clone().unwrap_or_default(),
            status: t
                .status
                .as_ref()
                .map_or_else(|| "PROCESSING".to_string(), symbol),
            saga_state: Some(symbol(&t.to_state)),
            failure: t.failure_code.as_ref().map(|code| FailureView {
                code: symbol(code),
                message: t.reason.clone().unwrap_or_else(|| symbol(code)),
            }),
            currency: t.currency.clone().unwrap_or_default(),
            total_minor: t.total_minor.unwrap_or_default(),
            created_at: t.created_at.unwrap_or(t.occurred_at),
            placed_at: t.placed_at,
            updated_at: t.occurred_at,
        }
    }
}

pub fn order_key(order_id: &str) -> String {
    format!("order:{order_id}")
}

pub fn availability_key(product_id: &str) -> String {
    format!("avail:{product_id}")
}

/// The hash of a product's image verdicts (field: image id).
pub fn image_verdicts_key(product_id: &str) -> String {
    format!("img:{product_id}")
}

pub struct Projections {
    pub store: Store,
    pub status_topic: String,
    pub availability_topic: String,
    /// `images.check-results.v1`, when the topology binds the optional `image_results` port.
    pub image_results_topic: Option<String>,
    pub metrics: Metrics,
}

impl Projections {
    async fn image_verdict(&self, input: &Input) -> Result<(), HandlerError> {
        let result: ImageCheckResult = input.decode()?;
        let Some((product, image)) =
            images::verdict_place(&result).map_err(HandlerError::invalid)?
        else {
            // Not a catalog row (its id is no UUID): no page can show it.
            self.metrics
                .image_verdicts
                .with_label_values(&["not_catalog"])
                .inc();
            return Ok(());
        };
        let verdict = Verdict::from_result(&result);
        let applied = self
            .store
            .project_image_verdict(
                &image_verdicts_key(&product),
                &image,
                verdict.occurred_at,
                &verdict.encode(),
            )
            .await
            .map_err(transient)?;
        let outcome = if applied { "applied" } else { "older" };
        self.metrics
            .image_verdicts
            .with_label_values(&[outcome])
            .inc();
        Ok(())
    }
}

fn transient(e: redis::RedisError) -> HandlerError {
    HandlerError::transient("writing the projection to redis", e)
}

impl Processor for Projections {
    async fn handle(&mut self, input: &Input, _out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        if input.value.is_none() {
            // A tombstone in a compacted projection: nothing to show, nothing to remove that
            // the TTL will not.
            return Ok(());
        }
        if input.topic == self.status_topic {
            let transition: SagaTransition = input.decode()?;
            if transition.user_id.is_none() {
                // Written before transitions carried the order's status: not for customers.
                return Ok(());
            }
            let doc = serde_json::to_string(&OrderView::from_transition(&transition))
                .map_err(|e| HandlerError::fatal("order view").caused_by(e))?;
            self.store
                .project(&order_key(&transition.order_id), transition.sequence, &doc)
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
                .map_err(|e| HandlerError::fatal("availability view").caused_by(e))?;
            self.store
                .project(&availability_key(&a.product_id), a.sequence, &doc)
                .await
                .map_err(transient)?;
        } else if self.image_results_topic.as_deref() == Some(input.topic.as_str()) {
            self.image_verdict(input).await?;
        } else {
            return Err(HandlerError::invalid(format!(
                "storefront does not read `{}`",
                input.topic
            )));
        }
        Ok(())
    }
}
