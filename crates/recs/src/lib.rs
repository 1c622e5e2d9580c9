//! Recommendation math for Storefleet, with no I/O: the crate that turns purchase history
//! into "recommended for you", "similar items" and "bought together" lists, and measures
//! how good they are offline.
//!
//! - [`matrix`]: users × items interactions as a CSR matrix.
//! - [`als`]: implicit-feedback ALS (conjugate-gradient solver, as `implicit`'s CPU ALS).
//! - [`topk`]: exact top-K for all users at once (blocked SGEMM), similar items by cosine.
//! - [`co_purchase`]: item-to-item "bought together" counts.
//! - [`popular`]: popularity lists, global and per category (cold start, baseline).
//! - [`eval`]: time-based split and `implicit`-compatible precision/MAP/NDCG at K.
//! - [`synth`]: deterministic synthetic shops for benchmarks and tests.
//! - [`dataset`]: ratings CSV reader and the triples file the Python reference reads.
//!
//! Guarantees: bad input is an error, never a panic; training and ranking are deterministic
//! for given inputs and seed whatever the thread count. Everything CPU-heavy takes a thread
//! count, and callers in async code run it on a blocking thread.

pub mod als;
pub mod co_purchase;
pub mod dataset;
mod dense;
pub mod eval;
pub mod matrix;
pub mod popular;
pub mod synth;
pub mod topk;

pub use als::{train, AlsModel, AlsParams, IterationStats};
pub use co_purchase::co_purchase;
pub use dataset::Interaction;
pub use dense::{Factors, FactorsError};
pub use eval::{evaluate, time_split, Metrics, Split};
pub use matrix::CsrMatrix;
pub use popular::Popularity;
pub use topk::{recommend_all, similar_items, RankedLists};
