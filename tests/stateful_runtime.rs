//! The stateful runtime on the real broker: state survives `kill -9`, moves to the survivor
//! when one of two instances dies, equals a sequential replay of the input, and durable
//! timers fire exactly once across a crash; a `kill -9` restart under load restores from the
//! last periodic snapshot plus the changelog's tail.
//!
//! The processor under test runs in a child process: this test binary re-executed with
//! `STATEFUL_CHILD` set (the `child_member` entry point), so it can be SIGKILLed.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use events::orders::OrderPlaced;
use loadgen::kafka::{produce_all, producer};
use loadgen::orders::OrderGenerator;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runtime::state::{State, Timer};
use runtime::{HandlerError, Input, Outputs, StatefulProcessor};
use serde::{Deserialize, Serialize};

/// Per key: how many inputs, their total, and how often its timer fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    count: u64,
    sum: i64,
    fired: u32,
}

struct Counter {
    timer_delay_ms: i64,
}

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
        if tally.count == 0 {
            let at = input.timestamp_ms.unwrap_or(0) + self.timer_delay_ms;
            state.set_timer(key, at, "first-seen");
        }
        tally.count += 1;
        tally.sum += order.total_minor;
        state.put(key, tally);
        Ok(())
    }

    async fn on_timer(
        &mut self,
        timer: &Timer,
        state: &mut State<'_, Tally>,
        _out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let mut tally = state.get(&timer.key).cloned().unwrap_or_default();
        tally.fired += 1;
        state.put(&timer.key, tally);
        Ok(())
    }
}

/// Child mode: run the counter on the topology named by the environment until SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the child processes the other tests start"]
async fn child_member() {
    let Ok(file) = std::env::var("STATEFUL_CHILD") else {
        return;
    };
    let instance: u16 = std::env::var("STATEFUL_INSTANCE").unwrap().parse().unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let t = topology::load(std::path::Path::new(&file)).unwrap();
    let (spec, _) = t.processor("shipping").unwrap();
    let mut config = runtime::RuntimeConfig::from_spec(spec, instance, env()).unwrap();
    if let Ok(every) = std::env::var("STATEFUL_SNAPSHOT_RECORDS") {
        config.snapshot_records = every.parse().unwrap();
    }
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        stop.cancel();
    });
    runtime::run_stateful(
        config,
        &t,
        Counter {
            timer_delay_ms: 3_000,
        },
        token,
    )
    .await
    .unwrap();
}

struct Scenario {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    state_dir: tempfile::TempDir,
    port: u16,
    expected: HashMap<String, Tally>,
}

async fn scenario(label: &str, records: usize, keys: usize) -> Scenario {
    let mut t = isolated_shipping(label, 4).await;
    t.processors[0].0.instances = 2;
    let port = t.processors[0].0.admin_port;
    let (input, _, _) = shipping_names(&t);
    let dir = tempfile::tempdir().unwrap();
    let file = write_topology(&t, dir.path());
    let codec = codec_for(&t, &input).await;
    let mut generator = OrderGenerator::new(label, 11, 100);
    let mut expected: HashMap<String, Tally> = HashMap::new();
    let mut batch = Vec::new();
    for i in 0..records {
        let order = generator.next_order(1);
        let key = format!("k{:03}", i % keys);
        let tally = expected.entry(key.clone()).or_default();
        tally.count += 1;
        tally.sum += order.total_minor;
        tally.fired = 1;
        batch.push((key, codec.encode(&order).unwrap()));
    }
    produce_all(&producer(&env().bootstrap_servers).unwrap(), &input, batch)
        .await
        .unwrap();
    Scenario {
        file,
        _dir: dir,
        state_dir: tempfile::tempdir().unwrap(),
        port,
        expected,
    }
}

fn start(s: &Scenario, instance: u16) -> tokio::process::Child {
    start_with(s, instance, &[])
}

fn start_with(s: &Scenario, instance: u16, extra: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .envs(extra.iter().copied())
        .args(["--exact", "child_member", "--ignored", "--nocapture"])
        .env("STATEFUL_CHILD", &s.file)
        .env("STATEFUL_INSTANCE", instance.to_string())
        .env("STOREFLEET_BOOTSTRAP", env().bootstrap_servers)
        .env("STOREFLEET_REGISTRY", env().registry_url)
        .env("STOREFLEET_STATE_DIR", s.state_dir.path())
        .env(
            "RUST_LOG",
            std::env::var("CHILD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn query(port: u16, key: &str) -> Option<Tally> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/state/{key}"))
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    serde_json::from_value(body["value"].clone()).ok()
}

