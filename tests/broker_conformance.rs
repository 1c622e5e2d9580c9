//! Broker conformance: the Kafka features the fleet relies on, checked through rdkafka (the
//! crate the fleet uses) against the local broker, nisshi 0.8.1 on its SQLite engine.
//!
//! Every test starts its own private broker on a free loopback port with its own temporary
//! data directory (never the stack's brokers), because some tests SIGKILL and restart it. The
//! broker is killed when its guard is dropped, also when a test fails. The tests take a shared
//! lock and run one at a time, so the printed throughput and timing figures are not skewed by
//! each other (the machines have 2 cores).
//!
//! Run: `cargo test --test broker_conformance -- --nocapture` (figures are printed). The broker
//! binary comes from `NISSHI_BIN`, else `$STOREFLEET_CACHE/nisshi-0.8.1/bin/nisshi` (default
//! cache `~/.cache/storefleet`; `bash scripts/install-broker.sh` builds it once). Results and
//! surprises are written up in `docs/broker-conformance.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// The engine every figure of this file is measured on.
const ENGINE: &str = "nisshi 0.8.1, sqlite engine";
/// Storage URL; the path is relative to the broker's working directory (its data directory).
const STORAGE: &str = stack::SQLITE_STORAGE;
/// Environment variable that turns `child_group_member` into the SIGKILL-able group member.
const CHILD_ENV: &str = "BROKER_CONFORMANCE_CHILD";
/// Session timeout of every group member: how long a SIGKILLed member keeps its partitions.
const SESSION_TIMEOUT_MS: &str = "6000";

/// One test at a time: the figures are measured on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// The private broker
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    stack::free_port().expect("bind a free loopback port")
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Makes a spawned process die with SIGKILL when the thread that spawned it exits, so that a
/// killed test binary leaves no broker or child member behind. Every spawn in this file runs on
/// the test's own thread, which lives as long as the test.
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// A private nisshi broker process on its own port and data directory. Dropping it SIGKILLs the
/// process and removes the directory (printing the end of the broker log if the test failed).
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    async fn start(name: &str) -> Result<Self> {
        let binary = stack::broker_binary();
        if !binary.exists() {
            bail!(
                "broker binary {} is missing: run scripts/install-broker.sh (or set NISSHI_BIN)",
                binary.display()
            );
        }
        let dir = std::env::temp_dir().join(unique(&format!("broker-conformance-{name}")));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut broker = Self {
            child: None,
            port: free_port(),
            dir,
        };
        broker.spawn().await?;
        Ok(broker)
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) on the same port and data directory and waits until the port
    /// accepts connections and a metadata request is answered. Returns how long that took.
    async fn spawn(&mut self) -> Result<Duration> {
        assert!(self.child.is_none(), "broker already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))?;
        let mut command = stack::broker_command(&stack::broker_binary(), self.port, STORAGE);
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        let started = Instant::now();
        self.child = Some(command.spawn().context("start nisshi")?);

        let address: SocketAddr = self.bootstrap().parse()?;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "broker exited during start-up ({status}): {}",
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("broker did not listen on {address} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let probe: BaseConsumer = client_config(&self.bootstrap()).create()?;
        loop {
            match probe.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(metadata) if !metadata.brokers().is_empty() => break,
                Ok(_) => {}
                Err(err) if started.elapsed() > Duration::from_secs(30) => {
                    bail!("broker metadata not answered within 30 s: {err}")
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(started.elapsed())
    }

    /// `kill -9` the broker and reap it.
    fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("broker not running")?;
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL)?;
        child.wait()?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.dir.join("broker.log")) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- broker log tail ({}) ---\n{}",
                self.dir.display(),
                self.log_tail()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    config
}

async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        result.map_err(|(topic, code)| anyhow!("create topic {topic}: {code}"))?;
    }
    // The topic is usable once metadata shows every partition.
    let probe: BaseConsumer = client_config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if partition_count(&probe, name)? == partitions as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {name} did not show {partitions} partitions in metadata");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<usize> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .unwrap_or(0))
}

/// What the delivery reports said: the (partition, offset) of record `id`, or an error.
struct DeliveryLog {
    positions: Mutex<Vec<Option<(i32, i64)>>>,
    failures: Mutex<Vec<String>>,
    /// Time since the start at which each further fifth of the records was acknowledged, to
    /// show whether the rate holds up as the topic grows.
    started: Instant,
    acked: AtomicUsize,
    fifths: Mutex<Vec<Duration>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        match result {
            Ok(message) => {
                let mut positions = self.positions.lock().unwrap();
                positions[id] = Some((message.partition(), message.offset()));
                let acked = self.acked.fetch_add(1, Ordering::Relaxed) + 1;
                if acked.is_multiple_of((positions.len() / 5).max(1)) {
                    self.fifths.lock().unwrap().push(self.started.elapsed());
                }
            }
            Err((err, _)) => self.failures.lock().unwrap().push(format!("#{id}: {err}")),
        }
    }
}

