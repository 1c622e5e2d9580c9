//! `fleet demo`, the main job: brings the stack up, seeds the catalog and warehouse from a
//! real product data set, launches the fleet, sends shoppers through the storefront
//! (`fleet load`) with a flash sale and a few poison records, and prints a report computed
//! from the topics, databases and gateway ledger. The workload and its report are
//! `loadgen::demo`'s; this module starts what it runs against.

use std::path::Path;

use anyhow::{Context, Result};

/// Runs the demo; with `stop`, stops the fleet after the report (by default it stays up, with
/// its dashboard, until `fleet stack down`).
pub async fn run(
    topology_path: &Path,
    workload: loadgen::demo::Workload,
    stop: bool,
    faults: bool,
) -> Result<()> {
    let topology = wiring::load_topology(topology_path)?;
    let config = wiring::stack_config()?;
    println!("== bringing the stack up ({})", config.data_dir.display());
    stack::up(&config, &topology).await?;
    stack::write_env_file(&config)?;
    // The gateway keeps its fault settings between demos: set them either way.
    let mix = if faults {
        gateway_sim::GatewayConfig {
            error_rate: 0.02,
            timeout_rate: 0.01,
            lost_rate: 0.01,
            decline_rate: 0.03,
            // Longer than payment's call timeout (1 s): the call is cut and retried.
            hang_ms: 5_000,
            ..Default::default()
        }
    } else {
        gateway_sim::GatewayConfig::default()
    };
    reqwest::Client::new()
        .put(format!("{}/v1/faults", config.gateway_url()))
        .json(&mix)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("setting the gateway simulator's faults")?;
    if faults {
        println!("== gateway faults: 2% errors, 1% timeouts, 1% lost answers, 3% declines (--no-faults: none)");
    } else {
        println!("== gateway faults: none (--no-faults)");
    }
    let bootstrap = config.bootstrap_servers();

    println!("== seeding the catalog and warehouse databases (superstore data set)");
    let root = topology_path.parent().unwrap_or(Path::new("."));
    let csv = seed::fetch_dataset(&root.join("scripts/fetch-dataset.sh")).await?;
    let seeded = seed::seed(
        &config.postgres_url("catalog"),
        &config.postgres_url("warehouse"),
        &csv,
        &format!("{}/seller-images", config.gateway_url()),
    )
    .await?;
    for line in seeded.to_string().lines() {
        println!("   {}", line.trim());
    }

    // A fleet an earlier demo left running is replaced by one on this build and topology.
    stack::stop_fleet(&config).await;
    println!(
        "== launching the fleet (log: {})",
        config.data_dir.join("fleet.log").display()
    );
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(config.data_dir.join("fleet.log"))?;
    // Its own process group, not killed with this process: the fleet and its dashboard stay
    // up after the report, until `fleet stack down` (or --stop).
    let fleet = tokio::process::Command::new(exe)
        .arg("--topology")
        .arg(topology_path)
        .arg("up")
        .env("STOREFLEET_BOOTSTRAP", &bootstrap)
        .env("STOREFLEET_REGISTRY", config.registry_url())
        .env("STOREFLEET_POSTGRES", config.postgres_url("postgres"))
        .env("STOREFLEET_REDIS", config.redis_url())
        .env("STOREFLEET_GATEWAY", config.gateway_url())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the fleet")?;
    let pid = fleet.id().context("the fleet's pid")?;
    std::fs::write(stack::fleet_pid_file(&config), pid.to_string())?;
    // The load generator below reads the same stack.
    std::env::set_var("STOREFLEET_BOOTSTRAP", &bootstrap);
    std::env::set_var("STOREFLEET_REGISTRY", config.registry_url());
    std::env::set_var("STOREFLEET_POSTGRES", config.postgres_url("postgres"));
    std::env::set_var("STOREFLEET_REDIS", config.redis_url());
    std::env::set_var("STOREFLEET_GATEWAY", config.gateway_url());

    let report = loadgen::demo::run(&topology, &config, workload).await?;
    if stop {
        stack::stop_fleet(&config).await;
        println!("fleet stopped; the stack is still up: `fleet stack status`, `fleet stack down`");
    } else {
        println!("the fleet is still running (pid {pid}, log {}); `fleet stack down` stops it and the stack", config.data_dir.join("fleet.log").display());
    }
    anyhow::ensure!(
        report.oversold_units == 0
            && report.duplicate_charges == 0
            && report.unsettled == 0
            && !report.poison_unmatched,
        "the fleet broke an invariant (see the report)"
    );
    Ok(())
}
