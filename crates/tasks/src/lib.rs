//! Owned background tasks. A component never detaches a task: it spawns it on its [`Tasks`],
//! with a name, and at shutdown drains them: the token every task watches is cancelled, the
//! owner waits a bounded time for them to finish, and each task still running then is named
//! in a log line (and returned) instead of being silently cut off by the process exit.
//!
//! Who owns what (each `Tasks` is drained by its owner before it returns):
//! - `runtime::run*`: the admin server and the pipelined driver's record tasks;
//! - `wiring::run_with`: what a processor built for the runtime starts (its PostgreSQL
//!   connections, checkout's orders writer);
//! - `storefront::run`: the API's janitor, key refresher, delivery watchers and connections;
//! - `postgres_cdc::run`: the admin server, the acker and the connector's connections.
//!
//! Tasks that must not stop on cancellation (a PostgreSQL connection still serving a client,
//! a writer with queued work) end when their inputs close; the owner closes those before it
//! drains, and the bound reports any that still hang.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// How long an owner waits for its tasks at shutdown, unless it has a reason to choose.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A set of tasks with one owner. Clones share the set (hand one to whatever spawns).
#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
    live: Arc<Live>,
}

/// The names of the tasks that have not finished, by spawn order.
#[derive(Default)]
struct Live {
    next: AtomicU64,
    names: Mutex<BTreeMap<u64, Cow<'static, str>>>,
}

impl Live {
    fn names(&self) -> MutexGuard<'_, BTreeMap<u64, Cow<'static, str>>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a task's name when its future is dropped: finished, panicked or aborted.
struct Running {
    live: Arc<Live>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.live.names().remove(&self.id);
    }
}

impl Tasks {
    /// Tasks that are asked to stop when `token` is cancelled (the process's shutdown, a
    /// child of it, or a token of the owner's own) or when they are drained.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token,
            live: Arc::default(),
        }
    }

    /// The token these tasks watch: cancelled by the owner's shutdown or by [`Tasks::drain`].
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Runs `task` as one of these tasks, named `name` in the drain's report.
    pub fn spawn<F>(&self, name: impl Into<Cow<'static, str>>, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.live.next.fetch_add(1, Ordering::Relaxed);
        self.live.names().insert(id, name.into());
        let running = Running {
            live: self.live.clone(),
            id,
        };
        self.tracker.spawn(async move {
            let _running = running;
            task.await
        })
    }

    /// The names of the tasks still running, oldest first.
    pub fn running(&self) -> Vec<String> {
        self.live.names().values().map(|n| n.to_string()).collect()
    }

    /// Cancels the token and waits up to `bound` for every task to finish. Returns the
    /// names of those that did not (each is logged); empty when all stopped in time.
    pub async fn drain(&self, bound: Duration) -> Vec<String> {
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let stuck = self.running();
        for task in &stuck {
            warn!(
                task = %task,
                drain_seconds = bound.as_secs_f64(),
                "task did not stop within the drain time"
            );
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_stops_a_task_that_honours_cancellation() {
        let tasks = Tasks::new(CancellationToken::new());
        let token = tasks.token().clone();
        let stopped = tasks.spawn("polite", async move {
            token.cancelled().await;
            "stopped"
        });
        tokio::task::yield_now().await;
        assert_eq!(tasks.running(), vec!["polite".to_string()]);
        let started = tokio::time::Instant::now();
        assert!(tasks.drain(Duration::from_secs(5)).await.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no wait for the bound"
        );
        assert_eq!(stopped.await.unwrap(), "stopped");
        assert!(tasks.running().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_names_a_task_that_will_not_stop_after_the_bound() {
        let tasks = Tasks::new(CancellationToken::new());
        let token = tasks.token().clone();
        tasks.spawn("polite", async move { token.cancelled().await });
        tasks.spawn("stubborn", std::future::pending::<()>());
        tasks.spawn("finished", async {});
        let started = tokio::time::Instant::now();
        let stuck = tasks.drain(Duration::from_secs(3)).await;
        assert_eq!(stuck, vec!["stubborn".to_string()]);
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "waited the bound"
        );
        assert!(started.elapsed() < Duration::from_secs(4), "and no longer");
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_a_task_that_ends_on_its_own_within_the_bound() {
        let tasks = Tasks::new(CancellationToken::new());
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        // Like a connection task: it ignores the token and ends when its input closes.
        let task = tasks.spawn("connection", async move {
            let _ = closed.await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        drop(close);
        assert!(tasks.drain(Duration::from_secs(2)).await.is_empty());
        assert!(tasks.running().is_empty());
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_owners_token_stops_the_tasks_before_any_drain() {
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new(shutdown.child_token());
        let token = tasks.token().clone();
        let task = tasks.spawn("janitor", async move { token.cancelled().await });
        shutdown.cancel();
        task.await.unwrap();
        assert!(tasks.running().is_empty());
    }

    #[tokio::test]
    async fn a_panicking_task_is_not_reported_as_running() {
        let tasks = Tasks::new(CancellationToken::new());
        let task = tasks.spawn("broken", async { panic!("bug") });
        assert!(task.await.is_err());
        assert!(tasks.running().is_empty());
        assert!(tasks.drain(Duration::from_secs(1)).await.is_empty());
    }
}
