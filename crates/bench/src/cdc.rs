//! `fleet bench cdc`: the PostgreSQL CDC connector on the stack, in a scratch database of its
//! own (dropped afterwards): initial snapshot rows/s, then streamed row changes/s and the
//! commit → consumer latency (commit time in `source.ts_ms` to the moment the record was read).

use std::time::{Duration, Instant};

use apache_avro::types::Value;
use codec::RegistryClient;
use loadgen::kafka::{drain, reader};
use loadgen::percentile;
use tasks::Tasks;
use tokio_util::sync::CancellationToken;

use crate::error::{check, missing};
use crate::harness::{broker_label, private_broker, Engine};
use crate::{Error, Result};

const CONNECTOR: &str = "catalog-cdc";

/// `fleet bench cdc`.
#[derive(clap::Args)]
pub struct Args {
    /// Rows present before the connector starts (read by the snapshot).
    #[arg(long, default_value_t = 100_000)]
    snapshot_rows: u64,
    /// Rows inserted while streaming.
    #[arg(long, default_value_t = 100_000)]
    stream_rows: u64,
    /// Rows per streamed transaction.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Streamed rows per second (0: as fast as one connection inserts).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Produce to a private broker with this storage engine instead of the stack's.
    #[arg(long)]
    engine: Option<Engine>,
}

pub async fn cdc(topology: &topology::Topology, args: Args) -> Result<()> {
    let Args {
        snapshot_rows,
        stream_rows,
        batch,
        rate,
        engine,
    } = args;
    let config = wiring::stack_config()?;
    // The stack's broker (SQLite engine) or a private one, to separate the connector's cost
    // from the broker's storage engine; the registry is always the stack's.
    let private = private_broker(engine).await?;
    let bootstrap = private
        .as_ref()
        .map_or_else(|| config.bootstrap_servers(), |b| b.bootstrap.clone());
    println!("broker: {}", broker_label(engine));
    let suffix = format!("bench{}", std::process::id());
    let database = format!("bench_cdc_{}", std::process::id());
    let server = config.postgres_url("postgres");
    // The bench's connections (and its writer's), drained when it is done.
    let tasks = Tasks::new(CancellationToken::new());
    let admin = pg::connect(&server, "postgres", &tasks)
        .await
        .map_err(Error::StackPostgres)?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {database}"),
        format!("CREATE DATABASE {database}"),
    ] {
        admin.batch_execute(&statement).await?;
    }
    let db = pg::connect(&config.postgres_url(&database), "bench", &tasks).await?;
    let root = topology
        .schema_dir
        .parent()
        .unwrap_or(std::path::Path::new("."));
    // Every catalog migration: the connector's publication lists every captured table.
    stack::apply_migrations(
        &config.postgres_url(&database),
        &root.join("migrations/catalog"),
    )
    .await?;
    println!("== {snapshot_rows} rows before the connector starts");
    insert(&db, 0, snapshot_rows).await?;

    let t = topology
        .isolated_connector(CONNECTOR, &suffix, &database)
        .ok_or_else(missing("no catalog-cdc connector in the topology"))?;
    stack::create_topics_at(&bootstrap, &t).await?;
    let (spec, params) = t
        .connectors
        .iter()
        .find(|(c, _)| c.name == CONNECTOR)
        .ok_or_else(missing("isolated connector"))?;
    let topic = params.tables[0].topic.clone();
    let slot = params.slot.clone();
    let mut stack_env = runtime::StackEnv::from_env()?;
    stack_env.bootstrap_servers = bootstrap.clone();
    stack_env.registry_url = config.registry_url();
    let state = tempfile::tempdir()?;
    stack_env.state_dir = state.path().to_path_buf();
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], stack::free_port()?));
    let _ = spec;
    let connector_config = postgres_cdc::ConnectorConfig::new(
        CONNECTOR,
        params.clone(),
        &t,
        &server,
        &stack_env,
        admin_addr,
    )?;
    let consumer = reader(&bootstrap, &topic, &format!("bench-{suffix}"))?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tasks.spawn(
        "cdc connector",
        postgres_cdc::run(connector_config, stop.clone()),
    );

    let registry = RegistryClient::new(&config.registry_url());
    let read = count(&consumer, &registry, snapshot_rows, None).await?;
    let snapshot_secs = started.elapsed().as_secs_f64();
    println!(
        "snapshot   {read:>9} rows in {snapshot_secs:>6.2} s  = {:>9.0} rows/s (connector start to last row read)",
        read as f64 / snapshot_secs
    );

    let pace = if rate == 0 {
        "as fast as one connection inserts".to_string()
    } else {
        format!("at {rate} rows/s")
    };
    println!("== {stream_rows} rows inserted in transactions of {batch}, {pace}");
    let writer = {
        let url = config.postgres_url(&database);
        let writer_tasks = tasks.clone();
        tasks.spawn("bench writer", async move {
            let db = pg::connect(&url, "bench", &writer_tasks).await?;
            let began = Instant::now();
            let mut done = 0;
            while done < stream_rows {
                let n = batch.min(stream_rows - done);
                insert(&db, snapshot_rows + done, n).await?;
                done += n;
                if rate > 0 {
                    let due = Duration::from_secs_f64(done as f64 / rate as f64);
                    tokio::time::sleep_until((began + due).into()).await;
                }
            }
            Ok::<_, Error>(())
        })
    };
    let streamed_at = Instant::now();
    let mut latencies = Vec::new();
    let read = count(&consumer, &registry, stream_rows, Some(&mut latencies)).await?;
    let stream_secs = streamed_at.elapsed().as_secs_f64();
    writer.await??;
    latencies.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p);
    println!(
        "streaming  {read:>9} rows in {stream_secs:>6.2} s  = {:>9.0} rows/s (first insert to last row read)",
        read as f64 / stream_secs
    );
    println!(
        "commit → consumer latency (sampled {} rows): p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );

    stop.cancel();
    running.await??;
    admin
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await?;
    drop((admin, db));
    tasks.drain(tasks::DRAIN_TIME).await;
    Ok(())
}

