//! The order saga end to end on the real stack: checkout, the inventory ledger, payment (and
//! its retries) against the gateway simulator with injected failures, and shipping, each a
//! real `fleet run` process; a checkout instance is `kill -9`ed in the middle. Every order
//! must end PLACED or FAILED-and-compensated, and the books must agree: placed orders =
//! `placed` rows in the orders database = shipments; money kept by the gateway = placed order
//! totals; the ledger's sold units = placed quantities, nothing left on hold.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use codec::TopicCodec;
use common::*;
use events::checkout::{CheckoutLine, CheckoutRequested, OrderStatusCode, SagaTransition};
use events::shipping::{ShipmentEvent, ShipmentEventKind};
use loadgen::kafka::{drain, produce_all, producer, reader};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

const PROCESSORS: [&str; 5] = [
    "checkout",
    "inventory",
    "payment",
    "payment-retry",
    "shipping",
];

struct SagaFleet {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    state: tempfile::TempDir,
    suffix: String,
    topology: topology::Topology,
    gateway: GatewaySim,
    orders_url: String,
}

impl SagaFleet {
    fn topic(&self, base: &str) -> String {
        format!("{base}.{}", self.suffix)
    }

    fn start(&self, processor: &str, instance: u16) -> tokio::process::Child {
        fleet_command()
            .env("STOREFLEET_GATEWAY", &self.gateway.url)
            .env("STOREFLEET_STATE_DIR", self.state.path())
            .arg("--topology")
            .arg(&self.file)
            .args(["run", processor, "--instance", &instance.to_string()])
            .spawn()
            .unwrap()
    }

    async fn codec(&self, base: &str) -> TopicCodec {
        codec_for(&self.topology, &self.topic(base)).await
    }
}

async fn saga_fleet(
    label: &str,
    faults: gateway_sim::GatewayConfig,
    checkout: &[(&str, serde_yaml::Value)],
) -> SagaFleet {
    let suffix = unique(label);
    let mut t = topology().isolated_all(&PROCESSORS, &suffix).unwrap();
    t.processors
        .retain(|(p, _)| PROCESSORS.contains(&p.name.as_str()));
    t.connectors.clear();
    let orders_url = private_database("orders", &suffix, "orders").await;
    let payments_url = private_database("payments", &suffix, "payments").await;
    set_params(
        &mut t,
        "checkout",
        &[
            ("database", database_name(&orders_url).into()),
            // Longer than payment's retry budget below (about 3 s).
            ("step_timeout_ms", 10_000.into()),
        ],
    );
    set_params(&mut t, "checkout", checkout);
    let payment: Vec<(&str, serde_yaml::Value)> = vec![
        ("database", database_name(&payments_url).into()),
        ("call_timeout_ms", 250.into()),
        ("retry_base_ms", 50.into()),
        ("retry_max_ms", 500.into()),
        ("max_attempts", 5.into()),
        ("breaker_failure_ratio", 0.9.into()),
    ];
    set_params(&mut t, "payment", &payment);
    set_params(&mut t, "payment-retry", &payment);
    let (file, dir) = deploy(&mut t).await;
    SagaFleet {
        file,
        _dir: dir,
        state: tempfile::tempdir().unwrap(),
        suffix,
        topology: t,
        gateway: GatewaySim::start(faults).await,
        orders_url,
    }
}

