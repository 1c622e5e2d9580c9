//! Benchmarks of keyed state (issue 4), printed as figures, never asserted as timings.
//!
//! - `fleet bench state-restore`: how long one partition's state of N keys takes to come back
//!   from its changelog alone, and from a local snapshot plus the changelog's tail. The
//!   changelog is written directly, record for record as the runtime writes it, into a
//!   private broker; the restore is the runtime's own ([`runtime::restore_partition`]), and
//!   the restored state is checked against the model it was written from.
//! - [`stateful_phase`]: the stateful part of `fleet bench runtime`, a counter processor run
//!   by [`runtime::run_stateful`] on the shipping benchmark's preloaded input.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use events::orders::OrderPlaced;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use runtime::state::{PartitionStore, State, Timer};
use runtime::{HandlerError, Input, Outputs, StatefulProcessor};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorSpec, Topology};

use crate::error::{check, missing};
use crate::harness::{start_private_broker, Engine};
use crate::{Error, Result};

/// The input topic the restore benchmark's applied offsets name.
const INPUT: &str = "orders.order-placed.v1";

/// Per key: how many inputs and the sum of their `total_minor` (as `Counter` in
/// tests/stateful_runtime.rs, without the timer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub sum: i64,
}

/// Counts the orders of each record key and sums their totals; no timers, no outputs.
pub struct Counter;

impl StatefulProcessor for Counter {
    type Value = Tally;
    const STORE: &'static str = "tally";

    async fn handle(
        &mut self,
        input: &Input,
        state: &mut State<'_, Tally>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let order: OrderPlaced = input.decode()?;
        let key = input
            .key_str()
            .ok_or_else(|| HandlerError::invalid("no key"))?;
        let mut tally = state.get(key).cloned().unwrap_or_default();
        tally.count += 1;
        tally.sum += order.total_minor;
        state.put(key, tally);
        Ok(())
    }

    async fn on_timer(
        &mut self,
        _timer: &Timer,
        _state: &mut State<'_, Tally>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn key_of(i: u64) -> String {
    format!("k{i:07}")
}

/// Writes one changelog batch per `(input offset, key, value)`, exactly as the runtime writes a
/// batch holding one changed key: the entry `v/<key>` with the value and the applied offset of
/// the input. Returns the records written once all are acknowledged.
async fn write_batches(
    producer: &FutureProducer,
    topic: &str,
    batches: impl Iterator<Item = (u64, String, Tally)>,
) -> Result<u64> {
    let mut deliveries = FuturesUnordered::new();
    let mut written = 0;
    let mut applied = HashMap::new();
    for (offset, key, value) in batches {
        applied.insert(INPUT.to_string(), i64::try_from(offset)?);
        let record = runtime::state::changelog_entry(
            &key,
            Some(&value),
            None,
            Some(&applied),
            &format!("bench:{offset}"),
            0,
            1,
        )?;
        let payload = record.value.unwrap_or_default();
        loop {
            let future = FutureRecord::to(topic)
                .partition(0)
                .key(&record.key)
                .payload(&payload);
            match producer.send_result(future) {
                Ok(d) => {
                    deliveries.push(d);
                    break;
                }
                Err((e, _)) => {
                    // Queue full: make room by awaiting a delivery.
                    let Some(result) = deliveries.next().await else {
                        return Err(Error::Produce {
                            topic: topic.to_string(),
                            source: e,
                        });
                    };
                    result
                        .map_err(Error::DeliveryCanceled)?
                        .map_err(|(e, _)| e)?;
                }
            }
        }
        written += 1;
    }
    while let Some(result) = deliveries.next().await {
        result
            .map_err(Error::DeliveryCanceled)?
            .map_err(|(e, _)| e)?;
    }
    Ok(written)
}

/// The runtime's restore of changelog partition 0 onto `base`, on a blocking thread.
async fn restore(
    bootstrap: &str,
    topic: &str,
    base: PartitionStore<Tally>,
) -> Result<runtime::Restored<Tally>> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    Ok(
        tokio::task::spawn_blocking(move || runtime::restore_partition(&b, &t, 0, move |_| base))
            .await??,
    )
}

async fn watermarks(bootstrap: &str, topic: &str) -> Result<(i64, i64)> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || -> Result<(i64, i64)> {
        let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).create()?;
        Ok(consumer.fetch_watermarks(&t, 0, Duration::from_secs(10))?)
    })
    .await?
}

