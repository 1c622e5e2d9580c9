//! The runtime testkit: drives one processor's handlers the way the runtime does, with
//! records a test hands it, and gives back what the handlers sent (decoded again) and the
//! state they left, all in memory. No broker, no schema registry, no sleeping: time is a
//! [`runtime::ManualClock`] the test moves, and moving it fires due timers.
//!
//! Guarantees: what a test sees is the runtime's own behaviour, not a model of it. Handling
//! goes through [`runtime::step`] (the steps the driver runs: a failed handler's state
//! changes rolled back, a due timer removed before `on_timer`), state lives in the runtime's
//! [`runtime::state::PartitionStore`] (a redelivered record that the store already applied is
//! skipped, as after a crash), and every record in and out is encoded and decoded with its
//! topic's schema from topology.yaml (an output that does not fit its schema fails the
//! test as it would fail the processor). What it leaves out: the retry and dead-letter policy
//! (a failing handler's error is returned to the test), changelog batches and commits.
//!
//! # Testing a processor
//!
//! 1. Give the processor its clock: a processor that reads the time takes a
//!    [`runtime::Clock`] (the real wiring passes [`runtime::Clock::system`]); no
//!    `SystemTime::now()` in decisions.
//! 2. Build the kit from the topology and the processor's name, so codecs come from the
//!    topics' schemas, and make the processor with the kit's clock:
//!
//! ```ignore
//! let topology = testkit::fleet_topology()?;
//! let mut kit = testkit::Builder::processor(&topology, "checkout")?
//!     .starting_at(1_000_000)
//!     .stateful(|clock| Checkout::with_orders(params, topics, orders).unwrap().with_clock(clock))?;
//! ```
//!
//!    [`Builder::stateless`] takes a [`runtime::Processor`], [`Builder::concurrent`] a
//!    [`runtime::ConcurrentProcessor`] (handled one record at a time). A processor that is not
//!    in topology.yaml names its topics itself: [`Builder::topics`].
//! 3. Send records and look at what came out and what is stored:
//!
//! ```ignore
//! let out = kit.send("orders.checkout-requested.v1", "o1", &request).await?;
//! let holds: Vec<StockCommand> = testkit::decoded(&out, "inventory.stock-commands.v1")?;
//! assert_eq!(kit.state("o1").unwrap().saga.state, SagaState::ReservingInventory);
//! let fired = kit.advance(60_000).await?; // the step timer fires at its own time
//! ```
//!
//!    [`Testkit::redeliver`] hands a record in again (what a crash before its commit does);
//!    [`Testkit::send_raw`] sends bytes, tombstones and headers.
//!
//! `processors/counter` is the smallest complete example: a processor crate tested with
//! this kit only.

mod builder;
mod kit;
mod output;

pub use builder::{fleet_topology, Builder};
pub use kit::{OneAtATime, Testkit};
pub use output::{decoded, Output};

use runtime::HandlerError;

/// Why the kit could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The topology, a topic or a schema is not what the kit needs.
    #[error("testkit setup: {0}")]
    Setup(String),
    /// A value did not fit its topic's schema, either way.
    #[error("codec: {0}")]
    Codec(#[from] codec::CodecError),
    /// The handler failed; the store is as it was before the record.
    #[error("handler failed: {0}")]
    Handler(#[source] HandlerError),
    /// A deferred side effect (`Outputs::defer`) failed.
    #[error("deferred effect failed")]
    Effect(#[source] runtime::BoxError),
    /// [`Testkit::redeliver`] of a record the kit never sent.
    #[error("no record was sent to {topic} partition {partition} at offset {offset}")]
    NotSent {
        topic: String,
        partition: i32,
        offset: i64,
    },
}
