//! `fleet bench runtime`: records/s through the stateless shipping processor, beside the raw
//! broker figure (produce + consume, no processing) measured in the same run on the same
//! broker with the same records, then through a stateful counter on the same input
//! (`bench_state::stateful_phase`).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use codec::{RegistryClient, TopicCodec};
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::orders::{shipments_of, OrderGenerator};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::bench_state::Tally;

/// A storage engine for a private benchmark broker.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Engine {
    Memory,
    Sqlite,
    /// nisshi's PostgreSQL engine, in a database of its own on the stack's PostgreSQL.
    Postgres,
}

impl Engine {
    /// How figures name the engine.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Memory => "private nisshi, memory engine",
            Engine::Sqlite => "private nisshi, sqlite engine",
            Engine::Postgres => "private nisshi, postgresql engine",
        }
    }
}

/// How figures name the broker a benchmark runs on: a private one of `engine`, or the stack's.
pub(crate) fn broker_label(engine: Option<Engine>) -> &'static str {
    engine.map_or("the stack's nisshi, sqlite engine", Engine::label)
}

/// The value at fraction `p` (0..=1) of `sorted`; 0 when empty.
pub(crate) fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// A private broker of `engine`, or `None` to use the stack's.
pub(crate) async fn private_broker(engine: Option<Engine>) -> Result<Option<stack::PrivateBroker>> {
    match engine {
        Some(engine) => Ok(Some(start_private_broker(engine).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn start_private_broker(engine: Engine) -> Result<stack::PrivateBroker> {
    let storage = match engine {
        Engine::Memory => "memory://nisshi/".to_string(),
        Engine::Sqlite => stack::SQLITE_STORAGE.to_string(),
        Engine::Postgres => {
            let env = runtime::StackEnv::from_env()?;
            let database = format!("nisshi_bench_{}", runtime::now_ms());
            stack::create_database(&env.postgres_url, &database).await?;
            stack::postgres_storage(&env.postgres_url, &database)?
        }
    };
    Ok(stack::PrivateBroker::start(&storage).await?)
}

/// Runs instance 0 of `processor` of `t` in this process (admin on an ephemeral port) until
/// `token` is cancelled.
pub(crate) fn spawn_processor(
    t: &Topology,
    processor: &str,
    env: &runtime::StackEnv,
    token: &CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let (spec, _) = t.processor(processor).context("processor")?;
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env.clone())?;
    config.admin_addr = "127.0.0.1:0".parse()?;
    let t = t.clone();
    let name = processor.to_string();
    let run = token.clone();
    Ok(tokio::spawn(async move {
        crate::processors::run_with(&t, &name, config, run).await
    }))
}

/// The value codec of `topic` (a renamed copy in `t`), registered under the subject of its
/// base topic `base`.
pub(crate) async fn codec(
    t: &Topology,
    registry: &RegistryClient,
    topic: &str,
    base: &str,
) -> Result<TopicCodec> {
    let text = t
        .topic(topic)
        .and_then(|s| s.value_schema.as_deref())
        .and_then(|p| t.schema_text(p))
        .with_context(|| format!("schema of {topic}"))?;
    Ok(TopicCodec::register(registry, &format!("{base}-value"), text).await?)
}

/// A scratch database `<prefix>_<suffix>` with `migrations/<prefix>` applied: (name, URL).
pub(crate) async fn private_database(
    topology: &Topology,
    env: &runtime::StackEnv,
    prefix: &str,
    suffix: &str,
) -> Result<(String, String)> {
    let database = format!("{prefix}_{}", suffix.replace('-', "_"));
    stack::create_database(&env.postgres_url, &database).await?;
    let url = runtime::postgres_database_url(&env.postgres_url, &database)?;
    stack::apply_migrations(&url, &stack::migrations_dir(topology).join(prefix)).await?;
    Ok((database, url))
}

pub async fn runtime(
    topology: &Topology,
    records: u64,
    partitions: i32,
    engine: Option<Engine>,
) -> Result<()> {
    let mut env = runtime::StackEnv::from_env()?;
    let private = private_broker(engine).await?;
    let engine_name = broker_label(engine);
    if let Some(broker) = &private {
        env.bootstrap_servers = broker.bootstrap.clone();
    }
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let raw = isolated(topology, &format!("bench-raw-{stamp}"), partitions)?;
    let proc_topology = isolated(topology, &format!("bench-{stamp}"), partitions)?;
    stack::create_topics_at(&env.bootstrap_servers, &raw).await?;
    stack::create_topics_at(&env.bootstrap_servers, &proc_topology).await?;

    let (spec, params) = proc_topology
        .processor("shipping")
        .context("no shipping processor")?;
    let input = spec.inputs[0].topic.clone();
    let output = spec.outputs[0].clone();
    let raw_input = raw.processor("shipping").context("no shipping")?.0.inputs[0]
        .topic
        .clone();

    let registry = RegistryClient::new(&env.registry_url);
    let schema = topology
        .topic("orders.order-placed.v1")
        .and_then(|t| t.value_schema.as_deref())
        .and_then(|p| topology.schema_text(p))
        .context("order-placed schema")?;
    let codec = TopicCodec::register(&registry, "orders.order-placed.v1-value", schema).await?;
    let mut generator = OrderGenerator::new(&stamp.to_string(), 42, 2_000);
    let now = i64::try_from(stamp)?;
    let mut payloads = Vec::with_capacity(records as usize);
    let mut expected_outputs = 0;
    let mut expected_state: HashMap<String, Tally> = HashMap::new();
    for _ in 0..records {
        let order = generator.next_order(now);
        expected_outputs += 2 * shipments_of(&order);
        let tally = expected_state.entry(order.order_id.clone()).or_default();
        tally.count += 1;
        tally.sum += order.total_minor;
        payloads.push((order.order_id.clone(), codec.encode(&order)?));
    }
    let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();
    println!(
        "workload: {records} order-placed records, {} bytes avg, {partitions} partitions, broker {} ({engine_name})",
        bytes / payloads.len().max(1),
        env.bootstrap_servers
    );
    let producer = producer(&env.bootstrap_servers)?;

    // 1. Raw broker: produce N while a consumer reads them back.
    let raw_reader = reader(
        &env.bootstrap_servers,
        &raw_input,
        &format!("bench-raw-{stamp}"),
    )?;
    let started = Instant::now();
    let (produced, seen) = tokio::join!(
        produce_all(&producer, &raw_input, payloads.clone()),
        drain(&raw_reader, records as usize, Duration::from_secs(30))
    );
    produced?;
    let raw_secs = seen
        .last()
        .map(|s| s.received - started)
        .unwrap_or_default()
        .as_secs_f64();
    println!(
        "raw broker   produce+consume: {:>9.0} records/s  ({} records in {raw_secs:.2}s)",
        seen.len() as f64 / raw_secs.max(1e-9),
        seen.len()
    );

    // 2. The same records through the shipping processor (decode, plan, encode 2+ outputs,
    //    commit after ack), preloaded so the processor runs flat out.
    let load_started = Instant::now();
    produce_all(&producer, &input, payloads).await?;
    let load_secs = load_started.elapsed().as_secs_f64();
    println!(
        "preload      produce only:    {:>9.0} records/s",
        records as f64 / load_secs.max(1e-9)
    );

    let ProcessorParams::Shipping(shipping_params) = params else {
        panic!("the shipping processor has shipping parameters")
    };
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env.clone())?;
    config.admin_addr = "127.0.0.1:0".parse()?;
    let out_reader = reader(
        &env.bootstrap_servers,
        &output,
        &format!("bench-out-{stamp}"),
    )?;
    let token = CancellationToken::new();
    let processor = shipping::Shipping::new(shipping_params.clone(), &spec.outputs);
    let topo = proc_topology.clone();
    let run_token = token.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move { runtime::run(config, &topo, processor, run_token).await });
    let outputs = drain(&out_reader, expected_outputs, Duration::from_secs(30)).await;
    token.cancel();
    task.await??;
    let first = outputs
        .first()
        .map(|s| s.received - started)
        .unwrap_or_default();
    let last = outputs
        .last()
        .map(|s| s.received - started)
        .unwrap_or_default();
    let steady = (last - first).as_secs_f64();
    println!(
        "shipping     consume+process+produce: {:>9.0} input records/s steady ({} outputs of {expected_outputs}; first output after {:.2}s incl. group join, last after {:.2}s)",
        (records as f64) / steady.max(1e-9),
        outputs.len(),
        first.as_secs_f64(),
        last.as_secs_f64()
    );
    println!(
        "shipping     end to end from start: {:>9.0} input records/s, {:.0} output records/s",
        records as f64 / last.as_secs_f64().max(1e-9),
        outputs.len() as f64 / last.as_secs_f64().max(1e-9)
    );

    // 3. The same preloaded input through a stateful counter (state per key, one changelog
    //    batch per input), in a fresh consumer group.
    crate::bench_state::stateful_phase(&proc_topology, spec, &env, partitions, &expected_state)
        .await
}

fn isolated(topology: &Topology, suffix: &str, partitions: i32) -> Result<Topology> {
    let mut copy = topology
        .isolated("shipping", suffix)
        .context("no shipping processor")?;
    for topic in &mut copy.topics {
        if topic.name.ends_with(suffix) {
            topic.partitions = u32::try_from(partitions)?;
        }
    }
    Ok(copy)
}
