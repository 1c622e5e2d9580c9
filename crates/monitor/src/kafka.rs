//! The sample's Kafka I/O, blocking (run on the blocking pool): topic metadata, low and high
//! watermarks, each group's committed offsets and members, and the timestamp of the oldest
//! unconsumed record of every lagging partition.
//!
//! Nothing here joins a group or commits: committed offsets are read by a consumer that
//! carries the group's id but never subscribes (an OffsetFetch), and records are read by a
//! consumer with its own id, assigned explicit offsets. Requests are batched (one metadata
//! request for all topics, never one per topic name, which could auto-create a missing
//! topic; one ListOffsets round per watermark side; one OffsetFetch per group, the groups
//! in parallel) because each request to the local broker can take tens of milliseconds.
//!
//! Every client reads as the processors do (`read_committed`): the "high watermark" here is
//! the last stable offset, the same unless a transaction is open, whose records nobody can
//! consume yet.
//!
//! [`KafkaProbe`] is owned by the sampler task; its clients and its cache of records
//! already read live as long as the monitor.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::error::MonitorError;

/// Low and high watermark of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// What lies between a group's start offset in a partition and the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oldest {
    /// The first record at or after the offset: the oldest unconsumed one, with its
    /// timestamp (Unix ms) when it carries one.
    Record(Option<i64>),
    /// No record a consumer reads: only transaction markers or aborted records. The offset
    /// lag is phantom; the consumer is caught up.
    Nothing,
}

/// How long a sample waits for the oldest unconsumed records: four fifths of the interval,
/// within these bounds. On the stack's SQLite broker under the demo's load these reads took
/// 2-4 s (measured: with a 2 s bound nearly every lagging partition's time lag was unknown,
/// with 4 s all were known); a sample then runs past its interval, and the next one waits.
const OLDEST_READ_BOUND: Duration = Duration::from_secs(4);
const OLDEST_READ_MIN: Duration = Duration::from_secs(1);

/// One group to read: its id and the topics it consumes.
#[derive(Debug, Clone)]
pub struct GroupRequest {
    pub group: String,
    pub topics: Vec<String>,
}

/// A topic partition.
pub type Tp = (String, i32);

#[derive(Debug, Default)]
pub struct GroupReading {
    /// The committed offset per partition (`None` inside: the group never committed that
    /// partition); `None`: the offsets could not be read.
    pub committed: Option<HashMap<Tp, Option<i64>>>,
    /// Members as the broker describes the group; `None` when that failed.
    pub members: Option<u32>,
}

#[derive(Debug, Default)]
pub struct KafkaReading {
    /// False when the broker gave no metadata: nothing else was read.
    pub reachable: bool,
    /// Watermarks per requested topic; `None` for a topic the broker does not have.
    pub topics: BTreeMap<String, Option<Vec<Marks>>>,
    pub groups: BTreeMap<String, GroupReading>,
    /// What lies at or after a lagging partition's start offset, by (topic, partition,
    /// offset); absent when it could not be read in time.
    pub oldest: HashMap<(String, i32, i64), Oldest>,
    pub errors: Vec<MonitorError>,
    pub elapsed: Duration,
}

impl KafkaReading {
    pub fn marks(&self, topic: &str) -> Option<&[Marks]> {
        self.topics.get(topic)?.as_deref()
    }

    /// Where the group's unconsumed records start in a partition: its committed offset, or
    /// the low watermark when it never committed (or retention removed what it had left).
    pub fn start_offset(committed: Option<i64>, marks: Marks) -> i64 {
        committed.unwrap_or(marks.low).max(marks.low)
    }
}

pub struct KafkaProbe {
    bootstrap: String,
    timeout: Duration,
    /// How long a sample waits for the oldest unconsumed records: most of an interval.
    oldest_bound: Duration,
    /// Metadata, watermarks and group descriptions.
    admin: BaseConsumer,
    /// One client per watched group, carrying its id, for OffsetFetch.
    groups: HashMap<String, BaseConsumer>,
    /// Reads the oldest unconsumed records.
    reader: BaseConsumer,
    /// What was already read, with the high watermark then: an unchanged committed offset
    /// is not read again.
    oldest: HashMap<(String, i32, i64), (Oldest, i64)>,
    /// The records each partition's last read returned after the one it was for (a fetch
    /// returns a batch): a committed offset that has moved into that range needs no new
    /// read. The sampler's probe is the only writer.
    ahead: HashMap<Tp, ReadAhead>,
}

