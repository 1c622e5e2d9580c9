//! Workloads for the demo, the benchmarks and the integration tests: orders that look like
//! real ones (Zipf-popular products, several lines, a few fulfillment centers), poison
//! records in a known proportion, and helpers to produce them and drain a topic; the
//! shoppers of `fleet load` and the workload of `fleet demo`, with their reports.

pub mod checkouts;
pub mod demo;
mod error;
pub mod kafka;
pub mod orders;
pub mod shoppers;

pub use error::{Error, Result};

/// The value at fraction `p` (0..=1) of `sorted`; 0 when empty.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}
