//! The runtime's retry path on the real broker: a transient failure is retried with backoff
//! and then succeeds; one that outlives its retry budget is dead-lettered as
//! RETRIES_EXHAUSTED, and the records behind it flow on.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::orders::{shipments_of, OrderGenerator};
use runtime::{
    DeadLetter, DeadLetterErrorKind, HandlerError, Input, Outputs, Processor, RetryPolicy,
};
use tokio_util::sync::CancellationToken;
use topology::ProcessorParams;

/// Shipping, except that each record fails transiently `fail_times[order]` times first.
struct Flaky {
    inner: shipping::Shipping,
    fail_times: HashMap<String, u32>,
    attempts: HashMap<i64, u32>,
}

impl Processor for Flaky {
    async fn handle(&mut self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let attempt = self.attempts.entry(input.offset).or_default();
        *attempt += 1;
        let budget = input
            .key_str()
            .and_then(|k| self.fail_times.get(k))
            .copied()
            .unwrap_or(0);
        if *attempt <= budget {
            return Err(HandlerError::transient(
                "calling the dependency",
                format!("dependency down (attempt {attempt})"),
            ));
        }
        self.inner.handle(input, out).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_then_dead_lettered_when_the_budget_runs_out() {
    let t = isolated_shipping("retries", 1).await;
    let (input, output, dead_letters) = shipping_names(&t);
    let order_codec = codec_for(&t, &input).await;
    let dlq_codec = codec_for(&t, &dead_letters).await;
    let mut generator = OrderGenerator::new("retries", 4, 50);
    let orders: Vec<_> = (0..3).map(|_| generator.next_order(9)).collect();
    // Order 0 recovers on its third attempt; order 1 never does; order 2 is healthy.
    let fail_times = HashMap::from([
        (orders[0].order_id.clone(), 2),
        (orders[1].order_id.clone(), u32::MAX),
    ]);
    let records = orders
        .iter()
        .map(|o| (o.order_id.clone(), order_codec.encode(o).unwrap()))
        .collect::<Vec<_>>();
    produce_all(
        &producer(&env().bootstrap_servers).unwrap(),
        &input,
        records,
    )
    .await
    .unwrap();

    let (spec, params) = t.processor("shipping").unwrap();
    let ProcessorParams::Shipping(params) = params else {
        panic!("the shipping processor has shipping parameters")
    };
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env()).unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    let processor = Flaky {
        inner: shipping::Shipping::from_spec(params.clone(), spec).unwrap(),
        fail_times,
        attempts: HashMap::new(),
    };
    let token = CancellationToken::new();
    let (run_token, topology) = (token.clone(), t.clone());
    let task =
        tokio::spawn(async move { runtime::run(config, &topology, processor, run_token).await });

    let want = 2 * (shipments_of(&orders[0]) + shipments_of(&orders[2]));
    let outputs = drain(
        &reader(&env().bootstrap_servers, &output, &unique("retries-out")).unwrap(),
        want,
        Duration::from_secs(30),
    )
    .await;
    let letters = drain(
        &reader(
            &env().bootstrap_servers,
            &dead_letters,
            &unique("retries-dlq"),
        )
        .unwrap(),
        1,
        Duration::from_secs(30),
    )
    .await;
    token.cancel();
    task.await.unwrap().unwrap();

    let shipped: std::collections::HashSet<_> =
        outputs.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(outputs.len(), want);
    assert!(
        shipped.contains(orders[0].order_id.as_bytes()),
        "recovered after retries"
    );
    assert!(
        shipped.contains(orders[2].order_id.as_bytes()),
        "the record behind the failing one flowed"
    );
    assert!(!shipped.contains(orders[1].order_id.as_bytes()));
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = codec::from_value(
        &dlq_codec
            .decode(letters[0].payload.as_ref().unwrap())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(letter.error_kind, DeadLetterErrorKind::RetriesExhausted);
    assert_eq!(letter.attempts, 4);
    assert_eq!(
        letter.original_key.as_deref(),
        Some(orders[1].order_id.as_bytes())
    );
    assert!(
        letter.reason.contains("dependency down"),
        "{}",
        letter.reason
    );
}
