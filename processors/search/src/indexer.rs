//! The indexing loop: the single writer of an instance's index.
//!
//! It assigns itself every partition of its two inputs (no group membership: each instance
//! is a full replica) at the positions its index's last commit covers, applies each record
//! through [`Catalog`] (which drops older versions), and commits all shards when the oldest
//! uncommitted change has waited a quarter of the freshness target. The commit's payload
//! holds the next offset of every partition, so a restart, also after `kill -9`, resumes at
//! exactly what the index holds: nothing lost (records after the commit are read again),
//! nothing applied twice (records before it are not). After a commit it tells the query
//! side which products changed (cache invalidation), publishes the positions to its
//! consumer group (for the lag dashboard only; they are never read back) and announces the
//! commit on `search.index-commits.v1`.
//!
//! A rebuild (`fleet search rebuild`) reads both topics from the start into a new generation
//! on a second consumer while this loop keeps indexing and serving. When the new generation
//! reaches the end offsets seen when it began, this loop adopts it: it seeks its consumer
//! back to the new generation's positions and replays what came since into it, and the query
//! side switches to it once it has caught up with where the old one stood. No update is
//! missed (the replay covers everything after the build's end) and the old generation
//! answers queries until then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::search::{IndexCommitted, SourcePosition};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use runtime::policy::Failure;
use runtime::source::Source;
use runtime::{HandlerError, Input, Registrar, Topic};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::doc::{Availability, Catalog, Change, Product, ProductChange};
use crate::engine::Engine;
use crate::index::{Generation, IndexError, Layout, Opened, Payload, Writers};
use crate::SearchError;

/// Pending changes that force a commit whatever the time (bulk loads, rebuilds).
const BATCH_DOCS: usize = 50_000;

/// The input topics, by port.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub products: String,
    pub availability: String,
    /// Partitions of each input topic.
    pub partitions: Vec<(String, i32)>,
}

/// Index metrics (on the instance's `/metrics`).
#[derive(Clone)]
pub struct IndexMetrics {
    pub docs: IntCounterVec,
    pub commits: IntCounter,
    pub commit_seconds: Histogram,
    /// Commit time minus the newest source timestamp it includes.
    pub freshness_seconds: Histogram,
    pub documents: IntGauge,
    pub announce_failures: IntCounter,
    pub queries: IntCounterVec,
    pub query_seconds: Histogram,
    pub rebuilds: IntCounterVec,
}

impl IndexMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        let r = || Registrar::on(registry);
        let buckets = vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        Self {
            docs: r().counter_vec("search_documents_written_total", "Index writes by operation", &["op"]),
            commits: r().counter("search_commits_total", "Index commits"),
            commit_seconds: r().metric(Histogram::with_opts(
                HistogramOpts::new("search_commit_seconds", "Time to commit all shards").buckets(buckets.clone()),
            )),
            freshness_seconds: r().metric(Histogram::with_opts(
                HistogramOpts::new(
                    "search_freshness_seconds",
                    "Source change to searchable: commit time minus the newest source timestamp in it",
                )
                .buckets(buckets.clone()),
            )),
            documents: r().gauge("search_documents", "Listed products in the served index"),
            announce_failures: r().counter("search_announce_failures_total", "Commit announcements not delivered"),
            queries: r().counter_vec("search_queries_total", "Queries by outcome", &["outcome"]),
            query_seconds: r().metric(Histogram::with_opts(
                HistogramOpts::new("search_query_seconds", "Query service time").buckets(buckets),
            )),
            rebuilds: r().counter_vec("search_rebuilds_total", "Rebuilds by outcome", &["outcome"]),
        }
    }
}

/// What `GET /admin/status` shows; written only by the indexing loop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub generation: String,
    pub commit_seq: u64,
    pub positions: BTreeMap<String, i64>,
    pub end_offsets_at_start: BTreeMap<String, i64>,
    pub ready: bool,
    pub listed_products: usize,
    pub rebuild: RebuildStatus,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildStatus {
    /// idle, building, catching_up, done, failed
    pub state: String,
    pub generation: Option<String>,
    pub records: u64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
}

