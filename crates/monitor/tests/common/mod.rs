//! What the monitor's integration tests share: a private broker (the cached nisshi build:
//! `NISSHI_BIN`, `$STOREFLEET_CACHE` or `~/.cache/storefleet`; see
//! scripts/install-broker.sh; a missing binary fails the test with that message), topics,
//! a producer with explicit record timestamps, a consumer that is a real group member, and
//! a monitor served on port 0.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monitor::{GroupDetail, MonitorConfig, Overview};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use topology::Topology;

/// A private broker for one test (memory engine; `MONITOR_TEST_ENGINE=sqlite` runs the tests
/// on the stack's storage engine instead).
pub struct Broker {
    inner: stack::PrivateBroker,
    pub bootstrap: String,
}

impl Broker {
    pub async fn start() -> Self {
        let storage = match std::env::var("MONITOR_TEST_ENGINE").as_deref() {
            Ok("sqlite") => stack::SQLITE_STORAGE,
            _ => "memory://nisshi/",
        };
        let inner = stack::PrivateBroker::start(storage)
            .await
            .expect("a private broker");
        let bootstrap = inner.bootstrap.clone();
        Self { inner, bootstrap }
    }

    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        for result in admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .unwrap()
        {
            result.expect("topic created");
        }
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap()
    }
}

pub use runtime::now_ms;

/// Writes `count` records to one partition, record i stamped `timestamp(i)` (Unix ms).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    count: usize,
    timestamp: impl Fn(usize) -> i64,
) {
    let sends: Vec<_> = (0..count)
        .map(|i| {
            let key = format!("k{i}");
            let payload = format!("record {i}");
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key(&key)
                        .payload(&payload)
                        .timestamp(timestamp(i)),
                )
                .map_err(|(error, _)| error)
        })
        .collect();
    for send in sends {
        send.expect("queued")
            .await
            .expect("delivered")
            .expect("acknowledged");
    }
}

/// A topology (validated like the real file) from YAML, schemas from the repository.
pub fn topology(yaml: &str) -> Topology {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    topology::load_str(yaml, &schemas).expect("valid test topology")
}

/// The repository's topology.yaml.
pub fn fleet_topology() -> Topology {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    topology::load(&root.join("topology.yaml")).expect("valid topology.yaml")
}

pub fn config(bootstrap: &str, interval: Duration, window: usize) -> MonitorConfig {
    let stack = runtime::StackEnv {
        bootstrap_servers: bootstrap.to_string(),
        ..runtime::StackEnv::from_env().expect("a valid environment")
    };
    let mut config = MonitorConfig::new("127.0.0.1:0".parse().unwrap(), &stack);
    config.interval = interval;
    config.window = window;
    config.admin_host = [127, 0, 0, 1].into();
    config.probe_timeout = Duration::from_millis(500);
    config
}

/// A monitor serving on a free port until dropped.
pub struct Monitor {
    pub url: String,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Monitor {
    pub async fn start(config: MonitorConfig, topology: Topology) -> Self {
        let shutdown = CancellationToken::new();
        let (ready, bound) = tokio::sync::oneshot::channel();
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = monitor::serve(config, topology, token, Some(ready)).await {
                panic!("monitor failed: {e:#}");
            }
        });
        let address = tokio::time::timeout(Duration::from_secs(30), bound)
            .await
            .expect("monitor bound in time")
            .expect("monitor bound");
        Self {
            url: format!("http://{address}"),
            shutdown,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("monitor answers")
    }

    pub async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        let response = self.get(path).await;
        if !response.status().is_success() {
            return None;
        }
        Some(response.json().await.expect("JSON answer"))
    }

    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.expect("text answer")
    }

    pub async fn overview(&self) -> Option<Overview> {
        self.json("/api/overview").await
    }

    pub async fn group(&self, group: &str) -> Option<GroupDetail> {
        self.json(&format!("/api/groups/{group}")).await
    }

    /// Polls the group until `accept` holds; fails with the last detail after `timeout`.
    pub async fn wait_group(
        &self,
        group: &str,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&GroupDetail) -> bool,
    ) -> GroupDetail {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < timeout {
            if let Some(detail) = self.group(group).await {
                if accept(&detail) {
                    return detail;
                }
                last = Some(detail);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: not within {timeout:?}; last: {last:#?}");
    }

    pub async fn wait_overview(
        &self,
        what: &str,
        timeout: Duration,
        accept: impl Fn(&Overview) -> bool,
    ) -> Overview {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < timeout {
            if let Some(overview) = self.overview().await {
                if accept(&overview) {
                    return overview;
                }
                last = Some(overview);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: not within {timeout:?}; last: {last:#?}");
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A consumer that is a member of `group` (subscribed, joined), whose committed offsets the
/// test sets explicitly.
pub struct Member {
    pub consumer: BaseConsumer,
    topic: String,
}

impl Member {
    pub async fn join(bootstrap: &str, group: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let consumer = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            while consumer.assignment().unwrap().count() == 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no assignment within 30 s"
                );
                let _ = consumer.poll(Duration::from_millis(100));
            }
            consumer
        })
        .await
        .unwrap();
        Self {
            consumer,
            topic: topic.to_string(),
        }
    }

    /// Commits `offsets` (partition, offset) for the member's topic.
    pub fn commit(&self, offsets: &[(i32, i64)]) {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .unwrap();
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .expect("commit accepted");
    }
}

/// A real consuming loop on its own thread: polls, and commits what it read every 100 ms,
/// until paused (partitions paused: nothing fetched, nothing committed) or stopped.
pub struct ConsumerLoop {
    pub paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsumerLoop {
    pub fn start(member: Member) -> Self {
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (paused.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let consumer = member.consumer;
            let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
            let mut is_paused = false;
            let mut last_commit = Instant::now();
            while !s.load(Ordering::SeqCst) {
                let want = p.load(Ordering::SeqCst);
                if want != is_paused {
                    let assignment = consumer.assignment().unwrap();
                    if want {
                        consumer.pause(&assignment).unwrap();
                    } else {
                        consumer.resume(&assignment).unwrap();
                    }
                    is_paused = want;
                }
                // A record delivered just as the pause came is still consumed (committed
                // on resume): none is skipped.
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                }
                if !is_paused
                    && !next.is_empty()
                    && last_commit.elapsed() > Duration::from_millis(100)
                {
                    let mut list = TopicPartitionList::new();
                    for ((topic, partition), offset) in std::mem::take(&mut next) {
                        list.add_partition_offset(&topic, partition, Offset::Offset(offset))
                            .unwrap();
                    }
                    consumer.commit(&list, CommitMode::Sync).expect("commit");
                    last_commit = Instant::now();
                }
            }
        });
        Self {
            paused,
            stop,
            thread: Some(thread),
        }
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for ConsumerLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A suffix unique to this test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", now_ms() % 100_000_000)
}

/// A processor instance's real admin server (the runtime's) on `port`, RUNNING, until
/// `shutdown`; its metrics, for the test to move.
pub async fn live_admin(
    name: &str,
    instance: u16,
    port: u16,
    shutdown: &CancellationToken,
) -> runtime::Metrics {
    let metrics = runtime::Metrics::new(name, instance);
    let phase = runtime::Phase::default();
    phase.set(runtime::Phase::RUNNING);
    runtime::serve_admin(
        ([127, 0, 0, 1], port).into(),
        name.into(),
        metrics.clone(),
        phase,
        None,
        &tasks::Tasks::new(shutdown.clone()),
    )
    .await
    .unwrap();
    metrics
}
