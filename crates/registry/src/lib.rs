//! The fleet's schema registry: a Confluent Schema Registry–compatible HTTP server for Avro,
//! good enough that Confluent's clients (Python `SchemaRegistryClient`, Rust
//! `schema_registry_converter`) cannot tell the difference on the endpoints they call.
//!
//! Guarantees: ids are global, start at 1 and only grow; the same schema (formatting aside,
//! see `canonical`) with the same references gets the same id under every subject, and
//! registering it again is a no-op. A new version is accepted only if it passes the
//! subject's compatibility level (Avro resolution rules as Confluent's Java registry applies
//! them, see `compat`). With [`Storage::Kafka`] every change is first acknowledged by Kafka
//! (a single-partition compacted topic in Confluent's `_schemas` format) and only then
//! applied and answered, through one writer task; a restarted registry replays the topic
//! before it answers anything, so it serves the same ids and versions. Bad input is an
//! error response, never a panic, and never half-registers anything.
//!
//! Code: `api` (the REST API and Confluent's error codes), `canonical` (canonical form),
//! `compat` (Java-Avro reader/writer compatibility), `store` (the pure state machine),
//! `writer` and `kafka_store` (durability in the compacted single-partition `_schemas`
//! topic through one writer task). One registry process per `_schemas` topic: there is no
//! leader election yet.

mod api;
mod avro;
mod canonical;
mod compat;
mod error;
mod kafka_store;
mod records;
mod store;
mod writer;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use compat::CompatibilityLevel;
pub use error::{JournalError, RegistryError};

use kafka_store::KafkaJournal;
use store::Store;
use writer::{Journal, Writer};

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub listen: SocketAddr,
    pub storage: Storage,
}

#[derive(Debug, Clone)]
pub enum Storage {
    /// State lives as long as the process (tests, demos).
    Memory,
    /// Durable: a compacted single-partition topic, conventionally `_schemas`.
    Kafka {
        bootstrap_servers: String,
        topic: String,
    },
}

/// Binds, loads state (replaying the topic for Kafka storage), then serves until `shutdown`
/// is cancelled. Sends the bound address on `ready` once it accepts requests (listen port 0
/// is allowed).
pub async fn serve(
    config: RegistryConfig,
    shutdown: CancellationToken,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), RegistryError> {
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| RegistryError::Bind {
                address: config.listen,
                source,
            })?;
    let address = listener.local_addr().map_err(RegistryError::Serve)?;
    let loaded = tokio::select! {
        loaded = load(&config.storage) => loaded?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let (store, journal) = loaded;
    let store = Arc::new(RwLock::new(store));
    let (writer, writer_task) = Writer::spawn(store.clone(), journal);
    let app = api::router(api::AppState { store, writer });
    info!(%address, "schema registry listening");
    if let Some(ready) = ready {
        let _ = ready.send(address);
    }
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    // The router, and with it every writer handle, is gone: the writer finishes and stops.
    let _ = writer_task.await;
    served.map_err(RegistryError::Serve)
}

async fn load(storage: &Storage) -> Result<(Store, Journal), RegistryError> {
    match storage {
        Storage::Memory => Ok((Store::default(), Journal::Memory)),
        Storage::Kafka {
            bootstrap_servers,
            topic,
        } => {
            let journal = KafkaJournal::open(bootstrap_servers, topic).await?;
            let store = journal.replay().await?;
            Ok((store, Journal::Kafka(journal)))
        }
    }
}
