//! The storefront's own metrics, on the process's default Prometheus registry (the admin
//! port's `/metrics` serves it beside the runtime's consumer metrics).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec};

#[derive(Clone)]
pub struct Metrics {
    /// Request durations by method, route and status.
    pub requests: HistogramVec,
    /// Requests refused with 429, by scope (ip, key).
    pub rate_limited: IntCounterVec,
    /// Pages served without a dependency (search, recommendations, images: verdicts or
    /// image rows unreadable, so no image shown).
    pub degraded: IntCounterVec,
    /// Checkouts by outcome (queued, replayed, not_queued).
    pub checkouts: IntCounterVec,
    /// Product reads by the tier that answered (hot, redis, catalog).
    pub product_reads: IntCounterVec,
    /// Interactions that could not be queued or delivered.
    pub interactions_dropped: IntCounter,
    /// Search answers by source (search: the service; catalog: the fallback).
    pub searches: IntCounterVec,
    /// Search answer durations by source, replica tries and fallback included.
    pub search_seconds: HistogramVec,
    /// Tries of a search replica that failed, by reason (timeout, unreachable, status,
    /// bad_answer); the next replica is tried.
    pub search_tries_failed: IntCounterVec,
    /// Image verdicts read by the projection, by outcome (applied; older: a newer one was
    /// stored; not_catalog: not a catalog image).
    pub image_verdicts: IntCounterVec,
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
            searches: register.counter_vec(
                "storefleet_storefront_searches_total",
                "Search answers by source (search service or catalog fallback)",
                &["source"],
            ),
            search_seconds: register.metric(HistogramVec::new(
                HistogramOpts::new(
                    "storefleet_storefront_search_seconds",
                    "Search answer durations by source, replica tries and fallback included",
                )
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
                ]),
                &["source"],
            )),
            search_tries_failed: register.counter_vec(
                "storefleet_storefront_search_tries_failed_total",
                "Search replica tries that failed, by reason",
                &["reason"],
            ),
            image_verdicts: register.counter_vec(
                "storefleet_storefront_image_verdicts_total",
                "Image verdicts read by the projection consumer, by outcome",
                &["outcome"],
            ),
        }
    }
}
