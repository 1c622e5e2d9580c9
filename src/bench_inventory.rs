//! `fleet bench inventory`: reservations through the two inventory processors (order stage
//! and ledger, one instance each, in this process) on private topics.
//!
//! 1. Spread: orders of 1–3 lines over many products: reservations/s and answer latency.
//! 2. Flash sale: half the orders want one hot product (one partition, one writer) while the
//!    other half keep buying the rest: the hot product's decisions/s, and whether the other
//!    products' answer latency suffers.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use codec::RegistryClient;
use events::inventory::{
    InventoryCommand, InventoryCommandKind, InventoryLine, ReservationEvent, ReservationEventKind,
    StockCommand, StockCommandKind, StockLevel,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::bench::{codec, Engine};

pub async fn inventory(
    topology: &Topology,
    orders: usize,
    products: usize,
    engine: Option<Engine>,
) -> Result<()> {
    let mut env = runtime::StackEnv::from_env()?;
    let private = crate::bench::private_broker(engine).await?;
    if let Some(broker) = &private {
        env.bootstrap_servers = broker.bootstrap.clone();
    }
    let state = tempfile::tempdir()?;
    env.state_dir = state.path().to_path_buf();
    println!(
        "broker: {} ({})",
        env.bootstrap_servers,
        crate::bench::broker_label(engine)
    );
    for (phase, hot_share) in [("spread", 0.0), ("flash sale", 0.5)] {
        run_phase(topology, &env, phase, orders, products, hot_share).await?;
    }
    Ok(())
}

fn millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn product_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

async fn run_phase(
    topology: &Topology,
    env: &runtime::StackEnv,
    phase: &str,
    orders: usize,
    products: usize,
    hot_share: f64,
) -> Result<()> {
    let suffix = format!("bench-inv-{}-{}", phase.replace(' ', "-"), millis());
    let t = topology
        .isolated_all(&["inventory", "inventory-orders"], &suffix)
        .context("no inventory processors")?;
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
    let command_codec = codec(
        &t,
        &registry,
        &name("inventory.commands.v1"),
        "inventory.commands.v1",
    )
    .await?;
    let answer_codec = codec(
        &t,
        &registry,
        &name("inventory.reservation-events.v1"),
        "inventory.reservation-events.v1",
    )
    .await?;
    let producer = producer(&env.bootstrap_servers)?;

    // Stock: product 0 is the hot one (1,000 units); the others have plenty.
    let levels: Vec<(String, Vec<u8>)> = (0..products)
        .map(|i| {
            let cmd = StockCommand {
                event_id: uuid_for(&format!("{suffix}-level-{i}")),
                occurred_at: millis(),
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
                    on_hand: if i == 0 { 1_000 } else { 1_000_000 },
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

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut sent_hot = HashMap::new();
    let mut batch = Vec::with_capacity(orders);
    for n in 0..orders {
        let order = format!("{suffix}-o{n}");
        let hot = rng.random_bool(hot_share);
        let lines: Vec<InventoryLine> = if hot {
            vec![line(1, 0)]
        } else {
            let count = rng.random_range(1..=3);
            let mut picked: Vec<usize> = Vec::new();
            while picked.len() < count {
                let p = rng.random_range(1..products);
                if !picked.contains(&p) {
                    picked.push(p);
                }
            }
            picked
                .iter()
                .enumerate()
                .map(|(i, p)| line(i as i32 + 1, *p))
                .collect()
        };
        sent_hot.insert(order.clone(), hot);
        let cmd = InventoryCommand {
            event_id: uuid_for(&format!("{order}-reserve")),
            occurred_at: millis(),
            correlation_id: order.clone(),
            causation_id: None,
            command_id: uuid_for(&format!("{order}-cmd")),
            kind: InventoryCommandKind::Reserve,
            order_id: order.clone(),
            lines,
            hold_ms: 600_000,
            destination_country: None,
            reason: None,
            return_item: None,
        };
        batch.push((order, command_codec.encode(&cmd)?));
    }

    let answers = reader(
        &env.bootstrap_servers,
        &name("inventory.reservation-events.v1"),
        &format!("{suffix}-answers"),
    )?;
    let token = CancellationToken::new();
    let mut tasks = Vec::new();
    for processor in ["inventory", "inventory-orders"] {
        let (spec, params) = t.processor(processor).context("processor")?;
        let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env.clone())?;
        config.admin_addr = "127.0.0.1:0".parse()?;
        let topo = t.clone();
        let run = token.clone();
        let outputs = spec.outputs.clone();
        let params = params.clone();
        tasks.push(tokio::spawn(async move {
            match params {
                ProcessorParams::InventoryOrders(p) => {
                    let pick = |prefix: &str| {
                        outputs
                            .iter()
                            .find(|o| o.starts_with(prefix))
                            .cloned()
                            .unwrap_or_default()
                    };
                    let processor = inventory::orders_processor::Reservations {
                        default_hold_ms: p.default_hold_ms,
                        stock_commands: pick("inventory.stock-commands"),
                        answers: pick("inventory.reservation-events"),
                    };
                    runtime::run_stateful(config, &topo, processor, run).await
                }
                _ => {
                    let processor = inventory::ledger_processor::Ledger::new(&outputs);
                    runtime::run_stateful(config, &topo, processor, run).await
                }
            }
        }));
    }

    let started = Instant::now();
    let sent_ms = millis();
    produce_all(&producer, &name("inventory.commands.v1"), batch).await?;
    let mut latency: HashMap<bool, Vec<i64>> = HashMap::new();
    let mut decided = 0usize;
    let mut reserved = HashMap::<bool, usize>::new();
    let mut last = started;
    while decided < orders {
        let seen = drain(&answers, 20_000, Duration::from_secs(30)).await;
        anyhow::ensure!(
            !seen.is_empty(),
            "no answers for 30 s ({decided} of {orders})"
        );
        for record in seen {
            let value = answer_codec
                .decode(record.payload.as_deref().unwrap_or_default())
                .await?;
            let event: ReservationEvent = codec::from_value(&value)?;
            let hot = sent_hot.get(&event.order_id).copied().unwrap_or(false);
            let received_ms = millis() - record.received.elapsed().as_millis() as i64;
            latency.entry(hot).or_default().push(received_ms - sent_ms);
            if event.kind == ReservationEventKind::Reserved {
                *reserved.entry(hot).or_default() += 1;
            }
            decided += 1;
            last = record.received;
        }
    }
    let secs = (last - started).as_secs_f64();
    token.cancel();
    for task in tasks {
        task.await??;
    }
    let hot_orders = sent_hot.values().filter(|h| **h).count();
    println!(
        "{phase:<10} {orders} orders ({hot_orders} for the hot product) decided in {secs:.2} s = {:.0} orders/s; reserved: {} normal, {} hot (hot stock 1,000)",
        orders as f64 / secs.max(1e-9),
        reserved.get(&false).copied().unwrap_or(0),
        reserved.get(&true).copied().unwrap_or(0),
    );
    for (hot, label) in [(false, "normal"), (true, "hot")] {
        let Some(l) = latency.get_mut(&hot) else {
            continue;
        };
        l.sort_unstable();
        let pct = |p: f64| crate::bench::percentile(l, p);
        println!(
            "           {label:<6} orders: time to answer after the burst was sent p50 {} ms, p99 {} ms ({} answers)",
            pct(0.5),
            pct(0.99),
            l.len()
        );
    }
    Ok(())
}

fn line(number: i32, product: usize) -> InventoryLine {
    InventoryLine {
        line_number: number,
        product_id: product_id(product),
        quantity: 1,
        fulfillment_center: None,
    }
}

fn uuid_for(text: &str) -> String {
    runtime::ids::derived(&[text])
}