/// Timestamps of the records at offsets `from..to` of one partition, as one fetch returned
/// them in order: every record in that range is here (offsets without one hold none).
struct ReadAhead {
    from: i64,
    to: i64,
    stamps: BTreeMap<i64, Option<i64>>,
}

impl ReadAhead {
    /// The oldest record at or after `offset`, if the range answers it.
    fn first_from(&self, offset: i64) -> Option<Oldest> {
        if offset < self.from || offset >= self.to {
            return None;
        }
        self.stamps
            .range(offset..self.to)
            .next()
            .map(|(_, ts)| Oldest::Record(*ts))
    }
}

/// What one read of first records found per partition, and what it read ahead.
type FirstRecords = (HashMap<Tp, Oldest>, HashMap<Tp, ReadAhead>);

/// Timestamps read ahead per partition, at most (the fetch size bounds them anyway).
const READ_AHEAD_MAX: usize = 4_096;

/// Adds a record read from `start` on to its partition's read-ahead. Messages arrive in
/// offset order from `start`, so the range `from..to` stays complete.
fn keep_ahead(
    ahead: &mut HashMap<Tp, ReadAhead>,
    key: &Tp,
    start: i64,
    offset: i64,
    stamp: Option<i64>,
) {
    let range = ahead.entry(key.clone()).or_insert_with(|| ReadAhead {
        from: start,
        to: start,
        stamps: BTreeMap::new(),
    });
    if offset >= range.to && range.stamps.len() < READ_AHEAD_MAX {
        range.stamps.insert(offset, stamp);
        range.to = offset + 1;
    }
}