pub type SharedStatus = Arc<Mutex<Status>>;

/// A request to rebuild; answered with the new generation's name, or why not.
pub type RebuildRequest = oneshot::Sender<Result<String, String>>;

/// One generation being written: its writers, the catalog it holds and the positions it
/// covers. The live loop and a rebuild each own one.
pub struct IndexState {
    pub name: String,
    writers: Writers,
    catalog: Catalog,
    /// The shard each product's document is in (committed or pending).
    shards_of: HashMap<String, usize>,
    positions: BTreeMap<String, i64>,
    seq: u64,
    upserts: usize,
    deletes: usize,
    changed: HashSet<String>,
    oldest_pending: Option<Instant>,
    newest_source_at: Option<i64>,
}

/// Why a record was not applied.
pub enum Refused {
    /// Bad data: dead-letter it and move on.
    Invalid(HandlerError),
    /// The index could not be written: stop (a restart resumes from the last commit).
    Index(IndexError),
}

impl IndexState {
    /// Opens generation `name` under `root`. Torn shards (a crash between shard commits)
    /// are recovered in place: the positions are the oldest shard's, so the replay brings the
    /// lagging shards up while the others ignore what they already hold (versions); a product
    /// found in two shards (it moved between them in the torn commit) keeps its newer
    /// document, the other is deleted; the sequence continues past the newest shard's.
    pub fn open(
        root: &Path,
        name: &str,
        layout: &Layout,
        writer_memory: usize,
    ) -> Result<Self, IndexError> {
        let (writers, opened) = Generation::open(&root.join(name), layout, writer_memory)?;
        let (payload, products) = match opened {
            Opened::Consistent(p) => (p, writers.load()?),
            Opened::Torn {
                oldest,
                newest_seq,
                seqs,
            } => {
                warn!(
                    generation = name,
                    ?seqs,
                    "shards committed at different sequences (a crash between shard commits): replaying from the oldest shard's positions"
                );
                let products = newest_of_each(&writers, writers.load_by_shard()?);
                let payload = Payload {
                    seq: newest_seq,
                    ..oldest
                };
                (payload, products)
            }
        };
        let shards_of = products
            .iter()
            .map(|p| (p.id.clone(), writers.layout.shard_of(p)))
            .collect();
        Ok(Self {
            name: name.to_string(),
            writers,
            catalog: Catalog::from_products(products),
            shards_of,
            positions: payload.positions,
            seq: payload.seq,
            upserts: 0,
            deletes: 0,
            changed: HashSet::new(),
            oldest_pending: None,
            newest_source_at: payload.newest_source_at_ms,
        })
    }

