//! The bench's shoppers: checkout requests sent open loop (at a rate, never waiting for the
//! fleet) or all at once, and a reader that notes when each order settled (PLACED or
//! FAILED), from the saga's transitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codec::TopicCodec;
use events::checkout::{CheckoutLine, CheckoutRequested, SagaState, SagaTransition};
use loadgen::kafka::produce_all;
use rand::Rng;
use rdkafka::consumer::StreamConsumer;
use rdkafka::Message;

use crate::{Error, Result};

/// Products the bench stocks (plenty of each: no order fails for stock).
pub const PRODUCTS: usize = 500;

pub fn product(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A checkout of 1 to 3 distinct products (2 on average), 1 or 2 units each.
pub fn request(order: &str, rng: &mut rand::rngs::StdRng) -> CheckoutRequested {
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

/// How an order ended, and when the bench saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Placed,
    Failed,
}

/// Orders seen settled: id → (outcome, when the status was read).
pub type Settled = Arc<Mutex<HashMap<String, (Outcome, Instant)>>>;

/// Reads the transitions topic, as one of `tasks`, until their token is cancelled,
/// recording each order's first settled status.
pub fn spawn_reader(
    consumer: StreamConsumer,
    codec: TopicCodec,
    settled: Settled,
    tasks: &tasks::Tasks,
) {
    let stop = tasks.token().clone();
    tasks.spawn("bench status reader", async move {
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                received = consumer.recv() => received,
            };
            let Ok(message) = received else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let received = Instant::now();
            let Some(payload) = message.payload() else {
                continue;
            };
            let Ok(value) = codec.decode(payload).await else {
                continue;
            };
            let Ok(transition) = codec::from_value::<SagaTransition>(&value) else {
                continue;
            };
            let outcome = match transition.to_state {
                SagaState::Placed => Outcome::Placed,
                SagaState::Failed => Outcome::Failed,
                _ => continue,
            };
            if let Ok(mut map) = settled.lock() {
                map.entry(transition.order_id)
                    .or_insert((outcome, received));
            }
        }
    });
}

/// Where a phase's requests go and where their outcomes are seen.
pub struct Target<'a> {
    pub producer: &'a rdkafka::producer::FutureProducer,
    pub codec: &'a TopicCodec,
    pub topic: &'a str,
    pub settled: &'a Settled,
}

/// One phase's load: what was sent when, and what settled.
pub struct Phase {
    pub label: String,
    pub sent: HashMap<String, Instant>,
    pub send_secs: f64,
    /// Seconds from the phase's start until its last order settled.
    pub settle_secs: f64,
    pub placed: usize,
    pub failed: usize,
    pub unsettled: usize,
    /// Request sent → settled as PLACED, ms, sorted.
    pub latencies: Vec<i64>,
}

/// Sends `orders` at `rate` per second (0: all at once) without waiting for
/// acknowledgements, then waits until each has settled or `patience` passed without progress.
/// A progress line goes to stderr.
pub async fn run(
    label: &str,
    target: &Target<'_>,
    orders: &[CheckoutRequested],
    rate: u64,
    patience: Duration,
) -> Result<Phase> {
    let Target {
        producer,
        codec,
        topic,
        settled,
    } = *target;
    let started = Instant::now();
    let mut sent: HashMap<String, Instant> = HashMap::with_capacity(orders.len());
    let mut in_flight = Vec::new();
    let chunk = if rate == 0 {
        1_000
    } else {
        (rate as usize / 100).max(1)
    };
    for (i, batch) in orders.chunks(chunk).enumerate() {
        if rate > 0 {
            let due = started + Duration::from_secs_f64((i * chunk) as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let now = Instant::now();
        let records = batch
            .iter()
            .map(|r| Ok((r.order_id.clone(), codec.encode(r)?)))
            .collect::<Result<Vec<_>>>()?;
        let producer = producer.clone();
        let topic = topic.to_string();
        // Owner: this function, which awaits every handle below.
        in_flight.push(tokio::spawn(async move {
            produce_all(&producer, &topic, records).await
        }));
        for r in batch {
            sent.insert(r.order_id.clone(), now);
        }
        if i % 100 == 0 {
            progress(label, sent.len(), orders.len(), settled_of(settled, &sent));
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    for produced in in_flight {
        produced.await??;
    }
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    loop {
        let done = settled_of(settled, &sent);
        progress(label, sent.len(), orders.len(), done);
        if done == sent.len() {
            break;
        }
        if done > last_count {
            last_count = done;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > patience {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprint!("\r\x1b[2K");
    let map = settled.lock().map_err(|_| Error::Poisoned)?;
    let mut phase = Phase {
        label: label.to_string(),

        send_secs,
        settle_secs: 0.0,
        placed: 0,
        failed: 0,
        unsettled: 0,
        latencies: Vec::with_capacity(sent.len()),
        sent: HashMap::new(),
    };
    let mut last = started;
    for (order, at) in &sent {
        match map.get(order) {
            Some((outcome, when)) => {
                last = last.max(*when);
                match outcome {
                    Outcome::Placed => {
                        phase.placed += 1;
                        phase
                            .latencies
                            .push(when.saturating_duration_since(*at).as_millis() as i64);
                    }
                    Outcome::Failed => phase.failed += 1,
                }
            }
            None => phase.unsettled += 1,
        }
    }
    drop(map);
    phase.latencies.sort_unstable();
    phase.settle_secs = (last - started).as_secs_f64();
    phase.sent = sent;
    Ok(phase)
}

fn settled_of(settled: &Settled, sent: &HashMap<String, Instant>) -> usize {
    settled
        .lock()
        .map(|map| sent.keys().filter(|k| map.contains_key(*k)).count())
        .unwrap_or(0)
}

fn progress(label: &str, sent: usize, total: usize, settled: usize) {
    eprint!("\r\x1b[2K{label}: {sent}/{total} sent, {settled} settled");
}