impl KafkaProbe {
    pub fn new(
        bootstrap: &str,
        timeout: Duration,
        interval: Duration,
    ) -> Result<Self, MonitorError> {
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            timeout,
            oldest_bound: (interval * 4 / 5)
                .clamp(OLDEST_READ_MIN, OLDEST_READ_BOUND)
                .min(timeout),
            admin: client(bootstrap, "storefleet.monitor", "storefleet-monitor")?,
            groups: HashMap::new(),
            reader: reader(bootstrap)?,
            oldest: HashMap::new(),
            ahead: HashMap::new(),
        })
    }

    /// Closes every client at once (a close waits for the broker).
    pub fn close(self) {
        let Self {
            admin,
            groups,
            reader,
            ..
        } = self;
        std::thread::scope(|s| {
            s.spawn(move || drop(admin));
            s.spawn(move || drop(reader));
            for (_, client) in groups {
                s.spawn(move || drop(client));
            }
        });
    }

    /// One sample of `topics` and `groups`. Never fails as a whole: what could not be read
    /// is absent from the reading and named in `errors`.
    pub fn read(&mut self, topics: &[String], groups: &[GroupRequest]) -> KafkaReading {
        let started = Instant::now();
        drain(&self.admin);
        self.groups.values().for_each(drain);
        let mut reading = KafkaReading::default();
        let metadata = match self.admin.fetch_metadata(None, self.timeout) {
            Ok(m) => m,
            Err(source) => {
                reading.errors.push(MonitorError::Metadata {
                    bootstrap: self.bootstrap.clone(),
                    source,
                });
                reading.elapsed = started.elapsed();
                return reading;
            }
        };
        reading.reachable = true;
        let partitions: BTreeMap<String, Vec<i32>> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                (t.name().to_string(), ids)
            })
            .collect();
        self.read_watermarks(topics, &partitions, &mut reading);
        self.read_groups(groups, &partitions, &mut reading);
        self.read_oldest(groups, &mut reading);
        reading.elapsed = started.elapsed();
        reading
    }

    fn read_watermarks(
        &self,
        topics: &[String],
        partitions: &BTreeMap<String, Vec<i32>>,
        reading: &mut KafkaReading,
    ) {
        let mut list = TopicPartitionList::new();
        for topic in topics {
            for &p in partitions.get(topic).into_iter().flatten() {
                list.add_partition(topic, p);
            }
        }
        // ListOffsets with the special timestamps -2 (earliest) and -1 (latest): one batched
        // request per side instead of two requests per partition.
        let side = |at: Offset| -> Result<HashMap<Tp, i64>, MonitorError> {
            let mut asked = list.clone();
            asked
                .set_all_offsets(at)
                .map_err(MonitorError::Watermarks)?;
            let answer = self
                .admin
                .offsets_for_times(asked, self.timeout)
                .map_err(MonitorError::Watermarks)?;
            let mut out = HashMap::new();
            for elem in answer.elements() {
                elem.error().map_err(MonitorError::Watermarks)?;
                if let Offset::Offset(o) = elem.offset() {
                    out.insert((elem.topic().to_string(), elem.partition()), o);
                }
            }
            Ok(out)
        };
        let (lows, highs) = if list.count() == 0 {
            (HashMap::new(), HashMap::new())
        } else {
            match side(Offset::Beginning).and_then(|l| Ok((l, side(Offset::End)?))) {
                Ok(both) => both,
                Err(error) => {
                    reading.errors.push(error);
                    self.watermarks_one_by_one(&list, reading)
                }
            }
        };
        for topic in topics {
            let marks = partitions.get(topic).map(|ids| {
                ids.iter()
                    .filter_map(|&p| {
                        let key = (topic.clone(), p);
                        let high = *highs.get(&key)?;
                        let low = lows.get(&key).copied().unwrap_or(0).min(high);
                        Some(Marks {
                            partition: p,
                            low,
                            high,
                        })
                    })
                    .collect()
            });
            reading.topics.insert(topic.clone(), marks);
        }
    }

    /// The slow path when batched ListOffsets fails: two requests per partition.
    fn watermarks_one_by_one(
        &self,
        list: &TopicPartitionList,
        reading: &mut KafkaReading,
    ) -> (HashMap<Tp, i64>, HashMap<Tp, i64>) {
        let mut lows = HashMap::new();
        let mut highs = HashMap::new();
        for elem in list.elements() {
            match self
                .admin
                .fetch_watermarks(elem.topic(), elem.partition(), self.timeout)
            {
                Ok((low, high)) => {
                    let key = (elem.topic().to_string(), elem.partition());
                    lows.insert(key.clone(), low);
                    highs.insert(key, high);
                }
                Err(source) => reading.errors.push(MonitorError::Watermarks(source)),
            }
        }
        (lows, highs)
    }

    fn read_groups(
        &mut self,
        groups: &[GroupRequest],
        partitions: &BTreeMap<String, Vec<i32>>,
        reading: &mut KafkaReading,
    ) {
        for request in groups {
            if !self.groups.contains_key(&request.group) {
                match client(
                    &self.bootstrap,
                    &request.group,
                    "storefleet-monitor-offsets",
                ) {
                    Ok(c) => {
                        self.groups.insert(request.group.clone(), c);
                    }
                    Err(error) => reading.errors.push(error),
                }
            }
        }
        let admin = &self.admin;
        let clients = &self.groups;
        let timeout = self.timeout;
        // One thread per group: each is a round trip or two to the coordinator.
        let results: Vec<(String, GroupReading, Vec<MonitorError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .iter()
                .map(|request| {
                    s.spawn(move || {
                        read_group(
                            admin,
                            clients.get(&request.group),
                            request,
                            partitions,
                            timeout,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(groups)
                .map(|(h, request)| {
                    h.join().unwrap_or_else(|_| {
                        (request.group.clone(), GroupReading::default(), Vec::new())
                    })
                })
                .collect()
        });
        for (group, group_reading, errors) in results {
            reading.errors.extend(errors);
            reading.groups.insert(group, group_reading);
        }
    }

    fn read_oldest(&mut self, groups: &[GroupRequest], reading: &mut KafkaReading) {
        // Where each lagging partition's unconsumed records start, per group, and the high
        // watermark now.
        let mut wanted: BTreeMap<(String, i32, i64), i64> = BTreeMap::new();
        for request in groups {
            let Some(Some(committed)) = reading.groups.get(&request.group).map(|g| &g.committed)
            else {
                continue;
            };
            for topic in &request.topics {
                for marks in reading.marks(topic).into_iter().flatten() {
                    let c = committed
                        .get(&(topic.clone(), marks.partition))
                        .copied()
                        .flatten();
                    let start = KafkaReading::start_offset(c, *marks);
                    if start < marks.high {
                        wanted.insert((topic.clone(), marks.partition, start), marks.high);
                    }
                }
            }
        }
        // A record found stays the first one at or after its offset; "nothing readable"
        // holds only while no record arrives.
        self.oldest.retain(|key, (found, high_then)| {
            wanted
                .get(key)
                .is_some_and(|high| matches!(found, Oldest::Record(_)) || high == high_then)
        });
        // A committed offset that moved into what an earlier fetch returned: no read needed.
        for (key, high) in &wanted {
            if self.oldest.contains_key(key) {
                continue;
            }
            let (topic, partition, offset) = key;
            let known = self
                .ahead
                .get(&(topic.clone(), *partition))
                .and_then(|a| a.first_from(*offset));
            if let Some(oldest) = known {
                self.oldest.insert(key.clone(), (oldest, *high));
            }
        }
        self.ahead
            .retain(|(t, p), _| wanted.keys().any(|(wt, wp, _)| wt == t && wp == p));
        let mut missing: Vec<((String, i32, i64), i64)> = wanted
            .iter()
            .filter(|(key, _)| !self.oldest.contains_key(*key))
            .map(|(key, high)| (key.clone(), *high))
            .collect();
        // A partition can be wanted at two offsets (two groups read one topic): one offset
        // per partition per round.
        while !missing.is_empty() {
            let mut round: BTreeMap<Tp, (i64, i64)> = BTreeMap::new();
            missing.retain(|((t, p, o), high)| match round.entry((t.clone(), *p)) {
                std::collections::btree_map::Entry::Occupied(_) => true,
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert((*o, *high));
                    false
                }
            });
            match self.read_first_records(&round) {
                Ok((found, ahead)) => {
                    self.ahead.extend(ahead);
                    for ((topic, partition), (offset, high)) in round {
                        // Unread in time: not cached, the next sample tries again.
                        if let Some(oldest) = found.get(&(topic.clone(), partition)) {
                            self.oldest
                                .insert((topic, partition, offset), (*oldest, high));
                        }
                    }
                }
                Err(error) => {
                    reading.errors.push(error);
                    break;
                }
            }
        }
        for key in wanted.into_keys() {
            if let Some((oldest, _)) = self.oldest.get(&key) {
                reading.oldest.insert(key, *oldest);
            }
        }
    }

    /// What lies at or after each start offset: the first record's timestamp, or nothing
    /// readable before the high watermark. Partitions that told neither before the deadline
    /// are absent.
    fn read_first_records(
        &self,
        starts: &BTreeMap<Tp, (i64, i64)>,
    ) -> Result<FirstRecords, MonitorError> {
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), (offset, _)) in starts {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(MonitorError::OldestRecords)?;
        }
        self.reader
            .assign(&assignment)
            .map_err(MonitorError::OldestRecords)?;
        let mut found: HashMap<Tp, Oldest> = HashMap::new();
        let mut ahead: HashMap<Tp, ReadAhead> = HashMap::new();
        let deadline = Instant::now() + self.oldest_bound;
        while found.len() < starts.len() && Instant::now() < deadline {
            match self.reader.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let key = (message.topic().to_string(), message.partition());
                    let Some((start, _)) = starts.get(&key) else {
                        continue;
                    };
                    if message.offset() < *start {
                        continue;
                    }
                    let stamp = message.timestamp().to_millis();
                    keep_ahead(&mut ahead, &key, *start, message.offset(), stamp);
                    found.entry(key).or_insert(Oldest::Record(stamp));
                }
                // The fetch reached the end of a partition (the event names no topic):
                // a partition of that number whose position passed its high watermark
                // without a record holds only transaction markers or aborted records.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    let positions = self
                        .reader
                        .position()
                        .map_err(MonitorError::OldestRecords)?;
                    for elem in positions.elements() {
                        let key = (elem.topic().to_string(), elem.partition());
                        if elem.partition() != partition || found.contains_key(&key) {
                            continue;
                        }
                        let Some((_, high)) = starts.get(&key) else {
                            continue;
                        };
                        if matches!(elem.offset(), Offset::Offset(o) if o >= *high) {
                            found.insert(key, Oldest::Nothing);
                        }
                    }
                }
                Some(Err(_)) | None => {}
            }
        }
        // What the last fetch already delivered is kept as read-ahead too (no waiting).
        for _ in 0..READ_AHEAD_MAX {
            let Some(Ok(message)) = self.reader.poll(Duration::ZERO) else {
                break;
            };
            let key = (message.topic().to_string(), message.partition());
            if let Some((start, _)) = starts.get(&key) {
                if message.offset() >= *start {
                    let stamp = message.timestamp().to_millis();
                    keep_ahead(&mut ahead, &key, *start, message.offset(), stamp);
                }
            }
        }
        // Stop fetching until the next sample reassigns.
        let _ = self.reader.unassign();
        Ok((found, ahead))
    }
}

