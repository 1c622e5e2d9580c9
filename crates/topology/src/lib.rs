//! `topology.yaml` is Storefleet's single wiring file: every topic (partitions, retention,
//! key and value formats with their Avro schema files), every processor (inputs with their
//! dead-letter topics, outputs, each bound to a port of the processor's kind, consumer group, instances, typed parameters) and every
//! connector.
//!
//! [`load`] parses the file into typed structs and validates it as a whole: it never stops at
//! the first problem, it returns every [`Problem`] with its path in the file, so an operator
//! fixes a broken topology in one round. A [`Topology`] that comes out of [`load`] is known to
//! be consistent (every referenced topic exists, every schema parses, every input has a
//! writer), and the rest of the fleet relies on that instead of re-checking.

mod model;
mod params;
mod ports;
mod validate;

pub use model::{
    CleanupPolicy, ConnectorKind, ConnectorSpec, Guarantee, InputSpec, KeyFormat, OffsetReset,
    ProcessorKind, ProcessorSpec, TopicSpec, ValueFormat,
};
pub use params::{
    AlsParams, CdcTable, CheckoutParams, ImageQualityParams, InteractionWeights, InventoryParams,
    InventoryStockFeedParams, PaymentParams, PostgresCdcParams, ProcessorParams,
    RecommendationsParams, SearchIndexerParams, ShippingParams, StorefrontParams,
};
pub use ports::{Port, Ports};
pub use validate::{load, load_str, Problem, Topology, TopologyError};

/// Record name every dead-letter topic's value schema must have.
pub const DEAD_LETTER_RECORD: &str = "storefleet.dlq.DeadLetter";
