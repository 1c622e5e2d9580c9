//! The one explicit list of processors: a `match` on the closed kind enum.

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

/// Runs instance `instance` of processor `name` until `shutdown`.
pub async fn run(
    topology: &Topology,
    name: &str,
    instance: u16,
    shutdown: CancellationToken,
) -> Result<()> {
    let (spec, params) = topology
        .processor(name)
        .with_context(|| format!("no processor `{name}` in the topology"))?;
    let config = runtime::RuntimeConfig::from_spec(spec, instance, runtime::StackEnv::from_env()?)?;
    match params {
        ProcessorParams::Shipping(p) => {
            let processor = shipping::Shipping::new(p.clone(), &spec.outputs);
            runtime::run(config, topology, processor, shutdown).await?;
        }
    }
    Ok(())
}