type GroupResult = (String, GroupReading, Vec<MonitorError>);

fn read_group(
    admin: &BaseConsumer,
    client: Option<&BaseConsumer>,
    request: &GroupRequest,
    partitions: &BTreeMap<String, Vec<i32>>,
    timeout: Duration,
) -> GroupResult {
    let mut errors = Vec::new();
    let mut reading = GroupReading::default();
    let mut list = TopicPartitionList::new();
    for topic in &request.topics {
        for &p in partitions.get(topic).into_iter().flatten() {
            list.add_partition(topic, p);
        }
    }
    if let Some(client) = client {
        if list.count() == 0 {
            reading.committed = Some(HashMap::new());
        } else {
            match client.committed_offsets(list, timeout) {
                Ok(answer) => {
                    reading.committed = Some(
                        answer
                            .elements()
                            .iter()
                            .map(|e| {
                                let offset = match e.offset() {
                                    Offset::Offset(o) if o >= 0 => Some(o),
                                    _ => None,
                                };
                                ((e.topic().to_string(), e.partition()), offset)
                            })
                            .collect(),
                    );
                }
                Err(source) => errors.push(MonitorError::Committed {
                    group: request.group.clone(),
                    source,
                }),
            }
        }
    }
    match admin.fetch_group_list(Some(&request.group), timeout) {
        Ok(list) => {
            let members = list
                .groups()
                .iter()
                .filter(|g| g.name() == request.group)
                .map(|g| g.members().len() as u32)
                .sum();
            reading.members = Some(members);
        }
        Err(source) => errors.push(MonitorError::Members {
            group: request.group.clone(),
            source,
        }),
    }
    (request.group.clone(), reading, errors)
}

