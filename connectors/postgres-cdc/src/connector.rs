//! The connector's run loop: publication and schemas → slot (created with an exported
//! snapshot, or found) → initial snapshot (chunked, resumable) → streaming.
//!
//! Single writers: the main task is the only producer of change records and the only writer
//! of the progress file; the acker task is the only one that raises the acknowledged LSN,
//! strictly in commit order; the replication thread is the only user of the replication
//! connection. So an LSN is confirmed to PostgreSQL only after Kafka acknowledged every
//! record of its transaction and of every earlier one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::Schema;
use codec::RegistryClient;
use pg_walstream::{ChangeEvent, EventType, ReplicaIdentity, RowData, SharedLsnFeedback};
use prometheus::{IntCounterVec, IntGauge};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tasks::Tasks;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use topology::{CdcTable, PostgresCdcParams};
use tracing::{error, info, warn};

use crate::convert::{key_only_row, key_value, row_value, ConvertError, Datum};
use crate::db::{self, pg, ChunkReader, Visibility};
use crate::envelope::{envelope, Change, Op, SnapshotMark, Source, TxBlock};
use crate::progress::{self, Fence, Progress};
use crate::replication::{self, ReplicationArgs, SlotReady, TxnCounters};
use crate::schema::{Column, TableShape};
use crate::types::ColumnType;
use crate::CdcError;

/// Everything a connector needs, resolved and validated before anything starts.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub params: PostgresCdcParams,
    /// Plain connection to the captured database.
    pub database_url: String,
    /// Replication connection (`replication=database`, UTC/ISO output settings).
    pub replication_url: String,
    pub bootstrap_servers: String,
    pub registry_url: String,
    pub state_dir: PathBuf,
    pub admin_addr: SocketAddr,
    /// The dead-letter topic's value schema (`storefleet.dlq.DeadLetter`).
    pub dead_letter_schema: String,
    /// Drop the slot and progress first: a new initial snapshot (recovery from an
    /// invalidated slot).
    pub resnapshot: bool,
}

/// Output settings for values read as text, identical on both connections.
const OUTPUT_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c bytea_output=hex";

impl ConnectorConfig {
    /// `server_url` is a `postgres://user@host:port/anydb` URL (`STOREFLEET_POSTGRES`); the
    /// connector's database replaces its path.
    pub fn new(
        name: &str,
        params: PostgresCdcParams,
        topology: &topology::Topology,
        server_url: &str,
        stack: &runtime::StackEnv,
        admin_addr: SocketAddr,
    ) -> Result<Self, CdcError> {
        let dead_letter_schema = topology
            .topic(&params.dead_letter)
            .and_then(|t| t.value_schema.as_deref())
            .and_then(|path| topology.schema_text(path))
            .ok_or_else(|| {
                CdcError::Config(format!(
                    "dead-letter topic `{}` has no value schema in the topology",
                    params.dead_letter
                ))
            })?
            .to_string();
        let database_url = with_database(server_url, &params.database)?;
        let options: String = OUTPUT_OPTIONS
            .chars()
            .map(|c| match c {
                ' ' => "%20".to_string(),
                '=' => "%3D".to_string(),
                c => c.to_string(),
            })
            .collect();
        let replication_url = format!("{database_url}?replication=database&options={options}");
        Ok(Self {
            name: name.to_string(),
            params,
            database_url,
            replication_url,
            bootstrap_servers: stack.bootstrap_servers.clone(),
            registry_url: stack.registry_url.clone(),
            state_dir: stack.state_dir.clone(),
            admin_addr,
            dead_letter_schema,
            resnapshot: false,
        })
    }
}

fn with_database(server_url: &str, database: &str) -> Result<String, CdcError> {
    runtime::postgres_database_url(server_url, database).map_err(|e| CdcError::Invalid {
        what: format!("the URL of database {database}"),
        source: e.into(),
    })
}

/// A registered schema: its registry id and parsed form.
struct Codec {
    id: u32,
    schema: Schema,
}

impl Codec {
    async fn register(
        registry: &RegistryClient,
        subject: &str,
        schema: &serde_json::Value,
    ) -> Result<Self, CdcError> {
        let text = schema.to_string();
        let id = registry.register(subject, &text).await?;
        let schema = Schema::parse_str(&text).map_err(|e| CdcError::Invalid {
            what: format!("generated schema for {subject}"),
            source: e.into(),
        })?;
        Ok(Self { id, schema })
    }

    fn encode(&self, value: Value) -> Result<Vec<u8>, CdcError> {
        #[allow(deprecated)]
        let body =
            apache_avro::to_avro_datum(&self.schema, value).map_err(|e| CdcError::Invalid {
                what: "value does not fit its schema".into(),
                source: e.into(),
            })?;
        Ok(codec::frame(self.id, &body))
    }
}

