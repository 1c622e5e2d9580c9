//! Consumer context: keeps the assigned-partition gauge true across rebalances.

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use tracing::info;

use crate::Metrics;

pub struct TrackingContext {
    metrics: Metrics,
}

impl TrackingContext {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        use rdkafka::consumer::Consumer;
        let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics
            .assigned_partitions
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        match rebalance {
            Rebalance::Assign(tpl) => info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Revoke(tpl) => info!(partitions = tpl.count(), "partitions revoked"),
            Rebalance::Error(e) => info!(error = %e, "rebalance error"),
        }
    }
}
