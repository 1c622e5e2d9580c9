//! The storefront's own metrics, on the process's default Prometheus registry (the admin
//! port's `/metrics` serves it beside the runtime's consumer metrics).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec};

#[derive(Clone)]
pub struct Metrics {
    /// Request durations by method, route and status.
    pub requests: HistogramVec,
    /// Requests refused with 429, by scope (ip, key).
    pub rate_limited: IntCounterVec,
    /// Pages served without a dependency (search, recommendations).
    pub degraded: IntCounterVec,
    /// Checkouts by outcome (queued, replayed, not_queued).
    pub checkouts: IntCounterVec,
    /// Product reads by the tier that answered (hot, redis, catalog).
    pub product_reads: IntCounterVec,
    /// Interactions that could not be queued or delivered.
    pub interactions_dropped: IntCounter,
}

impl Metrics {
    pub fn register() -> Self {
        let register = runtime::Registrar::process();
        Self {
            requests: register.metric(HistogramVec::new(
                HistogramOpts::new(
                    "storefleet_storefront_request_seconds",
                    "Storefront HTTP requests by method, route and status",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["method", "route", "status"],
            )),
            rate_limited: register.counter_vec(
                "storefleet_storefront_rate_limited_total",
                "Requests refused with 429, by scope",
                &["scope"],
            ),
            degraded: register.counter_vec(
                "storefleet_storefront_degraded_total",
                "Answers given without a dependency, by dependency",
                &["dependency"],
            ),
            checkouts: register.counter_vec(
                "storefleet_storefront_checkouts_total",
                "Checkout requests by outcome",
                &["outcome"],
            ),
            product_reads: register.counter_vec(
                "storefleet_storefront_product_reads_total",
                "Product reads by the tier that answered",
                &["tier"],
            ),
            interactions_dropped: register.counter(
                "storefleet_storefront_interactions_dropped_total",
                "Interactions not delivered to recommendations.interactions",
            ),
        }
    }
}
