//! Payment on the real stack: the broker, the registry, PostgreSQL (the payment service's
//! transaction log) and the gateway simulator as a real HTTP server with faults. Each test
//! has its own topics, database and simulator.
//!
//! The audit is the simulator's ledger (what was really charged), never the processor's own
//! account of it.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use codec::TopicCodec;
use common::*;
use events::payments::{
    PaymentCommand, PaymentCommandKind, PaymentMethod, PaymentMethodType, PaymentResult,
    PaymentResultKind,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

struct PaymentFleet {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    commands: String,
    results: String,
    dead_letters: String,
    topology: topology::Topology,
    gateway: GatewaySim,
    database_url: String,
}

/// The payment processors on private topics and a private database, against a simulator
/// with `faults`; `params` override the topology's payment params.
async fn payment_fleet(
    label: &str,
    faults: gateway_sim::GatewayConfig,
    params: &[(&str, serde_yaml::Value)],
) -> PaymentFleet {
    let suffix = unique(label);
    let mut t = topology()
        .isolated_all(&["payment", "payment-retry"], &suffix)
        .unwrap();
    t.processors
        .retain(|(p, _)| p.name == "payment" || p.name == "payment-retry");
    t.connectors.clear();
    let database_url = private_database("payments", &suffix, "payments").await;
    let mut params = params.to_vec();
    params.push(("database", database_name(&database_url).into()));
    for name in ["payment", "payment-retry"] {
        set_params(&mut t, name, &params);
    }
    let (file, dir) = deploy(&mut t).await;
    let name = |base: &str| format!("{base}.{suffix}");
    PaymentFleet {
        file,
        _dir: dir,
        commands: name("payments.commands.v1"),
        results: name("payments.results.v1"),
        dead_letters: name("dlq.payment.retries.v1"),
        topology: t,
        gateway: GatewaySim::start(faults).await,
        database_url,
    }
}

impl PaymentFleet {
    fn start(&self, processor: &str, instance: u16) -> tokio::process::Child {
        fleet_command()
            .env("STOREFLEET_GATEWAY", &self.gateway.url)
            .arg("--topology")
            .arg(&self.file)
            .args(["run", processor, "--instance", &instance.to_string()])
            .spawn()
            .unwrap()
    }

    async fn codec(&self, topic: &str) -> TopicCodec {
        codec_for(&self.topology, topic).await
    }

    /// Payment status per payment id in the processor's own store.
    async fn stored(&self) -> HashMap<String, String> {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
            .query("SELECT payment_id, status FROM payments", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

fn command(kind: PaymentCommandKind, order: &str, amount: i64) -> PaymentCommand {
    let operation = match kind {
        PaymentCommandKind::Authorize => "authorize",
        _ => "refund",
    };
    PaymentCommand {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: 0,
        correlation_id: order.into(),
        causation_id: None,
        // Stable per logical command: a re-send is the same command.
        command_id: uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{order}:{operation}").as_bytes(),
        )
        .to_string(),
        idempotency_key: format!("{order}:{operation}"),
        kind,
        order_id: order.into(),
        payment_id: format!("pay-{order}"),
        amount_minor: amount,
        currency: "USD".into(),
        payment_method: (kind == PaymentCommandKind::Authorize).then(|| PaymentMethod {
            kind: PaymentMethodType::Card,
            token: "tok_test".into(),
            last4: Some("4242".into()),
        }),
        capture_immediately: kind == PaymentCommandKind::Authorize,
        gateway_reference: None,
        reason: (kind == PaymentCommandKind::Refund).then(|| "test compensation".into()),
        deadline: None,
    }
}

/// Sends each command once, plus a random `dup_rate` of them again (shuffled in).
async fn send_with_duplicates(
    f: &PaymentFleet,
    codec: &TopicCodec,
    commands: &[PaymentCommand],
    dup_rate: f64,
    rng: &mut rand::rngs::StdRng,
) {
    let mut all: Vec<PaymentCommand> = commands.to_vec();
    for c in commands {
        if rng.random_bool(dup_rate) {
            let mut again = c.clone();
            again.event_id = uuid::Uuid::new_v4().to_string();
            all.push(again);
        }
    }
    all.shuffle(rng);
    let producer = producer(&env().bootstrap_servers).unwrap();
    let records = all
        .iter()
        .map(|c| (c.order_id.clone(), codec.encode(c).unwrap()));
    produce_all(&producer, &f.commands, records).await.unwrap();
}

/// Reads results until every order in `want` has an answer to its command of `kind`.
async fn results_until(
    consumer: &rdkafka::consumer::StreamConsumer,
    codec: &TopicCodec,
    seen: &mut BTreeMap<String, Vec<PaymentResult>>,
    want: &HashSet<String>,
    kind: PaymentCommandKind,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let missing = want
            .iter()
            .filter(|o| {
                !seen
                    .get(*o)
                    .is_some_and(|rs| rs.iter().any(|r| r.command_kind == kind))
            })
            .count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} orders have no {kind:?} answer after {within:?}"
        );
        for record in drain(consumer, 10_000, Duration::from_secs(1)).await {
            let value = codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let result: PaymentResult = codec::from_value(&value).unwrap();
            seen.entry(result.order_id.clone())
                .or_default()
                .push(result);
        }
    }
}

