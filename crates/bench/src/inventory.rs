//! `fleet bench inventory`: holds through the stock ledger (`inventory`, one instance, in this
//! process) on private topics, sent as checkout's saga sends them: one HOLD per product of an
//! order (key product id) on `inventory.stock-commands.v1`, one answer per HOLD on
//! `inventory.stock-results.v1` (key order id). An order is decided once every one of its
//! products answered; it is reserved if every product held.
//!
//! 1. Spread: orders of 1–3 lines over many products: orders decided/s and answer latency.
//! 2. Flash sale: half the orders want one hot product (one partition, one writer) while the
//!    other half keep buying the rest: the hot product's decisions/s, the units it held against
//!    its stock, and whether the other products' answer latency suffers.
//!
//! The figures are printed, never asserted (correctness is tests/inventory.rs's job).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use codec::RegistryClient;
use events::inventory::{
    StockCommand, StockCommandKind, StockCommandLine, StockLevel, StockResult, StockResultKind,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::percentile;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use topology::Topology;

use crate::error::{check, missing};
use crate::harness::{broker_label, codec, private_broker, Engine};
use crate::{Error, Result};

/// Units of the hot product (product 0); every other product has plenty.
const HOT_STOCK: i32 = 1_000;

/// `fleet bench inventory`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    #[arg(long, default_value_t = 1_000)]
    products: usize,
    /// Run on a private broker with this storage engine instead of the stack's.
    #[arg(long)]
    engine: Option<Engine>,
}

pub async fn inventory(topology: &Topology, args: Args) -> Result<()> {
    let Args {
        orders,
        products,
        engine,
    } = args;
    if products < 2 {
        return Err(Error::Invalid(
            "--products must be at least 2 (one hot product and the rest)".into(),
        ));
    }
    let mut env = runtime::StackEnv::from_env()?;
    let private = private_broker(engine).await?;
    if let Some(broker) = &private {
        env.bootstrap_servers = broker.bootstrap.clone();
    }
    let state = tempfile::tempdir()?;
    env.state_dir = state.path().to_path_buf();
    println!(
        "broker: {} ({})",
        env.bootstrap_servers,
        broker_label(engine)
    );
    for (phase, hot_share) in [("spread", 0.0), ("flash sale", 0.5)] {
        run_phase(topology, &env, phase, orders, products, hot_share).await?;
    }
    Ok(())
}

fn product_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// One order of the run: the products it holds (one HOLD each) and whether it is a
/// hot-product order.
struct Order {
    products: Vec<usize>,
    hot: bool,
}

