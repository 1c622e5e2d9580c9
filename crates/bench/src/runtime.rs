//! `fleet bench runtime`: records/s through the stateless shipping processor, beside the raw
//! broker figure (produce + consume, no processing) measured in the same run on the same
//! broker with the same records, then through a stateful counter on the same input
//! ([`crate::state::stateful_phase`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codec::{RegistryClient, TopicCodec};
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::orders::{shipments_of, OrderGenerator};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::error::missing;
use crate::harness::{broker_label, private_broker, Engine};
use crate::state::{stateful_phase, Tally};
use crate::Result;

/// `fleet bench runtime`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Run on a private broker with this storage engine (`memory`, `sqlite` or `postgres`)
    /// instead of the stack's, to separate the runtime's cost from the storage engine's.
    #[arg(long)]
    engine: Option<Engine>,
}

pub async fn run(topology: &Topology, args: Args) -> Result<()> {
    let Args {
        records,
        partitions,
        engine,
    } = args;
    let mut env = runtime::StackEnv::from_env()?;
    let private = private_broker(engine).await?;
    let engine_name = broker_label(engine);
    if let Some(broker) = &private {
        env.bootstrap_servers = broker.bootstrap.clone();
    }
    let stamp = runtime::now_ms();
    let raw = isolated(topology, &format!("bench-raw-{stamp}"), partitions)?;
    let proc_topology = isolated(topology, &format!("bench-{stamp}"), partitions)?;
    stack::create_topics_at(&env.bootstrap_servers, &raw).await?;
    stack::create_topics_at(&env.bootstrap_servers, &proc_topology).await?;

    let (spec, params) = proc_topology
        .processor("shipping")
        .ok_or_else(missing("no shipping processor"))?;
    let input = spec
        .input("placed")
        .ok_or_else(missing("shipping reads no orders"))?
        .to_string();
    let output = spec
        .output("shipments")
        .ok_or_else(missing("shipping writes no shipments"))?
        .to_string();
    let raw_input = raw
        .processor("shipping")
        .and_then(|(spec, _)| spec.input("placed"))
        .ok_or_else(missing("no shipping"))?
        .to_string();

    let registry = RegistryClient::new(&env.registry_url);
    let schema = topology
        .topic("orders.order-placed.v1")
        .and_then(|t| t.value_schema.as_deref())
        .and_then(|p| topology.schema_text(p))
        .ok_or_else(missing("order-placed schema"))?;
    let codec = TopicCodec::register(&registry, "orders.order-placed.v1-value", schema).await?;
    let mut generator = OrderGenerator::new(&stamp.to_string(), 42, 2_000);
    let mut payloads = Vec::with_capacity(records as usize);
    let mut expected_outputs = 0;
    let mut expected_state: HashMap<String, Tally> = HashMap::new();
    for _ in 0..records {
        let order = generator.next_order(stamp);
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
    let processor = shipping::Shipping::from_spec(shipping_params.clone(), spec)?;
    let topo = proc_topology.clone();
    let run_token = token.clone();
    let started = Instant::now();
    // Owner: this phase, which cancels `run_token` and awaits the handle.
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
    stateful_phase(&proc_topology, spec, &env, partitions, &expected_state).await
}

fn isolated(topology: &Topology, suffix: &str, partitions: i32) -> Result<Topology> {
    let mut copy = topology
        .isolated("shipping", suffix)
        .ok_or_else(missing("no shipping processor"))?;
    for topic in &mut copy.topics {
        if topic.name.ends_with(suffix) {
            topic.partitions = u32::try_from(partitions)?;
        }
    }
    Ok(copy)
}
