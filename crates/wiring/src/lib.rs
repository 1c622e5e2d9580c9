//! The fleet's wiring, shared by the `fleet` binary, the benchmarks (`crates/bench`), the load
//! generator (`crates/loadgen`) and the integration tests:
//!
//! - [`processors`]: the one explicit list of processors and connectors, how to run one
//!   (in the foreground, or in this process beside others) and how to find its ports;
//! - [`topics`]: a topic's Avro values as they are now, decoded through the registry;
//! - the topology file, the stack's settings and the storefront's database, as every
//!   command finds them, and scratch databases for processors run in isolation.
//!
//! `anyhow` is the error type here, as in the binary: these are the commands' building blocks.

pub mod processors;
pub mod topics;

use std::path::Path;

use anyhow::{Context, Result};
use topology::Topology;

pub use processors::{connect, output, run, run_with, spawn_processor};

/// The topology file at `path`, loaded and validated.
pub fn load_topology(path: &Path) -> Result<Topology> {
    topology::load(path).with_context(|| format!("loading {}", path.display()))
}

/// The stack's settings, with `fleet registry` (the running executable, which must be the
/// `fleet` binary) as the registry command.
pub fn stack_config() -> Result<stack::StackConfig> {
    let exe = std::env::current_exe().context("locating the fleet binary")?;
    stack::StackConfig::from_env(vec![exe.to_string_lossy().into_owned(), "registry".into()])
        .map_err(anyhow::Error::msg)
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
        .context("no storefront in the topology")?;
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
