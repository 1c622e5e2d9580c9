//! `fleet demo`, the main job: brings the stack up, seeds the catalog and warehouse from a
//! real product data set, launches the fleet, sends shoppers through the storefront
//! (`fleet load`) with a flash sale and a few poison records, and prints a report computed
//! from the topics, databases and gateway ledger.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use loadgen::kafka::drain;

pub async fn run(topology_path: &Path, options: DemoOptions) -> Result<()> {
    let topology = crate::load(topology_path)?;
    let config = crate::stack_config()?;
    println!("== bringing the stack up ({})", config.data_dir.display());
    stack::up(&config, &topology).await?;
    stack::write_env_file(&config)?;
    let bootstrap = config.bootstrap_servers();

    println!("== seeding the catalog and warehouse databases (superstore data set)");
    let root = topology_path.parent().unwrap_or(Path::new("."));
    let csv = seed::fetch_dataset(&root.join("scripts/fetch-dataset.sh")).await?;
    let seeded = seed::seed(
        &config.postgres_url("catalog"),
        &config.postgres_url("warehouse"),
        &csv,
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

    wait_until_healthy(&topology).await?;
    wait_for_stock(&config, &bootstrap).await?;
    let storefronts = storefront_urls(&topology);
    println!(
        "== shoppers through the storefront ({})",
        storefronts.join(" ")
    );
    let report = crate::load::run(
        &topology,
        crate::load::LoadOptions {
            storefronts: storefronts.clone(),
            api_key: None,
            rate: options.rate,
            duration: Duration::from_secs(options.duration_secs),
            flash_products: 3,
            flash_stock: 40,
            settle: Duration::from_secs(90),
            seed: 7,
            poison: options.poison,
        },
    )
    .await?;
    println!();
    print!("{}", report.text);
    for (topic, table, database) in [
        ("cdc.catalog.products.v1", "products", "catalog"),
        ("cdc.warehouse.stock.v1", "stock", "warehouse"),
    ] {
        let rows = table_rows(&config.postgres_url(database), table).await?;
        let keys = distinct_keys(&bootstrap, topic).await?;
        println!("  CDC {topic:<26} {keys:>8} keys  (rows in {database}.{table}: {rows})");
    }
    println!();
    println!(
        "storefront API: {}  (x-api-key: `fleet keys create <client>`)",
        storefronts.join(" ")
    );
    println!("dashboard: http://127.0.0.1:9300/  (lag, status, DLQ counts, stuck sagas; `fleet status` in a terminal; Prometheus: /metrics and /metrics/fleet)");
    println!("metrics: {}", admin_urls(&topology).join(" "));
    println!("connectors: {}", connector_urls(&topology).join(" "));
    if options.stop {
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

pub struct DemoOptions {
    /// Shopper sessions per second.
    pub rate: f64,
    pub duration_secs: u64,
    pub poison: u64,
    /// Stop the fleet after the report (default: leave it and its dashboard running).
    pub stop: bool,
}

/// Waits until the warehouse's stock has reached inventory through CDC: one availability
/// record per stocked product at least (a first run's snapshot takes a while; later runs pass
/// at once).
async fn wait_for_stock(config: &stack::StackConfig, bootstrap: &str) -> Result<()> {
    let db = stack::connect_postgres(&config.postgres_url("warehouse")).await?;
    let stocked: i64 = db
        .query_one("SELECT count(DISTINCT product_id) FROM stock", &[])
        .await?
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let marks = dlq::kafka::topic_watermarks(bootstrap, "inventory.availability.v1").await?;
        let records: i64 = marks.iter().map(|m| m.high).sum();
        if records >= stocked {
            println!("   inventory knows the stock of {stocked} products");
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "inventory has {records} availability records for {stocked} stocked products after 3 minutes"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The storefront instances' base URLs, from the topology.
pub fn storefront_urls(topology: &topology::Topology) -> Vec<String> {
    topology
        .processors
        .iter()
        .filter_map(|(spec, params)| match params {
            topology::ProcessorParams::Storefront(p) => Some((spec.instances, p.http_port)),
            _ => None,
        })
        .flat_map(|(n, port)| (0..n).map(move |i| format!("http://127.0.0.1:{}", port + i)))
        .collect()
}

fn admin_urls(topology: &topology::Topology) -> Vec<String> {
    topology
        .processors
        .iter()
        .flat_map(|(p, _)| {
            (0..p.instances).map(move |i| format!("http://127.0.0.1:{}/metrics", p.admin_port + i))
        })
        .collect()
}

fn connector_urls(topology: &topology::Topology) -> Vec<String> {
    topology
        .connectors
        .iter()
        .map(|(c, _)| format!("http://127.0.0.1:{}/metrics", c.admin_port))
        .collect()
}

/// Waits until every processor instance is healthy and owns partitions (joined its group).
async fn wait_until_healthy(topology: &topology::Topology) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    for url in admin_urls(topology) {
        let health = url.replace("/metrics", "/health");
        loop {
            let assigned = match reqwest::get(&health).await {
                Ok(r) if r.status().is_success() => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|h| h["assigned_partitions"].as_i64())
                    .unwrap_or(0),
                _ => 0,
            };
            if assigned > 0 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{health} did not become healthy");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!("   every processor instance is healthy");
    Ok(())
}

async fn table_rows(url: &str, table: &str) -> Result<i64> {
    let row = stack::connect_postgres(url)
        .await?
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?;
    Ok(row.get(0))
}

/// Keys a CDC topic holds a live (non-tombstoned) value for, read from the beginning.
async fn distinct_keys(bootstrap: &str, topic: &str) -> Result<usize> {
    let group = format!("demo-cdc-{}", std::process::id());
    let consumer = loadgen::kafka::reader(bootstrap, topic, &group)?;
    let mut live: HashMap<Vec<u8>, bool> = HashMap::new();
    loop {
        let seen = drain(&consumer, 10_000, Duration::from_secs(3)).await;
        if seen.is_empty() {
            break;
        }
        for s in seen {
            live.insert(s.key.unwrap_or_default(), s.payload.is_some());
        }
    }
    Ok(live.values().filter(|v| **v).count())
}
