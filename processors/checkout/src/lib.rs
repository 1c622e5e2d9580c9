//! Checkout: the order saga. [`saga`] is its pure state machine; [`processor`] runs it as a
//! stateful stream join keyed by order id (requests, inventory and payment answers, step
//! timers), turning every step and every compensation into an event; [`orders_db`] is the
//! order history store it writes once the payment is secured.

pub mod orders_db;
pub mod processor;
pub mod saga;

pub use processor::{Checkout, SagaRecord, Topics};
