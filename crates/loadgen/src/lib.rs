//! Workloads for the demo, the benchmarks and the integration tests: orders that look like
//! real ones (Zipf-popular products, several lines, a few fulfillment centers), poison
//! records in a known proportion, and helpers to produce them and drain a topic.

pub mod checkouts;
pub mod kafka;
pub mod orders;
