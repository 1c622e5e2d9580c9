//! The local stack `fleet stack up|down|status` manages: the Kafka-protocol broker (nisshi,
//! SQLite storage under the data folder), the schema registry, a private PostgreSQL cluster
//! with `wal_level=logical`, a private Redis and the payment gateway simulator. Each runs on
//! its own port under the project's data folder, so the machine's shared services are left
//! alone.
//!
//! `up` is idempotent: what is running is kept, what is missing is installed (Debian
//! packages, the cached broker build in `~/.cache/storefleet`) and started, then topics are
//! created from the topology (pre-created: auto-creation would hide typos), schemas
//! registered, and the service databases (`catalog`, `warehouse`, `orders`, `payments`,
//! `storefront`) created and migrated (`migrations/<database>/*.sql`, each applied once, in
//! one transaction with its row in `storefleet_migrations`). Every process it starts gets a
//! pid file; `down` stops exactly those, and nothing else; `up` refuses a port taken by a
//! process it did not start.
//!
//! - The broker's engine is SQLite unless `STOREFLEET_BROKER_STORAGE=memory`: chosen by
//!   testing restart, `kill -9` and header volume (`docs/broker-conformance.md`); the memory
//!   engine loses every topic when the broker stops.
//! - The PostgreSQL cluster is owned by the `postgres` user and lives in
//!   `/var/tmp/storefleet-postgres-<port>`, because a clone may sit in a folder that user
//!   cannot enter.
//! - Redis runs with `volatile-lru` (only keys with a TTL are evicted) and persists nothing.
//! - The gateway simulator starts with no faults; the demo and the benchmarks set theirs
//!   through `PUT /v1/faults`.

mod broker;
mod config;
mod databases;
mod postgres;
mod process;
mod redis;
mod schemas_check;
mod topics;

use std::path::Path;
use std::time::Duration;

pub use broker::{
    broker_binary, broker_binary_in, broker_command, free_port, postgres_storage, PrivateBroker,
    BROKER_VERSION, SQLITE_STORAGE,
};
pub use config::{BrokerStorage, ConfigError, StackConfig};
pub use databases::{
    apply_migrations, connect as connect_postgres, create_database, drop_database, migration_files,
    migrations_dir, prepare as prepare_databases, DATABASES,
};
pub use postgres::{ensure_started as start_postgres, stop as stop_postgres};
pub use process::{is_running, port_open, wait_for_port, Managed};
pub use schemas_check::{check_schemas, SchemaStatus, SubjectVerdict};
pub use topics::{create_topics, create_topics_at, push_schemas};

use thiserror::Error;
use tracing::info;

#[derive(Debug, Error)]
pub enum StackError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("kafka admin: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("postgresql: {what}")]
    Postgres {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StackError {
    let what = what.into();
    move |source| StackError::Io { what, source }
}

/// The components, in start order.
pub fn components(config: &StackConfig) -> Vec<Managed> {
    vec![
        Managed::broker(config),
        Managed::registry(config),
        Managed::gateway(config),
    ]
}

/// Brings everything up (idempotently) and prepares topics and schemas.
pub async fn up(config: &StackConfig, topology: &topology::Topology) -> Result<(), StackError> {
    std::fs::create_dir_all(&config.data_dir).map_err(io("create the data folder"))?;
    let broker = Managed::broker(config);
    broker.ensure_started(config).await?;
    wait_for_port(config.broker_port, Duration::from_secs(60)).await?;
    create_topics(config, topology).await?;
    let registry = Managed::registry(config);
    registry.ensure_started(config).await?;
    wait_for_port(config.registry_port, Duration::from_secs(60)).await?;
    let pushed = push_schemas(config, topology).await?;
    info!(subjects = pushed, "schemas registered");
    postgres::ensure_started(config).await?;
    let migrated = databases::prepare(config, topology).await?;
    info!(
        databases = databases::DATABASES.len(),
        migrations = migrated.len(),
        "databases ready"
    );
    redis::ensure_started(config).await?;
    let gateway = Managed::gateway(config);
    gateway.ensure_started(config).await?;
    wait_for_port(config.gateway_port, Duration::from_secs(30)).await?;
    Ok(())
}

/// Stops what `up` started, newest first. Never touches processes it has no pid file for.
pub async fn down(config: &StackConfig) -> Result<(), StackError> {
    // A fleet the demo left running goes first: it uses everything below.
    stop_fleet(config).await;
    redis::stop(config).await?;
    postgres::stop(config).await?;
    for managed in components(config).into_iter().rev() {
        managed.stop().await?;
    }
    Ok(())
}

/// Where `fleet demo` records the pid of the fleet it leaves running.
pub fn fleet_pid_file(config: &StackConfig) -> std::path::PathBuf {
    config.data_dir.join("fleet.pid")
}

/// The running fleet `fleet demo` left behind, if any.
pub fn running_fleet(config: &StackConfig) -> Option<i32> {
    std::fs::read_to_string(fleet_pid_file(config))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|pid| is_running(*pid))
}

/// Stops the fleet `fleet demo` left running (SIGTERM: it stops its processes in order).
pub async fn stop_fleet(config: &StackConfig) {
    if let Some(pid) = running_fleet(config) {
        process::terminate(pid, std::time::Duration::from_secs(60)).await;
        info!(pid, "fleet stopped");
    }
    let _ = std::fs::remove_file(fleet_pid_file(config));
}

/// One line per component: running or not, and where it listens.
pub fn status(config: &StackConfig) -> Vec<(String, bool, String)> {
    vec![
        (
            "broker (nisshi, sqlite)".into(),
            port_open(config.broker_port),
            config.bootstrap_servers(),
        ),
        (
            "schema registry".into(),
            port_open(config.registry_port),
            config.registry_url(),
        ),
        (
            "postgresql (wal_level=logical)".into(),
            port_open(config.postgres_port),
            config.postgres_url("postgres"),
        ),
        (
            "redis".into(),
            port_open(config.redis_port),
            config.redis_url(),
        ),
        (
            "payment gateway simulator".into(),
            port_open(config.gateway_port),
            config.gateway_url(),
        ),
    ]
}

/// Writes `stack.env` (shell syntax) so other tools and shells find the stack.
pub fn write_env_file(config: &StackConfig) -> Result<std::path::PathBuf, StackError> {
    let path = config.data_dir.join("stack.env");
    let text = format!(
        "STOREFLEET_BOOTSTRAP={}\nSTOREFLEET_REGISTRY={}\nSTOREFLEET_POSTGRES={}\nSTOREFLEET_REDIS={}\nSTOREFLEET_GATEWAY={}\n",
        config.bootstrap_servers(),
        config.registry_url(),
        config.postgres_url("postgres"),
        config.redis_url(),
        config.gateway_url()
    );
    std::fs::write(&path, text).map_err(io("write stack.env"))?;
    Ok(path)
}

pub(crate) fn command_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// Installs Debian packages when a needed program is missing (a fresh machine).
pub(crate) async fn apt_install(packages: &[&str]) -> Result<(), StackError> {
    info!(?packages, "installing Debian packages");
    let update = tokio::process::Command::new("apt-get")
        .arg("update")
        .status()
        .await
        .map_err(io("run apt-get update"))?;
    if !update.success() {
        return Err(StackError::Failed("apt-get update failed".into()));
    }
    let status = tokio::process::Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .await
        .map_err(io("run apt-get install"))?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Failed(format!(
            "apt-get install {packages:?} failed"
        )))
    }
}

pub(crate) fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
