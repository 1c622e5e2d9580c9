//! Inventory: the one place the design chooses consistency over availability.
//!
//! - [`ledger`]: one product's stock (pure), the single-writer state of the `inventory`
//!   processor, partitioned by product id.

//! - [`order`]: one order's all-or-nothing reservation over the products' answers (pure),
//!   the state of the `inventory-orders` processor, partitioned by order id.

pub mod ledger;
pub mod order;