/// Compares the restored store with the model: the key count, the applied marker, every
/// key in `must` and an even spread of about 1,000 others. Returns the keys compared.
fn verify(
    store: &PartitionStore<Tally>,
    model: &[Tally],
    last_offset: u64,
    must: &[u64],
) -> Result<usize> {
    let n = model.len() as u64;
    check!(
        store.len() as u64 == n,
        "restored {} keys, wrote {n}",
        store.len()
    );
    check!(
        store.already_applied(INPUT, i64::try_from(last_offset)?)
            && !store.already_applied(INPUT, i64::try_from(last_offset + 1)?),
        "the applied marker is not {last_offset}"
    );
    let step = (n / 1_000).max(1);
    let mut sample: Vec<u64> = (0..n).step_by(step as usize).collect();
    sample.push(n - 1);
    sample.extend_from_slice(must);
    sample.sort_unstable();
    sample.dedup();
    for i in &sample {
        let key = key_of(*i);
        let want = &model[*i as usize];
        check!(
            store.get(&key) == Some(want),
            "key {key}: restored {:?}, wrote {want:?}",
            store.get(&key)
        );
    }
    Ok(sample.len())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// `fleet bench state-restore`.
#[derive(clap::Args)]
pub struct Args {
    /// Keys in the state (one changelog batch each).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Batches appended after the snapshot.
    #[arg(long, default_value_t = 10_000)]
    tail: u64,
    /// Storage engine of the private broker.
    #[arg(long, value_enum, default_value_t = Engine::Memory)]
    engine: Engine,
}

/// `fleet bench state-restore`.
pub async fn state_restore(args: Args) -> Result<()> {
    let Args { keys, tail, engine } = args;
    if keys == 0 {
        return Err(Error::Invalid("--keys must be at least 1".into()));
    }
    let tag = engine.label();
    let broker = start_private_broker(engine).await?;
    let bootstrap = broker.bootstrap.clone();
    let topic = format!("bench-state-{}-tally-changelog", runtime::now_ms());
    runtime::ensure_changelog(&bootstrap, &topic, 1).await?;
    println!(
        "workload: {keys} keys, one changelog record each (value and applied offset), then {tail} \
         tail batches; 1-partition compacted changelog on a private broker {bootstrap} ({})",
        engine.label()
    );
    let producer: FutureProducer = runtime::producer_config(&bootstrap, "bench-state")
        .set("linger.ms", "5")
        .create()
        .map_err(|source| Error::KafkaStep {
            what: "creating producer",
            source,
        })?;

    // 1. The changelog of N handled inputs, one new key each.
    let mut model: Vec<Tally> = (0..keys)
        .map(|i| -> Result<Tally> {
            Ok(Tally {
                count: 1 + i % 5,
                sum: i64::try_from(i % 100_000)? * 37,
            })
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let written = write_batches(
        &producer,
        &topic,
        (0..keys).map(|i| (i, key_of(i), model[i as usize].clone())),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "[{tag}] changelog write:        {written} records ({keys} batches) in {secs:.2}s: \
         {:.0} records/s",
        written as f64 / secs.max(1e-9)
    );

    // 2. A full restore from the changelog alone: a first start without a snapshot.
    let (low, high) = watermarks(&bootstrap, &topic).await?;
    let started = Instant::now();
    let full = restore(&bootstrap, &topic, PartitionStore::default()).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "[{tag}] restore from changelog: {} keys from {} changelog records (offsets {low}..{high}) \
         in {secs:.2}s: {:.0} records/s, {:.0} keys/s",
        full.store.len(),
        full.records,
        full.records as f64 / secs.max(1e-9),
        full.store.len() as f64 / secs.max(1e-9)
    );
    let checked = verify(&full.store, &model, keys - 1, &[])?;
    println!(
        "[{tag}] verified: {} keys restored == {keys} written, {checked} sampled values equal, \
         applied marker {}",
        full.store.len(),
        keys - 1
    );

    // 3. The snapshot a clean stop writes (JSON, fsynced, renamed into place).
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench").join("tally").join("p0.json");
    let started = Instant::now();
    let store = full.store;
    let path_for_write = path.clone();
    let store = tokio::task::spawn_blocking(move || {
        runtime::state::write_snapshot(&path_for_write, &store).map(|()| store)
    })
    .await??;
    let secs = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path)?.len();
    println!(
        "[{tag}] snapshot write:         {:.1} MB for {} keys in {secs:.2}s ({:.0} MB/s)",
        mb(size),
        store.len(),
        mb(size) / secs.max(1e-9)
    );
    drop(store);

    // 4. The tail written after the snapshot: updates of existing keys.
    let touched: Vec<u64> = (0..tail).map(|j| (j * 104_729 + 7) % keys).collect();
    let mut tail_batches = Vec::with_capacity(touched.len());
    for (j, i) in touched.iter().enumerate() {
        let t = &mut model[*i as usize];
        t.count += 1;
        t.sum += i64::try_from(j % 1_000)? + 1;
        tail_batches.push((keys + j as u64, key_of(*i), t.clone()));
    }
    let tail_written = write_batches(&producer, &topic, tail_batches.into_iter()).await?;

    // 5. A restart: changelog end, snapshot, then the tail only.
    let started = Instant::now();
    let (_, end) = watermarks(&bootstrap, &topic).await?;
    let end_secs = started.elapsed().as_secs_f64();
    let read_started = Instant::now();
    let snapshot_path = path.clone();
    let base = tokio::task::spawn_blocking(move || {
        runtime::state::read_snapshot::<Tally>(&snapshot_path, end)
    })
    .await?
    .ok_or(Error::SnapshotRefused)?;
    let read_secs = read_started.elapsed().as_secs_f64();
    let from = base.changelog_next;
    let tail_started = Instant::now();
    let restored = restore(&bootstrap, &topic, base).await?;
    let tail_secs = tail_started.elapsed().as_secs_f64();
    let total = started.elapsed().as_secs_f64();
    println!(
        "[{tag}] restore from snapshot + tail: {} keys in {total:.2}s total = changelog end \
         {end_secs:.3}s + snapshot read {read_secs:.2}s + tail {} records (offsets {from}..{end}, \
         {tail_written} written) in {tail_secs:.2}s ({:.0} tail records/s); {:.0} keys/s",
        restored.store.len(),
        restored.records,
        restored.records as f64 / tail_secs.max(1e-9),
        restored.store.len() as f64 / total.max(1e-9)
    );
    let checked = verify(&restored.store, &model, keys + tail - 1, &touched)?;
    println!(
        "[{tag}] verified: {} keys == {keys}, {checked} sampled values equal (every tail-updated \
         key included), applied marker {}",
        restored.store.len(),
        keys + tail - 1
    );
    check!(
        restored.records == tail_written,
        "the tail restore read {} records, {tail_written} were appended",
        restored.records
    );
    Ok(())
}

/// Where the stateful run stands, from the changelog's end offsets and the group's commits.
#[derive(Debug, Default)]
struct Progress {
    /// First time any changelog record was acknowledged.
    first_write: Option<Duration>,
    written: i64,
    all_committed: Option<Duration>,
    committed: i64,
    /// The last error of a watermark query, if any.
    error: Option<String>,
}

/// Polls (every 20 ms, on this blocking thread) the changelog's high watermarks and the
/// group's committed input offsets until `records` inputs are committed (a stateful record is
/// committed only once the changelog batch holding its state is acknowledged). Gives up after
/// 60 s without progress.
fn watch(
    bootstrap: &str,
    changelog: &str,
    group: &str,
    input: &str,
    partitions: i32,
    records: i64,
    started: Instant,
) -> Result<Progress> {
    let ends: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let commits: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut inputs = TopicPartitionList::new();
    for p in 0..partitions {
        inputs.add_partition(input, p);
    }
    let mut progress = Progress::default();
    let mut last_change = Instant::now();
    loop {
        let now = started.elapsed();
        let mut written = 0;
        for p in 0..partitions {
            match ends.fetch_watermarks(changelog, p, Duration::from_secs(5)) {
                Ok((_, high)) => written += high,
                Err(e) => progress.error = Some(format!("watermarks of {changelog}/{p}: {e}")),
            }
        }
        if written > 0 && progress.first_write.is_none() {
            progress.first_write = Some(now);
        }
        let tpl = commits.committed_offsets(inputs.clone(), Duration::from_secs(5))?;
        let committed: i64 = tpl
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum();
        if committed > progress.committed || written > progress.written {
            last_change = Instant::now();
        }
        progress.written = written;
        progress.committed = committed;
        if committed >= records {
            progress.all_committed = Some(now);
            return Ok(progress);
        }
        if last_change.elapsed() > Duration::from_secs(60) {
            return Ok(progress);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn query(port: u16, key: &str) -> Result<Option<Tally>> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/state/{key}")).await?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let body: serde_json::Value = response.json().await?;
    Ok(serde_json::from_value(body["value"].clone()).ok())
}

/// The stateful phase of `fleet bench runtime`: [`Counter`] on the shipping benchmark's
/// preloaded input (`records` records), in a fresh consumer group of its own, one instance,
/// with its changelog (`<group>-tally-changelog`) on the same broker. Prints input records/s
/// to all committed and the changelog records written per input, then checks the commits
/// and sampled state.
pub async fn stateful_phase(
    topology: &Topology,
    spec: &ProcessorSpec,
    env: &runtime::StackEnv,
    partitions: i32,
    expected: &HashMap<String, Tally>,
) -> Result<()> {
    let records = expected.values().map(|t| t.count).sum::<u64>();
    let records = i64::try_from(records)?;
    let state_dir = tempfile::tempdir()?;
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env.clone())?;
    config.group = format!("{}.stateful", spec.group);
    config.outputs.clear();
    config.state_dir = state_dir.path().to_path_buf();
    let admin_port = stack::free_port()?;
    config.admin_addr = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let changelog = format!("{}-{}-changelog", config.group, Counter::STORE);
    // Created here as the runtime creates it (it finds it existing), so the watcher's
    // metadata never caches it as unknown.
    runtime::ensure_changelog(&env.bootstrap_servers, &changelog, partitions).await?;
    let group = config.group.clone();
    let input = spec
        .input("placed")
        .ok_or_else(missing("shipping reads no orders"))?
        .to_string();

    let token = CancellationToken::new();
    let topo = topology.clone();
    let run_token = token.clone();
    let started = Instant::now();
    // Owner: this phase, which cancels `token` and awaits the handle.
    let mut task =
        tokio::spawn(async move { runtime::run_stateful(config, &topo, Counter, run_token).await });
    let bootstrap = env.bootstrap_servers.clone();
    let watcher = {
        let changelog = changelog.clone();
        tokio::task::spawn_blocking(move || {
            watch(
                &bootstrap, &changelog, &group, &input, partitions, records, started,
            )
        })
    };
    let progress = tokio::select! {
        p = watcher => p??,
        result = &mut task => {
            result??;
            return Err(Error::Check(
                "the stateful processor stopped before consuming its input".into(),
            ));
        }
    };

    let (Some(first), Some(committed_at)) = (progress.first_write, progress.all_committed) else {
        token.cancel();
        let _ = task.await;
        return Err(Error::Check(format!(
            "stateful run stalled: {} changelog records written, {} of {records} inputs \
             committed (last query error: {})",
            progress.written,
            progress.committed,
            progress.error.as_deref().unwrap_or("none")
        )));
    };
    println!(
        "stateful     consume+process+changelog: {:>9.0} input records/s from start to all {records} \
         offsets committed ({:.2}s; first changelog write after {:.2}s incl. group join and \
         restore); {} changelog records = {:.2} per input (one per changed key per flush)",
        records as f64 / committed_at.as_secs_f64().max(1e-9),
        committed_at.as_secs_f64(),
        first.as_secs_f64(),
        progress.written,
        progress.written as f64 / records as f64
    );

    // Correctness: state as a sequential replay of the input gives, for a spread of keys.
    let mut keys: Vec<&String> = expected.keys().collect();
    keys.sort();
    let step = (keys.len() / 200).max(1);
    let mut checked = 0;
    for key in keys.iter().step_by(step) {
        let got = query(admin_port, key).await?;
        check!(
            got.as_ref() == expected.get(*key),
            "stateful state of {key}: {got:?}, expected {:?}",
            expected.get(*key)
        );
        checked += 1;
    }
    token.cancel();
    task.await??;
    println!(
        "stateful     verified: {} offsets committed, {checked} sampled keys equal a replay of \
         the input",
        progress.committed
    );
    Ok(())
}
