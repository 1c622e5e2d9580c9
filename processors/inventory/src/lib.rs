//! Inventory: the one place the design chooses consistency over availability. Two
//! processors, each the single writer of its state:
//!
//! - `inventory` ([`ledger_processor`] over the pure [`ledger`]): the stock of each product,
//!   partitioned by product id; holds, commits, releases, warehouse levels and returns are
//!   applied one at a time by the instance owning the product, so no two orders take the
//!   same unit. Checkout's saga asks it for one hold per product of an order and gathers the
//!   answers itself (all or nothing), then commits or releases each hold.
//! - `inventory-stock-feed` ([`feed`]): warehouse stock CDC re-keyed by product id.

pub mod feed;
pub mod ledger;
pub mod ledger_processor;
