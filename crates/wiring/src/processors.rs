//! The one explicit list of processors and connectors: a `match` on the closed kind enum.
//! Adding a processor kind means one arm here.

use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::{Result, WiringError};

/// The topic processor `name` of `topology` binds to its output port `port`.
pub fn output(topology: &Topology, name: &str, port: &str) -> Result<String> {
    let (spec, _) = topology
        .processor(name)
        .ok_or_else(|| WiringError::NoProcessor(name.to_string()))?;
    spec.output(port)
        .map(str::to_string)
        .ok_or_else(|| WiringError::MissingPort {
            processor: name.to_string(),
            port: format!("a topic bound to its output port `{port}`"),
        })
}

/// Runs instance `instance` of processor `name` until `shutdown`, on the stack the
/// environment names.
pub async fn run(
    topology: &Topology,
    name: &str,
    instance: u16,
    shutdown: CancellationToken,
) -> Result<()> {
    let (spec, _) = topology
        .processor(name)
        .ok_or_else(|| WiringError::NoProcessor(name.to_string()))?;
    let config = runtime::RuntimeConfig::from_spec(spec, instance, runtime::StackEnv::from_env()?)?;
    run_with(topology, name, config, shutdown).await
}

/// Runs processor `name` with `config` (benchmarks run several in one process, on a
/// private broker or with ephemeral admin ports).
pub async fn run_with(
    topology: &Topology,
    name: &str,
    config: runtime::RuntimeConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    // Owns what a processor starts besides the runtime's own tasks (its database connections,
    // checkout's orders writer): drained once the runtime returned and dropped the processor.
    let tasks = tasks::Tasks::new(shutdown.clone());
    let outcome = run_processor(topology, name, config, shutdown, &tasks).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    outcome
}

async fn run_processor(
    topology: &Topology,
    name: &str,
    config: runtime::RuntimeConfig,
    shutdown: CancellationToken,
    tasks: &tasks::Tasks,
) -> Result<()> {
    let (spec, params) = topology
        .processor(name)
        .ok_or_else(|| WiringError::NoProcessor(name.to_string()))?;
    match params {
        ProcessorParams::Shipping(p) => {
            let processor = shipping::Shipping::from_spec(p.clone(), spec)?;
            runtime::run(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::Inventory(_) => {
            let processor = inventory::ledger_processor::Ledger::from_spec(spec)?;
            runtime::run_stateful(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::InventoryStockFeed(_) => {
            let processor = inventory::feed::StockFeed::from_spec(spec)?;
            runtime::run(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::Checkout(p) => {
            let topics = checkout::Topics::from_spec(spec)?;
            let database = runtime::postgres_database_url(&config.stack.postgres_url, &p.database)?;
            let processor = checkout::Checkout::new(p.clone(), topics, &database, tasks).await?;
            runtime::run_stateful(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::Payment(p) => {
            let topics = payment::Topics::from_spec(spec)?;
            let database = runtime::postgres_database_url(&config.stack.postgres_url, &p.database)?;
            let store = payment::store::Store::open(&database, tasks)
                .await
                .map_err(payment::processor::SetupError::from)?;
            let processor = payment::Payments::new(
                p.clone(),
                topics,
                &spec.name,
                &spec.group,
                spec.instances,
                store,
                &config.stack.gateway_url,
            )
            .await?;
            runtime::run_pipelined(config, topology, processor, p.concurrency, shutdown).await?;
        }
        ProcessorParams::SearchIndexer(p) => {
            search::run(config, topology, spec, p.clone(), shutdown).await?;
        }
        ProcessorParams::Recommendations(p) => {
            recommendations::run(config, topology, spec, p.clone(), shutdown, tasks).await?;
        }
        ProcessorParams::ImageQuality(p) => {
            let processor = image_quality::processor(&config, spec, p, tasks).await?;
            runtime::run_pipelined(config, topology, processor, p.concurrency, shutdown).await?;
        }
        ProcessorParams::Storefront(p) => {
            let topics = storefront::Topics::from_spec(spec)?;
            storefront::run(config, topology, p.clone(), topics, shutdown).await?;
        }
    }
    Ok(())
}

/// Runs connector `name` until `shutdown`.
pub async fn connect(
    topology: &Topology,
    name: &str,
    resnapshot: bool,
    shutdown: CancellationToken,
) -> Result<()> {
    let (spec, params) = topology
        .connectors
        .iter()
        .find(|(c, _)| c.name == name)
        .ok_or_else(|| WiringError::NoConnector(name.to_string()))?;
    let stack = runtime::StackEnv::from_env()?;
    let admin = std::net::SocketAddr::new(stack.admin_host, spec.admin_port);
    match spec.kind {
        topology::ConnectorKind::PostgresCdc => {
            let mut config = postgres_cdc::ConnectorConfig::new(
                name,
                params.clone(),
                topology,
                &stack.postgres_url,
                &stack,
                admin,
            )?;
            config.resnapshot = resnapshot;
            postgres_cdc::run(config, shutdown).await?;
        }
    }
    Ok(())
}

/// Runs instance 0 of `processor` of `t` in this process (admin on an ephemeral port) until
/// `token` is cancelled.
pub fn spawn_processor(
    t: &Topology,
    processor: &str,
    env: &runtime::StackEnv,
    token: &CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let (spec, _) = t
        .processor(processor)
        .ok_or_else(|| WiringError::NoProcessor(processor.to_string()))?;
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env.clone())?;
    config.admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let t = t.clone();
    let name = processor.to_string();
    let run = token.clone();
    // Owner: the caller, through the handle (it cancels `token`, then awaits it).
    Ok(tokio::spawn(async move {
        run_with(&t, &name, config, run).await
    }))
}
