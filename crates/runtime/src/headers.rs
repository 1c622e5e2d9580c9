//! Kafka record headers with a meaning to the runtime or to operator tools.

/// Milliseconds since the Unix epoch before which the record must not be handled. Set by
/// `fleet dlq redrive` (its deferral) and honoured by every processor: a pipelined processor
/// holds the record back without blocking the rest of the partition, a sequential one waits.
pub const NOT_BEFORE: &str = "sf.not-before";

/// `<dlq topic>/<partition>/<offset>` of the dead letter a redriven record came from.
pub const REDRIVEN_FROM: &str = "sf.redriven-from";
