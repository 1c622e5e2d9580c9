//! `fleet bench payment`: charges through the payment processors (the saga's group and the
//! retry group, one instance each, in this process) against the gateway simulator (a real
//! HTTP server on a free port, in this process) with a fixed latency, on private topics and a
//! private payments database on the stack's PostgreSQL.
//!
//! Phases, same load each:
//! 1. no faults;
//! 2. 10% slow calls (five times the latency, still inside the call timeout);
//! 3. 10% calls that hang past the call timeout (answered later through the retry topic).
//!
//! Figures: payments/s until every order has its answer, and the answer latency p50/p95/p99
//! of the orders whose first call was not faulted, which shows whether a slow or retried
//! payment holds up the others (it must not: the partition moves on).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codec::RegistryClient;
use events::payments::{
    PaymentCommand, PaymentCommandKind, PaymentMethod, PaymentMethodType, PaymentResult,
    PaymentResultKind,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::percentile;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::error::{check, missing};
use crate::harness::{broker_label, codec, private_broker, private_database, Engine};
use crate::Result;

/// `fleet bench payment`.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 20_000)]
    payments: usize,
    /// The gateway's latency per call (ms; jitter one fifth of it).
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Payments in flight per instance.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run on a private broker with this storage engine instead of the stack's.
    #[arg(long)]
    engine: Option<Engine>,
}

pub async fn payment(topology: &Topology, bench: Args) -> Result<()> {
    let mut env = runtime::StackEnv::from_env()?;
    let private = private_broker(bench.engine).await?;
    if let Some(broker) = &private {
        env.bootstrap_servers = broker.bootstrap.clone();
    }
    println!(
        "broker: {} ({}); gateway latency {} ms; concurrency {} per instance",
        env.bootstrap_servers,
        broker_label(bench.engine),
        bench.latency_ms,
        bench.concurrency
    );
    let base = gateway_sim::GatewayConfig {
        latency_ms: bench.latency_ms,
        jitter_ms: bench.latency_ms / 5,
        ..Default::default()
    };
    let phases = [
        ("no faults", base.clone()),
        (
            "10% slow",
            gateway_sim::GatewayConfig {
                slow_rate: 0.1,
                slow_ms: bench.latency_ms * 5,
                ..base.clone()
            },
        ),
        (
            "10% hang",
            gateway_sim::GatewayConfig {
                timeout_rate: 0.1,
                hang_ms: 30_000,
                ..base.clone()
            },
        ),
    ];
    for (phase, faults) in phases {
        run_phase(topology, &env, phase, faults, &bench).await?;
    }
    Ok(())
}

