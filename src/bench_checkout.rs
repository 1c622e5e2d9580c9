//! `fleet bench checkout`: checkouts through the whole saga (checkout, inventory ledger and
//! order stage, payment and its retries; one instance each, in this process) against the
//! gateway simulator (a real HTTP server in this process), on private topics and private
//! orders and payments databases.
//!
//! 1. The broker's raw round trip (produce one record, read it back), as the floor.
//! 2. Open loop at `--rate` checkouts/s: latency from the request's send to its PLACED
//!    status (p50/p95/p99), and whether the rate was sustained.
//! 3. As fast as possible: the whole batch at once, checkouts/s until every order settled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use codec::{RegistryClient, TopicCodec};
use events::checkout::{CheckoutLine, CheckoutRequested, OrderStatus, OrderStatusCode};
use events::inventory::{StockCommand, StockCommandKind, StockLevel};
use loadgen::kafka::{drain, produce_all, producer, reader, reader_from_end};
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::bench::{codec, percentile, private_database, spawn_processor, Engine};

const PROCESSORS: [&str; 5] = [
    "checkout",
    "inventory",
    "inventory-orders",
    "payment",
    "payment-retry",
];
const PRODUCTS: usize = 500;

pub struct CheckoutBench {
    pub orders: usize,
    pub rate: u64,
    pub gateway_latency_ms: u64,
    pub engine: Option<Engine>,
}