fn final_answer(results: &[PaymentResult], kind: PaymentCommandKind) -> PaymentResultKind {
    results
        .iter()
        .find(|r| r.command_kind == kind)
        .map(|r| r.kind)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_gateway_charges_each_successful_order_exactly_once() {
    let faults = gateway_sim::GatewayConfig {
        latency_ms: 2,
        jitter_ms: 3,
        error_rate: 0.2,
        timeout_rate: 0.1,
        lost_rate: 0.1,
        hang_ms: 3_000,
        decline_rate: 0.1,
        seed: Some(7),
        ..Default::default()
    };
    let f = payment_fleet(
        "pay-flaky",
        faults,
        &[
            ("call_timeout_ms", 250.into()),
            ("retry_base_ms", 50.into()),
            ("retry_max_ms", 800.into()),
            ("max_attempts", 8.into()),
            ("concurrency", 32.into()),
            // 40% of calls fail on purpose: the breaker must not treat that as an outage.
            ("breaker_failure_ratio", 0.9.into()),
        ],
    )
    .await;
    let command_codec = f.codec(&f.commands).await;
    let result_codec = f.codec(&f.results).await;
    let results = reader(&env().bootstrap_servers, &f.results, &unique("pay-results")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);

    let orders: Vec<(String, i64)> = (0..400)
        .map(|i| (format!("order-{i:04}"), rng.random_range(100..50_000)))
        .collect();
    let amounts: HashMap<String, i64> = orders.iter().cloned().collect();
    let want: HashSet<String> = amounts.keys().cloned().collect();
    let charges: Vec<PaymentCommand> = orders
        .iter()
        .map(|(o, a)| command(PaymentCommandKind::Authorize, o, *a))
        .collect();

    let mut main_a = f.start("payment", 0);
    let mut main_b = f.start("payment", 1);
    let mut retry = f.start("payment-retry", 0);
    send_with_duplicates(&f, &command_codec, &charges, 0.3, &mut rng).await;

    // Some answers, then kill -9 one instance mid-run and bring it back.
    let mut seen: BTreeMap<String, Vec<PaymentResult>> = BTreeMap::new();
    let some: HashSet<String> = want.iter().take(60).cloned().collect();
    results_until(
        &results,
        &result_codec,
        &mut seen,
        &some,
        PaymentCommandKind::Authorize,
        Duration::from_secs(60),
    )
    .await;
    kill(Pid::from_raw(main_a.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    main_a.wait().await.unwrap();
    let mut main_a = f.start("payment", 0);
    results_until(
        &results,
        &result_codec,
        &mut seen,
        &want,
        PaymentCommandKind::Authorize,
        Duration::from_secs(120),
    )
    .await;

    // The saga's part: refund every FAILED order and a tenth of the CAPTURED ones (a later
    // step failed), each refund sent with duplicates.
    let mut captured = 0;
    let mut refund_orders = Vec::new();
    for (order, rs) in &seen {
        let answers: HashSet<PaymentResultKind> = rs
            .iter()
            .filter(|r| r.command_kind == PaymentCommandKind::Authorize)
            .map(|r| r.kind)
            .collect();
        assert!(
            !(answers.contains(&PaymentResultKind::Captured)
                && answers.contains(&PaymentResultKind::Declined)),
            "{order}: contradictory answers {answers:?}"
        );
        match final_answer(rs, PaymentCommandKind::Authorize) {
            PaymentResultKind::Captured => {
                captured += 1;
                if captured % 10 == 0 {
                    refund_orders.push(order.clone());
                }
            }
            PaymentResultKind::Failed => refund_orders.push(order.clone()),
            PaymentResultKind::Declined => {}
            other => panic!("{order}: unexpected answer {other:?}"),
        }
    }
    let refunds: Vec<PaymentCommand> = refund_orders
        .iter()
        .map(|o| command(PaymentCommandKind::Refund, o, amounts[o]))
        .collect();
    send_with_duplicates(&f, &command_codec, &refunds, 0.3, &mut rng).await;
    let refund_set: HashSet<String> = refund_orders.iter().cloned().collect();
    results_until(
        &results,
        &result_codec,
        &mut seen,
        &refund_set,
        PaymentCommandKind::Refund,
        Duration::from_secs(120),
    )
    .await;
    // Let duplicates and straggling retries finish before the audit.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ledger = f.gateway.ledger().await;
    let stored = f.stored().await;
    let mut charged_orders = 0;
    for (order, amount) in &amounts {
        let key = format!("pay-{order}");
        let (status, captured_cents, refunded_cents) =
            ledger.get(&key).cloned().unwrap_or(("none".into(), 0, 0));
        let net = captured_cents - refunded_cents;
        let answer = final_answer(&seen[order], PaymentCommandKind::Authorize);
        let keeps_charge = answer == PaymentResultKind::Captured && !refund_set.contains(order);
        if keeps_charge {
            charged_orders += 1;
            assert_eq!(
                (net, captured_cents),
                (*amount, *amount),
                "{order}: a successful order is charged its amount exactly once"
            );
        } else {
            assert_eq!(
                net, 0,
                "{order} ({answer:?}, status {status}) keeps no money"
            );
        }
        if refund_set.contains(order) {
            let refund = final_answer(&seen[order], PaymentCommandKind::Refund);
            assert!(
                matches!(
                    refund,
                    PaymentResultKind::Refunded | PaymentResultKind::Voided
                ),
                "{order}: refund answered {refund:?}"
            );
        }
        if status != "none" {
            assert_eq!(
                stored.get(&key),
                Some(&status),
                "{order}: the transaction log agrees with the gateway"
            );
        }
    }
    assert!(
        ledger.keys().all(|k| amounts.contains_key(&k[4..])),
        "nothing charged for an order that was never asked"
    );
    let stats = f.gateway.stats().await;
    for fault in ["timeout", "lost", "error_500"] {
        assert!(
            stats["faults"][fault].as_u64().unwrap_or(0) > 0,
            "fault {fault} was exercised: {stats}"
        );
    }
    assert!(
        charged_orders > 200,
        "most orders succeed: {charged_orders}"
    );

    for child in [&mut main_a, &mut main_b, &mut retry] {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_payments_are_dead_lettered_and_redriven() {
    let failing = gateway_sim::GatewayConfig {
        error_rate: 1.0,
        ..Default::default()
    };
    let f = payment_fleet(
        "pay-dlq",
        failing,
        &[
            ("call_timeout_ms", 250.into()),
            ("retry_base_ms", 20.into()),
            ("retry_max_ms", 100.into()),
            ("max_attempts", 3.into()),
            ("breaker_failure_ratio", 1.0.into()),
            ("breaker_min_calls", 50.into()),
        ],
    )
    .await;
    let command_codec = f.codec(&f.commands).await;
    let result_codec = f.codec(&f.results).await;
    let results = reader(&env().bootstrap_servers, &f.results, &unique("pay-dlq-r")).unwrap();
    let mut main = f.start("payment", 0);
    let mut retry = f.start("payment-retry", 0);

    let orders: Vec<String> = (0..5).map(|i| format!("dlq-order-{i}")).collect();
    let want: HashSet<String> = orders.iter().cloned().collect();
    let charges: Vec<PaymentCommand> = orders
        .iter()
        .map(|o| command(PaymentCommandKind::Authorize, o, 1_000))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    send_with_duplicates(&f, &command_codec, &charges, 0.0, &mut rng).await;
    let mut seen = BTreeMap::new();
    results_until(
        &results,
        &result_codec,
        &mut seen,
        &want,
        PaymentCommandKind::Authorize,
        Duration::from_secs(60),
    )
    .await;
    for order in &orders {
        let r = seen[order]
            .iter()
            .find(|r| r.command_kind == PaymentCommandKind::Authorize)
            .unwrap();
        assert_eq!(r.kind, PaymentResultKind::Failed, "{order}");
        assert_eq!(r.attempts, 3, "{order}: three gateway calls");
    }

    // The dead letters, with their history.
    let dlq = fleet_command()
        .arg("--topology")
        .arg(&f.file)
        .args(["dlq", "list", &f.dead_letters])
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8_lossy(&dlq.stdout);
    assert!(
        dlq.status.success(),
        "dlq list: {listing} {}",
        String::from_utf8_lossy(&dlq.stderr)
    );
    assert_eq!(
        listing.matches("RETRIES_EXHAUSTED").count(),
        5,
        "five dead letters listed:\n{listing}"
    );
    let (partition, offset) = listing
        .lines()
        .find_map(|l| {
            let coords = l.split_whitespace().next()?;
            let (p, o) = coords.split_once('/')?;
            Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?))
        })
        .expect("a listed dead letter");
    let inspect = fleet_command()
        .arg("--topology")
        .arg(&f.file)
        .args([
            "dlq",
            "inspect",
            &f.dead_letters,
            &partition.to_string(),
            &offset.to_string(),
        ])
        .output()
        .await
        .unwrap();
    let detail = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        detail.contains("History: #1") && detail.contains("#3") && detail.contains("\"attempt\""),
        "the dead letter carries the attempt history and the decoded retry:\n{detail}"
    );

    // The saga compensated two of them before the operator's redrive.
    let compensated = &orders[..2];
    let refunds: Vec<PaymentCommand> = compensated
        .iter()
        .map(|o| command(PaymentCommandKind::Refund, o, 1_000))
        .collect();
    f.gateway
        .set_faults(&gateway_sim::GatewayConfig::default())
        .await;
    send_with_duplicates(&f, &command_codec, &refunds, 0.0, &mut rng).await;
    let compensated_set: HashSet<String> = compensated.iter().cloned().collect();
    results_until(
        &results,
        &result_codec,
        &mut seen,
        &compensated_set,
        PaymentCommandKind::Refund,
        Duration::from_secs(60),
    )
    .await;

    // Gateway healthy again: redrive every dead letter (deferred by about a second).
    let redrive = fleet_command()
        .arg("--topology")
        .arg(&f.file)
        .args([
            "dlq",
            "redrive",
            &f.dead_letters,
            "--all",
            "--defer",
            "1",
            "--max-defer",
            "2",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        redrive.status.success(),
        "dlq redrive: {} {}",
        String::from_utf8_lossy(&redrive.stdout),
        String::from_utf8_lossy(&redrive.stderr)
    );
    let redriven_at = Instant::now();
    let mut after: BTreeMap<String, Vec<PaymentResult>> = BTreeMap::new();
    results_until(
        &results,
        &result_codec,
        &mut after,
        &want,
        PaymentCommandKind::Authorize,
        Duration::from_secs(60),
    )
    .await;
    assert!(
        redriven_at.elapsed() >= Duration::from_millis(400),
        "the redrive was deferred"
    );
    let ledger = f.gateway.ledger().await;
    for order in &orders {
        let answer = final_answer(&after[order], PaymentCommandKind::Authorize);
        let (_, captured_cents, refunded_cents) = ledger
            .get(&format!("pay-{order}"))
            .cloned()
            .unwrap_or_default();
        if compensated_set.contains(order) {
            assert_eq!(
                answer,
                PaymentResultKind::Failed,
                "{order}: compensated, not charged again"
            );
            assert_eq!(captured_cents - refunded_cents, 0, "{order}");
        } else {
            assert_eq!(
                answer,
                PaymentResultKind::Captured,
                "{order}: redriven and charged"
            );
            assert_eq!((captured_cents, refunded_cents), (1_000, 0), "{order}");
        }
    }

    // A second redrive finds nothing new to do.
    let again = fleet_command()
        .arg("--topology")
        .arg(&f.file)
        .args(["dlq", "redrive", &f.dead_letters, "--all"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = drain(&results, 100, Duration::from_secs(1)).await;
    assert!(
        late.is_empty(),
        "already-redriven dead letters are skipped: {text}"
    );

    for child in [&mut main, &mut retry] {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Admin `/metrics` of a processor instance as text.
async fn metrics_of(t: &topology::Topology, processor: &str) -> String {
    let (spec, _) = t.processor(processor).unwrap();
    reqwest::get(format!("http://127.0.0.1:{}/metrics", spec.admin_port))
        .await
        .map(|r| r.text())
        .unwrap()
        .await
        .unwrap_or_default()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_gateway_opens_the_breaker_and_calls_stop() {
    let f = payment_fleet(
        "pay-breaker",
        gateway_sim::GatewayConfig {
            error_rate: 1.0,
            ..Default::default()
        },
        &[
            ("retry_base_ms", 20.into()),
            ("retry_max_ms", 100.into()),
            ("max_attempts", 30.into()),
            ("breaker_window", 10.into()),
            ("breaker_min_calls", 5.into()),
            ("breaker_failure_ratio", 0.5.into()),
            ("breaker_open_ms", 60_000.into()),
        ],
    )
    .await;
    let command_codec = f.codec(&f.commands).await;
    let mut main = f.start("payment", 0);
    let charges: Vec<PaymentCommand> = (0..20)
        .map(|i| command(PaymentCommandKind::Authorize, &format!("brk-{i}"), 500))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    send_with_duplicates(&f, &command_codec, &charges, 0.0, &mut rng).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_of(&f.topology, "payment").await;
        let calls = metric(&text, "storefleet_payment_gateway_calls_total");
        let rejected = metric(&text, "storefleet_payment_breaker_rejections_total");
        if metric(&text, "storefleet_payment_breaker_state") == 1.0 && calls + rejected >= 20.0 {
            // Five failures of at most ten open it; every later command fails fast.
            assert!(rejected >= 10.0, "{rejected} fast failures:\n{text}");
            break;
        }
        assert!(Instant::now() < deadline, "breaker did not open:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = f.gateway.stats().await;
    let calls = stats["requests"]["authorize"].as_u64().unwrap();
    assert!(
        calls <= 10,
        "an open breaker stops calling the dead gateway: {calls} calls"
    );
    let _ = main.start_kill();
    let _ = main.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stay_within_the_gateway_contract_rate() {
    let f = payment_fleet(
        "pay-rate",
        gateway_sim::GatewayConfig {
            rate_limit_per_sec: 50,
            ..Default::default()
        },
        &[("gateway_rate_per_sec", 50.into())],
    )
    .await;
    let command_codec = f.codec(&f.commands).await;
    let result_codec = f.codec(&f.results).await;
    let results = reader(&env().bootstrap_servers, &f.results, &unique("pay-rate-r")).unwrap();
    let mut main = f.start("payment", 0);
    let orders: Vec<String> = (0..150).map(|i| format!("rate-{i}")).collect();
    let charges: Vec<PaymentCommand> = orders
        .iter()
        .map(|o| command(PaymentCommandKind::Authorize, o, 700))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let started = Instant::now();
    send_with_duplicates(&f, &command_codec, &charges, 0.0, &mut rng).await;
    let mut seen = BTreeMap::new();
    let want: HashSet<String> = orders.iter().cloned().collect();
    results_until(
        &results,
        &result_codec,
        &mut seen,
        &want,
        PaymentCommandKind::Authorize,
        Duration::from_secs(60),
    )
    .await;
    let elapsed = started.elapsed();
    let stats = f.gateway.stats().await;
    let limited = stats["rate_limited"].as_u64().unwrap();
    // 300 calls (authorize + capture) at 50/s with a one-second burst: about 5 s.
    assert!(
        elapsed >= Duration::from_secs(4),
        "the limiter paced the calls: {elapsed:?}"
    );
    assert!(
        limited <= 6,
        "the gateway refused {limited} calls for the rate"
    );
    assert!(seen
        .values()
        .all(|rs| final_answer(rs, PaymentCommandKind::Authorize) == PaymentResultKind::Captured));
    let _ = main.start_kill();
    let _ = main.wait().await;
}
