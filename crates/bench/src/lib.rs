//! `fleet bench`: benchmarks that print figures, never assert timings (correctness is the
//! tests' job). Each bench is a module that owns its command line arguments (a
//! `clap::Args` struct); [`Command`] lists them for the binary and [`run`] runs one.
//!
//! [`harness`] holds what the benches share (private brokers and databases, topic codecs) and
//! depends on nothing else of the crate but [`Error`]. Processors are started through
//! `wiring`, the fleet's one processor list. Errors are this crate's [`Error`], which keeps
//! each cause; the binary wraps them in `anyhow`.

pub mod cdc;
pub mod checkout;
mod error;
mod front;
pub mod harness;
pub mod images;
mod images_cpu;
pub mod inventory;
pub mod payment;
pub mod recs;
mod recs_serving;
pub mod registry;
pub mod runtime;
pub mod search;
pub mod search_freshness;
pub mod state;
pub mod storefront;

use std::path::Path;

pub use error::{Error, Result};
pub use harness::Engine;

/// The benchmarks, as `fleet bench <what>` names them.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Records/s through the stateless shipping processor beside the raw broker figure.
    Runtime(crate::runtime::Args),
    /// Schema registry over loopback HTTP: registrations/s of new schemas, idempotent
    /// re-registrations/s and id lookups/s, for the stack's Kafka-backed registry and beside
    /// it an in-process one with memory storage.
    Registry(crate::registry::Args),
    /// The CDC connector on the stack's PostgreSQL: initial-snapshot rows/s, then streamed
    /// row changes/s and commit → consumer latency, in a scratch database.
    Cdc(crate::cdc::Args),
    /// Holds/s at the inventory ledger: orders' HOLD commands spread over many products,
    /// then a flash sale on one hot product beside them.
    Inventory(crate::inventory::Args),
    /// Payments/s through the payment processors against the gateway simulator: no faults,
    /// then 10% slow calls, then 10% calls that hang past the timeout (retried via the topic).
    Payment(crate::payment::Args),
    /// Checkouts through the whole order path (every processor its own process, against the
    /// gateway simulator): the raw broker's round trip and throughput, open-loop latency
    /// request -> PLACED at each rate, a burst's checkouts/s; per phase, records and CPU ms
    /// per checkout and the time per hop.
    Checkout(crate::checkout::Args),
    /// Requests/s and latency of the storefront's product and cart endpoints (one instance
    /// in this process, on the stack's Redis and seeded catalog).
    Storefront(crate::storefront::Args),
    /// Restore time of one partition's state: N keys from the changelog alone, then from a
    /// local snapshot plus the changelog's tail (private broker).
    StateRestore(crate::state::Args),
    /// The search service on a 100,000-product catalogue (the real one, expanded): indexing
    /// docs/s and queries/s with p50/p99 at 1 and 8 clients for a realistic query mix,
    /// beside tantivy alone on the same documents and queries (needs only the data set).
    Search(crate::search::Args),
    /// Commit in PostgreSQL → visible in search results, p50/p99, for price changes (catalog)
    /// and stock changes (warehouse, through the ledger), on the running fleet.
    SearchFreshness(crate::search_freshness::Args),
    /// Recommendations at the seed's scale (100,000 users × 20,000 items × 64 factors,
    /// synthetic): ALS seconds per iteration and top-K for all users beside the `implicit`
    /// library on the same matrix, then serving p50/p99 through a storefront beside Redis alone.
    Recs(crate::recs::Args),
    /// Image quality: decode + score images/s per core for ~1-megapixel JPEGs beside OpenCV
    /// on the same files in the same run, then images/s end to end through the image-quality
    /// processor downloading from a local HTTP server.
    Images(crate::images::Args),
}

/// Runs one benchmark; those that need the topology load it from `topology_path`.
pub async fn run(topology_path: &Path, command: Command) -> Result<()> {
    let topology = || wiring::load_topology(topology_path);
    match command {
        Command::Runtime(args) => crate::runtime::run(&topology()?, args).await,
        Command::Registry(args) => crate::registry::registry(args).await,
        Command::Cdc(args) => crate::cdc::cdc(&topology()?, args).await,
        Command::Inventory(args) => crate::inventory::inventory(&topology()?, args).await,
        Command::Payment(args) => crate::payment::payment(&topology()?, args).await,
        Command::Checkout(args) => crate::checkout::checkout(&topology()?, args).await,
        Command::Storefront(args) => crate::storefront::storefront(&topology()?, args).await,
        Command::StateRestore(args) => crate::state::state_restore(args).await,
        Command::SearchFreshness(args) => {
            crate::search_freshness::freshness(&topology()?, args).await
        }
        Command::Search(args) => {
            let root = topology_path.parent().unwrap_or(Path::new("."));
            crate::search::search(root, args).await
        }
        Command::Recs(args) => {
            let root = topology_path.parent().unwrap_or(Path::new("."));
            crate::recs::recs(root, &topology()?, args).await
        }
        Command::Images(args) => crate::images::images(&topology()?, args).await,
    }
}
