//! The fleet's wiring, shared by the `fleet` binary, the benchmarks (`crates/bench`), the load
//! generator (`crates/loadgen`) and the integration tests:
//!
//! - [`processors`]: the one explicit list of processors and connectors, how to run one
//!   (in the foreground, or in this process beside others) and how to find its ports;
//! - [`topics`]: a topic's Avro values as they are now, decoded through the registry;
//! - the topology file, the stack's settings and the storefront's database, as every
//!   command finds them, and scratch databases for processors run in isolation.
//!
//! Errors are [`WiringError`]: what failed, with the processor's, the stack's or the broker's
//! error as its source (the binary reports the chain).

pub mod processors;
pub mod topics;

use std::path::{Path, PathBuf};

use topology::Topology;

pub use processors::{connect, output, run, run_with, spawn_processor};

/// Why a processor, a connector or a command's setup could not be wired or run.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("loading {}", path.display())]
    Topology {
        path: PathBuf,
        #[source]
        source: topology::TopologyError,
    },
    #[error("no processor `{0}` in the topology")]
    NoProcessor(String),
    #[error("no connector `{0}` in the topology")]
    NoConnector(String),
    #[error("no storefront in the topology")]
    NoStorefront,
    #[error("`{processor}` needs {port}")]
    MissingPort { processor: String, port: String },
    #[error("locating the fleet binary")]
    Executable(#[source] std::io::Error),
    #[error("the stack's settings")]
    StackConfig(#[from] stack::ConfigError),
    #[error(transparent)]
    Stack(#[from] stack::StackError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("checkout")]
    Checkout(#[from] checkout::processor::SetupError),
    #[error("payment")]
    Payment(#[from] payment::processor::SetupError),
    #[error(transparent)]
    Storefront(#[from] storefront::StorefrontError),
    #[error(transparent)]
    Search(#[from] search::SearchError),
    #[error(transparent)]
    Recommendations(#[from] recommendations::RecsError),
    #[error(transparent)]
    ImageQuality(#[from] image_quality::SetupError),
    #[error(transparent)]
    Cdc(#[from] postgres_cdc::CdcError),
    #[error("reading {topic}")]
    ReadTopic {
        topic: String,
        #[source]
        source: Box<dlq::kafka::KafkaIoError>,
    },
    #[error("decoding a record of {topic}")]
    Decode {
        topic: String,
        #[source]
        source: codec::CodecError,
    },
}

pub type Result<T, E = WiringError> = std::result::Result<T, E>;

/// The topology file at `path`, loaded and validated.
pub fn load_topology(path: &Path) -> Result<Topology> {
    topology::load(path).map_err(|source| WiringError::Topology {
        path: path.to_path_buf(),
        source,
    })
}

/// The stack's settings, with `fleet registry` (the running executable, which must be the
/// `fleet` binary) as the registry command.
pub fn stack_config() -> Result<stack::StackConfig> {
    let exe = std::env::current_exe().map_err(WiringError::Executable)?;
    Ok(stack::StackConfig::from_env(vec![
        exe.to_string_lossy().into_owned(),
        "registry".into(),
    ])?)
}

/// The storefront's database, as the topology names it, on the stack's server.
pub fn storefront_database(topology: &Topology) -> Result<String> {
    let database = topology
        .processors
        .iter()
        .find_map(|(_, p)| match p {
            topology::ProcessorParams::Storefront(s) => Some(s.database.clone()),
            _ => None,
        })
        .ok_or(WiringError::NoStorefront)?;
    Ok(runtime::postgres_database_url(
        &runtime::StackEnv::from_env()?.postgres_url,
        &database,
    )?)
}

/// A scratch database `<prefix>_<suffix>` on the PostgreSQL server at `server`, with the
/// migrations in `migrations` applied: (name, URL). Benches and tests give the processors they
/// run in isolation databases of their own.
pub async fn private_database(
    server: &str,
    migrations: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<(String, String)> {
    let database = format!("{prefix}_{}", suffix.replace('-', "_"));
    stack::create_database(server, &database).await?;
    let url = runtime::postgres_database_url(server, &database)?;
    stack::apply_migrations(&url, migrations).await?;
    Ok((database, url))
}