fn product(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn request(order: &str, lines: Vec<CheckoutLine>) -> CheckoutRequested {
    loadgen::checkouts::request(order, &format!("user-{}", order.len()), lines, 0)
}

/// The latest transition (the order's status) per order, by saga sequence.
async fn statuses_until(
    consumer: &rdkafka::consumer::StreamConsumer,
    codec: &TopicCodec,
    latest: &mut HashMap<String, SagaTransition>,
    done: impl Fn(&HashMap<String, SagaTransition>) -> bool,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    while !done(latest) {
        if Instant::now() > deadline {
            let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
            for s in latest.values() {
                *by_status
                    .entry(format!("{:?}/{:?}", s.status, s.to_state))
                    .or_default() += 1;
            }
            panic!("orders not all settled after {within:?}: {by_status:?}");
        }
        for record in drain(consumer, 20_000, Duration::from_secs(1)).await {
            let value = codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let t: SagaTransition = codec::from_value(&value).unwrap();
            let newer = latest
                .get(&t.order_id)
                .is_none_or(|s| s.sequence < t.sequence);
            if newer {
                latest.insert(t.order_id.clone(), t);
            }
        }
    }
}

fn settled(t: &SagaTransition) -> bool {
    matches!(
        t.status,
        Some(OrderStatusCode::Placed | OrderStatusCode::Failed)
    )
}

/// The ledger's books for `product` (from the inventory instance that owns it): sellable,
/// held and sold units, summed over its centers.
async fn books(f: &SagaFleet, product: &str) -> Option<(i64, i64, i64)> {
    let (spec, _) = f.topology.processor("inventory").unwrap();
    let url = format!("http://127.0.0.1:{}/state/{product}", spec.admin_port);
    let entry: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let centers = entry.get("value")?.get("Centers")?.as_object()?;
    let sum = |field: &str| {
        centers
            .values()
            .map(|c| c[field].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    Some((sum("available"), sum("reserved"), sum("committed")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_checkouts_with_failures_and_a_crash_end_placed_or_compensated() {
    let faults = gateway_sim::GatewayConfig {
        latency_ms: 2,
        jitter_ms: 3,
        error_rate: 0.1,
        timeout_rate: 0.05,
        lost_rate: 0.05,
        hang_ms: 2_000,
        decline_rate: 0.1,
        seed: Some(5),
        ..Default::default()
    };
    let f = saga_fleet("saga", faults, &[]).await;
    let bootstrap = env().bootstrap_servers;
    let producer = producer(&bootstrap).unwrap();

    // Stock: product 0 is scarce (60 units), the others plentiful.
    const PRODUCTS: usize = 20;
    const SCARCE: i32 = 60;
    const PLENTY: i32 = 100_000;
    let stock_codec = f.codec("inventory.stock-commands.v1").await;
    let levels = (0..PRODUCTS).map(|i| {
        let on_hand = if i == 0 { SCARCE } else { PLENTY };
        (
            product(i),
            stock_codec
                .encode(&level(&product(i), "FC-EAST-1", on_hand))
                .unwrap(),
        )
    });
    produce_all(&producer, &f.topic("inventory.stock-commands.v1"), levels)
        .await
        .unwrap();

    let mut children = Vec::new();
    for p in PROCESSORS {
        children.push((p, 0u16, f.start(p, 0)));
    }
    children.push(("checkout", 1, f.start("checkout", 1)));

    // 2,000 checkouts of 1-3 lines; a fifth want the scarce product; a tenth sent twice.
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let request_codec = f.codec("orders.checkout-requested.v1").await;
    let mut requests = BTreeMap::new();
    for n in 0..2_000 {
        let order = format!("order-{n:05}");
        let count = rng.random_range(1..=3);
        let mut picked: Vec<usize> = Vec::new();
        if rng.random_bool(0.2) {
            picked.push(0);
        }
        while picked.len() < count {
            let p = rng.random_range(1..PRODUCTS);
            if !picked.contains(&p) {
                picked.push(p);
            }
        }
        let lines = picked
            .iter()
            .enumerate()
            .map(|(i, p)| CheckoutLine {
                line_number: i as i32 + 1,
                product_id: product(*p),
                sku: format!("SKU-{p}"),
                quantity: rng.random_range(1..=2),
                unit_price_minor: 100 * (*p as i64 + 1),
            })
            .collect();
        requests.insert(order.clone(), request(&order, lines));
    }
    let mut batch: Vec<(String, Vec<u8>)> = Vec::new();
    for (order, r) in &requests {
        batch.push((order.clone(), request_codec.encode(r).unwrap()));
        if rng.random_bool(0.1) {
            let mut again = r.clone();
            again.event_id = uuid::Uuid::new_v4().to_string();
            batch.push((order.clone(), request_codec.encode(&again).unwrap()));
        }
    }
    let status_codec = f.codec("checkout.saga-transitions.v1").await;
    let statuses = reader(
        &bootstrap,
        &f.topic("checkout.saga-transitions.v1"),
        &unique("st"),
    )
    .unwrap();
    let started = Instant::now();
    produce_all(&producer, &f.topic("orders.checkout-requested.v1"), batch)
        .await
        .unwrap();

    // A third settled: kill -9 one checkout instance, then bring it back.
    let mut latest = HashMap::new();
    statuses_until(
        &statuses,
        &status_codec,
        &mut latest,
        |l| l.values().filter(|s| settled(s)).count() >= 600,
        Duration::from_secs(180),
    )
    .await;
    let (_, _, victim) = children
        .iter_mut()
        .find(|(p, i, _)| *p == "checkout" && *i == 0)
        .unwrap();
    kill(Pid::from_raw(victim.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    victim.wait().await.unwrap();
    *victim = f.start("checkout", 0);
    let total = requests.len();
    statuses_until(
        &statuses,
        &status_codec,
        &mut latest,
        |l| l.len() == total && l.values().all(settled),
        Duration::from_secs(300),
    )
    .await;
    let elapsed = started.elapsed();
    // Late duplicates and straggling compensations settle before the audit.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let placed: HashSet<String> = latest
        .values()
        .filter(|s| s.status == Some(OrderStatusCode::Placed))
        .map(|s| s.order_id.clone())
        .collect();
    let failed = total - placed.len();
    println!(
        "{total} checkouts settled in {:.1} s: {} placed, {failed} failed",
        elapsed.as_secs_f64(),
        placed.len()
    );
    assert!(placed.len() > total / 2, "most orders are placed");
    assert!(failed > 0, "the injected failures failed some orders");

    // Orders database: a `placed` row per placed order, nothing else placed.
    let (db, connection) = tokio_postgres::connect(&f.orders_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows: HashMap<String, String> = db
        .query("SELECT order_id, status FROM orders", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let placed_rows: HashSet<String> = rows
        .iter()
        .filter(|(_, s)| *s == "placed")
        .map(|(o, _)| o.clone())
        .collect();
    assert_eq!(placed_rows, placed, "placed orders = placed rows");
    assert!(
        rows.values().all(|s| s == "placed"),
        "the order history holds placed orders only"
    );

    // Shipping: one shipment request per placed order (one fulfillment center here).
    let shipment_codec = f.codec("shipping.shipment-events.v1").await;
    let shipments = reader(
        &bootstrap,
        &f.topic("shipping.shipment-events.v1"),
        &unique("sh"),
    )
    .unwrap();
    let mut shipped: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shipped.len() < placed.len() && Instant::now() < deadline {
        for record in drain(&shipments, 50_000, Duration::from_secs(2)).await {
            let value = shipment_codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let event: ShipmentEvent = codec::from_value(&value).unwrap();
            if event.kind == ShipmentEventKind::ShipmentRequested {
                shipped.insert(event.order_id);
            }
        }
    }
    assert_eq!(shipped, placed, "placed orders = shipments");

    // Money: what the gateway kept is exactly the placed orders' totals, order by order.
    let ledger = f.gateway.ledger().await;
    let mut kept_total = 0;
    let mut placed_total = 0;
    for (order, r) in &requests {
        let (_, captured, refunded) =
            ledger
                .get(&format!("pay-{order}"))
                .cloned()
                .unwrap_or(("none".into(), 0, 0));
        let kept = captured - refunded;
        kept_total += kept;
        if placed.contains(order) {
            placed_total += r.total_minor;
            assert_eq!(
                kept, r.total_minor,
                "{order}: placed, charged its total once"
            );
        } else {
            assert_eq!(
                kept, 0,
                "{order}: failed, nothing kept (refunded or never charged)"
            );
        }
    }
    assert_eq!(
        kept_total, placed_total,
        "charges - refunds = placed totals"
    );

    // Stock: sold = placed quantities; nothing still held for a failed order.
    let mut sold: HashMap<String, i32> = HashMap::new();
    for order in &placed {
        for l in &requests[order].lines {
            *sold.entry(l.product_id.clone()).or_default() += l.quantity;
        }
    }
    // The ledger's own books: commits and releases are not answered, so wait until the
    // last of them is applied.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..PRODUCTS {
        let p = product(i);
        let on_hand = i64::from(if i == 0 { SCARCE } else { PLENTY });
        let sold_units = i64::from(sold.get(&p).copied().unwrap_or(0));
        let expected = (on_hand - sold_units, 0, sold_units);
        loop {
            let seen = books(&f, &p).await;
            if seen == Some(expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "product {i}: (available, held, sold) = {seen:?}, want {expected:?}: sold = placed quantities, no hold left behind"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        sold.get(&product(0)).copied().unwrap_or(0) <= SCARCE,
        "the scarce product is never oversold"
    );

    // Support: one placed order's saga and history from the instance that owns it (asked
    // again while a rebalance, the killed member's session expiring, moves its partition).
    let some_placed = placed.iter().next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let status = fleet_command()
            .arg("--topology")
            .arg(&f.file)
            .args(["orders", "status", some_placed])
            .output()
            .await
            .unwrap();
        if status.status.success() {
            break String::from_utf8_lossy(&status.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "orders status: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for expected in [
        "\"Placed\"",
        "ReservingInventory",
        "ChargingPayment",
        "\"history\"",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }

    for (_, _, child) in &mut children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Payment never answers: the charge is retried, then compensated (refund, then release);
/// the refund is never answered either, so the saga ends STUCK: counted, listed for an
/// operator, never silently dropped. When payment comes back, the money is still returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_whose_compensation_cannot_complete_is_stuck_and_listed() {
    let f = saga_fleet(
        "saga-stuck",
        gateway_sim::GatewayConfig::default(),
        // Short, so the charge and then the refund run out of attempts within a minute or so,
        // yet long enough that inventory answers the reservation in time on a loaded machine
        // (at 300 ms a slow answer under parallel tests failed the reservation instead).
        &[("step_timeout_ms", 1_000.into())],
    )
    .await;
    let bootstrap = env().bootstrap_servers;
    let producer = producer(&bootstrap).unwrap();
    let stock_codec = f.codec("inventory.stock-commands.v1").await;
    produce_all(
        &producer,
        &f.topic("inventory.stock-commands.v1"),
        [(
            product(1),
            stock_codec
                .encode(&level(&product(1), "FC-EAST-1", 10))
                .unwrap(),
        )],
    )
    .await
    .unwrap();
    let mut children = vec![f.start("inventory", 0)];
    // Inventory answers before checkout's short step timer runs: wait for the ledger's
    // availability.
    let availability = reader(
        &bootstrap,
        &f.topic("inventory.availability.v1"),
        &unique("av"),
    )
    .unwrap();
    assert!(
        !drain(&availability, 1, Duration::from_secs(30))
            .await
            .is_empty(),
        "the ledger is up"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    children.push(f.start("checkout", 0));
    let order = "order-stuck-1";
    let r = request(
        order,
        vec![CheckoutLine {
            line_number: 1,
            product_id: product(1),
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price_minor: 700,
        }],
    );
    let request_codec = f.codec("orders.checkout-requested.v1").await;
    produce_all(
        &producer,
        &f.topic("orders.checkout-requested.v1"),
        [(order.to_string(), request_codec.encode(&r).unwrap())],
    )
    .await
    .unwrap();
    let status_codec = f.codec("checkout.saga-transitions.v1").await;
    let statuses = reader(
        &bootstrap,
        &f.topic("checkout.saga-transitions.v1"),
        &unique("st"),
    )
    .unwrap();
    let mut latest = HashMap::new();
    statuses_until(
        &statuses,
        &status_codec,
        &mut latest,
        |l| {
            l.get(order)
                .is_some_and(|s| s.status == Some(OrderStatusCode::Stuck))
        },
        Duration::from_secs(120),
    )
    .await;
    let stuck = &latest[order];
    assert!(stuck.reason.is_some(), "a stuck saga says what to do");

    let listing = fleet_command()
        .arg("--topology")
        .arg(&f.file)
        .args(["orders", "stuck"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.status.success(), "orders stuck: {text}");
    assert!(text.contains(&format!("STUCK {order}")), "listed:\n{text}");

    let (spec, _) = f.topology.processor("checkout").unwrap();
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", spec.admin_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("storefleet_checkout_sagas_stuck_total 1"),
        "the stuck saga is counted"
    );

    // Payment comes back and works through its backlog: the charge lands, and so does the
    // refund the saga sent while compensating, so no money is kept; the late refund resumes
    // the saga, which releases the stock and ends FAILED.
    children.push(f.start("payment", 0));
    children.push(f.start("payment-retry", 0));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ledger = f.gateway.ledger().await;
        if let Some((status, captured, refunded)) = ledger.get(&format!("pay-{order}")) {
            if status == "refunded" || status == "voided" {
                assert_eq!(captured - refunded, 0);
                break;
            }
        }
        assert!(Instant::now() < deadline, "refund not applied: {ledger:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    statuses_until(
        &statuses,
        &status_codec,
        &mut latest,
        |l| {
            l.get(order)
                .is_some_and(|s| s.status == Some(OrderStatusCode::Failed))
        },
        Duration::from_secs(60),
    )
    .await;
    for child in &mut children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}