async fn run_phase(
    topology: &Topology,
    env: &runtime::StackEnv,
    phase: &str,
    faults: gateway_sim::GatewayConfig,
    bench: &Args,
) -> Result<()> {
    let suffix = format!(
        "bench-pay-{}-{}",
        phase.replace([' ', '%'], ""),
        runtime::now_ms()
    );
    let mut t = topology
        .isolated_all(&["payment", "payment-retry"], &suffix)
        .ok_or_else(missing("no payment processors"))?;
    let (database, _) = private_database(topology, env, "payments", &suffix).await?;
    for (_, params) in &mut t.processors {
        if let ProcessorParams::Payment(p) = params {
            p.database = database.clone();
            p.concurrency = bench.concurrency;
            // Hung calls are cut here and retried through the topic.
            p.call_timeout_ms = (bench.latency_ms * 10).max(200);
            p.retry_base_ms = 100;
            p.retry_max_ms = 1_000;
        }
    }
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let name = |base: &str| format!("{base}.{suffix}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway = format!("http://{}", listener.local_addr()?);
    let stop_gateway = CancellationToken::new();
    // Owner: this bench, which stops it (`stop_gateway`) and awaits the handle.
    let sim = tokio::spawn(gateway_sim::serve(listener, faults, stop_gateway.clone()));

    let registry = RegistryClient::new(&env.registry_url);
    let commands = name("payments.commands.v1");
    let results = name("payments.results.v1");
    let command_codec = codec(&t, &registry, &commands, "payments.commands.v1").await?;
    let result_codec = codec(&t, &registry, &results, "payments.results.v1").await?;

    let batch: Vec<(String, Vec<u8>)> = (0..bench.payments)
        .map(|n| {
            let order = format!("{suffix}-o{n}");
            let cmd = PaymentCommand {
                event_id: runtime::ids::derived(&[&order, "charge-event"]),
                occurred_at: runtime::now_ms(),
                correlation_id: order.clone(),
                causation_id: None,
                command_id: runtime::ids::derived(&[&order, "charge"]),
                idempotency_key: format!("{order}:authorize"),
                kind: PaymentCommandKind::Authorize,
                order_id: order.clone(),
                payment_id: format!("pay-{order}"),
                amount_minor: 1_000 + (n as i64 % 9_000),
                currency: "USD".into(),
                payment_method: Some(PaymentMethod {
                    kind: PaymentMethodType::Card,
                    token: "tok_bench".into(),
                    last4: None,
                }),
                capture_immediately: true,
                gateway_reference: None,
                reason: None,
                deadline: None,
            };
            Ok((order, command_codec.encode(&cmd)?))
        })
        .collect::<Result<_>>()?;

    let answers = reader(
        &env.bootstrap_servers,
        &results,
        &format!("{suffix}-answers"),
    )?;
    let token = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut env = env.clone();
    env.gateway_url = gateway.clone();
    for processor in ["payment", "payment-retry"] {
        tasks.push(wiring::spawn_processor(&t, processor, &env, &token)?);
    }

    let started = Instant::now();
    let sent_ms = runtime::now_ms();
    produce_all(&producer(&env.bootstrap_servers)?, &commands, batch).await?;
    let mut latency = Vec::with_capacity(bench.payments);
    let mut answered: HashMap<String, PaymentResultKind> = HashMap::new();
    let mut retried_latency = Vec::new();
    let mut last = started;
    while answered.len() < bench.payments {
        let seen = drain(&answers, 20_000, Duration::from_secs(30)).await;
        check!(
            !seen.is_empty(),
            "no answers for 30 s ({} of {})",
            answered.len(),
            bench.payments
        );
        for record in seen {
            let value = result_codec
                .decode(record.payload.as_deref().unwrap_or_default())
                .await?;
            let result: PaymentResult = codec::from_value(&value)?;
            if answered.contains_key(&result.order_id) {
                continue;
            }
            let received_ms = runtime::now_ms() - record.received.elapsed().as_millis() as i64;
            // A charge is two calls (authorize, capture); more means a retry.
            if result.attempts > 2 {
                retried_latency.push(received_ms - sent_ms);
            } else {
                latency.push(received_ms - sent_ms);
            }
            answered.insert(result.order_id, result.kind);
            last = record.received;
        }
    }
    let secs = (last - started).as_secs_f64();
    token.cancel();
    for task in tasks {
        task.await??;
    }
    stop_gateway.cancel();
    let _ = sim.await;
    let captured = answered
        .values()
        .filter(|k| **k == PaymentResultKind::Captured)
        .count();
    latency.sort_unstable();
    retried_latency.sort_unstable();
    println!(
        "{phase:<10} {} payments answered in {secs:.2} s = {:.0} payments/s; {captured} captured; \
         first-try answers {} (p50 {} ms, p95 {} ms, p99 {} ms from the batch's send); \
         retried {} (p50 {} ms)",
        bench.payments,
        bench.payments as f64 / secs.max(1e-9),
        latency.len(),
        percentile(&latency, 0.50),
        percentile(&latency, 0.95),
        percentile(&latency, 0.99),
        retried_latency.len(),
        percentile(&retried_latency, 0.50),
    );
    stack::drop_database(&env.postgres_url, &database).await?;
    Ok(())
}