/// Polls the instances on `ports` until every key's state equals the expected one.
async fn wait_for_exact(
    s: &Scenario,
    ports: &[u16],
    within: Duration,
) -> HashMap<String, Option<Tally>> {
    let deadline = Instant::now() + within;
    loop {
        let mut seen = HashMap::new();
        for key in s.expected.keys() {
            let mut found = None;
            for port in ports {
                if let Some(t) = query(*port, key).await {
                    found = Some(t);
                    break;
                }
            }
            seen.insert(key.clone(), found);
        }
        let exact = s.expected.iter().all(|(k, v)| seen[k].as_ref() == Some(v));
        if exact || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until some instance on `ports` has state for `k000` (whichever owns its partition).
async fn wait_until_progress(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for port in ports {
            if query(*port, "k000").await.is_some() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no progress on ports {ports:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigkill(child: &tokio::process::Child) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
}

fn assert_exact(s: &Scenario, seen: &HashMap<String, Option<Tally>>) {
    let wrong: Vec<_> = s
        .expected
        .iter()
        .filter(|(k, v)| seen[*k].as_ref() != Some(*v))
        .map(|(k, v)| format!("{k}: expected {v:?}, got {:?}", seen[k]))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} keys differ from a sequential replay:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_kill_9_and_timers_fire_exactly_once() {
    let s = scenario("state-kill9", 6_000, 40).await;
    let mut first = start(&s, 0);
    wait_until_progress(&[s.port]).await;
    sigkill(&first);
    first.wait().await.unwrap();
    let mut second = start(&s, 0);
    let seen = wait_for_exact(&s, &[s.port], Duration::from_secs(90)).await;
    kill(Pid::from_raw(second.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    assert!(second.wait().await.unwrap().success());
    assert_exact(&s, &seen);

    // A clean restart restores from the snapshot the clean stop wrote: same state.
    let mut third = start(&s, 0);
    let seen = wait_for_exact(&s, &[s.port], Duration::from_secs(60)).await;
    kill(Pid::from_raw(third.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    third.wait().await.unwrap();
    assert_exact(&s, &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_a_killed_ones_partitions_and_state_move_to_the_survivor() {
    let s = scenario("state-scale", 6_000, 40).await;
    let mut a = start(&s, 0);
    let mut b = start(&s, 1);
    wait_until_progress(&[s.port, s.port + 1]).await;
    sigkill(&a);
    a.wait().await.unwrap();
    // The survivor (instance 1, port + 1) ends up owning every partition and every key.
    let seen = wait_for_exact(&s, &[s.port + 1], Duration::from_secs(120)).await;
    kill(Pid::from_raw(b.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    b.wait().await.unwrap();
    assert_exact(&s, &seen);
}

/// One of the instance's counters on its `/metrics`.
async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The changelog offsets the snapshots in `dir` cover, per file.
fn snapshot_coverage(dir: &std::path::Path) -> Vec<i64> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        if entry.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&entry).unwrap();
            let file: serde_json::Value = serde_json::from_str(&text).unwrap();
            out.push(file["changelog_next"].as_i64().unwrap());
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_under_load_restarts_from_a_periodic_snapshot_and_the_tail() {
    // A first half of the input, snapshots every 500 changelog records.
    let mut s = scenario("state-snap", 8_000, 2_000).await;
    let every = [("STATEFUL_SNAPSHOT_RECORDS", "500")];
    let mut first = start_with(&s, 0, &every);
    let deadline = Instant::now() + Duration::from_secs(90);
    while snapshot_coverage(s.state_dir.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no periodic snapshot written while the input was handled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(metric(s.port, "storefleet_snapshots_total").await >= 1.0);

    // The second half arrives while the instance runs; it is killed in the middle of it.
    let t = topology::load(&s.file).unwrap();
    let (input, _, _) = shipping_names(&t);
    let codec = codec_for(&t, &input).await;
    let mut generator = OrderGenerator::new("state-snap-2", 12, 100);
    let mut batch = Vec::new();
    for i in 0..8_000 {
        let order = generator.next_order(1);
        let key = format!("k{:03}", i % 2_000);
        let tally = s.expected.get_mut(&key).unwrap();
        tally.count += 1;
        tally.sum += order.total_minor;
        batch.push((key, codec.encode(&order).unwrap()));
    }
    let load = tokio::spawn(async move {
        let kafka = producer(&env().bootstrap_servers).unwrap();
        for chunk in batch.chunks(500) {
            produce_all(&kafka, &input, chunk.to_vec()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let handled_before_kill = metric(s.port, "storefleet_records_in_total").await;
    sigkill(&first);
    first.wait().await.unwrap();
    assert!(!load.is_finished(), "the kill happened mid-load");
    let covered: i64 = snapshot_coverage(s.state_dir.path()).into_iter().sum();
    assert!(covered > 0, "the snapshots cover part of the changelog");

    let mut second = start(&s, 0);
    load.await.unwrap();
    let seen = wait_for_exact(&s, &[s.port], Duration::from_secs(120)).await;
    assert_exact(&s, &seen);
    // The restart read the snapshots and only the changelog after them.
    let restored = metric(s.port, "storefleet_restored_records_total").await;
    let written = changelog_records(&t).await;
    assert!(
        restored as i64 <= written - covered,
        "restored {restored} changelog records; the log had {written}, the snapshots covered {covered}"
    );
    println!(
        "handled {handled_before_kill} records before the kill; the restart restored {restored} changelog records on top of snapshots covering {covered} of {written}"
    );
    kill(Pid::from_raw(second.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    second.wait().await.unwrap();
}

/// Records in the counter's changelog (sum of its partitions' high watermarks).
async fn changelog_records(t: &topology::Topology) -> i64 {
    let (spec, _) = t.processor("shipping").unwrap();
    let topic = format!("{}-tally-changelog", spec.group);
    let bootstrap = env().bootstrap_servers;
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        (0..4)
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .sum()
    })
    .await
    .unwrap()
}
