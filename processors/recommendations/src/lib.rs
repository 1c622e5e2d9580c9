//! `recommendations`: implicit-feedback matrix factorisation, precomputed into Redis.
//!
//! - **Consumer** (the group driver, at-least-once): storefront interactions, placed orders,
//!   availability and catalog rows become writes to the interaction store (PostgreSQL,
//!   [`store`]; why not a state store is said there), deferred so an offset commits only once
//!   its writes are durable, and idempotent so a redelivered record changes nothing.
//!   [`rows`] is the pure mapping; a record it refuses is dead-lettered.
//! - **Schedule**: every instance checks every 10 s whether `train_every_s` has passed since
//!   the last finished run (kept in the store, so restarts do not retrain early) and, if so,
//!   runs [`train::Trainer`]; the training lock makes one run at a time across instances.
//!   Training runs on its own task and threads: consumption never waits for it.
//! - **On demand**: `fleet recs train` runs the same [`train::Trainer`] in its own process.
//!
//! Single writers: the store's rows, the group member owning the source record's partition;
//! Redis `recs:*` keys and the `user-recommendations` topic, the one run holding the lock.

pub mod evaluate;
pub mod lists;
pub mod model;
pub mod published;
pub mod rows;
pub mod store;
pub mod train;

use std::sync::Arc;
use std::time::Duration;

use events::orders::OrderPlaced;
use events::recommendations::UserInteraction;
use runtime::source::Source;
use runtime::{HandlerError, Input, Metrics, Outputs, Processor, RuntimeConfig, Topic};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorSpec, RecommendationsParams, Topology};
use tracing::{error, info, warn};

use crate::rows::{Invalid, Write};

#[derive(Debug, thiserror::Error)]
pub enum RecsError {
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("redis at {url}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error(transparent)]
    Train(#[from] train::TrainError),
}

/// The input topics, by port.
struct Inputs {
    interactions: String,
    placed: String,
    availability: String,
    products: String,
}

pub struct Recommendations {
    inputs: Inputs,
    params: RecommendationsParams,
    store: store::Store,
}

impl Recommendations {
    fn writes(&self, input: &Input) -> Result<Vec<Write>, HandlerError> {
        let invalid = |e: Invalid| HandlerError::invalid(e.0);
        let topic = input.topic.as_str();
        if input.value.is_none() {
            // Tombstones: a compacted topic's removal; the delete before it already said it.
            return Ok(Vec::new());
        }
        if topic == self.inputs.interactions {
            let i: UserInteraction = input.decode()?;
            Ok(rows::interaction(&i, &self.params.weights)
                .map_err(invalid)?
                .map(Write::Interaction)
                .into_iter()
                .collect())
        } else if topic == self.inputs.placed {
            let order: OrderPlaced = input.decode()?;
            Ok(rows::purchases(&order, &self.params.weights)
                .map_err(invalid)?
                .into_iter()
                .map(Write::Interaction)
                .collect())
        } else if topic == self.inputs.products {
            Ok(vec![rows::catalog(input.decode()?).map_err(invalid)?])
        } else if topic == self.inputs.availability {
            Ok(vec![rows::stock(input.decode()?)])
        } else {
            Err(HandlerError::fatal(format!("no port reads `{topic}`")))
        }
    }
}

impl Processor for Recommendations {
    async fn handle(&mut self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let writes = self.writes(input)?;
        if !writes.is_empty() {
            let written = self.store.write(writes);
            out.defer(Box::pin(async move { written.await.map_err(Into::into) }));
        }
        Ok(())
    }
}

/// Connects to the stack's Redis.
pub async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, RecsError> {
    let err = |source| RecsError::Redis {
        url: url.to_string(),
        source,
    };
    let client = redis::Client::open(url).map_err(err)?;
    redis::aio::ConnectionManager::new(client)
        .await
        .map_err(err)
}

/// The trainer of processor `spec`, publishing with a producer of its own.
pub async fn trainer(
    config: RuntimeConfig,
    topology: &Topology,
    spec: &ProcessorSpec,
    params: RecommendationsParams,
    shutdown: &CancellationToken,
) -> Result<Option<train::Trainer>, RecsError> {
    let database_url =
        runtime::postgres_database_url(&config.stack.postgres_url, &params.database)?;
    let redis = connect_redis(&config.stack.redis_url).await?;
    let topic = Topic::output(spec, "lists")?;
    let metrics = Metrics::new(&format!("{}-trainer", config.processor), config.instance);
    let Some(source) = Source::start(config, topology, metrics, shutdown).await? else {
        return Ok(None);
    };
    Ok(Some(train::Trainer {
        params,
        database_url,
        redis,
        publisher: Some((Arc::new(source), topic)),
    }))
}

/// Runs one instance (consumer and schedule) until `shutdown`.
pub async fn run(
    config: RuntimeConfig,
    topology: &Topology,
    spec: &ProcessorSpec,
    params: RecommendationsParams,
    shutdown: CancellationToken,
    tasks: &tasks::Tasks,
) -> Result<(), RecsError> {
    let database_url =
        runtime::postgres_database_url(&config.stack.postgres_url, &params.database)?;
    let store = store::Store::open(&database_url, tasks).await?;
    let input = |port: &str| -> Result<String, RecsError> {
        Ok(Topic::<()>::input(spec, port)?.name().to_string())
    };
    let processor = Recommendations {
        inputs: Inputs {
            interactions: input("interactions")?,
            placed: input("placed")?,
            availability: input("availability")?,
            products: input("products")?,
        },
        params: params.clone(),
        store,
    };
    if let Some(trainer) = trainer(config.clone(), topology, spec, params, &shutdown).await? {
        tasks.spawn(
            "recommendations schedule",
            schedule(trainer, shutdown.clone()),
        );
    }
    runtime::run(config, topology, processor, shutdown).await?;
    Ok(())
}

/// How often the schedule looks at the last run's age (one cheap query): short, so a fresh
/// store gets its first model soon after its first interactions.
const SCHEDULE_TICK: Duration = Duration::from_secs(10);

/// Trains whenever the last finished run is older than `train_every_s` (or there is none).
/// A failed run is logged and retried at the next tick; it never stops the consumer.
async fn schedule(trainer: train::Trainer, shutdown: CancellationToken) {
    let every = trainer.params.train_every_s as f64;
    loop {
        let due = match last_run_age(&trainer.database_url).await {
            Ok(age) => age.is_none_or(|a| a >= every),
            Err(e) => {
                warn!(error = %runtime::error_chain(&e), "schedule: cannot read the last run");
                false
            }
        };
        if due {
            match trainer.run("schedule").await {
                Ok(Some(report)) => info!(
                    version = %report.version,
                    users = report.users,
                    total_ms = report.total_ms,
                    "scheduled training done"
                ),
                Ok(None) => {}
                Err(train::TrainError::Empty) => info!("schedule: no interactions yet"),
                Err(e) => error!(error = %runtime::error_chain(&e), "scheduled training failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SCHEDULE_TICK) => {}
        }
    }
}

async fn last_run_age(url: &str) -> Result<Option<f64>, store::StoreError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let age = store::since_last_run(&client).await;
    drop(client);
    let _ = connection.await;
    age
}
