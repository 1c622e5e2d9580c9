//! The typed shape of topology.yaml. Every struct denies unknown fields so a typo is an error,
//! not a silently ignored setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One Kafka topic and the contract of its records.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// Milliseconds; -1 keeps records forever.
    #[serde(default = "default_retention_ms")]
    pub retention_ms: i64,
    pub key: KeyFormat,
    /// Path relative to `schemas/`; required when `key: avro`.
    #[serde(default)]
    pub key_schema: Option<PathBuf>,
    pub value: ValueFormat,
    /// Path relative to `schemas/`; required when `value: avro`.
    #[serde(default)]
    pub value_schema: Option<PathBuf>,
    /// Writers outside the fleet (the storefront, a load generator, an operator tool). A topic
    /// that a processor reads must have a writer: a processor, a connector or one named here.
    #[serde(default)]
    pub external_writers: Vec<String>,
    #[serde(default)]
    pub doc: Option<String>,
}

fn default_retention_ms() -> i64 {
    7 * 24 * 3600 * 1000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    #[default]
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    /// The value of Kafka's `cleanup.policy` topic config.
    pub fn kafka_value(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// UTF-8 entity id, unframed (what most topics use: partitioning by id stays readable).
    String,
    /// Confluent-framed Avro (CDC keys: the primary key record).
    Avro,
    Json,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    Avro,
    Json,
    Bytes,
}

/// The closed list of processors the `fleet` binary knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessorKind {
    Shipping,
    /// The stock ledger, partitioned by product id.
    Inventory,
    /// Warehouse stock CDC re-keyed by product id into ledger commands.
    InventoryStockFeed,
    /// Payment commands against the card gateway (and their retries), keyed by order id.
    Payment,
    /// The order saga: a stateful join of checkout requests, the stock ledgers' and payment's
    /// answers and step timers, keyed by order id.
    Checkout,
    /// The storefront HTTP API (carts in Redis, checkout requests, order status, product
    /// pages), whose consumer keeps the order-status (from the saga's transitions) and availability
    /// projections in Redis.
    Storefront,
    /// The category-sharded search index (catalog CDC + availability) and its query service;
    /// every instance is a full replica that reads every partition.
    SearchIndexer,
    /// The recommendations precompute: interactions and purchases into its store, an ALS model
    /// trained on a schedule, top-K lists into Redis.
    Recommendations,
    /// The image-quality check: product images downloaded, scored and answered with a
    /// verdict, keyed by image id (its retry instance reads its own retry topic).
    ImageQuality,
}

impl ProcessorKind {
    /// False for a kind whose instances assign themselves partitions instead of joining
    /// their group (search-indexer replicas read every partition): the group never lists
    /// members, and only their `/health` says whether anyone consumes.
    pub fn joins_group(self) -> bool {
        !matches!(self, ProcessorKind::SearchIndexer)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessorKind::Shipping => "shipping",
            ProcessorKind::Inventory => "inventory",
            ProcessorKind::InventoryStockFeed => "inventory-stock-feed",
            ProcessorKind::Payment => "payment",
            ProcessorKind::Checkout => "checkout",
            ProcessorKind::Storefront => "storefront",
            ProcessorKind::SearchIndexer => "search-indexer",
            ProcessorKind::Recommendations => "recommendations",
            ProcessorKind::ImageQuality => "image-quality",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Offsets committed after outputs are acknowledged; effects made exactly-once by
    /// idempotent handling (works on every Kafka-protocol broker).
    #[default]
    AtLeastOnce,
    /// Kafka transactions (real Kafka only; the local broker refuses them).
    ExactlyOnce,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

impl OffsetReset {
    pub fn kafka_value(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub topic: String,
    /// Where records that cannot be decoded or processed go, with the reason.
    pub dead_letter: String,
}

/// A processor as written in the file; `params` is checked against the kind's typed
/// parameters during validation (see [`crate::ProcessorParams`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSpec {
    pub name: String,
    pub kind: ProcessorKind,
    pub group: String,
    #[serde(default = "one")]
    pub instances: u16,
    #[serde(default)]
    pub guarantee: Guarantee,
    #[serde(default)]
    pub offset_reset: OffsetReset,
    /// Input port (see [`ProcessorKind::ports`]) → the topic bound to it.
    pub inputs: BTreeMap<String, InputSpec>,
    /// Output port → the topic bound to it.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Admin HTTP port (/metrics, /health) of instance 0; instance i listens on port + i.
    pub admin_port: u16,
    /// How long the broker may hold an empty fetch (librdkafka `fetch.wait.max.ms`): a record
    /// waits up to about this long before its consumer sees it, and an idle consumer asks
    /// about 1000/this times a second. Low on the order path, higher where a second of delay
    /// is fine. Default 100.
    #[serde(default = "default_fetch_wait_ms")]
    pub fetch_wait_ms: u32,
    /// Stateful processors: how long state changes gather before they are written as one
    /// changelog batch (0: a batch per record). Outputs never wait for it; offset commits do,
    /// and a crash handles up to this much input again. Default 100.
    #[serde(default = "default_state_flush_ms")]
    pub state_flush_ms: u32,
    #[serde(default)]
    pub params: serde_yaml::Value,
}

impl ProcessorSpec {
    /// The topic bound to input port `port`.
    pub fn input(&self, port: &str) -> Option<&str> {
        self.inputs.get(port).map(|i| i.topic.as_str())
    }

    /// The topic bound to output port `port`.
    pub fn output(&self, port: &str) -> Option<&str> {
        self.outputs.get(port).map(String::as_str)
    }

    /// Every topic this processor reads.
    pub fn input_topics(&self) -> impl Iterator<Item = &str> {
        self.inputs.values().map(|i| i.topic.as_str())
    }

    /// Every topic this processor writes.
    pub fn output_topics(&self) -> impl Iterator<Item = &str> {
        self.outputs.values().map(String::as_str)
    }
}

fn one() -> u16 {
    1
}

fn default_fetch_wait_ms() -> u32 {
    100
}

fn default_state_flush_ms() -> u32 {
    100
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectorKind {
    PostgresCdc,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    pub name: String,
    pub kind: ConnectorKind,
    pub outputs: Vec<String>,
    pub admin_port: u16,
    #[serde(default)]
    pub params: serde_yaml::Value,
}