async fn run_phase(
    topology: &Topology,
    env: &runtime::StackEnv,
    phase: &str,
    orders: usize,
    products: usize,
    hot_share: f64,
) -> Result<()> {
    let suffix = format!(
        "bench-inv-{}-{}",
        phase.replace(' ', "-"),
        runtime::now_ms()
    );
    let t = topology
        .isolated_all(&["inventory"], &suffix)
        .ok_or_else(missing("no inventory processor"))?;
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let name = |base: &str| format!("{base}.{suffix}");
    let registry = RegistryClient::new(&env.registry_url);
    let stock_codec = codec(
        &t,
        &registry,
        &name("inventory.stock-commands.v1"),
        "inventory.stock-commands.v1",
    )
    .await?;
    let result_codec = codec(
        &t,
        &registry,
        &name("inventory.stock-results.v1"),
        "inventory.stock-results.v1",
    )
    .await?;
    let producer = producer(&env.bootstrap_servers)?;

    // Stock: product 0 is the hot one; the others have plenty.
    let levels: Vec<(String, Vec<u8>)> = (0..products)
        .map(|i| {
            let cmd = StockCommand {
                event_id: uuid_for(&format!("{suffix}-level-{i}")),
                occurred_at: runtime::now_ms(),
                correlation_id: product_id(i),
                causation_id: None,
                kind: StockCommandKind::SetLevel,
                product_id: product_id(i),
                order_id: None,
                command_id: None,
                lines: Vec::new(),
                level: Some(StockLevel {
                    fulfillment_center: "FC-EAST-1".into(),
                    status: "available".into(),
                    on_hand: if i == 0 { HOT_STOCK } else { 1_000_000 },
                    source_lsn: None,
                }),
                hold_ms: 0,
                reason: None,
                return_item: None,
            };
            Ok((product_id(i), stock_codec.encode(&cmd)?))
        })
        .collect::<Result<_>>()?;
    produce_all(&producer, &name("inventory.stock-commands.v1"), levels).await?;

    // The orders, and one HOLD per product of each (as the saga sends them: one command id
    // per order, the product's lines).
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut plan: HashMap<String, Order> = HashMap::with_capacity(orders);
    let mut holds = Vec::with_capacity(orders * 2);
    let most_lines = 3.min(products - 1);
    for n in 0..orders {
        let order = format!("{suffix}-o{n}");
        let hot = rng.random_bool(hot_share);
        let picked: Vec<usize> = if hot {
            vec![0]
        } else {
            let count = rng.random_range(1..=most_lines);
            let mut picked: Vec<usize> = Vec::new();
            while picked.len() < count {
                let p = rng.random_range(1..products);
                if !picked.contains(&p) {
                    picked.push(p);
                }
            }
            picked
        };
        let command_id = uuid_for(&format!("{order}-hold"));
        for (i, p) in picked.iter().enumerate() {
            let cmd = StockCommand {
                event_id: uuid_for(&format!("{order}-hold-{p}")),
                occurred_at: runtime::now_ms(),
                correlation_id: order.clone(),
                causation_id: None,
                kind: StockCommandKind::Hold,
                product_id: product_id(*p),
                order_id: Some(order.clone()),
                command_id: Some(command_id.clone()),
                lines: vec![StockCommandLine {
                    line_number: i as i32 + 1,
                    quantity: 1,
                    fulfillment_center: None,
                }],
                level: None,
                hold_ms: 0,
                reason: None,
                return_item: None,
            };
            holds.push((product_id(*p), stock_codec.encode(&cmd)?));
        }
        plan.insert(
            order,
            Order {
                products: picked,
                hot,
            },
        );
    }
    let hold_count = holds.len();

    let answers = reader(
        &env.bootstrap_servers,
        &name("inventory.stock-results.v1"),
        &format!("{suffix}-answers"),
    )?;
    let availability = reader(
        &env.bootstrap_servers,
        &name("inventory.availability.v1"),
        &format!("{suffix}-availability"),
    )?;
    let token = CancellationToken::new();
    let spawned = Instant::now();
    let ledger = wiring::spawn_processor(&t, "inventory", env, &token)?;
    // Warm up: the burst starts once the ledger has applied every product's level (each
    // publishes the product's availability), so its start-up (group join, one state restore
    // per partition) is not counted as decision time.
    let mut stocked = HashSet::new();
    while stocked.len() < products {
        check!(
            spawned.elapsed() < Duration::from_secs(120),
            "the ledger applied {} of {products} levels in 120 s",
            stocked.len()
        );
        for record in drain(&availability, products, Duration::from_millis(200)).await {
            if let Some(key) = record.key {
                stocked.insert(key);
            }
        }
    }
    println!(
        "{phase:<10} ledger up, {products} products stocked, in {:.1} s",
        spawned.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let sent_ms = runtime::now_ms();
    produce_all(&producer, &name("inventory.stock-commands.v1"), holds).await?;
    let hot_product = product_id(0);
    // Products still to answer, per order; whether every answer so far held.
    let mut waiting: HashMap<String, HashSet<String>> = plan
        .iter()
        .map(|(order, o)| {
            (
                order.clone(),
                o.products.iter().map(|p| product_id(*p)).collect(),
            )
        })
        .collect();
    let mut all_held: HashMap<String, bool> = HashMap::new();
    let mut latency: HashMap<bool, Vec<i64>> = HashMap::new();
    let mut reserved = HashMap::<bool, usize>::new();
    let (mut decided, mut answered, mut duplicates) = (0usize, 0usize, 0usize);
    let (mut hot_units, mut hot_refused) = (0i64, 0usize);
    let mut hot_last: Option<Instant> = None;
    let mut last = started;
    let mut progress = Instant::now();
    while decided < orders {
        // Short reads (drain returns at `want` records or after `idle` without one), so the
        // loop ends as soon as the last order is decided.
        let seen = drain(&answers, 5_000, Duration::from_millis(200)).await;
        if seen.is_empty() {
            check!(
                progress.elapsed() < Duration::from_secs(30),
                "no answers for 30 s ({decided} of {orders} orders decided, {answered} of {hold_count} holds answered)"
            );
            continue;
        }
        progress = Instant::now();
        for record in seen {
            let value = result_codec
                .decode(record.payload.as_deref().unwrap_or_default())
                .await?;
            let result: StockResult = codec::from_value(&value)?;
            let Some(pending) = waiting.get_mut(&result.order_id) else {
                continue;
            };
            if !pending.remove(&result.product_id) {
                // At least once: an answer given twice counts once.
                duplicates += 1;
                continue;
            }
            answered += 1;
            let held = result.kind == StockResultKind::Held;
            if result.product_id == hot_product {
                if held {
                    hot_units += result
                        .lines
                        .iter()
                        .map(|l| i64::from(l.quantity))
                        .sum::<i64>();
                } else {
                    hot_refused += 1;
                }
                hot_last = Some(record.received);
            }
            let all = all_held.entry(result.order_id.clone()).or_insert(true);
            *all &= held;
            if !pending.is_empty() {
                continue;
            }
            let hot = plan[&result.order_id].hot;
            let received_ms = runtime::now_ms() - record.received.elapsed().as_millis() as i64;
            latency.entry(hot).or_default().push(received_ms - sent_ms);
            if *all {
                *reserved.entry(hot).or_default() += 1;
            }
            decided += 1;
            last = record.received;
        }
    }
    let secs = (last - started).as_secs_f64();
    token.cancel();
    ledger.await??;
    let hot_orders = plan.values().filter(|o| o.hot).count();
    println!(
        "{phase:<10} {orders} orders ({hold_count} HOLDs, {hot_orders} orders for the hot product) decided in {secs:.2} s = {:.0} orders/s; reserved: {} normal, {} hot (hot stock {HOT_STOCK})",
        orders as f64 / secs.max(1e-9),
        reserved.get(&false).copied().unwrap_or(0),
        reserved.get(&true).copied().unwrap_or(0),
    );
    if let Some(hot_last) = hot_last {
        let hot_secs = (hot_last - started).as_secs_f64();
        println!(
            "           hot product: {hot_units} units held of {HOT_STOCK} in stock, {hot_refused} holds refused; its {} decisions in {hot_secs:.2} s = {:.0} decisions/s",
            hot_orders,
            hot_orders as f64 / hot_secs.max(1e-9),
        );
    }
    for (hot, label) in [(false, "normal"), (true, "hot")] {
        let Some(l) = latency.get_mut(&hot) else {
            continue;
        };
        l.sort_unstable();
        let pct = |p: f64| percentile(l, p);
        println!(
            "           {label:<6} orders: time to answer after the burst was sent p50 {} ms, p99 {} ms ({} orders)",
            pct(0.5),
            pct(0.99),
            l.len()
        );
    }
    if duplicates > 0 {
        println!("           ({duplicates} answers given twice, counted once)");
    }
    Ok(())
}

fn uuid_for(text: &str) -> String {
    runtime::ids::derived(&[text])
}
