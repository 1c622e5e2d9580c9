//! Inventory: the one place the design chooses consistency over availability: a hold is
//! decided by the single writer of the product's stock, never by a cache. Two processors,
//! each the single writer of its state:
//!
//! - `inventory` ([`ledger_processor`] over the pure [`ledger`]): the stock of each product,
//!   partitioned by product id; holds, commits, releases, warehouse levels and returns are
//!   applied one at a time by the instance owning the product, so no two orders take the
//!   same unit, without a lock anywhere. Checkout's saga asks it for one hold per product of
//!   an order and gathers the answers itself (all or nothing), then commits or releases each
//!   hold. A rebalance moves a product's partition with its state (handed-off work committed
//!   before the revoke, restore on assign).
//! - `inventory-stock-feed` ([`feed`]): warehouse stock CDC re-keyed by product id.
//!
//! ```text
//! checkout ──inventory.stock-commands.v1 (HOLD / COMMIT / RELEASE, key product)──▶ inventory (ledger) ──▶ inventory.availability.v1 (compacted), inventory.stock-events.v1
//!    ▲                                                                                 │
//!    └──────────────inventory.stock-results.v1 (answers to HOLD only, key order)───────┘
//! warehouse DB ──warehouse-cdc──▶ cdc.warehouse.stock.v1 ──inventory-stock-feed──▶ inventory.stock-commands.v1 (SET_LEVEL, key product)
//! ```
//!
//! - **State layout.** Keyed per product (`<product>`: the centers' buckets, written only when
//!   they changed) and per order hold (`<product>/h/<order>`), so one order's write never
//!   re-serialises the others' (see [`ledger_processor`]).
//! - **Holds.** The ledger holds all of an order's lines of the product or none and answers
//!   HELD (units by center), REFUSED (sellable units left; none named for a product never
//!   stocked) or NOT_HELD. COMMIT and RELEASE get no answer: only the saga ends its holds, so
//!   they cannot be refused; holds do not expire. All of an order's commands carry one
//!   `command_id` (derived from the order id and "hold"), so a HOLD sent again gets the hold
//!   it has. An ended hold is remembered for an hour: a HOLD sent again after its COMMIT gets
//!   the same HELD lines, after its RELEASE NOT_HELD, after its refusal REFUSED again (the
//!   saga's step timer may re-send a HOLD before it has read the refusal, and a copy that
//!   found units freed meanwhile would hold them for a failed order that never releases
//!   them). Returns are deduplicated by return id.
//! - **Warehouse levels** arrive from stock CDC as absolute on-hand levels (re-applying one
//!   changes nothing); a level below what is held or sold takes only unheld units and records
//!   a shortfall (logged: the warehouse counted fewer than were promised).
//! - **Availability** (`inventory.availability.v1`, for search and the storefront) is
//!   published when a product is first seen, when a warehouse level changes its sellable
//!   units, when it goes in or out of stock, while it is low (at most
//!   [`ledger_processor::LOW_STOCK`], 100 units), and otherwise on a move of at least 1% from
//!   the last published figure (kept in memory: after a restart the next change publishes).
//! - **Hot products.** A flash sale on one product is one partition and one writer: its
//!   decisions are serial, at the ledger's per-record rate (`fleet bench inventory`), while
//!   other products keep their own partitions and are not stalled (measured by the same
//!   bench). Beyond one writer's rate a product's stock would be split into N sub-ledgers
//!   (`<product>#k`, 1/N of the units each, k by order id), at the cost of refusals while
//!   another sub-ledger has units and an availability view summing N entries. Not built: one
//!   writer is enough for the seed's target.
//!
//! Limits: a HOLD replayed more than an hour after its hold ended (a late redrive of
//! `inventory.stock-commands.v1`) is held anew and no saga ends it (a saga ignores a late
//! HELD unless it saw that product refused). Availability can lag the ledger by under 1% of
//! the last published figure (above 100 units). Stock is all-time: units sold stay sold (the
//! warehouse's levels are not decremented by sales; the ledger holds them as committed).

pub mod feed;
pub mod ledger;
pub mod ledger_processor;