    pub fn writers(&self) -> &Writers {
        &self.writers
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    pub fn listed(&self) -> usize {
        self.catalog.listed().count()
    }

    pub fn position(&self, topic: &str, partition: i32) -> i64 {
        self.positions
            .get(&Payload::position_key(topic, partition))
            .copied()
            .unwrap_or(0)
    }

    /// Every position at or past `targets` (missing targets count as reached).
    pub fn reached(&self, targets: &BTreeMap<String, i64>) -> bool {
        targets
            .iter()
            .all(|(k, end)| self.positions.get(k).copied().unwrap_or(0) >= *end)
    }

    fn advance(&mut self, topic: &str, partition: i32, offset: i64) {
        self.positions
            .insert(Payload::position_key(topic, partition), offset + 1);
        self.oldest_pending.get_or_insert_with(Instant::now);
    }

    /// Is `offset` of that partition already in this generation?
    pub fn covers(&self, topic: &str, partition: i32, offset: i64) -> bool {
        offset < self.position(topic, partition)
    }

    /// Applies one decoded record (not yet covered).
    pub fn apply(&mut self, inputs: &Inputs, input: &Input) -> Result<(), Refused> {
        let invalid = |e: String| Refused::Invalid(HandlerError::invalid(e));
        let change = if input.topic == inputs.products {
            match &input.value {
                None => {
                    let id = product_key(input.key.as_deref())
                        .ok_or_else(|| invalid("tombstone key is not an Avro ProductKey".into()))?;
                    self.catalog.tombstone(&id)
                }
                Some(_) => {
                    let change: ProductChange = input.decode().map_err(Refused::Invalid)?;
                    let ts = change.source.ts_ms;
                    let change = self
                        .catalog
                        .catalog(change)
                        .map_err(|e| invalid(e.to_string()))?;
                    self.newest_source_at = self.newest_source_at.max(Some(ts));
                    change
                }
            }
        } else if input.topic == inputs.availability {
            match &input.value {
                None => Change::None,
                Some(_) => {
                    let update: Availability = input.decode().map_err(Refused::Invalid)?;
                    let change = self
                        .catalog
                        .availability(update)
                        .map_err(|e| invalid(e.to_string()))?;
                    self.newest_source_at = self.newest_source_at.max(input.timestamp_ms);
                    change
                }
            }
        } else {
            return Err(invalid(format!(
                "`{}` is not an input of the index",
                input.topic
            )));
        };
        match change {
            Change::None => {}
            Change::Upsert(product) => {
                let previous = self.shards_of.get(&product.id).copied();
                self.writers
                    .upsert(&product, previous)
                    .map_err(Refused::Index)?;
                self.shards_of
                    .insert(product.id.clone(), self.writers.layout.shard_of(&product));
                self.upserts += 1;
                self.changed.insert(product.id);
            }
            Change::Delete(id) => {
                if let Some(shard) = self.shards_of.remove(&id) {
                    self.writers.delete(&id, shard);
                }
                self.deletes += 1;
                self.changed.insert(id);
            }
        }
        self.advance(&input.topic, input.partition, input.offset);
        Ok(())
    }

    /// Records a dead-lettered record as read.
    pub fn skip(&mut self, topic: &str, partition: i32, offset: i64) {
        self.advance(topic, partition, offset);
    }

    pub fn pending(&self) -> bool {
        self.oldest_pending.is_some()
    }

    /// A commit is due: changes waited `wait`, or a batch is full.
    pub fn commit_due(&self, wait: Duration) -> bool {
        self.upserts + self.deletes >= BATCH_DOCS
            || self.oldest_pending.is_some_and(|t| t.elapsed() >= wait)
    }

    /// When the oldest pending change reaches `wait`.
    pub fn due_at(&self, wait: Duration) -> Option<Instant> {
        self.oldest_pending.map(|t| t + wait)
    }

    /// Commits every shard (blocking: fsyncs), returning what the commit covered.
    pub fn commit(&mut self) -> Result<Committed, IndexError> {
        let started = Instant::now();
        let payload = Payload {
            seq: self.seq + 1,
            positions: self.positions.clone(),
            committed_at_ms: runtime::now_ms(),
            newest_source_at_ms: self.newest_source_at,
        };
        self.writers.commit(&payload)?;
        self.seq = payload.seq;
        let committed = Committed {
            payload,
            upserts: std::mem::take(&mut self.upserts),
            deletes: std::mem::take(&mut self.deletes),
            changed: std::mem::take(&mut self.changed),
            took: started.elapsed(),
        };
        self.oldest_pending = None;
        Ok(committed)
    }

    pub fn close(self) -> Result<(), IndexError> {
        self.writers.close()
    }
}

pub struct Committed {
    pub payload: Payload,
    pub upserts: usize,
    pub deletes: usize,
    pub changed: HashSet<String>,
    pub took: Duration,
}

/// The product id of a `cdc.catalog.products.v1` key: Confluent framing (magic byte, schema
/// id) around an Avro record whose one field is the id string.
pub fn product_key(key: Option<&[u8]>) -> Option<String> {
    let key = key?;
    let body = key.strip_prefix(&[0u8])?.get(4..)?;
    // Avro string: zigzag varint length, then UTF-8 bytes.
    let mut value: u64 = 0;
    let mut shift = 0;
    let mut used = 0;
    for b in body.iter().take(10) {
        used += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let len = usize::try_from((value >> 1) as i64 ^ -((value & 1) as i64)).ok()?;
    let text = body.get(used..used + len)?;
    (used + len == body.len()).then(|| String::from_utf8(text.to_vec()).ok())?
}

/// Where an instance keeps its generations: `<root>/gen-<n>/`, and `<root>/CURRENT` naming
/// the one served (replaced atomically by a rename).
pub struct Root(pub PathBuf);

impl Root {
    pub fn current(&self) -> Option<String> {
        std::fs::read_to_string(self.0.join("CURRENT"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    pub fn set_current(&self, name: &str) -> Result<(), IndexError> {
        let tmp = self.0.join("CURRENT.tmp");
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.0)?;
            std::fs::write(&tmp, name)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, self.0.join("CURRENT"))?;
            std::fs::File::open(&self.0)?.sync_all()
        };
        write().map_err(|source| IndexError::Io {
            what: "switching CURRENT".into(),
            source,
        })
    }

    /// A generation name not used yet.
    pub fn next(&self) -> String {
        let used = std::fs::read_dir(&self.0)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_prefix("gen-")?
                            .parse::<u64>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        format!("gen-{}", used + 1)
    }

    pub fn remove(&self, name: &str) {
        if let Err(e) = std::fs::remove_dir_all(self.0.join(name)) {
            warn!(generation = name, error = %e, "could not remove an old generation");
        }
    }
}

/// Of a torn generation's documents (with their shards), the newest of each product; an older
/// copy in another shard is deleted (by the next commit).
fn newest_of_each(writers: &Writers, docs: Vec<(usize, Product)>) -> Vec<Product> {
    let version = |p: &Product| (p.catalog_lsn, p.availability_seq);
    let mut newest: HashMap<String, (usize, Product)> = HashMap::new();
    for (shard, product) in docs {
        if let Some((kept_shard, kept)) = newest.get(&product.id) {
            if version(&product) <= version(kept) {
                writers.delete(&product.id, shard);
                continue;
            }
            writers.delete(&product.id, *kept_shard);
        }
        newest.insert(product.id.clone(), (shard, product));
    }
    newest.into_values().map(|(_, p)| p).collect()
}

/// Opens the generation to serve: CURRENT's (recovered in place if torn), or a fresh one.
pub fn open_current(
    root: &Root,
    layout: &Layout,
    writer_memory: usize,
) -> Result<IndexState, SearchError> {
    if let Some(name) = root.current() {
        let state = IndexState::open(&root.0, &name, layout, writer_memory)?;
        info!(generation = %name, seq = state.seq, products = state.listed(), "resuming the index where its last commit stands");
        return Ok(state);
    }
    let name = root.next();
    let state = IndexState::open(&root.0, &name, layout, writer_memory)?;
    root.set_current(&name)?;
    info!(generation = %name, "starting an empty index: reading the topics from the start");
    Ok(state)
}

/// Everything the indexing loop needs.
pub struct Indexer {
    pub source: Arc<Source>,
    pub inputs: Inputs,
    pub commits: Topic<IndexCommitted>,
    pub layout: Layout,
    pub root: Root,
    pub writer_memory: usize,
    /// Commit when the oldest pending change waited this long.
    pub commit_wait: Duration,
    pub engine: Arc<Engine>,
    pub status: SharedStatus,
    pub metrics: IndexMetrics,
    /// Consumer group the positions are published to (dashboards only).
    pub group: String,
    pub index_name: String,
}

impl Indexer {
    /// The indexing loop, until `shutdown`.
    pub async fn run(
        self,
        mut state: IndexState,
        mut rebuilds: mpsc::Receiver<RebuildRequest>,
        shutdown: CancellationToken,
    ) -> Result<(), SearchError> {
        let consumer = self.source.consumer(&self.group)?;
        let ends = end_offsets(&consumer, &self.inputs).await?;
        assign(&consumer, &self.inputs, &state)?;
        // Every input partition, always (what /health reports and the demo waits for).
        self.source
            .metrics()
            .assigned_partitions
            .set(self.inputs.partitions.len() as i64);
        // An index that holds something answers at once (stale by the downtime); an empty
        // one only once it has read what the topics held at start.
        let resumed = state.seq > 0;
        self.engine
            .swap(state.writers().searchable.clone(), state.seq());
        self.publish_status(&state, |s| {
            s.end_offsets_at_start = ends.clone();
            s.ready = resumed || state.reached(&ends);
            s.rebuild.state = "idle".into();
        });
        let (built_tx, mut built_rx) = mpsc::channel::<Result<IndexState, SearchError>>(1);
        let mut building = false;
        // After adopting a rebuilt generation: the old one keeps answering until the new one
        // reaches these positions.
        let mut swap_at: Option<(BTreeMap<String, i64>, String)> = None;
        loop {
            let due = state.due_at(self.commit_wait);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(reply) = rebuilds.recv() => {
                    if building || swap_at.is_some() {
                        let _ = reply.send(Err("a rebuild is already running".into()));
                        continue;
                    }
                    let name = self.root.next();
                    // Reserve the name now so a second request cannot take it.
                    if let Err(e) = std::fs::create_dir_all(self.root.0.join(&name)) {
                        let _ = reply.send(Err(format!("creating {name}: {e}")));
                        continue;
                    }
                    building = true;
                    let _ = reply.send(Ok(name.clone()));
                    self.publish_status(&state, |s| {
                        s.rebuild = RebuildStatus {
                            state: "building".into(),
                            generation: Some(name.clone()),
                            started_at_ms: Some(runtime::now_ms()),
                            ..Default::default()
                        }
                    });
                    self.metrics.rebuilds.with_label_values(&["started"]).inc();
                    let build = Build {
                        source: self.source.clone(),
                        inputs: self.inputs.clone(),
                        root: self.root.0.clone(),
                        name,
                        layout: self.layout.clone(),
                        writer_memory: self.writer_memory,
                        status: self.status.clone(),
                        group: format!("{}.rebuild", self.group),
                    };
                    let tx = built_tx.clone();
                    let token = shutdown.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(build.run(token).await).await;
                    });
                }
                Some(built) = built_rx.recv() => {
                    building = false;
                    match built {
                        Ok(next) => {
                            info!(generation = %next.name, seq = next.seq, "rebuilt generation adopted: replaying what came since its end");
                            let target = state.positions().clone();
                            self.commit(&consumer, &mut state).await?;
                            let old = std::mem::replace(&mut state, next);
                            let old_name = old.name.clone();
                            tokio::task::spawn_blocking(move || old.close()).await.ok();
                            assign(&consumer, &self.inputs, &state)?;
                            self.root.set_current(&state.name)?;
                            swap_at = Some((target, old_name));
                            self.publish_status(&state, |s| s.rebuild.state = "catching_up".into());
                        }
                        Err(e) => {
                            error!(error = %e, "rebuild failed; the served index is unchanged");
                            self.metrics.rebuilds.with_label_values(&["failed"]).inc();
                            self.publish_status(&state, |s| {
                                s.rebuild.state = "failed".into();
                                s.rebuild.error = Some(e.to_string());
                                s.rebuild.finished_at_ms = Some(runtime::now_ms());
                            });
                        }
                    }
                }
                message = consumer.recv() => {
                    let message = message.map_err(runtime::RuntimeError::from)?.detach();
                    self.handle(&mut state, &message, &shutdown).await?;
                }
                _ = sleep_until(due) => {}
            }
            if state.commit_due(self.commit_wait) {
                self.commit(&consumer, &mut state).await?;
                let serving_new = swap_at.is_none();
                if let Some((_, old)) = swap_at.as_ref().filter(|(t, _)| state.reached(t)) {
                    info!(generation = %state.name, "rebuilt generation caught up: serving it");
                    self.engine
                        .swap(state.writers().searchable.clone(), state.seq());
                    self.root.remove(old);
                    swap_at = None;
                    self.metrics.rebuilds.with_label_values(&["done"]).inc();
                    self.publish_status(&state, |s| {
                        s.rebuild.state = "done".into();
                        s.rebuild.finished_at_ms = Some(runtime::now_ms());
                    });
                }
                if serving_new {
                    let ready = state.reached(&ends);
                    self.publish_status(&state, |s| s.ready = s.ready || ready);
                }
            }
        }
        if state.pending() {
            self.commit(&consumer, &mut state).await?;
        }
        tokio::task::spawn_blocking(move || state.close())
            .await
            .map_err(|e| SearchError::Config(format!("closing the index: {e}")))??;
        Ok(())
    }

    async fn handle(
        &self,
        state: &mut IndexState,
        message: &OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Result<(), SearchError> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        self.source
            .metrics()
            .records_in
            .with_label_values(&[topic])
            .inc();
        if state.covers(topic, partition, offset) {
            return Ok(());
        }
        let Some(decoded) = self.source.decode(message, shutdown).await else {
            return Ok(()); // shutting down: not applied, read again after restart
        };
        let refused = match decoded {
            Ok(input) => match state.apply(&self.inputs, &input) {
                Ok(()) => return Ok(()),
                Err(Refused::Index(e)) => return Err(e.into()),
                Err(Refused::Invalid(e)) => Failure::Handler(e),
            },
            Err(failure) => failure,
        };
        warn!(%topic, partition, offset, reason = %refused, "record refused: dead-lettered");
        self.source.dead_letter(message, &refused).await?;
        state.skip(topic, partition, offset);
        Ok(())
    }

    /// Commits, makes it searchable, invalidates the cache, publishes positions and
    /// announces the commit.
    async fn commit(
        &self,
        consumer: &StreamConsumer,
        state: &mut IndexState,
    ) -> Result<(), SearchError> {
        if !state.pending() {
            return Ok(());
        }
        let committed = tokio::task::block_in_place(|| state.commit())?;
        let serving = Arc::ptr_eq(&self.engine.searchable(), &state.writers().searchable);
        if serving {
            self.engine.committed(
                committed.payload.seq,
                committed.changed.iter().map(String::as_str),
            );
        }
        let m = &self.metrics;
        m.commits.inc();
        m.commit_seconds.observe(committed.took.as_secs_f64());
        m.docs
            .with_label_values(&["upsert"])
            .inc_by(committed.upserts as u64);
        m.docs
            .with_label_values(&["delete"])
            .inc_by(committed.deletes as u64);
        if let Some(newest) = committed.payload.newest_source_at_ms {
            if committed.upserts + committed.deletes > 0 {
                let lag = (committed.payload.committed_at_ms - newest).max(0);
                m.freshness_seconds.observe(lag as f64 / 1e3);
            }
        }
        m.documents.set(state.listed() as i64);
        self.publish_status(state, |_| {});
        publish(consumer, &committed.payload.positions);
        let positions: Vec<SourcePosition> = committed
            .payload
            .positions
            .iter()
            .filter_map(|(k, offset)| {
                let (topic, partition) = k.rsplit_once('/')?;
                Some(SourcePosition {
                    topic: topic.into(),
                    partition: partition.parse().ok()?,
                    offset: *offset,
                })
            })
            .collect();
        let commit_id = format!("{}/{}", state.name, committed.payload.seq);
        let event = IndexCommitted {
            event_id: runtime::ids::derived(&[&self.index_name, &commit_id]),
            occurred_at: committed.payload.committed_at_ms,
            correlation_id: commit_id.clone(),
            causation_id: None,
            index_name: self.index_name.clone(),
            commit_id,
            documents_upserted: i32::try_from(committed.upserts).unwrap_or(i32::MAX),
            documents_deleted: i32::try_from(committed.deletes).unwrap_or(i32::MAX),
            positions,
            newest_source_at: committed.payload.newest_source_at_ms,
            duration_ms: committed.took.as_millis() as i64,
        };
        // The announcement is informational: a lost one is counted, never retried into
        // the indexing path.
        let source = self.source.clone();
        let topic = self.commits.clone();
        let key = self.index_name.clone();
        let failures = m.announce_failures.clone();
        tokio::spawn(async move {
            if let Err(e) = source.send(&topic, &key, &event).await {
                failures.inc();
                warn!(error = %e, "commit announcement not delivered");
            }
        });
        Ok(())
    }

    fn publish_status(&self, state: &IndexState, also: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.generation = state.name.clone();
        s.commit_seq = state.seq();
        s.positions = state.positions().clone();
        s.listed_products = state.listed();
        also(&mut s);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// End offsets of every input partition now.
async fn end_offsets(
    consumer: &StreamConsumer,
    inputs: &Inputs,
) -> Result<BTreeMap<String, i64>, SearchError> {
    let mut out = BTreeMap::new();
    for (topic, partition) in &inputs.partitions {
        let (_, high) = tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(topic, *partition, Duration::from_secs(10))
        })
        .map_err(runtime::RuntimeError::from)?;
        out.insert(Payload::position_key(topic, *partition), high);
    }
    Ok(out)
}