pub async fn checkout(topology: &Topology, bench: CheckoutBench) -> Result<()> {
    let mut env = runtime::StackEnv::from_env()?;
    let private = crate::bench::private_broker(bench.engine).await?;
    if let Some(broker) = &private {
        env.bootstrap_servers = broker.bootstrap.clone();
    }
    let state = tempfile::tempdir()?;
    env.state_dir = state.path().to_path_buf();
    let suffix = format!("bench-checkout-{}", runtime::now_ms());
    let mut t = topology
        .isolated_all(&PROCESSORS, &suffix)
        .context("no checkout processors")?;
    t.processors
        .retain(|(p, _)| PROCESSORS.contains(&p.name.as_str()));
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
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let name = |base: &str| format!("{base}.{suffix}");
    println!(
        "broker: {} ({}); gateway latency {} ms; one instance per processor, in this process",
        env.bootstrap_servers,
        crate::bench::broker_label(bench.engine),
        bench.gateway_latency_ms
    );

    // 1. The floor: one record produced and read back, one at a time (on this run's private
    //    copy of a dead-letter topic: nothing in the bench writes or decodes it).
    let rtt_topic = name("dlq.checkout.checkout-requested.v1");
    let producer = producer(&env.bootstrap_servers)?;
    let rtt = round_trips(&env.bootstrap_servers, &producer, &rtt_topic, 200).await?;
    println!(
        "broker round trip (produce, acked, consumed): p50 {} ms, p99 {} ms",
        percentile(&rtt, 0.50),
        percentile(&rtt, 0.99)
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    env.gateway_url = format!("http://{}", listener.local_addr()?);
    let stop_gateway = CancellationToken::new();
    let faults = gateway_sim::GatewayConfig {
        latency_ms: bench.gateway_latency_ms,
        jitter_ms: bench.gateway_latency_ms / 5,
        ..Default::default()
    };
    let sim = tokio::spawn(gateway_sim::serve(listener, faults, stop_gateway.clone()));

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
        &name("orders.order-status.v1"),
        "orders.order-status.v1",
    )
    .await?;
    let levels = (0..PRODUCTS)
        .map(|i| {
            let product = product(i);
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
                    on_hand: 10_000_000,
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

    let token = CancellationToken::new();
    let mut tasks = Vec::new();
    for processor in PROCESSORS {
        tasks.push(spawn_processor(&t, processor, &env, &token)?);
    }
    let status_reader = reader(
        &env.bootstrap_servers,
        &name("orders.order-status.v1"),
        &format!("{suffix}-status"),
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let requests_topic = name("orders.checkout-requested.v1");

    // Warm-up: group joins, connections, first schema lookups.
    let warm: Vec<CheckoutRequested> = (0..50)
        .map(|n| request(&format!("{suffix}-warm-{n}"), &mut rng))
        .collect();
    run_load(
        &producer,
        &requests,
        &requests_topic,
        &warm,
        0,
        &status_reader,
        &statuses,
    )
    .await?;

    // 2. Open loop at the target rate.
    let paced: Vec<CheckoutRequested> = (0..bench.orders)
        .map(|n| request(&format!("{suffix}-paced-{n}"), &mut rng))
        .collect();
    let report = run_load(
        &producer,
        &requests,
        &requests_topic,
        &paced,
        bench.rate,
        &status_reader,
        &statuses,
    )
    .await?;
    report.print(&format!("open loop at {}/s", bench.rate));

    // 3. Everything at once.
    let burst: Vec<CheckoutRequested> = (0..bench.orders)
        .map(|n| request(&format!("{suffix}-burst-{n}"), &mut rng))
        .collect();
    let report = run_load(
        &producer,
        &requests,
        &requests_topic,
        &burst,
        0,
        &status_reader,
        &statuses,
    )
    .await?;
    report.print("all at once");
    step_times(&env, &name("checkout.saga-transitions.v1")).await?;

    token.cancel();
    for task in tasks {
        task.await??;
    }
    stop_gateway.cancel();
    let _ = sim.await;
    Ok(())
}

fn product(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn request(order: &str, rng: &mut rand::rngs::StdRng) -> CheckoutRequested {
    let count = rng.random_range(1..=3);
    let mut picked: Vec<usize> = Vec::new();
    while picked.len() < count {
        let p = rng.random_range(0..PRODUCTS);
        if !picked.contains(&p) {
            picked.push(p);
        }
    }
    let lines: Vec<CheckoutLine> = picked
        .iter()
        .enumerate()
        .map(|(i, p)| CheckoutLine {
            line_number: i as i32 + 1,
            product_id: product(*p),
            sku: format!("SKU-{p}"),
            quantity: rng.random_range(1..=2),
            unit_price_minor: 199 + (*p as i64 % 50) * 100,
        })
        .collect();
    let user = format!("user-{}", rng.random_range(0..10_000));
    loadgen::checkouts::request(order, &user, lines, runtime::now_ms())
}

struct Report {
    orders: usize,
    placed: usize,
    send_secs: f64,
    settle_secs: f64,
    latencies: Vec<i64>,
}

impl Report {
    fn print(&self, phase: &str) {
        println!(
            "{phase:<18} {} checkouts sent in {:.1} s ({:.0}/s), all settled after {:.1} s = {:.0} checkouts/s; {} placed; request -> PLACED p50 {} ms, p95 {} ms, p99 {} ms",
            self.orders,
            self.send_secs,
            self.orders as f64 / self.send_secs.max(1e-9),
            self.settle_secs,
            self.orders as f64 / self.settle_secs.max(1e-9),
            self.placed,
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.95),
            percentile(&self.latencies, 0.99),
        );
    }
}

/// Sends `orders` at `rate` per second (0: all at once), concurrently reads statuses until
/// each has settled, and measures each placed order's send-to-PLACED latency.
async fn run_load(
    producer: &rdkafka::producer::FutureProducer,
    codec: &TopicCodec,
    topic: &str,
    orders: &[CheckoutRequested],
    rate: u64,
    statuses: &rdkafka::consumer::StreamConsumer,
    status_codec: &TopicCodec,
) -> Result<Report> {
    let started = Instant::now();
    let sender = async {
        let mut sent: HashMap<String, Instant> = HashMap::with_capacity(orders.len());
        let mut in_flight = Vec::new();
        let batch = if rate == 0 {
            orders.len().max(1)
        } else {
            (rate as usize / 100).max(1)
        };
        for (i, chunk) in orders.chunks(batch).enumerate() {
            if rate > 0 {
                let due = started + Duration::from_secs_f64((i * batch) as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            let now = Instant::now();
            let records = chunk
                .iter()
                .map(|r| Ok((r.order_id.clone(), codec.encode(r)?)))
                .collect::<Result<Vec<_>>>()?;
            // Not awaited here: the pace must not depend on the broker's acknowledgements.
            let producer = producer.clone();
            let topic = topic.to_string();
            in_flight.push(tokio::spawn(async move {
                produce_all(&producer, &topic, records).await
            }));
            for r in chunk {
                sent.insert(r.order_id.clone(), now);
            }
        }
        let send_secs = started.elapsed().as_secs_f64();
        for produced in in_flight {
            produced.await??;
        }
        anyhow::Ok((sent, send_secs))
    };
    let receiver = async {
        let mut settled: HashMap<String, (OrderStatusCode, Instant)> = HashMap::new();
        let wanted: std::collections::HashSet<&str> =
            orders.iter().map(|r| r.order_id.as_str()).collect();
        while settled.len() < orders.len() {
            let seen = drain(statuses, 20_000, Duration::from_secs(30)).await;
            anyhow::ensure!(
                !seen.is_empty(),
                "no status for 30 s ({} of {} settled)",
                settled.len(),
                orders.len()
            );
            for record in seen {
                let value = status_codec
                    .decode(record.payload.as_deref().unwrap_or_default())
                    .await?;
                let status: OrderStatus = codec::from_value(&value)?;
                if wanted.contains(status.order_id.as_str())
                    && matches!(
                        status.status,
                        OrderStatusCode::Placed | OrderStatusCode::Failed
                    )
                {
                    settled
                        .entry(status.order_id)
                        .or_insert((status.status, record.received));
                }
            }
        }
        anyhow::Ok(settled)
    };
    let (sent, settled) = tokio::join!(sender, receiver);
    let (sent, send_secs) = sent?;
    let settled = settled?;
    let settle_secs = settled
        .values()
        .map(|(_, at)| *at)
        .max()
        .map(|last| (last - started).as_secs_f64())
        .unwrap_or_default();
    let mut latencies: Vec<i64> = settled
        .iter()
        .filter(|(_, (s, _))| *s == OrderStatusCode::Placed)
        .filter_map(|(order, (_, at))| {
            sent.get(order)
                .map(|s| at.saturating_duration_since(*s).as_millis() as i64)
        })
        .collect();
    latencies.sort_unstable();
    Ok(Report {
        orders: orders.len(),
        placed: latencies.len(),
        send_secs,
        settle_secs,
        latencies,
    })
}

/// `n` sequential produce → acknowledged → consumed round trips of a small record (ms).
async fn round_trips(
    bootstrap: &str,
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    n: usize,
) -> Result<Vec<i64>> {
    let consumer = reader_from_end(bootstrap, topic)?;
    // The reader's assignment must be in place before the first record.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("rtt-{i}");
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("x"),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)?;
        loop {
            let seen = drain(&consumer, 1, Duration::from_secs(5)).await;
            anyhow::ensure!(!seen.is_empty(), "round trip {i}: nothing read back in 5 s");
            if seen[0].key.as_deref() == Some(key.as_bytes()) {
                break;
            }
        }
        out.push(started.elapsed().as_millis() as i64);
    }
    out.sort_unstable();
    Ok(out)
}

/// Where the time goes: the median time each saga state lasted (from entering it to the next
/// transition), over every order of the run, from the transitions' timestamps.
async fn step_times(env: &runtime::StackEnv, topic: &str) -> Result<()> {
    let mut by_order: HashMap<String, Vec<events::checkout::SagaTransition>> = HashMap::new();
    for transition in
        crate::orders::read_values::<events::checkout::SagaTransition>(env, topic).await?
    {
        by_order
            .entry(transition.order_id.clone())
            .or_default()
            .push(transition);
    }
    let mut spans: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for transitions in by_order.values_mut() {
        transitions.sort_by_key(|t| t.sequence);
        for pair in transitions.windows(2) {
            spans
                .entry(format!("{:?}", pair[0].to_state))
                .or_default()
                .push(pair[1].occurred_at - pair[0].occurred_at);
        }
    }
    let line = spans
        .iter_mut()
        .map(|(state, times)| {
            times.sort_unstable();
            format!("{state} {} ms", percentile(times, 0.5))
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!("median time in each saga state: {line}");
    Ok(())
}