/// The acknowledged (partition, offset) of each produced record, indexed by record id.
type Positions = Vec<(i32, i64)>;

/// One record to produce.
struct Outgoing {
    key: String,
    payload: String,
    partition: Option<i32>,
    headers: Option<OwnedHeaders>,
}

impl Outgoing {
    fn keyed(key: String, payload: String) -> Self {
        Self {
            key,
            payload,
            partition: None,
            headers: None,
        }
    }
}

/// Produces records `0..n` (built by `make`) and waits until every one is acknowledged.
/// Returns the acknowledged (partition, offset) of each record, indexed by record id.
fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    settings: &[(&str, &str)],
    make: impl Fn(usize) -> Outgoing,
) -> Result<Positions> {
    produce_timed(bootstrap, topic, n, settings, make).map(|(positions, _)| positions)
}

/// `produce`, also returning when each fifth of the records had been acknowledged.
fn produce_timed(
    bootstrap: &str,
    topic: &str,
    n: usize,
    settings: &[(&str, &str)],
    make: impl Fn(usize) -> Outgoing,
) -> Result<(Positions, Vec<Duration>)> {
    let mut config = client_config(bootstrap);
    config
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let log = DeliveryLog {
        positions: Mutex::new(vec![None; n]),
        failures: Mutex::new(Vec::new()),
        started: Instant::now(),
        acked: AtomicUsize::new(0),
        fifths: Mutex::new(Vec::new()),
    };
    let producer: BaseProducer<DeliveryLog> = config.create_with_context(log)?;
    for id in 0..n {
        let out = make(id);
        let mut record = BaseRecord::with_opaque_to(topic, id)
            .key(&out.key)
            .payload(&out.payload);
        if let Some(partition) = out.partition {
            record = record.partition(partition);
        }
        if let Some(headers) = out.headers {
            record = record.headers(headers);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((err, _)) => bail!("produce #{id}: {err}"),
            }
        }
        if id.is_multiple_of(1000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let context = producer.context();
    let failures = context.failures.lock().unwrap();
    if !failures.is_empty() {
        bail!(
            "{} deliveries failed, first: {}",
            failures.len(),
            failures[0]
        );
    }
    let positions = context.positions.lock().unwrap();
    let positions = positions
        .iter()
        .enumerate()
        .map(|(id, p)| p.ok_or_else(|| anyhow!("record #{id} was never acknowledged")))
        .collect::<Result<_>>()?;
    let fifths = context.fifths.lock().unwrap().clone();
    Ok((positions, fifths))
}

/// Records/s within each fifth, from the times at which each fifth was done.
fn fifth_rates(n: usize, fifths: &[Duration]) -> Vec<u64> {
    let mut previous = Duration::ZERO;
    fifths
        .iter()
        .map(|&t| {
            let rate = (n / 5) as f64 / (t - previous).as_secs_f64().max(1e-6);
            previous = t;
            rate as u64
        })
        .collect()
}

/// The record id at the start of a payload (`"<id>|..."`).
fn payload_id(payload: Option<&[u8]>) -> usize {
    let payload = std::str::from_utf8(payload.unwrap_or_default()).expect("utf-8 payload");
    payload
        .split('|')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("payload without an id: {payload:?}"))
}

/// One consumed record: partition, offset, record id (from the payload).
type Seen = (i32, i64, usize);

/// Reads every partition of `topic` from the beginning up to the high watermark seen at the
/// start, outside any group, handing each record to `each`. Returns the number read.
fn read_all(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<usize> {
    let consumer: BaseConsumer =
        consumer_config(bootstrap, &unique("conformance-reader")).create()?;
    let partitions = partition_count(&consumer, topic)? as i32;
    let mut last_wanted = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
        if high > 0 {
            last_wanted.insert(partition, high - 1);
            tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut count = 0;
    while !last_wanted.is_empty() {
        if Instant::now() > deadline {
            bail!("read_all({topic}): {count} read, partitions still short: {last_wanted:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                count += 1;
                each(&message);
                if last_wanted.get(&message.partition()) == Some(&message.offset()) {
                    last_wanted.remove(&message.partition());
                }
            }
            Some(Err(err)) => bail!("read_all({topic}): {err}"),
            None => {}
        }
    }
    Ok(count)
}

/// Polls a subscribed consumer until it has returned `n` records.
fn consume_n(consumer: &BaseConsumer, n: usize, timeout: Duration) -> Result<Vec<Seen>> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        if Instant::now() > deadline {
            bail!("consumed {} of {n} records in {timeout:?}", seen.len());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => seen.push((m.partition(), m.offset(), payload_id(m.payload()))),
            Some(Err(err)) => bail!("consume: {err}"),
            None => {}
        }
    }
    Ok(seen)
}

