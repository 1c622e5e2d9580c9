//! The workload of `fleet demo`, once the binary has brought the stack up, seeded it and
//! launched the fleet: waits until the fleet is healthy and knows the stock, sends the
//! shoppers ([`crate::shoppers`]) with the demo's flash sale and poison records, and prints
//! the report, the CDC topics' figures and where to look next.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use topology::Topology;

use crate::kafka::drain;
use crate::shoppers::{self, Report};
use crate::{Error, Result};

/// What the demo's shoppers do.
pub struct Workload {
    /// Shopper sessions per second.
    pub rate: f64,
    pub duration: Duration,
    /// Undecodable records sent to the checkout-request topic mid-run.
    pub poison: u64,
}

/// Runs the demo's workload against the fleet of `topology` on the stack of `config` and
/// prints what it found; returns the report for the caller to check its invariants.
pub async fn run(
    topology: &Topology,
    config: &stack::StackConfig,
    options: Workload,
) -> Result<Report> {
    let bootstrap = config.bootstrap_servers();
    wait_until_healthy(topology).await?;
    wait_for_stock(config, &bootstrap).await?;
    let storefronts = shoppers::storefront_urls(topology);
    println!(
        "== shoppers through the storefront ({})",
        storefronts.join(" ")
    );
    let report = shoppers::run(
        topology,
        shoppers::LoadOptions {
            storefronts: storefronts.clone(),
            api_key: None,
            rate: options.rate,
            duration: options.duration,
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
        ("cdc.catalog.product-images.v1", "product_images", "catalog"),
        ("cdc.warehouse.stock.v1", "stock", "warehouse"),
    ] {
        let rows = table_rows(&config.postgres_url(database), table).await?;
        let keys = distinct_keys(&bootstrap, topic).await?;
        println!("  CDC {topic:<26} {keys:>8} keys  (rows in {database}.{table}: {rows})");
    }
    images_section(config, &bootstrap).await?;
    println!();
    println!(
        "storefront API: {}  (x-api-key: `fleet keys create <client>`)",
        storefronts.join(" ")
    );
    println!("dashboard: http://127.0.0.1:9300/  (lag, status, DLQ counts, stuck sagas; `fleet status` in a terminal; Prometheus: /metrics and /metrics/fleet)");
    println!("metrics: {}", admin_urls(topology).join(" "));
    println!("connectors: {}", connector_urls(topology).join(" "));
    Ok(report)
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
        if Instant::now() >= deadline {
            return Err(Error::Failed(format!(
                "inventory has {records} availability records for {stocked} stocked products after 3 minutes"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn admin_urls(topology: &Topology) -> Vec<String> {
    topology
        .processors
        .iter()
        .flat_map(|(p, _)| {
            (0..p.instances).map(move |i| format!("http://127.0.0.1:{}/metrics", p.admin_port + i))
        })
        .collect()
}

fn connector_urls(topology: &Topology) -> Vec<String> {
    topology
        .connectors
        .iter()
        .map(|(c, _)| format!("http://127.0.0.1:{}/metrics", c.admin_port))
        .collect()
}

/// Waits until every processor instance is healthy and owns partitions (joined its group).
async fn wait_until_healthy(topology: &Topology) -> Result<()> {
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
            if Instant::now() >= deadline {
                return Err(Error::Failed(format!("{health} did not become healthy")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!("   every processor instance is healthy");
    Ok(())
}

/// Every uploaded image (a catalog row) against the verdicts database and the verdicts topic,
/// after waiting up to a minute for the checks still in flight (retries back off for seconds).
async fn images_section(config: &stack::StackConfig, bootstrap: &str) -> Result<()> {
    let catalog = stack::connect_postgres(&config.postgres_url("catalog")).await?;
    let images = stack::connect_postgres(&config.postgres_url("images")).await?;
    let uploaded: Vec<String> = catalog
        .query("SELECT id::text FROM product_images", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let started = std::time::Instant::now();
    let (checked, by_status) = loop {
        let rows = images
            .query("SELECT image_id, status FROM image_verdicts", &[])
            .await?;
        let verdicts: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let checked = uploaded
            .iter()
            .filter(|id| verdicts.contains_key(*id))
            .count();
        if checked == uploaded.len() || started.elapsed() > Duration::from_secs(60) {
            let mut by_status: HashMap<String, usize> = HashMap::new();
            for status in verdicts.values() {
                *by_status.entry(status.clone()).or_default() += 1;
            }
            break (checked, by_status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let flagged: i64 = images
        .query_one("SELECT count(*) FROM products_for_review", &[])
        .await?
        .get(0);
    let on_topic = distinct_keys(bootstrap, "images.check-results.v1").await?;
    let count = |s: &str| by_status.get(s).copied().unwrap_or(0);
    println!();
    println!(
        "== image quality (catalog.product_images, images.image_verdicts, images.check-results.v1)"
    );
    println!(
        "  uploaded {}; with a verdict {checked} (not yet: {}): OK {}, REJECTED {}, NEEDS_MANUAL_REVIEW {}",
        uploaded.len(),
        uploaded.len() - checked,
        count("OK"),
        count("REJECTED"),
        count("NEEDS_MANUAL_REVIEW"),
    );
    println!(
        "  images with a verdict on the topic: {on_topic}; products whose every image failed (flagged for review, still listed): {flagged}"
    );
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
    let consumer = crate::kafka::reader(bootstrap, topic, &group)?;
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