struct Table {
    spec: CdcTable,
    shape: TableShape,
    key: Codec,
    value: Codec,
}

struct Metrics {
    base: runtime::Metrics,
    changes: IntCounterVec,
    snapshot_rows: IntCounterVec,
    dead_lettered: IntCounterVec,
    schema_changes: IntCounterVec,
    retained_wal_bytes: IntGauge,
    slot_invalidated: IntGauge,
    acknowledged_lsn: IntGauge,
    lag_ms: IntGauge,
    snapshot_running: IntGauge,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let base = runtime::Metrics::new(name, 0);
        let register = runtime::Registrar::on(base.registry());
        let counter = |n: &str, help: &str, labels: &[&str]| register.counter_vec(n, help, labels);
        let gauge = |n: &str, help: &str| register.gauge(n, help);
        Self {
            changes: counter(
                "cdc_changes_total",
                "Change events written",
                &["table", "op"],
            ),
            snapshot_rows: counter(
                "cdc_snapshot_rows_total",
                "Rows read by the snapshot",
                &["table"],
            ),
            dead_lettered: counter(
                "cdc_dead_lettered_total",
                "Rows that could not be converted",
                &["table"],
            ),
            schema_changes: counter(
                "cdc_schema_changes_total",
                "Value schemas evolved",
                &["table"],
            ),
            retained_wal_bytes: gauge(
                "cdc_slot_retained_wal_bytes",
                "WAL the slot holds back (bytes)",
            ),
            slot_invalidated: gauge("cdc_slot_invalidated", "1 when the slot lost WAL it needed"),
            acknowledged_lsn: gauge(
                "cdc_acknowledged_lsn",
                "Last LSN confirmed to PostgreSQL after Kafka acknowledged it",
            ),
            lag_ms: gauge(
                "cdc_lag_ms",
                "Commit-to-Kafka-acknowledgement time of the last transaction (ms)",
            ),
            snapshot_running: gauge("cdc_snapshot_running", "1 while the initial snapshot runs"),
            base,
        }
    }
}

/// One transaction being streamed.
struct OpenTxn {
    xid: u32,
    commit_ms: i64,
    commit_lsn: u64,
    deliveries: Vec<DeliveryFuture>,
    order: i64,
    per_table: HashMap<String, i64>,
}

/// What the acker needs per transaction, in commit order.
struct Committed {
    end_lsn: u64,
    commit_ms: i64,
    deliveries: Vec<DeliveryFuture>,
}

/// Runs the connector until `shutdown` or a fatal error.
pub async fn run(config: ConnectorConfig, shutdown: CancellationToken) -> Result<(), CdcError> {
    let metrics = Metrics::new(&config.name);
    let phase = runtime::Phase::default();
    // The connector's tasks (admin server, acker, connections), drained before it returns.
    // Not the caller's token: the admin server answers (`stopping`) until the drain is over.
    let tasks = Tasks::new(CancellationToken::new());
    let admin = runtime::serve_admin(
        config.admin_addr,
        config.name.clone(),
        metrics.base.clone(),
        phase.clone(),
        None,
        &tasks,
    )
    .await
    .map_err(|e| CdcError::Invalid {
        what: "admin endpoint".into(),
        source: e.into(),
    })?;
    info!(connector = %config.name, %admin, "admin endpoint up");
    let result = Connector::start(config, metrics, shutdown, phase, &tasks).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    if let Err(e) = &result {
        error!(error = %e, "connector stopped");
    }
    result
}

struct Connector {
    config: ConnectorConfig,
    sql: Client,
    producer: FutureProducer,
    registry: RegistryClient,
    tables: HashMap<String, Table>,
    dead_letter: Codec,
    progress: Progress,
    progress_path: PathBuf,
    metrics: Metrics,
    last_commit_lsn: u64,
    tasks: Tasks,
}