fn assigned_partitions(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Next offset per partition after the records seen (what a consumer commits).
fn next_offsets(seen: &[Seen]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for &(partition, offset, _) in seen {
        let entry = next.entry(partition).or_insert(0);
        *entry = (*entry).max(offset + 1);
    }
    next
}

fn offsets_tpl(topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (&partition, &offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(tpl)
}

/// Committed offsets of `group` for partitions `0..partitions` (absent where none committed).
fn committed_of(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = consumer_config(bootstrap, group).create()?;
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Group members
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct MemberState {
    assignment: BTreeSet<i32>,
    seen: Vec<Seen>,
}

/// A consumer-group member polling on its own thread (auto-commit on), recording what it reads
/// and its current assignment. Stopped (and its consumer closed) on drop.
struct Member {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<MemberState>>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn spawn(bootstrap: &str, topic: &str, group: &str) -> Result<Self> {
        let mut config = consumer_config(bootstrap, group);
        config
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500");
        let consumer: BaseConsumer = config.create()?;
        consumer.subscribe(&[topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(MemberState::default()));
        let thread = {
            let (stop, state) = (stop.clone(), state.clone());
            std::thread::spawn(move || {
                let mut checked = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                        let seen = (m.partition(), m.offset(), payload_id(m.payload()));
                        state.lock().unwrap().seen.push(seen);
                    }
                    if checked.elapsed() > Duration::from_millis(50) {
                        state.lock().unwrap().assignment = assigned_partitions(&consumer);
                        checked = Instant::now();
                    }
                }
            })
        };
        Ok(Self {
            stop,
            state,
            thread: Some(thread),
        })
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.state.lock().unwrap().assignment.clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn seen_count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The child test process of `survivor_takes_over_after_member_sigkill`, SIGKILLed on drop.
struct ChildMember {
    child: Option<Child>,
    state: Arc<Mutex<MemberState>>,
    reader: Option<JoinHandle<()>>,
}

impl ChildMember {
    /// Re-executes this test binary as a group member (see `child_group_member`) and follows
    /// what it prints.
    fn spawn(bootstrap: &str, topic: &str, group: &str) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        command
            .args(["--exact", "child_group_member", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, format!("{bootstrap} {topic} {group}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        die_with_parent(&mut command);
        let mut child = command.spawn().context("start the child member")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let state = Arc::new(Mutex::new(MemberState::default()));
        let reader = {
            let state = state.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // libtest prints "test child_group_member ... " without a newline before
                    // the first line of the member, so look for the marker anywhere.
                    let Some(start) = line.find("CHILD ") else {
                        continue;
                    };
                    let mut words = line[start..].split_whitespace();
                    match (words.next(), words.next()) {
                        (Some("CHILD"), Some("ASSIGNED")) => {
                            state.lock().unwrap().assignment = words
                                .next()
                                .unwrap_or("")
                                .split(',')
                                .filter_map(|p| p.parse().ok())
                                .collect();
                        }
                        (Some("CHILD"), Some("GOT")) => {
                            let numbers: Vec<i64> = words.filter_map(|w| w.parse().ok()).collect();
                            if let [p, o, id] = numbers[..] {
                                state.lock().unwrap().seen.push((p as i32, o, id as usize));
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        Ok(Self {
            child: Some(child),
            state,
            reader: Some(reader),
        })
    }

    fn sigkill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL)?;
            child.wait()?;
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok(())
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.sigkill();
    }
}

/// Helper mode, not a test of its own: run by `survivor_takes_over_after_member_sigkill` in a
/// child process (with `CHILD_ENV` set) as a group member that can be SIGKILLed. It consumes,
/// commits after each burst and prints its assignment and every record it reads.
#[test]
#[ignore = "helper process of survivor_takes_over_after_member_sigkill"]
fn child_group_member() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [bootstrap, topic, group] = spec.split(' ').collect::<Vec<_>>()[..] else {
        panic!("{CHILD_ENV} must be 'bootstrap topic group', got {spec:?}");
    };
    let consumer: BaseConsumer = consumer_config(bootstrap, group)
        .create()
        .expect("child consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let started = Instant::now();
    let mut assignment = BTreeSet::new();
    let mut uncommitted = 0;
    // A safety cap: the parent SIGKILLs this process long before.
    while started.elapsed() < Duration::from_secs(120) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                println!(
                    "CHILD GOT {} {} {}",
                    m.partition(),
                    m.offset(),
                    payload_id(m.payload())
                );
                uncommitted += 1;
                if uncommitted >= 500 {
                    let _ = consumer.commit_consumer_state(CommitMode::Sync);
                    uncommitted = 0;
                }
            }
            Some(Err(err)) => println!("CHILD ERROR {err}"),
            None if uncommitted > 0 && consumer.commit_consumer_state(CommitMode::Sync).is_ok() => {
                println!("CHILD COMMITTED {uncommitted}");
                uncommitted = 0;
            }
            None => {}
        }
        let now = assigned_partitions(&consumer);
        if now != assignment {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            println!("CHILD ASSIGNED {}", list.join(","));
            assignment = now;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The conformance tests
// ---------------------------------------------------------------------------------------------

/// 1. Two members of one group split a 6-partition topic (disjoint, union = all 6) and
///    together read every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_split_partitions() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("groups").await?;
    let bootstrap = broker.bootstrap();
    let (topic, group, n) = ("groups", "g-split", 6_000);
    create_topic(&bootstrap, topic, 6, &[]).await?;

    let a = Member::spawn(&bootstrap, topic, group)?;
    let b = Member::spawn(&bootstrap, topic, group)?;
    let all: BTreeSet<i32> = (0..6).collect();
    let split = |a: &BTreeSet<i32>, b: &BTreeSet<i32>| {
        !a.is_empty() && !b.is_empty() && a.is_disjoint(b) && a.union(b).eq(all.iter())
    };
    let took = wait_until(
        "two members to split 6 partitions",
        Duration::from_secs(20),
        || split(&a.assignment(), &b.assignment()),
    )
    .await;
    let (assigned_a, assigned_b) = (a.assignment(), b.assignment());
    println!("groups: split after {took:?}: member A {assigned_a:?}, member B {assigned_b:?}");

    let produced = produce(&bootstrap, topic, n, &[], |id| {
        Outgoing::keyed(format!("key-{}", id % 97), format!("{id}|groups"))
    })?;
    wait_until(
        "both members to read every record",
        Duration::from_secs(20),
        || a.seen_count() + b.seen_count() >= n,
    )
    .await;
    // Give duplicates, if any, a chance to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (seen_a, seen_b) = (a.seen(), b.seen());
    assert_eq!(a.assignment(), assigned_a, "member A's assignment changed");
    assert_eq!(b.assignment(), assigned_b, "member B's assignment changed");
    drop((a, b));

    assert_eq!(seen_a.len() + seen_b.len(), n, "records read in total");
    for (name, seen, assigned) in [("A", &seen_a, &assigned_a), ("B", &seen_b, &assigned_b)] {
        let partitions: BTreeSet<i32> = seen.iter().map(|s| s.0).collect();
        assert!(
            partitions.is_subset(assigned),
            "member {name} read partitions {partitions:?} outside its assignment {assigned:?}"
        );
        for &(p, o, id) in seen.iter() {
            assert_eq!(
                produced[id],
                (p, o),
                "record #{id} read at the wrong position"
            );
        }
    }
    let ids: HashSet<usize> = seen_a.iter().chain(&seen_b).map(|s| s.2).collect();
    assert_eq!(ids.len(), n, "every record read exactly once");
    println!(
        "groups: {n} records, member A read {}, member B read {} (exactly once, disjoint partitions)",
        seen_a.len(),
        seen_b.len()
    );
    Ok(())
}

/// 2. A member SIGKILLed (a separate OS process): after the session timeout the survivor owns
///    every partition and reads everything produced afterwards; nothing produced before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_takes_over_after_member_sigkill() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("rebalance").await?;
    let bootstrap = broker.bootstrap();
    let (topic, group, n) = ("rebalance", "g-rebalance", 3_000);
    create_topic(&bootstrap, topic, 6, &[]).await?;
    let all: BTreeSet<i32> = (0..6).collect();

    let survivor = Member::spawn(&bootstrap, topic, group)?;
    let mut child = ChildMember::spawn(&bootstrap, topic, group)?;
    let child_state = child.state.clone();
    let child_assignment = || child_state.lock().unwrap().assignment.clone();
    wait_until(
        "survivor and child to split 6 partitions",
        Duration::from_secs(25),
        || {
            let (s, c) = (survivor.assignment(), child_assignment());
            !s.is_empty() && !c.is_empty() && s.is_disjoint(&c) && s.union(&c).eq(all.iter())
        },
    )
    .await;
    println!(
        "rebalance: survivor {:?}, child (pid {}) {:?}",
        survivor.assignment(),
        child.child.as_ref().map(Child::id).unwrap_or_default(),
        child_assignment()
    );

    // Batch A, read by both members.
    let batch_a = produce(&bootstrap, topic, n, &[], |id| {
        Outgoing::keyed(format!("key-{}", id % 97), format!("{id}|before"))
    })?;
    let positions = |seen: Vec<Seen>| -> HashSet<(i32, i64)> {
        seen.into_iter().map(|(p, o, _)| (p, o)).collect()
    };
    wait_until("batch A to be read", Duration::from_secs(20), || {
        let mut read = positions(survivor.seen());
        read.extend(positions(child_state.lock().unwrap().seen.clone()));
        batch_a.iter().all(|p| read.contains(p))
    })
    .await;
    // Let the child commit what it read (it commits whenever it goes idle).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let child_read = child_state.lock().unwrap().seen.len();
    let survivor_before = survivor.seen_count();

    child.sigkill()?;
    let killed = Instant::now();
    println!("rebalance: child SIGKILLed after reading {child_read} records");
    let batch_b = produce(&bootstrap, topic, n, &[], |id| {
        Outgoing::keyed(format!("key-{}", id % 97), format!("{}|after", n + id))
    })?;
    wait_until(
        "the survivor to own all 6 partitions",
        Duration::from_secs(30),
        || survivor.assignment() == all,
    )
    .await;
    let takeover = killed.elapsed();
    wait_until(
        "the survivor to read batch B",
        Duration::from_secs(20),
        || {
            let read = positions(survivor.seen());
            batch_b.iter().all(|p| read.contains(p))
        },
    )
    .await;
    let drained = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = survivor.seen();
    drop(survivor);

    let mut read: HashSet<(i32, i64)> = positions(seen.clone());
    read.extend(positions(child_state.lock().unwrap().seen.clone()));
    assert!(
        batch_a.iter().all(|p| read.contains(p)),
        "a batch-A record was lost across the SIGKILL"
    );
    let after: Vec<&Seen> = seen.iter().filter(|s| s.2 >= n).collect();
    let after_ids: HashSet<usize> = after.iter().map(|s| s.2).collect();
    assert_eq!(
        after_ids.len(),
        n,
        "every batch-B record read by the survivor"
    );
    let redelivered = seen[survivor_before..].iter().filter(|s| s.2 < n).count();
    println!(
        "rebalance: session.timeout.ms={SESSION_TIMEOUT_MS}; survivor owned all 6 partitions {takeover:?} after the SIGKILL, \
         read all {n} later records {drained:?} after it; {redelivered} batch-A records redelivered \
         (uncommitted by the child), {} batch-B duplicates",
        after.len() - after_ids.len()
    );
    Ok(())
}

/// 3. Consume part, commit, close; a new member of the same group resumes exactly at the
///    committed offsets, nothing skipped, nothing read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_committed_offsets() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("resume").await?;
    let bootstrap = broker.bootstrap();
    let (topic, group, partitions, n, first_part) = ("resume", "g-resume", 3, 3_000, 1_300);
    create_topic(&bootstrap, topic, partitions, &[]).await?;
    let produced = produce(&bootstrap, topic, n, &[], |id| Outgoing {
        partition: Some(id as i32 % partitions),
        ..Outgoing::keyed(format!("key-{id}"), format!("{id}|resume"))
    })?;
    let high = next_offsets(
        &produced
            .iter()
            .enumerate()
            .map(|(id, &(p, o))| (p, o, id))
            .collect::<Vec<_>>(),
    );

    // First member: small fetches so that the first part spreads over the partitions.
    let mut config = consumer_config(&bootstrap, group);
    config.set("max.partition.fetch.bytes", "4096");
    let first: BaseConsumer = config.create()?;
    first.subscribe(&[topic])?;
    let first_seen = consume_n(&first, first_part, Duration::from_secs(20))?;
    let commit = next_offsets(&first_seen);
    first.commit(&offsets_tpl(topic, &commit)?, CommitMode::Sync)?;
    drop(first);
    let committed = committed_of(&bootstrap, group, topic, partitions)?;
    assert_eq!(committed, commit, "committed offsets read back");
    println!("resume: read {first_part}, committed {committed:?} (high watermarks {high:?})");

    let second: BaseConsumer = consumer_config(&bootstrap, group).create()?;
    second.subscribe(&[topic])?;
    let second_seen = consume_n(&second, n - first_part, Duration::from_secs(20))?;
    // Anything beyond the remainder would be a re-read.
    let extra = consume_n(&second, 1, Duration::from_secs(2)).map_or(0, |v| v.len());
    drop(second);
    assert_eq!(extra, 0, "the resumed member read more than the remainder");

    for partition in 0..partitions {
        let offsets = |seen: &[Seen]| -> Vec<i64> {
            seen.iter()
                .filter(|s| s.0 == partition)
                .map(|s| s.1)
                .collect()
        };
        let start = committed.get(&partition).copied().unwrap_or(0);
        let end = high[&partition];
        assert_eq!(
            offsets(&first_seen),
            (0..start).collect::<Vec<_>>(),
            "partition {partition}: first member's offsets"
        );
        assert_eq!(
            offsets(&second_seen),
            (start..end).collect::<Vec<_>>(),
            "partition {partition}: resumed member must start at {start} and skip nothing"
        );
    }
    let ids: HashSet<usize> = first_seen.iter().chain(&second_seen).map(|s| s.2).collect();
    assert_eq!(
        ids.len(),
        n,
        "every record read exactly once across the resume"
    );
    for &(p, o, id) in first_seen.iter().chain(&second_seen) {
        assert_eq!(produced[id], (p, o), "record #{id} at the wrong position");
    }
    println!(
        "resume: the second member started exactly at the committed offsets and read the other {}",
        second_seen.len()
    );
    Ok(())
}

/// 4. Idempotent producer (enable.idempotence=true, acks=all): accepted by the broker, and every
///    key's records come back once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_no_duplicates_in_order() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("idempotent").await?;
    let bootstrap = broker.bootstrap();
    let (topic, keys, per_key) = ("idempotent", 20, 500);
    let n = keys * per_key;
    create_topic(&bootstrap, topic, 3, &[]).await?;
    let started = Instant::now();
    let produced = produce(
        &bootstrap,
        topic,
        n,
        &[("enable.idempotence", "true"), ("acks", "all")],
        |id| {
            let (key, seq) = (id % keys, id / keys);
            Outgoing::keyed(format!("key-{key}"), format!("{id}|key-{key}|{seq}"))
        },
    )?;
    let produce_time = started.elapsed();

    let mut per_key_seqs: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let read = read_all(&bootstrap, topic, Duration::from_secs(20), |m| {
        let payload = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap();
        let parts: Vec<&str> = payload.split('|').collect();
        let (id, key, seq): (usize, &str, usize) = (
            parts[0].parse().unwrap(),
            parts[1],
            parts[2].parse().unwrap(),
        );
        assert_eq!(produced[id], (m.partition(), m.offset()), "record #{id}");
        let expected = next_offset.entry(m.partition()).or_insert(0);
        assert_eq!(
            m.offset(),
            *expected,
            "offset gap in partition {}",
            m.partition()
        );
        *expected += 1;
        let partition = *key_partition
            .entry(key.to_string())
            .or_insert(m.partition());
        assert_eq!(partition, m.partition(), "{key} spread over partitions");
        per_key_seqs.entry(key.to_string()).or_default().push(seq);
    })?;
    assert_eq!(read, n, "records read back");
    assert_eq!(per_key_seqs.len(), keys);
    for (key, seqs) in &per_key_seqs {
        assert_eq!(
            seqs,
            &(0..per_key).collect::<Vec<_>>(),
            "{key}: each record once, in order"
        );
    }
    println!(
        "idempotent: {n} records ({keys} keys x {per_key}) produced with enable.idempotence=true acks=all \
         in {produce_time:?}; read back {read}: no duplicates, in order per key and partition ({ENGINE})"
    );
    Ok(())
}

fn header_values(id: usize) -> Vec<(String, String)> {
    let mut headers = vec![
        ("event-id".to_string(), format!("evt-{id}")),
        ("source".to_string(), "broker-conformance".to_string()),
        (
            "trace".to_string(),
            format!("{:016x}", id.wrapping_mul(0x9e37_79b9)),
        ),
    ];
    for extra in 0..id % 3 {
        headers.push((format!("extra-{extra}"), format!("value-{extra}-{id}")));
    }
    headers
}

/// 5. 100k records with 3–5 headers each, produced with a batching producer and consumed back
///    with the headers intact; throughput printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_at_volume() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("headers").await?;
    let bootstrap = broker.bootstrap();
    let (topic, n) = ("headers", 100_000);
    create_topic(&bootstrap, topic, 4, &[]).await?;
    let filler = "x".repeat(80);
    let batching = [("linger.ms", "20"), ("batch.num.messages", "10000")];

    // Baseline: the same records without headers, to tell the cost of headers from the engine's.
    let (plain_topic, plain_n) = ("no-headers", 20_000);
    create_topic(&bootstrap, plain_topic, 4, &[]).await?;
    let started = Instant::now();
    produce(&bootstrap, plain_topic, plain_n, &batching, |id| {
        Outgoing::keyed(format!("key-{}", id % 1000), format!("{id}|{filler}"))
    })?;
    let plain_produce = started.elapsed();
    let started = Instant::now();
    let plain_read = read_all(&bootstrap, plain_topic, Duration::from_secs(30), |_| {})?;
    let plain_consume = started.elapsed();
    assert_eq!(plain_read, plain_n, "baseline records read back");

    let started = Instant::now();
    let (produced, produce_fifths) = produce_timed(&bootstrap, topic, n, &batching, |id| {
        let mut headers = OwnedHeaders::new_with_capacity(5);
        for (key, value) in header_values(id) {
            headers = headers.insert(Header {
                key: &key,
                value: Some(value.as_str()),
            });
        }
        Outgoing {
            headers: Some(headers),
            ..Outgoing::keyed(format!("key-{}", id % 1000), format!("{id}|{filler}"))
        }
    })?;
    let produce_time = started.elapsed();

    let mut seen = vec![false; n];
    let mut header_count = 0;
    let mut consume_fifths = Vec::new();
    let mut so_far = 0usize;
    let started = Instant::now();
    let read = read_all(&bootstrap, topic, Duration::from_secs(60), |m| {
        so_far += 1;
        if so_far.is_multiple_of(n / 5) {
            consume_fifths.push(started.elapsed());
        }
        let id = payload_id(m.payload());
        assert!(!seen[id], "record #{id} read twice");
        seen[id] = true;
        assert_eq!(produced[id], (m.partition(), m.offset()), "record #{id}");
        let got: Vec<(String, String)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                        (h.key.to_string(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        header_count += got.len();
        assert_eq!(got, header_values(id), "headers of record #{id}");
    })?;
    let consume_time = started.elapsed();
    assert_eq!(read, n, "records read back");
    assert!(seen.iter().all(|s| *s), "every record read");
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let plain_rate = |d: Duration| plain_n as f64 / d.as_secs_f64();
    println!(
        "headers: baseline without headers, {plain_n} records, same producer: produce {:.0} records/s \
         ({plain_produce:?}), consume {:.0} records/s ({plain_consume:?}) ({ENGINE})",
        plain_rate(plain_produce),
        plain_rate(plain_consume)
    );
    println!(
        "headers: {n} records (~100 B payload, {header_count} headers in all, 3-5 each), 4 partitions, {ENGINE}: \
         produce {:.0} records/s ({produce_time:?}, linger.ms=20, acks=all), \
         consume {:.0} records/s ({consume_time:?}, one consumer), headers intact",
        rate(produce_time),
        rate(consume_time)
    );
    println!(
        "headers: records/s per fifth of the 100k (does the rate hold as the topic grows?): \
         produce {:?}, consume {:?}",
        fifth_rates(n, &produce_fifths),
        fifth_rates(n, &consume_fifths)
    );
    Ok(())
}

/// 6. A `cleanup.policy=compact` topic (created through the admin API): the latest value of each
///    key survives; how many records a fresh reader gets after the broker's maintenance is
///    measured (compaction is not guaranteed to be immediate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_latest_value_per_key() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("compaction").await?;
    let bootstrap = broker.bootstrap();
    let (topic, n, keys) = ("compacted", 1_000, 10);
    create_topic(&bootstrap, topic, 1, &[("cleanup.policy", "compact")]).await?;
    let produced = produce(&bootstrap, topic, n, &[], |id| {
        Outgoing::keyed(format!("key-{}", id % keys), format!("{id}|v"))
    })?;
    let latest: BTreeMap<String, usize> = (n - keys..n)
        .map(|id| (format!("key-{}", id % keys), id))
        .collect();

    let started = Instant::now();
    let mut reads = Vec::new();
    let (count, last) = loop {
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        let count = read_all(&bootstrap, topic, Duration::from_secs(15), |m| {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let id = payload_id(m.payload());
            assert_eq!(produced[id], (m.partition(), m.offset()), "record #{id}");
            last.insert(key, id);
        })?;
        reads.push(format!("{:.0}s:{count}", started.elapsed().as_secs_f64()));
        if count <= keys || started.elapsed() > Duration::from_secs(40) {
            break (count, last);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    assert_eq!(last, latest, "the latest value of every key");
    assert!(count <= n, "read {count} > {n} records");
    let verdict = if count == keys {
        "compacted to the latest record per key"
    } else {
        "NOT compacted within ~40 s: read as last-value-per-key-wins"
    };
    println!(
        "compaction: {n} records over {keys} keys, maintenance_interval=15s, {ENGINE}: fresh reader got \
         {count} records after {:?} ({verdict}); reads (elapsed:count) {reads:?}",
        started.elapsed()
    );
    Ok(())
}

/// 7. SQLite engine durability: 10,000 acked records and a group's committed offsets survive
///    `kill -9` of the broker and a restart on the same data directory and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_9() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut broker = Broker::start("durability").await?;
    let bootstrap = broker.bootstrap();
    let (topic, group, partitions, n) = ("durable", "g-durable", 4, 10_000);
    create_topic(&bootstrap, topic, partitions, &[]).await?;
    let produced = produce(&bootstrap, topic, n, &[("acks", "all")], |id| {
        Outgoing::keyed(format!("key-{}", id % 101), format!("{id}|durable"))
    })?;

    let consumer: BaseConsumer = consumer_config(&bootstrap, group).create()?;
    consumer.subscribe(&[topic])?;
    let seen = consume_n(&consumer, 6_000, Duration::from_secs(30))?;
    let commit = next_offsets(&seen);
    consumer.commit(&offsets_tpl(topic, &commit)?, CommitMode::Sync)?;
    drop(consumer);
    let before = committed_of(&bootstrap, group, topic, partitions)?;
    assert_eq!(before, commit, "committed offsets before the kill");

    broker.kill9()?;
    let ready = broker.spawn().await?;
    println!("durability: broker kill -9'd and restarted on the same data dir, ready in {ready:?}");

    let after = committed_of(&bootstrap, group, topic, partitions)?;
    assert_eq!(after, before, "committed offsets after kill -9 and restart");
    let mut ids = HashSet::new();
    let read = read_all(&bootstrap, topic, Duration::from_secs(30), |m| {
        let id = payload_id(m.payload());
        assert_eq!(produced[id], (m.partition(), m.offset()), "record #{id}");
        ids.insert(id);
    })?;
    assert_eq!(read, n, "records readable after the restart");
    assert_eq!(ids.len(), n, "distinct records after the restart");
    println!(
        "durability: {n} acked records all readable after kill -9, committed offsets {after:?} unchanged ({ENGINE})"
    );
    Ok(())
}

/// 8. What the broker refuses: transactions (InitProducerId with a transactional.id) and
///    CreatePartitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_create_partitions_refused() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let broker = Broker::start("refusals").await?;
    let bootstrap = broker.bootstrap();
    let topic = "two-partitions";
    create_topic(&bootstrap, topic, 2, &[]).await?;

    let producer: BaseProducer = client_config(&bootstrap)
        .set("transactional.id", "conformance-tx")
        .create()?;
    let started = Instant::now();
    let outcome = producer.init_transactions(Duration::from_secs(15));
    let err = outcome.expect_err("init_transactions must be refused by nisshi 0.8.1");
    println!(
        "refusals: init_transactions refused after {:?}: {err}",
        started.elapsed()
    );
    drop(producer);

    let admin: AdminClient<DefaultClientContext> = client_config(&bootstrap).create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let grow = NewPartitions::new(topic, 4);
    let outcome = admin.create_partitions([&grow], &options).await;
    let refused = match &outcome {
        Err(err) => Some(err.to_string()),
        Ok(results) => results
            .iter()
            .find_map(|r| r.as_ref().err())
            .map(|(topic, code)| format!("{topic}: {code}")),
    };
    let probe: BaseConsumer = client_config(&bootstrap).create()?;
    let count = partition_count(&probe, topic)?;
    println!("refusals: CreatePartitions 2 -> 4: {outcome:?}; topic now has {count} partitions");
    assert!(
        refused.is_some(),
        "CreatePartitions was accepted (now {count} partitions)"
    );
    assert_eq!(
        count, 2,
        "partition count after the refused CreatePartitions"
    );
    Ok(())
}