/// Assigns every input partition at `state`'s position.
fn assign(
    consumer: &StreamConsumer,
    inputs: &Inputs,
    state: &IndexState,
) -> Result<(), SearchError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in &inputs.partitions {
        let at = state.position(topic, *partition);
        let offset = if at == 0 {
            Offset::Beginning
        } else {
            Offset::Offset(at)
        };
        tpl.add_partition_offset(topic, *partition, offset)
            .map_err(runtime::RuntimeError::from)?;
    }
    consumer.assign(&tpl).map_err(runtime::RuntimeError::from)?;
    Ok(())
}

/// Publishes `positions` as the group's committed offsets, for lag dashboards only.
fn publish(consumer: &StreamConsumer, positions: &BTreeMap<String, i64>) {
    let mut tpl = TopicPartitionList::new();
    for (key, offset) in positions {
        if let Some((topic, partition)) = key.rsplit_once('/') {
            if let Ok(partition) = partition.parse() {
                let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(*offset));
            }
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "publishing positions for the dashboard failed");
    }
}

/// A rebuild: both topics from the start into a new generation, up to the end offsets seen
/// when it began.
struct Build {
    source: Arc<Source>,
    inputs: Inputs,
    root: PathBuf,
    name: String,
    layout: Layout,
    writer_memory: usize,
    status: SharedStatus,
    group: String,
}