impl Connector {
    async fn start(
        config: ConnectorConfig,
        metrics: Metrics,
        shutdown: CancellationToken,
        phase: runtime::Phase,
        tasks: &Tasks,
    ) -> Result<(), CdcError> {
        let params = &config.params;
        let sql = db::connect(&config.database_url, tasks).await?;
        let qualified: Vec<String> = params.tables.iter().map(|t| t.table.clone()).collect();
        db::ensure_publication(&sql, &params.publication, &qualified).await?;
        let registry = RegistryClient::new(&config.registry_url);
        let mut tables = HashMap::new();
        for spec in &params.tables {
            let shape = db::table_shape(&sql, &spec.table, &spec.record).await?;
            let key = Codec::register(
                &registry,
                &format!("{}-key", spec.topic),
                &shape.key_schema(),
            )
            .await?;
            let value = Codec::register(
                &registry,
                &format!("{}-value", spec.topic),
                &shape.value_schema(),
            )
            .await?;
            tables.insert(
                spec.table.clone(),
                Table {
                    spec: spec.clone(),
                    shape,
                    key,
                    value,
                },
            );
        }
        let dlq_schema: serde_json::Value = serde_json::from_str(&config.dead_letter_schema)
            .map_err(|e| CdcError::Invalid {
                what: "dead-letter schema".into(),
                source: e.into(),
            })?;
        let dead_letter = Codec::register(
            &registry,
            &format!("{}-value", params.dead_letter),
            &dlq_schema,
        )
        .await?;
        let producer: FutureProducer =
            runtime::producer_config(&config.bootstrap_servers, &config.name)
                .create()
                .map_err(|source| CdcError::Kafka {
                    what: "creating the producer",
                    source,
                })?;

        let progress_path = progress::path(&config.state_dir, &config.name);
        if config.resnapshot {
            warn!(slot = %params.slot, "re-snapshot requested: dropping the slot and its progress");
            db::drop_slot(&sql, &params.slot).await?;
            progress::remove(&progress_path)?;
        }
        if let Some(slot) = db::slot_state(&sql, &params.slot).await? {
            metrics.retained_wal_bytes.set(slot.retained_bytes);
            if slot.wal_status == "lost" {
                metrics.slot_invalidated.set(1);
                return Err(CdcError::SlotInvalidated(params.slot.clone()));
            }
        }
        let progress = progress::load(&progress_path)?
            .filter(|p| p.slot == params.slot)
            .unwrap_or_default();

        let mut connector = Connector {
            config,
            sql,
            producer,
            registry,
            tables,
            dead_letter,
            progress,
            progress_path,
            metrics,
            last_commit_lsn: 0,
            tasks: tasks.clone(),
        };
        connector.run(shutdown, phase).await
    }

    async fn run(
        &mut self,
        shutdown: CancellationToken,
        phase: runtime::Phase,
    ) -> Result<(), CdcError> {
        let params = self.config.params.clone();
        let counters = Arc::new(TxnCounters::default());
        let thread_stop = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let (events_tx, mut events) = mpsc::channel(8_192);
        let thread = replication::spawn(
            ReplicationArgs {
                url: self.config.replication_url.clone(),
                slot: params.slot.clone(),
                publication: params.publication.clone(),
                heartbeat: Duration::from_millis(params.heartbeat_ms.max(100)),
                counters: counters.clone(),
                shutdown: thread_stop.clone(),
            },
            ready_tx,
            go_rx,
            events_tx,
        );
        let outcome = async {
            let SlotReady { snapshot, feedback } = ready_rx
                .await
                .map_err(|_| CdcError::Stream("replication thread ended".into()))??;
            self.initial_snapshot(snapshot.as_deref(), &shutdown)
                .await?;
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let _ = go_tx.send(());
            phase.set(runtime::Phase::RUNNING);
            self.stream(&mut events, feedback, counters, &shutdown)
                .await
        }
        .await;
        phase.set(runtime::Phase::STOPPING);
        thread_stop.cancel();
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        outcome
    }