async fn insert(db: &tokio_postgres::Client, from: u64, n: u64) -> Result<()> {
    db.execute(
        "INSERT INTO products (id, sku, title, description, category, brand, price, image_urls, seller) \
         SELECT gen_random_uuid(), 'SKU-' || i, 'Product ' || i, 'A product for benchmarks', \
                'Office Supplies/Paper', 'Bench', (i % 1000) + 0.99, ARRAY['https://img/' || i], 'seller-1' \
         FROM generate_series($1::bigint, $2::bigint) AS i",
        &[&(from as i64), &((from + n) as i64 - 1)],
    )
    .await?;
    Ok(())
}

/// Reads `want` records; with `latencies`, decodes every 50th record's `source.ts_ms` and
/// records now − commit time in ms.
async fn count(
    consumer: &rdkafka::consumer::StreamConsumer,
    registry: &RegistryClient,
    want: u64,
    mut latencies: Option<&mut Vec<i64>>,
) -> Result<u64> {
    let mut read = 0u64;
    while read < want {
        let seen = drain(
            consumer,
            10_000.min((want - read) as usize),
            Duration::from_secs(60),
        )
        .await;
        check!(
            !seen.is_empty(),
            "no records for 60 s ({read} of {want} read)"
        );
        if let Some(latencies) = latencies.as_deref_mut() {
            for (i, s) in seen.iter().enumerate() {
                if !(read as usize + i).is_multiple_of(50) {
                    continue;
                }
                let Some(payload) = &s.payload else { continue };
                if let Some(commit) = commit_ms(registry, payload).await? {
                    let received = s.received.elapsed();
                    let now = runtime::now_ms() - received.as_millis() as i64;
                    latencies.push(now - commit);
                }
            }
        }
        read += seen.len() as u64;
    }
    Ok(read)
}

async fn commit_ms(registry: &RegistryClient, payload: &[u8]) -> Result<Option<i64>> {
    let (id, body) = codec::unframe(payload)?;
    let schema = registry.schema_by_id(id).await?;
    let mut reader = body;
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(&schema, &mut reader, None)?;
    let Value::Record(fields) = value else {
        return Ok(None);
    };
    let source = fields.iter().find(|(k, _)| k == "source").map(|(_, v)| v);
    if let Some(Value::Record(source)) = source {
        if let Some((_, Value::Long(ts))) = source.iter().find(|(k, _)| k == "ts_ms") {
            return Ok(Some(*ts));
        }
    }
    Ok(None)
}