impl Build {
    async fn run(self, shutdown: CancellationToken) -> Result<IndexState, SearchError> {
        let mut state = IndexState::open(&self.root, &self.name, &self.layout, self.writer_memory)?;
        let consumer = self.source.consumer(&self.group)?;
        let ends = end_offsets(&consumer, &self.inputs).await?;
        assign(&consumer, &self.inputs, &state)?;
        let mut records = 0u64;
        while !state.reached(&ends) {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Err(SearchError::Config("stopped during a rebuild".into())),
                m = consumer.recv() => m.map_err(runtime::RuntimeError::from)?.detach(),
            };
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            records += 1;
            let decoded = match self.source.decode(&message, &shutdown).await {
                None => return Err(SearchError::Config("stopped during a rebuild".into())),
                Some(d) => d,
            };
            // A refused record was dead-lettered when the live index met it: skip it here.
            match decoded {
                Ok(input) => match state.apply(&self.inputs, &input) {
                    Ok(()) => {}
                    Err(Refused::Index(e)) => return Err(e.into()),
                    Err(Refused::Invalid(_)) => state.skip(topic, partition, offset),
                },
                Err(_) => state.skip(topic, partition, offset),
            }
            if state.commit_due(Duration::from_secs(3600)) {
                tokio::task::block_in_place(|| state.commit())?;
            }
            if records.is_multiple_of(10_000) {
                self.status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rebuild
                    .records = records;
            }
        }
        tokio::task::block_in_place(|| state.commit())?;
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rebuild
            .records = records;
        info!(generation = %self.name, records, products = state.listed(), "rebuild read the topics to their end");
        Ok(state)
    }
}
