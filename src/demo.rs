//! `fleet demo`, the main job: brings the stack up, launches the fleet, places a workload of
//! orders (with a known share of poison records) and reports what the fleet did, computed
//! from the topics it wrote, not from the generator's counters.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use codec::{RegistryClient, TopicCodec};
use events::shipping::{ShipmentEvent, ShipmentEventKind};
use loadgen::kafka::{drain, produce_all, producer, reader_from_end};
use loadgen::orders::{shipments_of, OrderGenerator};

const INPUT: &str = "orders.order-placed.v1";
const OUTPUT: &str = "shipping.shipment-events.v1";
const DEAD_LETTERS: &str = "dlq.shipping.order-placed.v1";
/// One record in this many is poison (half undecodable bytes, half invalid orders).
const POISON_EVERY: u64 = 500;

pub async fn run(topology_path: &Path, orders: u64, rate: u64, keep_running: bool) -> Result<()> {
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

    println!("== launching the fleet");
    let exe = std::env::current_exe()?;
    let mut fleet = tokio::process::Command::new(exe)
        .arg("--topology")
        .arg(topology_path)
        .arg("up")
        .env("STOREFLEET_BOOTSTRAP", &bootstrap)
        .env("STOREFLEET_REGISTRY", config.registry_url())
        .env("STOREFLEET_POSTGRES", config.postgres_url("postgres"))
        .kill_on_drop(true)
        .spawn()
        .context("starting the fleet")?;

    wait_until_healthy(&topology).await?;
    let outputs = reader_from_end(&bootstrap, OUTPUT)?;
    let dead_letters = reader_from_end(&bootstrap, DEAD_LETTERS)?;
    let registry = RegistryClient::new(&config.registry_url());
    let order_codec = codec_for(&topology, &registry, INPUT).await?;
    let shipment_codec = codec_for(&topology, &registry, OUTPUT).await?;

    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    println!(
        "== placing {orders} orders at {rate}/s (run {run}; 1 in {POISON_EVERY} records is poison)"
    );
    let producer = producer(&bootstrap)?;
    let mut generator = OrderGenerator::new(&run, 7, 5_000);
    let mut expected_shipments: HashMap<String, usize> = HashMap::new();
    let mut placed_at: HashMap<String, i64> = HashMap::new();
    let mut poison = 0u64;
    let started = Instant::now();
    let batch = (rate / 10).clamp(1, 5_000);
    let mut sent = 0u64;
    let mut in_flight = tokio::task::JoinSet::new();
    while sent < orders {
        let mut records = Vec::new();
        for _ in 0..batch.min(orders - sent) {
            sent += 1;
            let now = now_ms();
            let mut order = generator.next_order(now);
            if sent.is_multiple_of(POISON_EVERY) {
                poison += 1;
                if poison.is_multiple_of(2) {
                    records.push((order.order_id, b"{\"not\": \"avro\"}".to_vec()));
                } else {
                    order.lines[0].quantity = 0;
                    records.push((order.order_id.clone(), order_codec.encode(&order)?));
                }
                continue;
            }
            expected_shipments.insert(order.order_id.clone(), shipments_of(&order));
            placed_at.insert(order.order_id.clone(), order.occurred_at);
            records.push((order.order_id.clone(), order_codec.encode(&order)?));
        }
        // Batches are acknowledged in the background (bounded), so the broker's ack latency
        // does not throttle the offered rate.
        if in_flight.len() >= 16 {
            if let Some(done) = in_flight.join_next().await {
                done??;
            }
        }
        let batch_producer = producer.clone();
        in_flight.spawn(async move { produce_all(&batch_producer, INPUT, records).await });
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if sent.is_multiple_of(batch * 20) {
            eprintln!("   placed {sent}/{orders}");
        }
    }
    while let Some(done) = in_flight.join_next().await {
        done??;
    }
    let placed_secs = started.elapsed().as_secs_f64();
    let want: usize = expected_shipments.values().map(|n| n * 2).sum();
    println!("== waiting for {want} shipment events and {poison} dead letters");
    let seen = drain(&outputs, want, Duration::from_secs(60)).await;
    let letters = drain(&dead_letters, poison as usize, Duration::from_secs(10)).await;

    let mut event_ids = HashSet::new();
    let mut duplicates = 0;
    let mut labelled: HashMap<String, usize> = HashMap::new();
    let mut latencies = Vec::new();
    for record in &seen {
        let Some(payload) = &record.payload else {
            continue;
        };
        let event: ShipmentEvent = codec::from_value(&shipment_codec.decode(payload).await?)?;
        if !event.order_id.contains(&run) {
            continue;
        }
        if !event_ids.insert(event.event_id.clone()) {
            duplicates += 1;
            continue;
        }
        if event.kind == ShipmentEventKind::LabelCreated {
            *labelled.entry(event.order_id.clone()).or_default() += 1;
            if let (Some(ts), Some(placed)) = (record.timestamp_ms, placed_at.get(&event.order_id))
            {
                latencies.push(ts - placed);
            }
        }
    }
    let complete = expected_shipments
        .iter()
        .filter(|(id, n)| labelled.get(*id) == Some(n))
        .count();
    latencies.sort_unstable();
    let pct = |p: f64| crate::bench::percentile(&latencies, p);

    println!();
    println!("== report (computed from the topics)");
    println!(
        "orders placed             {:>8}  in {placed_secs:.1}s ({:.0}/s)",
        expected_shipments.len(),
        expected_shipments.len() as f64 / placed_secs
    );
    println!("poison records sent       {poison:>8}");
    println!("orders fully shipped      {complete:>8}  (every fulfillment center labelled)");
    println!(
        "orders missing shipments  {:>8}  (must be 0)",
        expected_shipments.len() - complete
    );
    println!("duplicate events          {duplicates:>8}  (redeliveries after a crash; consumers drop them by event id)");
    println!(
        "dead letters              {:>8}  (must equal poison records)",
        letters.len()
    );
    println!("order → label latency     (placed → label acknowledged by the broker)");
    println!(
        "                              p50 {} ms, p95 {} ms, p99 {} ms",
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
    for (topic, table, database) in [
        ("cdc.catalog.products.v1", "products", "catalog"),
        ("cdc.warehouse.stock.v1", "stock", "warehouse"),
    ] {
        let rows = table_rows(&config.postgres_url(database), table).await?;
        let keys = distinct_keys(&bootstrap, topic).await?;
        println!("CDC {topic:<26} {keys:>8} keys  (rows in {database}.{table}: {rows})");
    }
    println!();
    println!("metrics: {}", admin_urls(&topology).join(" "));
    println!("connectors: {}", connector_urls(&topology).join(" "));
    println!("stack:   `fleet stack status`; stop it with `fleet stack down`");

    if keep_running {
        println!("fleet still running; Ctrl-C to stop it");
        let _ = tokio::signal::ctrl_c().await;
    }
    stop(&mut fleet).await;
    let ok = complete == expected_shipments.len() && letters.len() as u64 == poison;
    anyhow::ensure!(ok, "the fleet did not process the workload completely");
    Ok(())
}

async fn codec_for(
    topology: &topology::Topology,
    registry: &RegistryClient,
    topic: &str,
) -> Result<TopicCodec> {
    let text = topology
        .topic(topic)
        .and_then(|t| t.value_schema.as_deref())
        .and_then(|p| topology.schema_text(p))
        .with_context(|| format!("schema of {topic}"))?;
    Ok(TopicCodec::register(registry, &format!("{topic}-value"), text).await?)
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

async fn stop(fleet: &mut tokio::process::Child) {
    if let Some(pid) = fleet.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet.wait()).await;
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn table_rows(url: &str, table: &str) -> Result<i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
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
