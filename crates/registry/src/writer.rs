//! The single writer: every state change goes through one task, in arrival order.
//!
//! Single writer, on purpose: a change is planned against the current state, journalled,
//! and applied before the next one is planned, so two concurrent registrations can never be
//! given the same id or version, and nothing is applied that the journal did not accept.
//! Readers share the state through a lock held only for in-memory work, never across I/O.

use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::error::{ApiError, JournalError};
use crate::kafka_store::KafkaJournal;
use crate::records::Record;
use crate::store::Store;

pub type SharedStore = Arc<RwLock<Store>>;

pub enum Journal {
    /// State lives as long as the process.
    Memory,
    Kafka(KafkaJournal),
}

impl Journal {
    async fn append(&self, records: &[Record]) -> Result<(), JournalError> {
        match self {
            Journal::Memory => Ok(()),
            Journal::Kafka(kafka) => kafka.append(records).await,
        }
    }

    async fn reload(&self) -> Result<Option<Store>, JournalError> {
        match self {
            Journal::Memory => Ok(None),
            Journal::Kafka(kafka) => kafka.replay().await.map(Some),
        }
    }
}

/// What a planned change writes, and whom to tell how it went.
struct Planned {
    records: Vec<Record>,
    finish: Box<dyn FnOnce(Result<(), ApiError>) + Send>,
}

type Job = Box<dyn FnOnce(&Store) -> Planned + Send>;

/// Handle for submitting changes to the writer task.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; it ends when every [`Writer`] handle is dropped.
    pub fn spawn(store: SharedStore, journal: Journal) -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(64);
        // Owner: the caller, through the returned handle.
        let task = tokio::spawn(run(store, journal, queue));
        (Self { jobs }, task)
    }

    /// Plans with `plan` against the current state, journals the records it returns, applies
    /// them, and answers `plan`'s value; an error from `plan` writes nothing.
    pub async fn submit<T, F>(&self, plan: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<(Vec<Record>, T), ApiError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, ApiError>>();
        let job: Job = Box::new(move |store: &Store| match plan(store) {
            Ok((records, value)) => Planned {
                records,
                finish: Box::new(move |outcome| {
                    let _ = reply.send(outcome.map(|()| value));
                }),
            },
            Err(error) => {
                let _ = reply.send(Err(error));
                Planned {
                    records: Vec::new(),
                    finish: Box::new(|_| {}),
                }
            }
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| ApiError::store("the registry is shutting down"))?;
        answer
            .await
            .map_err(|_| ApiError::store("the write was abandoned"))?
    }
}

async fn run(store: SharedStore, journal: Journal, mut queue: mpsc::Receiver<Job>) {
    // After a failed write Kafka may or may not hold the record; the journal is re-read
    // before the next write so state and journal agree again.
    let mut stale = false;
    while let Some(job) = queue.recv().await {
        if stale {
            match journal.reload().await {
                Ok(Some(reloaded)) => {
                    *write_lock(&store) = reloaded;
                    stale = false;
                    info!("state reloaded from the schema journal");
                }
                Ok(None) => stale = false,
                Err(error) => {
                    warn!(%error, "cannot reload the schema journal");
                    // Dropping the job answers its caller with a store error.
                    drop(job);
                    continue;
                }
            }
        }
        let planned = {
            let current = read_lock(&store);
            job(&current)
        };
        if planned.records.is_empty() {
            (planned.finish)(Ok(()));
            continue;
        }
        match journal.append(&planned.records).await {
            Ok(()) => {
                let mut current = write_lock(&store);
                for record in &planned.records {
                    current.apply(record);
                }
                drop(current);
                (planned.finish)(Ok(()));
            }
            Err(failure) => {
                error!(error = %failure, "schema journal write failed");
                stale = true;
                (planned.finish)(Err(ApiError::store(format!(
                    "Error while writing to the schema store: {failure}"
                ))));
            }
        }
    }
}

/// The store is only mutated by `apply`, which does not panic, so a poisoned lock still
/// holds consistent state.
pub fn read_lock(store: &SharedStore) -> std::sync::RwLockReadGuard<'_, Store> {
    store
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock(store: &SharedStore) -> std::sync::RwLockWriteGuard<'_, Store> {
    store
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
