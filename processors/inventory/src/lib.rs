//! Inventory: the one place the design chooses consistency over availability. Three
//! processors, each the single writer of its state:
//!
//! - `inventory` ([`ledger_processor`] over the pure [`ledger`]): the stock of each product,
//!   partitioned by product id; holds, releases, commits and warehouse levels are applied one
//!   at a time by the instance owning the product, so no two orders take the same unit.
//! - `inventory-orders` ([`orders_processor`] over the pure [`order`]): one order's
//!   reservation, partitioned by order id; it asks every product's ledger for a hold and
//!   answers checkout all or nothing, giving back partial holds; expiry is a durable timer.
//! - `inventory-stock-feed` ([`feed`]): warehouse stock CDC re-keyed by product id.

pub mod feed;
pub mod ledger;
pub mod ledger_processor;
pub mod order;
pub mod orders_processor;