    /// Reads every table not yet fully read. With the slot's exported snapshot this is the
    /// exact state at the slot's consistent point; without it (the slot existed: a crash
    /// interrupted the snapshot) the remaining rows are read now, behind a visibility fence.
    async fn initial_snapshot(
        &mut self,
        exported: Option<&str>,
        shutdown: &CancellationToken,
    ) -> Result<(), CdcError> {
        let params = self.config.params.clone();
        let tables: Vec<String> = params.tables.iter().map(|t| t.table.clone()).collect();
        if exported.is_some() {
            // A new slot: whatever progress existed belonged to a dropped one.
            self.progress = Progress::fresh(&params.slot, 0, &tables);
        } else if self.progress.snapshot_done {
            return Ok(());
        } else if self.progress.slot.is_empty() {
            // The slot exists but no progress does (state folder lost): read everything again
            // behind a fence; consumers see duplicates, never a gap.
            warn!(slot = %params.slot, "slot exists without snapshot progress: re-reading all tables");
            self.progress = Progress::fresh(&params.slot, 0, &tables);
        }
        self.metrics.snapshot_running.set(1);
        // Its own connection: the transaction holds it for the whole snapshot.
        let mut reader = db::connect(&self.config.database_url, &self.tasks).await?;
        let txn = reader
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg("begin snapshot"))?;
        if let Some(name) = exported {
            txn.batch_execute(&format!(
                "SET TRANSACTION SNAPSHOT '{}'",
                name.replace('\'', "")
            ))
            .await
            .map_err(pg("import exported snapshot"))?;
        }
        let visibility_text: String = txn
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .await
            .map_err(pg("snapshot visibility"))?
            .get(0);
        let visibility = Visibility::parse(&visibility_text).ok_or_else(|| {
            CdcError::Unexpected(format!("unparsable snapshot `{visibility_text}`"))
        })?;
        if exported.is_some() {
            let lsn: Option<String> = txn
                .query_one(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[&params.slot],
                )
                .await
                .map_err(pg("consistent point"))?
                .get(0);
            self.progress.snapshot_lsn = lsn.as_deref().and_then(db::parse_lsn).unwrap_or(0);
            progress::save(&self.progress_path, &self.progress)?;
            info!(slot = %params.slot, snapshot = name_or(exported), lsn = %db::format_lsn(self.progress.snapshot_lsn), "slot created; reading the initial snapshot");
        } else {
            info!(slot = %params.slot, "resuming the interrupted snapshot behind a visibility fence");
        }
        let fenced = exported.is_none();
        // The snapshot's last record is marked `last` (Debezium's convention): it lives in the
        // last table that has rows in this snapshot, not in the last table listed (a table
        // added empty, such as product_images on a fresh catalog, would leave no mark).
        let mut last_table = tables.len() - 1;
        for (index, qualified) in tables.iter().enumerate().rev() {
            let (schema, table) = qualified.split_once('.').unwrap_or(("public", qualified));
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM {}.{})",
                db::quote_ident(schema),
                db::quote_ident(table)
            );
            let has_rows: bool = txn
                .query_one(&sql, &[])
                .await
                .map_err(pg("snapshot: does the table have rows"))?
                .get(0);
            if has_rows {
                last_table = index;
                break;
            }
        }
        for (index, qualified) in tables.iter().enumerate() {
            if self.progress.tables.get(qualified).is_some_and(|t| t.done) {
                continue;
            }
            if fenced {
                self.progress.fences.push(Fence {
                    table: qualified.clone(),
                    keys: Default::default(),
                    visibility: visibility.clone(),
                    until_lsn: u64::MAX,
                });
            }
            self.snapshot_table(&txn, qualified, index == last_table, fenced, shutdown)
                .await?;
            if shutdown.is_cancelled() {
                return Ok(());
            }
        }
        txn.commit().await.map_err(pg("end snapshot"))?;
        if fenced {
            // Every transaction the fenced reads saw committed before this position.
            let now: String = self
                .sql
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await
                .map_err(pg("current wal position"))?
                .get(0);
            let until = db::parse_lsn(&now).unwrap_or(u64::MAX);
            for fence in self
                .progress
                .fences
                .iter_mut()
                .filter(|f| f.until_lsn == u64::MAX)
            {
                fence.until_lsn = until;
            }
        }
        self.progress.snapshot_done = true;
        progress::save(&self.progress_path, &self.progress)?;
        self.metrics.snapshot_running.set(0);
        info!(slot = %params.slot, "initial snapshot complete; streaming from the slot");
        Ok(())
    }

    async fn snapshot_table(
        &mut self,
        txn: &tokio_postgres::Transaction<'_>,
        qualified: &str,
        last_table: bool,
        fenced: bool,
        shutdown: &CancellationToken,
    ) -> Result<(), CdcError> {
        let chunk = self.config.params.snapshot_chunk_rows;
        let reader = ChunkReader::new(&self.tables[qualified].shape);
        let mut total = 0u64;
        loop {
            let after = self
                .progress
                .tables
                .get(qualified)
                .and_then(|t| t.last_key.clone());
            // One row beyond the chunk tells whether this is the table's last chunk.
            let mut rows = reader.read(txn, after.as_deref(), chunk + 1).await?;
            let final_chunk = rows.len() <= chunk as usize;
            rows.truncate(chunk as usize);
            let mut deliveries = Vec::with_capacity(rows.len() * 2);
            let mut last_key = after;
            let count = rows.len();
            for (i, row) in rows.into_iter().enumerate() {
                let mark = if last_table && final_chunk && i + 1 == count {
                    SnapshotMark::Last
                } else {
                    SnapshotMark::True
                };
                let key_texts = self.key_texts(qualified, &row);
                if fenced {
                    if let Some(fence) = self.progress.fences.last_mut() {
                        fence.keys.insert(key_texts.clone());
                    }
                }
                last_key = Some(key_texts);
                if let Some(d) = self
                    .emit_row(qualified, Op::Read, None, row, mark, None)
                    .await?
                {
                    deliveries.extend(d);
                }
            }
            await_all(deliveries).await?;
            total += count as u64;
            self.metrics
                .snapshot_rows
                .with_label_values(&[qualified])
                .inc_by(count as u64);
            let entry = self
                .progress
                .tables
                .entry(qualified.to_string())
                .or_default();
            entry.last_key = last_key;
            entry.done = final_chunk;
            progress::save(&self.progress_path, &self.progress)?;
            if final_chunk || shutdown.is_cancelled() {
                info!(table = qualified, rows = total, "snapshot of table read");
                return Ok(());
            }
        }
    }

    fn key_texts(&self, qualified: &str, row: &[Datum]) -> Vec<String> {
        self.tables[qualified]
            .shape
            .key_of(row)
            .map(|d| match d {
                Datum::Text(t) => t.clone(),
                _ => String::new(),
            })
            .collect()
    }

    /// Converts and produces one change of a full row (`after`) or of a key (`before` only
    /// for deletes); a row that does not convert is dead-lettered instead. Returns the
    /// deliveries to await.
    async fn emit_row(
        &mut self,
        qualified: &str,
        op: Op,
        before: Option<Value>,
        row: Vec<Datum>,
        mark: SnapshotMark,
        txn: Option<&mut OpenTxn>,
    ) -> Result<Option<Vec<DeliveryFuture>>, CdcError> {
        let table = &self.tables[qualified];
        let converted = (|| -> Result<(Value, Value, Vec<String>), ConvertError> {
            let key = key_value(&table.shape, &row)?;
            let (after, unchanged) = row_value(&table.shape, &row)?;
            Ok((key, after, unchanged))
        })();
        let (key, after, unchanged) = match converted {
            Ok(v) => v,
            Err(e) => return self.dead_letter(qualified, &row, &e).await.map(Some),
        };
        let change = self.change(qualified, op, before, Some(after), mark, unchanged, txn);
        let value = envelope(&table.shape, change);
        let key_bytes = table.key.encode(key)?;
        let value_bytes = table.value.encode(value)?;
        let topic = table.spec.topic.clone();
        let d = send(&self.producer, &topic, Some(&key_bytes), Some(&value_bytes)).await?;
        self.count(qualified, op);
        Ok(Some(vec![d]))
    }

    #[allow(clippy::too_many_arguments)]
    fn change(
        &self,
        qualified: &str,
        op: Op,
        before: Option<Value>,
        after: Option<Value>,
        mark: SnapshotMark,
        unchanged: Vec<String>,
        txn: Option<&mut OpenTxn>,
    ) -> Change<'_> {
        let params = &self.config.params;
        let (ts_ms, tx_id, lsn, sequence, transaction) = match txn {
            Some(t) => {
                t.order += 1;
                let per = t.per_table.entry(qualified.to_string()).or_insert(0);
                *per += 1;
                (
                    t.commit_ms,
                    Some(i64::from(t.xid)),
                    Some(t.commit_lsn),
                    Some((self.last_commit_lsn, t.commit_lsn)),
                    Some(TxBlock {
                        id: format!("{}:{}", t.xid, t.commit_lsn),
                        total_order: t.order,
                        data_collection_order: *per,
                    }),
                )
            }
            None => (
                runtime::now_ms(),
                None,
                Some(self.progress.snapshot_lsn),
                None,
                None,
            ),
        };
        Change {
            op,
            before,
            after,
            source: Source {
                server_name: &params.server_name,
                db: &params.database,
                ts_ms,
                snapshot: mark,
                tx_id,
                lsn,
                sequence,
            },
            ts_ms: runtime::now_ms(),
            transaction,
            unchanged_toast: unchanged,
        }
    }

    fn count(&self, qualified: &str, op: Op) {
        self.metrics
            .changes
            .with_label_values(&[qualified, op.code()])
            .inc();
    }

    async fn dead_letter(
        &self,
        qualified: &str,
        row: &[Datum],
        error: &ConvertError,
    ) -> Result<Vec<DeliveryFuture>, CdcError> {
        warn!(table = qualified, error = %error, "row cannot be converted; dead-lettering it");
        let shape = &self.tables[qualified].shape;
        let as_json: serde_json::Map<String, serde_json::Value> = shape
            .columns
            .iter()
            .zip(row)
            .map(|(c, d)| {
                let v = match d {
                    Datum::Text(t) => serde_json::Value::String(t.clone()),
                    Datum::Null => serde_json::Value::Null,
                    Datum::UnchangedToast => {
                        serde_json::Value::String(crate::convert::UNAVAILABLE.into())
                    }
                };
                (c.name.clone(), v)
            })
            .collect();
        let letter = runtime::DeadLetter {
            original_key: None,
            original_value: Some(serde_json::Value::Object(as_json).to_string().into_bytes()),
            source_topic: format!("postgres:{}.{}", self.config.params.database, qualified),
            source_partition: 0,
            source_offset: i64::try_from(self.last_commit_lsn).unwrap_or(i64::MAX),
            original_timestamp: Some(runtime::now_ms()),
            original_schema_id: None,
            processor: self.config.name.clone(),
            consumer_group: self.config.params.slot.clone(),
            error_kind: runtime::DeadLetterErrorKind::Validation,
            reason: error.to_string(),
            attempts: 1,
            failed_at: runtime::now_ms(),
            headers: Vec::new(),
        };
        let body = codec::encode_body(&self.dead_letter.schema, &letter)?;
        let bytes = codec::frame(self.dead_letter.id, &body);
        self.metrics
            .dead_lettered
            .with_label_values(&[qualified])
            .inc();
        let d = send(
            &self.producer,
            &self.config.params.dead_letter,
            None,
            Some(&bytes),
        )
        .await?;
        Ok(vec![d])
    }

    async fn stream(
        &mut self,
        events: &mut mpsc::Receiver<replication::Event>,
        feedback: Arc<SharedLsnFeedback>,
        counters: Arc<TxnCounters>,
        shutdown: &CancellationToken,
    ) -> Result<(), CdcError> {
        let (ack_tx, ack_rx) = mpsc::channel::<Committed>(1_024);
        // Owner: this stream, which awaits it once the channel closes.
        let acker = self.tasks.spawn(
            "cdc acker",
            ack_in_order(
                ack_rx,
                feedback,
                counters,
                self.metrics.acknowledged_lsn.clone(),
                self.metrics.lag_ms.clone(),
            ),
        );
        let mut health = tokio::time::interval(Duration::from_millis(
            self.config.params.heartbeat_ms.max(100),
        ));
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut relations: HashMap<u32, String> = HashMap::new();
        let mut txn: Option<OpenTxn> = None;
        let outcome: Result<(), CdcError> = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = health.tick() => {
                    if let Err(e) = self.check_slot().await {
                        break Err(e);
                    }
                }
                event = events.recv() => {
                    let Some(event) = event else {
                        break Err(CdcError::Stream("replication stream ended".into()));
                    };
                    let result = match event {
                        Ok(event) => self.on_event(event, &mut txn, &mut relations, &ack_tx).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        break Err(e);
                    }
                }
            }
        };
        drop(ack_tx);
        let acked = acker.await.unwrap_or_else(|e| Err(CdcError::AckerTask(e)));
        outcome.and(acked)
    }

    async fn check_slot(&self) -> Result<(), CdcError> {
        let slot = &self.config.params.slot;
        match db::slot_state(&self.sql, slot).await? {
            Some(state) if state.wal_status == "lost" => {
                self.metrics.slot_invalidated.set(1);
                Err(CdcError::SlotInvalidated(slot.clone()))
            }
            Some(state) => {
                self.metrics.retained_wal_bytes.set(state.retained_bytes);
                Ok(())
            }
            None => Err(CdcError::Stream(format!("slot `{slot}` was dropped"))),
        }
    }

    async fn on_event(
        &mut self,
        event: ChangeEvent,
        txn: &mut Option<OpenTxn>,
        relations: &mut HashMap<u32, String>,
        ack: &mpsc::Sender<Committed>,
    ) -> Result<(), CdcError> {
        match event.event_type {
            EventType::Begin {
                transaction_id,
                final_lsn,
                commit_timestamp,
            } => {
                *txn = Some(OpenTxn {
                    xid: transaction_id,
                    commit_ms: commit_timestamp.timestamp_millis(),
                    commit_lsn: final_lsn.value(),
                    deliveries: Vec::new(),
                    order: 0,
                    per_table: HashMap::new(),
                });
            }
            EventType::Relation {
                relation_id,
                namespace,
                relation_name,
                columns,
                ..
            } => {
                let qualified = format!("{namespace}.{relation_name}");
                self.on_relation(&qualified, &columns).await?;
                relations.insert(relation_id, qualified);
            }
            EventType::Insert {
                relation_oid, data, ..
            } => {
                let (qualified, t) = self.resolve(relations, relation_oid, txn)?;
                let row = self.datums(&qualified, &data);
                if !self.is_fenced(&qualified, &row, t.xid) {
                    let d = self
                        .emit_row(
                            &qualified,
                            Op::Create,
                            None,
                            row,
                            SnapshotMark::False,
                            Some(t),
                        )
                        .await?;
                    t_push(txn, d);
                }
            }
            EventType::Update {
                relation_oid,
                old_data,
                new_data,
                replica_identity,
                ..
            } => {
                let (qualified, t) = self.resolve(relations, relation_oid, txn)?;
                let xid = t.xid;
                let row = self.datums(&qualified, &new_data);
                let old = old_data.map(|o| self.datums(&qualified, &o));
                // An old image comes only with a key change (or REPLICA IDENTITY FULL).
                let key_changed = old.as_ref().is_some_and(|o| {
                    self.key_texts(&qualified, o) != self.key_texts(&qualified, &row)
                });
                match old {
                    Some(old) if key_changed => {
                        // The key changed: Debezium's delete + tombstone of the old key, then
                        // a create of the new one.
                        if !self.is_fenced(&qualified, &old, xid) {
                            self.delete(&qualified, &old, txn).await?;
                        }
                        if !self.is_fenced(&qualified, &row, xid) {
                            let d = self
                                .emit_row(
                                    &qualified,
                                    Op::Create,
                                    None,
                                    row,
                                    SnapshotMark::False,
                                    txn.as_mut(),
                                )
                                .await?;
                            t_push(txn, d);
                        }
                    }
                    old => {
                        if !self.is_fenced(&qualified, &row, xid) {
                            let before = match (old, replica_identity) {
                                (Some(old), ReplicaIdentity::Full) => {
                                    row_value(&self.tables[&qualified].shape, &old)
                                        .ok()
                                        .map(|(v, _)| v)
                                }
                                _ => None,
                            };
                            let d = self
                                .emit_row(
                                    &qualified,
                                    Op::Update,
                                    before,
                                    row,
                                    SnapshotMark::False,
                                    txn.as_mut(),
                                )
                                .await?;
                            t_push(txn, d);
                        }
                    }
                }
            }
            EventType::Delete {
                relation_oid,
                old_data,
                ..
            } => {
                let (qualified, t) = self.resolve(relations, relation_oid, txn)?;
                let xid = t.xid;
                let old = self.datums(&qualified, &old_data);
                if !self.is_fenced(&qualified, &old, xid) {
                    self.delete(&qualified, &old, txn).await?;
                }
            }
            EventType::Truncate { tables, .. } => {
                for qualified in tables.iter().map(|t| t.to_string()) {
                    let Some(table) = self.tables.get(&qualified) else {
                        continue;
                    };
                    let change = self.change(
                        &qualified,
                        Op::Truncate,
                        None,
                        None,
                        SnapshotMark::False,
                        Vec::new(),
                        txn.as_mut(),
                    );
                    let value = table.value.encode(envelope(&table.shape, change))?;
                    let topic = table.spec.topic.clone();
                    let d = send(&self.producer, &topic, None, Some(&value)).await?;
                    self.count(&qualified, Op::Truncate);
                    t_push(txn, Some(vec![d]));
                }
            }
            EventType::Commit {
                end_lsn,
                commit_lsn,
                ..
            } => {
                let Some(open) = txn.take() else {
                    return Err(CdcError::Stream("commit without begin".into()));
                };
                self.last_commit_lsn = commit_lsn.value();
                ack.send(Committed {
                    end_lsn: end_lsn.value(),
                    commit_ms: open.commit_ms,
                    deliveries: open.deliveries,
                })
                .await
                .map_err(|_| CdcError::Acker("acker stopped".into()))?;
                if !self.progress.fences.is_empty() && self.progress.expire_fences(end_lsn.value())
                {
                    progress::save(&self.progress_path, &self.progress)?;
                    info!("streaming passed the resumed snapshot: visibility fences dropped");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A delete: the envelope with the key-only `before`, then the tombstone.
    async fn delete(
        &mut self,
        qualified: &str,
        old: &[Datum],
        txn: &mut Option<OpenTxn>,
    ) -> Result<(), CdcError> {
        let table = &self.tables[qualified];
        let converted = key_value(&table.shape, old).and_then(|key| {
            let before = key_only_row(&table.shape, &self.key_datums(qualified, old))?;
            Ok((key, before))
        });
        let (key, before) = match converted {
            Ok(v) => v,
            Err(e) => {
                let d = self.dead_letter(qualified, old, &e).await?;
                t_push(txn, Some(d));
                return Ok(());
            }
        };
        let change = self.change(
            qualified,
            Op::Delete,
            Some(before),
            None,
            SnapshotMark::False,
            Vec::new(),
            txn.as_mut(),
        );
        let value = table.value.encode(envelope(&table.shape, change))?;
        let key_bytes = table.key.encode(key)?;
        let topic = table.spec.topic.clone();
        let d1 = send(&self.producer, &topic, Some(&key_bytes), Some(&value)).await?;
        let d2 = send(&self.producer, &topic, Some(&key_bytes), None).await?;
        self.count(qualified, Op::Delete);
        t_push(txn, Some(vec![d1, d2]));
        Ok(())
    }

    fn key_datums(&self, qualified: &str, row: &[Datum]) -> Vec<Datum> {
        self.tables[qualified].shape.key_of(row).cloned().collect()
    }

    fn is_fenced(&self, qualified: &str, row: &[Datum], xid: u32) -> bool {
        !self.progress.fences.is_empty()
            && self
                .progress
                .fenced(qualified, &self.key_texts(qualified, row), xid)
    }

    fn resolve<'t>(
        &self,
        relations: &HashMap<u32, String>,
        oid: u32,
        txn: &'t mut Option<OpenTxn>,
    ) -> Result<(String, &'t mut OpenTxn), CdcError> {
        let qualified = relations
            .get(&oid)
            .cloned()
            .ok_or_else(|| CdcError::Stream(format!("change for unknown relation {oid}")))?;
        let t = txn
            .as_mut()
            .ok_or_else(|| CdcError::Stream("change outside a transaction".into()))?;
        Ok((qualified, t))
    }

    /// The row's columns in the table's order; a column absent from the message is an
    /// unchanged TOASTed value.
    fn datums(&self, qualified: &str, data: &RowData) -> Vec<Datum> {
        self.tables[qualified]
            .shape
            .columns
            .iter()
            .map(|c| match data.get(&c.name) {
                None => Datum::UnchangedToast,
                Some(v) if v.is_null() => Datum::Null,
                Some(v) => Datum::Text(v.as_str().unwrap_or_default().to_string()),
            })
            .collect()
    }

    /// A Relation message: the table's shape as the stream now sees it. A compatible change
    /// (a column added or dropped) evolves the value schema in the registry; anything else
    /// stops the connector.
    async fn on_relation(
        &mut self,
        qualified: &str,
        columns: &[pg_walstream::RelationColumn],
    ) -> Result<(), CdcError> {
        let Some(table) = self.tables.get(qualified) else {
            return Err(CdcError::Config(format!(
                "the publication streams {qualified}, which the topology does not capture"
            )));
        };
        let shape = TableShape {
            schema: table.shape.schema.clone(),
            table: table.shape.table.clone(),
            record: table.shape.record.clone(),
            columns: columns
                .iter()
                .map(|c| Column {
                    name: c.name.to_string(),
                    ty: ColumnType::from_oid(c.type_id, c.type_modifier),
                    key: c.is_key,
                })
                .collect(),
        };
        let change = table.shape.diff(&shape);
        if change.is_empty() {
            return Ok(());
        }
        if !change.is_compatible() {
            return Err(CdcError::IncompatibleSchema {
                table: qualified.to_string(),
                detail: format!(
                    "retyped columns {:?}, key changed: {}",
                    change
                        .retyped
                        .iter()
                        .map(|(n, a, b)| format!("{n}: {a:?} -> {b:?}"))
                        .collect::<Vec<_>>(),
                    change.key_changed
                ),
            });
        }
        let subject = format!("{}-value", table.spec.topic);
        let value = match Codec::register(&self.registry, &subject, &shape.value_schema()).await {
            Ok(codec) => codec,
            Err(CdcError::Registry(e)) if !e.is_transient() => {
                return Err(CdcError::IncompatibleSchema {
                    table: qualified.to_string(),
                    detail: format!("the registry refused the evolved schema: {e}"),
                })
            }
            Err(e) => return Err(e),
        };
        info!(
            table = qualified,
            added = ?change.added,
            dropped = ?change.dropped,
            schema_id = value.id,
            "table changed: value schema evolved"
        );
        self.metrics
            .schema_changes
            .with_label_values(&[qualified])
            .inc();
        if let Some(table) = self.tables.get_mut(qualified) {
            table.shape = shape;
            table.value = value;
        }
        Ok(())
    }
}

fn name_or(name: Option<&str>) -> &str {
    name.unwrap_or("-")
}

fn t_push(txn: &mut Option<OpenTxn>, deliveries: Option<Vec<DeliveryFuture>>) {
    if let (Some(t), Some(d)) = (txn.as_mut(), deliveries) {
        t.deliveries.extend(d);
    }
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<DeliveryFuture, CdcError> {
    loop {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        match producer.send_result(record) {
            Ok(d) => return Ok(d),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((source, _)) => {
                return Err(CdcError::Kafka {
                    what: "producing",
                    source,
                })
            }
        }
    }
}

async fn await_all(deliveries: Vec<DeliveryFuture>) -> Result<(), CdcError> {
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((source, _))) => {
                return Err(CdcError::Kafka {
                    what: "delivery failed",
                    source,
                })
            }
            Err(_) => return Err(CdcError::Acker("producer dropped a delivery".into())),
        }
    }
    Ok(())
}

/// Awaits each transaction's deliveries in commit order, then confirms its end LSN. A failed
/// delivery stops here: nothing after it is ever confirmed, so a restart replays it.
async fn ack_in_order(
    mut committed: mpsc::Receiver<Committed>,
    feedback: Arc<SharedLsnFeedback>,
    counters: Arc<TxnCounters>,
    acknowledged: IntGauge,
    lag_ms: IntGauge,
) -> Result<(), CdcError> {
    while let Some(txn) = committed.recv().await {
        await_all(txn.deliveries).await?;
        feedback.update_applied_lsn(txn.end_lsn);
        counters.acknowledged.fetch_add(1, Ordering::SeqCst);
        acknowledged.set(i64::try_from(txn.end_lsn).unwrap_or(i64::MAX));
        lag_ms.set(runtime::now_ms() - txn.commit_ms);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_replaces_the_url_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:15432/postgres", "catalog").unwrap(),
            "postgres://postgres@127.0.0.1:15432/catalog"
        );
        assert_eq!(
            with_database("postgresql://u:p@h:1", "w").unwrap(),
            "postgres://u:p@h:1/w"
        );
        assert!(with_database("mysql://h/x", "w").is_err());
    }
}