/// Clients never assigned anything still queue events (errors while the broker is down);
/// taking them keeps those queues from growing.
fn drain(client: &BaseConsumer) {
    for _ in 0..1000 {
        if client.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

fn config(bootstrap: &str, group: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        // Carries the id for OffsetFetch; never subscribes, so never joins, never commits.
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed");
    config
}

fn create(config: &ClientConfig, bootstrap: &str) -> Result<BaseConsumer, MonitorError> {
    config.create().map_err(|source| MonitorError::Client {
        bootstrap: bootstrap.to_string(),
        source,
    })
}

fn client(bootstrap: &str, group: &str, client_id: &str) -> Result<BaseConsumer, MonitorError> {
    create(&config(bootstrap, group, client_id), bootstrap)
}

/// The oldest-record reader: assigned explicit offsets, reads what the processors read
/// (committed transactions only), says when a partition's end is reached.
fn reader(bootstrap: &str) -> Result<BaseConsumer, MonitorError> {
    let mut config = config(
        bootstrap,
        "storefleet.monitor-reader",
        "storefleet-monitor-reader",
    );
    config
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        // The first record of each partition matters; the rest of the batch is kept as
        // read-ahead (`ReadAhead`), so a committed offset that moves into it needs no read.
        .set("max.partition.fetch.bytes", "65536")
        .set("fetch.max.bytes", "1048576")
        .set("queued.max.messages.kbytes", "1024");
    create(&config, bootstrap)
}

#[cfg(test)]
mod read_ahead_tests {
    use super::*;

    #[test]
    fn a_committed_offset_inside_what_a_fetch_returned_needs_no_read() {
        let mut ahead = HashMap::new();
        let key: Tp = ("t".into(), 0);
        // A fetch from offset 10 returned records at 10, 11 and 14 (12, 13: markers).
        for (offset, ts) in [(10, 1_000), (11, 1_100), (14, 1_400)] {
            keep_ahead(&mut ahead, &key, 10, offset, Some(ts));
        }
        let range = &ahead[&key];
        assert_eq!(range.first_from(10), Some(Oldest::Record(Some(1_000))));
        assert_eq!(range.first_from(12), Some(Oldest::Record(Some(1_400))));
        assert_eq!(range.first_from(14), Some(Oldest::Record(Some(1_400))));
        assert_eq!(
            range.first_from(15),
            None,
            "beyond what was fetched: read again"
        );
        assert_eq!(range.first_from(9), None, "before it: read again");
        // An out-of-order or repeated offset never extends the range.
        keep_ahead(&mut ahead, &key, 10, 12, Some(9));
        assert_eq!(
            ahead[&key].first_from(12),
            Some(Oldest::Record(Some(1_400)))
        );
    }
}
