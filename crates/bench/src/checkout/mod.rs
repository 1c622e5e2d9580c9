//! `fleet bench checkout`: checkouts through the whole order path, each processor a separate
//! OS process as in production, against the gateway simulator (a process too), on private
//! topics and private orders and payments databases; the broker a private one of the chosen
//! engine (or the stack's). In one run it measures:
//!
//! 1. the broker alone: a record's round trip and produce + consume records/s;
//! 2. open loop at each `--rates` for `--seconds`: request → PLACED latency p50/p95/p99 and
//!    whether the rate was held;
//! 3. a burst (`--burst` checkouts at once): checkouts/s until every order settled;
//!
//! and for every phase the records written per checkout by topic (high watermarks of the
//! run's topics and changelogs), CPU ms per checkout by process (broker, PostgreSQL, each
//! processor instance, the gateway, the bench's own load), and per hop the input records' age
//! when handled and the handler's time (from each instance's `/metrics`).

mod fleet;
mod load;
mod raw;
mod report;

use std::time::Duration;

use codec::RegistryClient;
use events::inventory::{StockCommand, StockCommandKind, StockLevel};
use loadgen::kafka::{produce_all, producer, reader};
use rand::SeedableRng;
use topology::{ProcessorParams, Topology};

use crate::error::missing;
use crate::harness::{broker_label, codec, private_broker, private_database, Engine};
use crate::Result;
use fleet::Snapshot;

/// The processors of the order path, each run as its own process.
const ORDER_PATH: [&str; 4] = ["checkout", "inventory", "payment", "payment-retry"];

/// `fleet bench checkout`.
#[derive(clap::Args)]
pub struct Args {
    /// Open-loop rates (checkouts/s), each run for --seconds.
    #[arg(long, value_delimiter = ',', default_value = "50,300,1100")]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Checkouts sent at once after the open-loop phases (0: none).
    #[arg(long, default_value_t = 20_000)]
    burst: usize,
    /// The gateway's latency per call (ms; jitter one fifth of it).
    #[arg(long, default_value_t = 5)]
    gateway_latency_ms: u64,
    /// Instances of each processor.
    #[arg(long, default_value_t = 1)]
    instances: u16,
    /// Partitions of every topic of the run (default: as in the topology).
    #[arg(long)]
    partitions: Option<u32>,
    /// Run on a private broker with this storage engine instead of the stack's.
    #[arg(long)]
    engine: Option<Engine>,
}

