//! The slot's replication stream, on a thread of its own: libpq's connect and command calls
//! block, so they must not run on the async workers that produce to Kafka.
//!
//! The thread is the single reader of the replication connection and the single sender of
//! feedback. It acknowledges only positions the connector's acker has published through
//! `SharedLsnFeedback` (every record of the transaction acknowledged by Kafka), except when
//! idle: with no transaction open and every forwarded transaction acknowledged, the server's
//! current position is safe to confirm, so an idle slot does not hold WAL back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_walstream::{
    ChangeEvent, EventType, LogicalReplicationStream, ReplicationSlotOptions,
    ReplicationStreamConfig, SharedLsnFeedback, StreamingMode,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::CdcError;

/// Counts shared between the thread (forwarded) and the connector's acker (acknowledged).
#[derive(Default)]
pub struct TxnCounters {
    pub forwarded: AtomicU64,
    pub acknowledged: AtomicU64,
}

pub struct SlotReady {
    /// The exported snapshot's name when this start created the slot; `None` if it existed.
    pub snapshot: Option<String>,
    pub feedback: Arc<SharedLsnFeedback>,
}

pub struct ReplicationArgs {
    pub url: String,
    pub slot: String,
    pub publication: String,
    pub heartbeat: Duration,
    pub counters: Arc<TxnCounters>,
    pub shutdown: CancellationToken,
}

pub type Event = Result<ChangeEvent, CdcError>;

/// Starts the thread. It creates the slot if missing (exporting a snapshot), reports through
/// `ready`, waits for `go` (the snapshot is imported and read), then streams into `events`.
pub fn spawn(
    args: ReplicationArgs,
    ready: oneshot::Sender<Result<SlotReady, CdcError>>,
    go: oneshot::Receiver<()>,
    events: mpsc::Sender<Event>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("cdc-replication".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(CdcError::ReplicationRuntime(e)));
                    return;
                }
            };
            runtime.block_on(stream(args, ready, go, events));
        })
        .expect("spawn replication thread")
}

fn repl(e: pg_walstream::ReplicationError) -> CdcError {
    CdcError::Replication(e)
}

async fn stream(
    args: ReplicationArgs,
    ready: oneshot::Sender<Result<SlotReady, CdcError>>,
    go: oneshot::Receiver<()>,
    events: mpsc::Sender<Event>,
) {
    let options = ReplicationSlotOptions {
        snapshot: Some("export".into()),
        ..Default::default()
    };
    let config = ReplicationStreamConfig::builder(args.slot.clone(), args.publication.clone())
        .with_protocol_version(2)
        .with_streaming_mode(StreamingMode::Off)
        .with_slot_options(options)
        .with_feedback_interval(Duration::from_secs(1));
    let mut s = match LogicalReplicationStream::new(&args.url, config).await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(repl(e)));
            return;
        }
    };
    if let Err(e) = s.ensure_replication_slot().await {
        let _ = ready.send(Err(repl(e)));
        return;
    }
    let feedback = s.shared_lsn_feedback.clone();
    let ready_msg = SlotReady {
        snapshot: s.exported_snapshot_name().map(str::to_string),
        feedback,
    };
    if ready.send(Ok(ready_msg)).is_err() {
        return;
    }
    tokio::select! {
        _ = args.shutdown.cancelled() => return,
        started = go => if started.is_err() { return },
    }
    // None: the server resumes at the slot's confirmed position (never ahead of Kafka).
    if let Err(e) = s.start(None).await {
        let _ = events.send(Err(repl(e))).await;
        return;
    }
    info!(slot = %args.slot, "streaming changes");
    let mut in_txn = false;
    let mut heartbeat = tokio::time::interval(args.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let token = args.shutdown.clone();
    loop {
        tokio::select! {
            _ = args.shutdown.cancelled() => break,
            event = s.next_event(&token) => match event {
                Ok(event) => {
                    match &event.event_type {
                        EventType::Begin { .. } => in_txn = true,
                        EventType::Commit { .. } => {
                            in_txn = false;
                            args.counters.forwarded.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                    if events.send(Ok(event)).await.is_err() {
                        break;
                    }
                }
                Err(pg_walstream::ReplicationError::Cancelled(_)) => break,
                Err(e) => {
                    let _ = events.send(Err(repl(e))).await;
                    break;
                }
            },
            _ = heartbeat.tick() => {
                let counters = &args.counters;
                let idle = !in_txn
                    && counters.forwarded.load(Ordering::SeqCst)
                        == counters.acknowledged.load(Ordering::SeqCst);
                if idle {
                    s.shared_lsn_feedback.update_applied_lsn(s.current_lsn());
                }
                if let Err(e) = s.send_feedback().await {
                    warn!(error = %e, "feedback to the server failed");
                }
            }
        }
    }
    if let Err(e) = s.stop().await {
        warn!(error = %e, "stopping the replication stream");
    }
}
