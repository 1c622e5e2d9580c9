//! PostgreSQL change data capture, the way Debezium does it: a publication and a logical
//! replication slot (`pgoutput`) per connector, an initial snapshot read through the slot's
//! exported snapshot, then every committed row change streamed into one Kafka topic per table
//! as a Debezium-compatible Avro envelope.
//!
//! - Pure parts: [`types`] (PostgreSQL → Avro types), [`schema`] (key, row and envelope
//!   schemas; relation diffs), [`convert`] (text values → Avro values), [`envelope`].
//! - I/O: [`db`] (plain SQL: publication, catalog, slot health, snapshot chunks),
//!   [`replication`] (the slot's stream, on its own thread), [`connector`] (the run loop),
//!   [`progress`] (snapshot progress beside the slot).
//!
//! No data loss: the slot's position is acknowledged to PostgreSQL only after Kafka has
//! acknowledged every record of that transaction and of all earlier ones. After a crash the
//! slot replays from the last acknowledged transaction: duplicates then, never a gap;
//! consumers dedupe by `source.lsn`.
//!
//! The catalog and the warehouse stock live in PostgreSQL (each service its own database:
//! `catalog`, `warehouse`); the processors learn of their changes through these topics (the
//! storefront alone also reads the catalog database, for product pages). On first start a
//! connector creates its slot with an exported snapshot and reads the tables inside it in
//! primary-key chunks; streaming then starts at the slot's consistent point, so the handover
//! has no gap and no duplicate. Each committed transaction becomes Debezium envelopes
//! (`c/u/d/r/t`, a tombstone after each delete) keyed by the primary key. A snapshot
//! interrupted by a crash resumes at the next chunk in a new snapshot whose rows are
//! protected by visibility fences (a streamed change already visible in that read is
//! skipped). Schemas are generated from the table's columns and evolve compatibly when a
//! column is added or dropped; an incompatible change stops the connector. Types, recovery
//! from an invalidated slot and metrics: `connectors/README.md`.
//!
//! Single writers: the connector's acker task confirms a transaction's end LSN only after
//! awaiting, in commit order, Kafka's acknowledgement of every record of it and of all
//! earlier ones; the replication thread (the only user of the replication connection)
//! confirms the server's position on its own only when no transaction is open and every
//! forwarded one is acknowledged; one connector process per slot (PostgreSQL admits one
//! active reader). Snapshot progress and fences are written by the main task, atomically
//! (temp file, fsync, rename) after each chunk's records are acknowledged, and read only at
//! start.
//!
//! Limits: snapshot progress lives in `STOREFLEET_STATE_DIR`, so moving a connector to another
//! machine mid-snapshot re-reads every table behind a fence (duplicates, no gap). An
//! invalidated slot is detected and stops the connector (tested on a PostgreSQL cluster of
//! the test's own with `max_slot_wal_keep_size` = 1 MB).

pub mod connector;
pub mod convert;
pub mod db;
pub mod envelope;
pub mod progress;
pub mod replication;
pub mod schema;
pub mod types;

pub use connector::{run, ConnectorConfig};

#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("configuration: {what}")]
    Invalid {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("postgres: {what}")]
    Postgres {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("postgres: {0}")]
    Unexpected(String),
    #[error("replication")]
    Replication(#[source] pg_walstream::ReplicationError),
    #[error("replication: {0}")]
    Stream(String),
    #[error("replication: starting its runtime")]
    ReplicationRuntime(#[source] std::io::Error),
    #[error(
        "replication slot `{0}` was invalidated: the WAL it needed was removed (max_slot_wal_keep_size exceeded). \
         Changes since its last position are lost to it; recover with `fleet connect <name> --resnapshot` \
         (drops the slot and takes a new initial snapshot)"
    )]
    SlotInvalidated(String),
    #[error("incompatible schema change on {table}: {detail}; the connector stops rather than write records consumers cannot read")]
    IncompatibleSchema { table: String, detail: String },
    #[error("schema registry: {0}")]
    Registry(#[from] codec::CodecError),
    #[error("kafka: {what}")]
    Kafka {
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka: {0}")]
    Acker(String),
    #[error("kafka: the acker failed")]
    AckerTask(#[source] tokio::task::JoinError),
    #[error("state: {path}")]
    State {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state: {path}")]
    StateFormat {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
