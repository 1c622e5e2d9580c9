//! Payment: moves money through an external card gateway so that a slow, failing gateway
//! is invisible to correctness. [`plan`] (pure) decides each next step from the payment's
//! state; [`breaker`] (pure) protects the gateway; [`gateway`] is its HTTP API; [`store`] is
//! the service's transaction log in PostgreSQL; [`processor`] ties them to the topics.

pub mod breaker;
pub mod gateway;
pub mod plan;
pub mod processor;
pub mod store;

pub use processor::{Payments, Topics};
