//! Exactly-once mode (Kafka transactions) against librdkafka's mock cluster, which
//! implements the transaction coordinator (the local broker refuses transactions): committed
//! work is visible exactly once to `read_committed` readers, and a handler failure aborts
//! the open transaction. What this mock cannot show: librdkafka 2.12's mock broker neither
//! filters aborted records from read_committed fetches nor answers OffsetFetch with
//! transactionally committed offsets, so "an aborted transaction is invisible" still needs a
//! run against Apache Kafka (docker-compose.yml).

mod common;

use std::time::Duration;

use common::*;
use events::orders::OrderPlaced;
use loadgen::kafka::{drain, produce_all, producer};
use loadgen::orders::{shipments_of, OrderGenerator};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::ClientConfig;
use runtime::state::{State, Timer};
use runtime::{HandlerError, Input, Outputs, Processor, StatefulProcessor};
use tokio_util::sync::CancellationToken;
use topology::{Guarantee, ProcessorParams, Topology};

/// Shipping with a per-order count in state; an order from user `poison` stops the processor
/// (a `Fatal` error) in the middle of a transaction.
struct CountingShipping {
    inner: shipping::Shipping,
}

impl StatefulProcessor for CountingShipping {
    type Value = u64;
    const STORE: &'static str = "seen";

    async fn handle(
        &mut self,
        input: &Input,
        state: &mut State<'_, u64>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let order: OrderPlaced = input.decode()?;
        if order.user_id == "poison" {
            return Err(HandlerError::fatal("poison order"));
        }
        let seen = state.get(&order.order_id).copied().unwrap_or(0);
        state.put(&order.order_id, seen + 1);
        self.inner.handle(input, out).await
    }

    async fn on_timer(
        &mut self,
        _: &Timer,
        _: &mut State<'_, u64>,
        _: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn reader(bootstrap: &str, topic: &str, isolation: &str) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("eos-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

async fn setup(
    mock: &MockCluster<'_, DefaultProducerContext>,
    label: &str,
) -> (Topology, String, String) {
    let t = topology().isolated("shipping", &unique(label)).unwrap();
    let (input, output, dlq) = shipping_names(&t);
    // The mock cluster has no CreateTopics with configs: create the changelog here too.
    let changelog = format!(
        "{}-{}-changelog",
        t.processor("shipping").unwrap().0.group,
        CountingShipping::STORE
    );
    for topic in [&input, &output, &dlq, &changelog] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    (t, input, output)
}

async fn run(
    t: &Topology,
    bootstrap: &str,
    commit_interval: Duration,
    token: CancellationToken,
) -> Result<(), runtime::RuntimeError> {
    let (spec, params) = t.processor("shipping").unwrap();
    let ProcessorParams::Shipping(params) = params else {
        panic!("the shipping processor has shipping parameters")
    };
    let mut stack = env();
    stack.bootstrap_servers = bootstrap.to_string();
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, stack).unwrap();
    config.guarantee = Guarantee::ExactlyOnce;
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.commit_interval = commit_interval;
    config.state_dir = tempfile::tempdir().unwrap().keep();
    let processor = CountingShipping {
        inner: shipping::Shipping::from_spec(params.clone(), spec).unwrap(),
    };
    runtime::run_stateful(config, t, processor, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_transactions_are_visible_once_and_a_failure_aborts_the_open_one() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let (t, input, output) = setup(&mock, "eos").await;
    let codec = codec_for(&t, &input).await;
    let mut generator = OrderGenerator::new("eos", 5, 100);
    let orders: Vec<OrderPlaced> = (0..50).map(|_| generator.next_order(1)).collect();
    let want: usize = orders.iter().map(|o| 2 * shipments_of(o)).sum();
    let records = orders
        .iter()
        .map(|o| (o.order_id.clone(), codec.encode(o).unwrap()));
    produce_all(&producer(&bootstrap).unwrap(), &input, records)
        .await
        .unwrap();

    // Committed: everything visible exactly once to read_committed readers.
    let token = CancellationToken::new();
    let (t2, b2, stop) = (t.clone(), bootstrap.clone(), token.clone());
    let task = tokio::spawn(async move { run(&t2, &b2, Duration::from_millis(200), stop).await });
    let committed = reader(&bootstrap, &output, "read_committed");
    let seen = drain(&committed, want, Duration::from_secs(30)).await;
    token.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        seen.len(),
        want,
        "every output of the committed transactions"
    );
    assert!(
        drain(&committed, 1, Duration::from_secs(2))
            .await
            .is_empty(),
        "and nothing twice"
    );

    // Aborted: more orders, then a poison order in the same (long) transaction.
    let mut more: Vec<OrderPlaced> = (0..20).map(|_| generator.next_order(1)).collect();
    let mut poison = generator.next_order(1);
    poison.user_id = "poison".into();
    more.push(poison);
    let extra: usize = more[..20].iter().map(|o| 2 * shipments_of(o)).sum();
    let records = more
        .iter()
        .map(|o| (o.order_id.clone(), codec.encode(o).unwrap()));
    produce_all(&producer(&bootstrap).unwrap(), &input, records)
        .await
        .unwrap();
    let failed = run(
        &t,
        &bootstrap,
        Duration::from_secs(60),
        CancellationToken::new(),
    )
    .await;
    assert!(failed.is_err(), "the poison order stops the processor");

    // Whatever of its outputs reached the log (abort purges what was still queued, so the
    // count varies) sits in an aborted transaction. librdkafka 2.12's mock broker does not
    // filter aborted records for read_committed fetches (upstream added aborted-range
    // tracking to the mock in 2026), so this is reported, not asserted; on Apache Kafka a
    // read_committed reader skips them.
    let uncommitted = reader(&bootstrap, &output, "read_uncommitted");
    let everything = drain(&uncommitted, want + extra, Duration::from_secs(10)).await;
    println!(
        "mock cluster: {} committed outputs, {} written in the aborted transaction",
        want,
        everything.len().saturating_sub(want)
    );
}
