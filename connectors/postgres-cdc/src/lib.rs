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
