//! The one explicit list of processors and connectors: a `match` on the closed kind enum.
//! Adding a processor kind means one arm here.

use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::{Result, WiringError};

/// The output of `spec` whose name starts with `prefix` (outputs are renamed copies in
/// isolated topologies, so they are found by their base name).
pub fn output(spec: &topology::ProcessorSpec, prefix: &str) -> Result<String> {
    spec.outputs
        .iter()
        .find(|o| o.starts_with(prefix))
        .cloned()
        .ok_or_else(|| WiringError::MissingPort {
            processor: spec.name.clone(),
            port: format!("an output `{prefix}*`"),
        })
}

/// The input of `spec` whose topic starts with `prefix` (see [`output`]).
pub fn input(spec: &topology::ProcessorSpec, prefix: &str) -> Result<String> {
    spec.inputs
        .iter()
        .map(|i| &i.topic)
        .find(|t| t.starts_with(prefix))
        .cloned()
        .ok_or_else(|| WiringError::MissingPort {
            processor: spec.name.clone(),
            port: format!("an input `{prefix}*`"),
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
    let (spec, params) = topology
        .processor(name)
        .ok_or_else(|| WiringError::NoProcessor(name.to_string()))?;
    match params {
        ProcessorParams::Shipping(p) => {
            let processor = shipping::Shipping::new(p.clone(), &spec.outputs);
            runtime::run(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::Inventory(_) => {
            let processor = inventory::ledger_processor::Ledger::new(&spec.outputs);
            runtime::run_stateful(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::InventoryStockFeed(_) => {
            let output = spec
                .outputs
                .first()
                .cloned()
                .ok_or_else(|| WiringError::MissingPort {
                    processor: spec.name.clone(),
                    port: "an output".into(),
                })?;
            let processor = inventory::feed::StockFeed { output };
            runtime::run(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::Checkout(p) => {
            let topics = checkout::Topics {
                stock: output(spec, "inventory.stock-commands")?,
                payments: output(spec, "payments.commands")?,
                placed: output(spec, "orders.order-placed")?,
                transitions: output(spec, "checkout.saga-transitions")?,
            };
            let database = runtime::postgres_database_url(&config.stack.postgres_url, &p.database)?;
            let processor = checkout::Checkout::new(p.clone(), topics, &database).await?;
            runtime::run_stateful(config, topology, processor, shutdown).await?;
        }
        ProcessorParams::Payment(p) => {
            let topics = payment::Topics {
                results: output(spec, "payments.results")?,
                retries: output(spec, "payments.retries")?,
                exhausted: output(spec, "dlq.")?,
            };
            let database = runtime::postgres_database_url(&config.stack.postgres_url, &p.database)?;
            let processor = payment::Payments::new(
                p.clone(),
                topics,
                &spec.name,
                &spec.group,
                spec.instances,
                &database,
                &config.stack.gateway_url,
            )
            .await?;
            runtime::run_pipelined(config, topology, processor, p.concurrency, shutdown).await?;
        }
        ProcessorParams::Storefront(p) => {
            let topics = storefront::Topics {
                checkout: output(spec, "orders.checkout-requested")?,
                interactions: output(spec, "recommendations.interactions")?,
                status: input(spec, "checkout.saga-transitions")?,
                availability: input(spec, "inventory.availability")?,
            };
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
    Ok(tokio::spawn(async move {
        run_with(&t, &name, config, run).await
    }))
}