/// Runs the bench. It starts the processors and the gateway simulator as `fleet run` and
/// `fleet gateway-sim` processes of the running executable, so it must be called from the
/// `fleet` binary.
pub async fn checkout(topology: &Topology, bench: Args) -> Result<()> {
    let mut env = runtime::StackEnv::from_env()?;
    let private = private_broker(bench.engine).await?;
    let broker_pid = match &private {
        Some(broker) => {
            env.bootstrap_servers = broker.bootstrap.clone();
            Some(broker.pid())
        }
        None => stack_broker_pid(),
    };
    let work = tempfile::Builder::new()
        .prefix("bench-checkout-")
        .tempdir()?;
    let suffix = format!("bc{}", runtime::now_ms());
    let mut t = topology
        .isolated_all(&ORDER_PATH, &suffix)
        .ok_or_else(missing("no order-path processors"))?;
    t.processors
        .retain(|(p, _)| ORDER_PATH.contains(&p.name.as_str()));
    t.connectors.clear();
    let (orders_db, _) = private_database(topology, &env, "orders", &suffix).await?;
    let (payments_db, _) = private_database(topology, &env, "payments", &suffix).await?;
    for (_, params) in &mut t.processors {
        match params {
            ProcessorParams::Checkout(p) => p.database = orders_db.clone(),
            ProcessorParams::Payment(p) => p.database = payments_db.clone(),
            _ => {}
        }
    }
    if let Some(partitions) = bench.partitions {
        for topic in &mut t.topics {
            if topic.name.ends_with(&suffix) {
                topic.partitions = partitions;
            }
        }
    }
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let name = |base: &str| format!("{base}.{suffix}");
    println!(
        "broker: {} ({}); gateway latency {} ms; {} instance(s) of {} as processes; {} partitions per topic; work folder {}",
        env.bootstrap_servers,
        broker_label(bench.engine),
        bench.gateway_latency_ms,
        bench.instances,
        ORDER_PATH.join(", "),
        bench
            .partitions
            .map_or_else(|| "the topology's".to_string(), |p| p.to_string()),
        work.path().display()
    );

    // 1. The broker alone.
    let producer = producer(&env.bootstrap_servers)?;
    let raw = raw::measure(
        &env.bootstrap_servers,
        &producer,
        &format!("bench.raw.{suffix}"),
    )
    .await?;
    report::raw(&raw);

    // 2. The fleet: gateway simulator and one process per processor instance.
    std::fs::create_dir_all(work.path().join("logs"))?;
    let (gateway, gateway_url) = fleet::gateway(work.path(), bench.gateway_latency_ms)?;
    let state = work.path().join("state");
    let postgres_port = port_of(&env.postgres_url);
    let process_env = vec![
        (
            "STOREFLEET_BOOTSTRAP".to_string(),
            env.bootstrap_servers.clone(),
        ),
        ("STOREFLEET_REGISTRY".to_string(), env.registry_url.clone()),
        ("STOREFLEET_POSTGRES".to_string(), env.postgres_url.clone()),
        ("STOREFLEET_GATEWAY".to_string(), gateway_url),
        (
            "STOREFLEET_STATE_DIR".to_string(),
            state.display().to_string(),
        ),
    ];
    let mut procs = fleet::start(&mut t, work.path(), &process_env, bench.instances).await?;
    procs.push(gateway);
    fleet::wait_healthy(&mut procs, Duration::from_secs(60)).await?;

    let registry = RegistryClient::new(&env.registry_url);
    let stock = codec(
        &t,
        &registry,
        &name("inventory.stock-commands.v1"),
        "inventory.stock-commands.v1",
    )
    .await?;
    let requests = codec(
        &t,
        &registry,
        &name("orders.checkout-requested.v1"),
        "orders.checkout-requested.v1",
    )
    .await?;
    let statuses = codec(
        &t,
        &registry,
        &name("checkout.saga-transitions.v1"),
        "checkout.saga-transitions.v1",
    )
    .await?;
    let levels = (0..load::PRODUCTS)
        .map(|i| {
            let product = load::product(i);
            let level = StockCommand {
                event_id: runtime::ids::derived(&[&suffix, &product]),
                occurred_at: runtime::now_ms(),
                correlation_id: product.clone(),
                causation_id: None,
                kind: StockCommandKind::SetLevel,
                product_id: product.clone(),
                order_id: None,
                command_id: None,
                lines: Vec::new(),
                level: Some(StockLevel {
                    fulfillment_center: "FC-EAST-1".into(),
                    status: "available".into(),
                    on_hand: 100_000_000,
                    source_lsn: None,
                }),
                hold_ms: 0,
                reason: None,
                return_item: None,
            };
            Ok((product, stock.encode(&level)?))
        })
        .collect::<Result<Vec<_>>>()?;
    produce_all(&producer, &name("inventory.stock-commands.v1"), levels).await?;

    let settled: load::Settled = Default::default();
    // The bench's own tasks (the status reader), drained at its end.
    let tasks = tasks::Tasks::new(tokio_util::sync::CancellationToken::new());
    load::spawn_reader(
        reader(
            &env.bootstrap_servers,
            &name("checkout.saga-transitions.v1"),
            &format!("{suffix}-status"),
        )?,
        statuses,
        settled.clone(),
        &tasks,
    );
    let requests_topic = name("orders.checkout-requested.v1");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let postgres = vec![("postgres".to_string(), fleet::postgres_pids(postgres_port))];
    let mut extra = postgres.clone();
    if let Some(pid) = broker_pid {
        extra.push(("broker".to_string(), vec![pid]));
    }
    extra.push((
        "bench (load + reader)".to_string(),
        vec![std::process::id()],
    ));
    let take = Snapshotter {
        bootstrap: env.bootstrap_servers.clone(),
        marker: suffix.clone(),
        extra,
    };

    // Warm-up: group joins, connections, first schema lookups.
    let warm: Vec<_> = (0..100)
        .map(|n| load::request(&format!("{suffix}-warm-{n}"), &mut rng))
        .collect();
    let target = load::Target {
        producer: &producer,
        codec: &requests,
        topic: &requests_topic,
        settled: &settled,
    };
    load::run("warm-up", &target, &warm, 50, Duration::from_secs(30)).await?;

    let mut phases = Vec::new();
    for rate in &bench.rates {
        let count = (*rate * bench.seconds) as usize;
        let orders: Vec<_> = (0..count)
            .map(|n| load::request(&format!("{suffix}-r{rate}-{n}"), &mut rng))
            .collect();
        let before = take.snapshot(&procs).await?;
        let phase = load::run(
            &format!("open loop at {rate}/s"),
            &target,
            &orders,
            *rate,
            Duration::from_secs(30),
        )
        .await?;
        let after = take.snapshot(&procs).await?;
        report::phase(&phase, Some(*rate), &before, &after);
        phases.push((phase, before, after));
    }
    if bench.burst > 0 {
        let orders: Vec<_> = (0..bench.burst)
            .map(|n| load::request(&format!("{suffix}-burst-{n}"), &mut rng))
            .collect();
        let before = take.snapshot(&procs).await?;
        let phase = load::run(
            &format!("burst of {}", bench.burst),
            &target,
            &orders,
            0,
            Duration::from_secs(60),
        )
        .await?;
        let after = take.snapshot(&procs).await?;
        report::phase(&phase, None, &before, &after);
        phases.push((phase, before, after));
    }
    report::records_total(&phases, &suffix);

    fleet::stop(&mut procs).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    // The private databases hold only this run's orders and payments: drop them so that
    // repeated benches leave the stack's PostgreSQL as they found it.
    for database in [&orders_db, &payments_db] {
        if let Err(e) = stack::drop_database(&env.postgres_url, database).await {
            eprintln!("could not drop the bench's database {database}: {e}");
        }
    }
    Ok(())
}

/// Takes the phase-boundary [`Snapshot`]s.
struct Snapshotter {
    bootstrap: String,
    marker: String,
    /// Processes measured beside the fleet's: (label, pids).
    extra: Vec<(String, Vec<u32>)>,
}

impl Snapshotter {
    async fn snapshot(&self, procs: &[fleet::Proc]) -> Result<Snapshot> {
        let cpu = fleet::cpu(procs, &self.extra);
        let metrics = fleet::metrics(procs).await;
        let (bootstrap, marker) = (self.bootstrap.clone(), self.marker.clone());
        let records =
            tokio::task::spawn_blocking(move || fleet::watermarks(&bootstrap, &marker)).await??;
        Ok(Snapshot {
            records,
            cpu,
            metrics,
        })
    }
}

/// The stack broker's pid (from its pid file), to measure its CPU.
fn stack_broker_pid() -> Option<u32> {
    let data = std::env::var_os("STOREFLEET_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(".storefleet"));
    std::fs::read_to_string(data.join("broker.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

fn port_of(url: &str) -> u16 {
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap_or(5432)
}
