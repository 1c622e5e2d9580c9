//! Consumer context: tracks which partitions this member owns, marks newly assigned ones
//! for verification against their changelog, and flushes all handed-off work before
//! partitions are given up, so the next owner restores a changelog that is complete.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::acker::Pending;
use super::txn::Txn;
use crate::Metrics;

/// State shared between the driver, the committer and rebalance callbacks. Each field has
/// one writer: `owned` and `stale` the rebalance callback (the driver only removes from
/// `stale` after verifying), `changelog_end` the committer.
#[derive(Default)]
pub struct Shared {
    pub owned: Mutex<HashSet<i32>>,
    pub stale: Mutex<HashSet<i32>>,
    changelog_end: Mutex<HashMap<i32, i64>>,
    /// Set when a rebalance callback failed (it cannot return an error): the driver stops.
    pub failed: Mutex<Option<String>>,
    /// Partitions being given up (set by the revoke callback before it flushes, cleared when
    /// assigned again): a pipelined record still waiting for its `sf.not-before` is abandoned
    /// so the flush does not wait out its deferral.
    pub revoking: Mutex<HashSet<(String, i32)>>,
    /// Partitions with an abandoned record (written by the committer, cleared on assign):
    /// nothing after the hole is committed, so the next owner handles it again.
    pub holes: Mutex<HashSet<(String, i32)>>,
}

impl Shared {
    pub fn advance_changelog(&self, partition: i32, next: i64) {
        let mut ends = lock(&self.changelog_end);
        let end = ends.entry(partition).or_insert(next);
        *end = (*end).max(next);
    }

    pub fn changelog_end(&self, partition: i32) -> Option<i64> {
        lock(&self.changelog_end).get(&partition).copied()
    }

    pub fn owns(&self, partition: i32) -> bool {
        lock(&self.owned).contains(&partition)
    }

    pub fn is_revoking(&self, topic: &str, partition: i32) -> bool {
        lock(&self.revoking).contains(&(topic.to_string(), partition))
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct TrackingContext {
    metrics: Metrics,
    shared: Arc<Shared>,
    /// The driver's hand-off channel, to push a flush marker through before a revoke.
    flush: Mutex<Option<(mpsc::Sender<Pending>, tokio::runtime::Handle)>>,
    /// Exactly-once mode: the transaction to commit before partitions are given up.
    pub txn: OnceLock<Arc<Txn>>,
}

impl TrackingContext {
    pub fn new(metrics: Metrics, shared: Arc<Shared>) -> Self {
        Self {
            metrics,
            shared,
            flush: Mutex::new(None),
            txn: OnceLock::new(),
        }
    }

    pub fn set_flush(&self, pending: mpsc::Sender<Pending>, handle: tokio::runtime::Handle) {
        *lock(&self.flush) = Some((pending, handle));
    }

    pub fn clear_flush(&self) {
        *lock(&self.flush) = None;
    }

    /// Blocks until everything handed off so far is acknowledged and committed.
    fn flush_all(&self) {
        let Some((pending, handle)) = lock(&self.flush).clone() else {
            return;
        };
        let (reply, done) = oneshot::channel();
        let wait = async move {
            if pending.send(Pending::Flush(reply)).await.is_ok() {
                let _ = done.await;
            }
        };
        // The callback runs inside the driver's `recv`, on a runtime worker: move off it
        // so the acker and committer keep running while this thread waits.
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| handle.block_on(wait)),
            Err(_) => handle.block_on(wait),
        }
    }
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        use rdkafka::consumer::Consumer;
        if let Rebalance::Revoke(tpl) = rebalance {
            lock(&self.shared.revoking).extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
            match self.txn.get() {
                Some(txn) => {
                    let group = consumer.group_metadata();
                    let committed = match tokio::runtime::Handle::try_current() {
                        Ok(_) => tokio::task::block_in_place(|| txn.commit(group)),
                        Err(_) => txn.commit(group),
                    };
                    if let Err(e) = committed {
                        *lock(&self.shared.failed) = Some(format!("commit before revoke: {e}"));
                    }
                }
                None => self.flush_all(),
            }
            let mut owned = lock(&self.shared.owned);
            for element in tpl.elements() {
                owned.remove(&element.partition());
            }
            info!(
                partitions = tpl.count(),
                "partitions revoked after flushing in-flight work"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        use rdkafka::consumer::Consumer;
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: HashSet<i32> =
                    tpl.elements().iter().map(|e| e.partition()).collect();
                for e in tpl.elements() {
                    let tp = (e.topic().to_string(), e.partition());
                    lock(&self.shared.revoking).remove(&tp);
                    lock(&self.shared.holes).remove(&tp);
                }
                lock(&self.shared.stale).extend(partitions.iter().copied());
                lock(&self.shared.owned).extend(partitions);
                info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
        let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        self.metrics
            .assigned_partitions
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
