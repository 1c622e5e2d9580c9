//! One training run, scheduled or on demand (`fleet recs train`): the I/O around the pure
//! parts ([`crate::lists`], [`crate::model`]).
//!
//! 1. Take the training lock (a PostgreSQL advisory lock): one run at a time across the
//!    group's instances and the command line; a run that finds it taken does nothing. Under
//!    it, the keys of runs that died before their swap are deleted.
//! 2. Read the store in one repeatable-read snapshot.
//! 3. Train and rank on a blocking thread (the model's own pool), so the consumer that fills
//!    the store never waits for it.
//! 4. Write every list of the new version to Redis, then swap `recs:current` to it, then
//!    delete the previous version (see [`crate::published`]).
//! 5. Publish each user's list on `recommendations.user-recommendations.v1`, and record the
//!    run in `model_runs` (the schedule's clock).

use std::sync::Arc;
use std::time::Instant;

use events::recommendations::{RecommendationStrategy, RecommendedItem, UserRecommendations};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use runtime::source::Source;
use runtime::Topic;
use serde::Serialize;
use topology::RecommendationsParams;
use tracing::info;

use crate::lists::{self, Dataset, Item};
use crate::published;
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("interaction store")]
    Store(#[from] store::StoreError),
    #[error("recommendations database")]
    Database(#[from] tokio_postgres::Error),
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("publishing the lists")]
    Publish(#[from] runtime::RuntimeError),
    #[error("the model thread panicked")]
    Panicked,
    /// Nothing to learn from yet (a fresh store): no run is recorded, so the next tick tries
    /// again.
    #[error("no interactions in the store yet: nothing to train on")]
    Empty,
}

/// What a run did, as recorded in `model_runs.report` and printed by `fleet recs train`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub version: String,
    pub trigger: String,
    pub users: usize,
    pub items: usize,
    pub pairs: usize,
    pub interactions: i64,
    pub hidden_items: usize,
    pub read_ms: u64,
    pub train_ms: u64,
    pub iteration_ms: Vec<u64>,
    pub rank_ms: u64,
    pub redis_keys: usize,
    pub redis_ms: u64,
    pub replaced: Option<String>,
    pub deleted_keys: usize,
    pub summaries: usize,
    pub total_ms: u64,
}

/// Everything a run needs; shared by the processor's schedule and the command line.
pub struct Trainer {
    pub params: RecommendationsParams,
    pub database_url: String,
    pub redis: ConnectionManager,
    /// Where user lists are published (`None`: not published, e.g. a bench).
    pub publisher: Option<(Arc<Source>, Topic<UserRecommendations>)>,
}

impl Trainer {
    /// Runs once; `None` when another run holds the lock.
    pub async fn run(&self, trigger: &str) -> Result<Option<RunReport>, TrainError> {
        let (mut client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        let outcome = self.locked(&mut client, trigger).await;
        drop(client);
        let _ = connection.await;
        outcome
    }

    async fn locked(
        &self,
        client: &mut tokio_postgres::Client,
        trigger: &str,
    ) -> Result<Option<RunReport>, TrainError> {
        if !store::try_lock(client).await? {
            info!("another training run holds the lock");
            return Ok(None);
        }
        let outcome = self.train(client, trigger).await;
        // The session's end releases it too; unlocking early lets the next run start at once.
        let _ = store::unlock(client).await;
        outcome.map(Some)
    }

    async fn train(
        &self,
        client: &mut tokio_postgres::Client,
        trigger: &str,
    ) -> Result<RunReport, TrainError> {
        let started = Instant::now();
        let mut redis = self.redis.clone();
        // A run that died (kill -9, a lost connection) left keys of a version never swapped
        // in: nothing reads them; delete them rather than wait out their TTL.
        let current: Option<String> = redis::cmd("GET")
            .arg(published::CURRENT)
            .query_async(&mut redis)
            .await?;
        for abandoned in store::abandoned_runs(client).await? {
            // One that swapped and then failed to record its end is still served: keep its
            // keys (the next swap replaces and deletes them).
            let keys = if current.as_deref() == Some(abandoned.as_str()) {
                0
            } else {
                published::delete_version(&mut redis, &abandoned).await?
            };
            store::forget_run(client, &abandoned).await?;
            info!(version = %abandoned, keys, "abandoned run cleaned up");
        }
        let now = runtime::now_ms();
        let version = format!("v{now}");
        let snapshot = store::snapshot(client).await?;
        if snapshot.pairs.is_empty() {
            return Err(TrainError::Empty);
        }
        store::begin_run(client, &version, trigger).await?;
        info!(%version, trigger, "training run started");
        let interactions = snapshot.interactions;
        let read_ms = ms(started.elapsed());
        let k = self.params.top_k;
        let model_params = self.params.model.clone();
        let (dataset, ranked) = tokio::task::spawn_blocking(move || {
            let d = Dataset::from_snapshot(snapshot);
            let ranked = crate::model::fit_and_rank(&d, &model_params, k);
            (d, ranked)
        })
        .await
        .map_err(|_| TrainError::Panicked)?;
        let ranked = ranked?;
        info!(
            users = dataset.users.len(),
            items = dataset.items.len(),
            train_ms = ms(ranked.train),
            "model trained"
        );

        let lists = assemble(&dataset, &ranked.lists, k);
        let redis_started = Instant::now();
        let ttl = self.params.ttl_s;
        let values = lists.keys(&version);
        let redis_keys =
            published::write_version(&mut redis, &version, values.into_iter(), ttl).await?;
        let replaced = published::swap(&mut redis, &version, ttl).await?;
        let deleted_keys = match &replaced {
            Some(old) if old != &version => published::delete_version(&mut redis, old).await?,
            _ => 0,
        };
        let redis_ms = ms(redis_started.elapsed());
        info!(%version, keys = redis_keys, ?replaced, "lists swapped in");

        let summaries = match &self.publisher {
            Some((source, topic)) => {
                publish(source, topic, &version, now, ttl, &lists.users).await?
            }
            None => 0,
        };
        let report = RunReport {
            version: version.clone(),
            trigger: trigger.to_string(),
            users: dataset.users.len(),
            items: dataset.items.len(),
            pairs: dataset.triples.len(),
            interactions,
            hidden_items: dataset.hidden.iter().filter(|h| **h).count(),
            read_ms,
            train_ms: ms(ranked.train),
            iteration_ms: ranked.iterations.iter().map(|d| ms(*d)).collect(),
            rank_ms: ms(ranked.rank),
            redis_keys,
            redis_ms,
            replaced,
            deleted_keys,
            summaries,
            total_ms: ms(started.elapsed()),
        };
        store::finish_run(
            client,
            &version,
            i32::try_from(report.users).unwrap_or(i32::MAX),
            i32::try_from(report.items).unwrap_or(i32::MAX),
            interactions,
            &serde_json::to_value(&report).unwrap_or_default(),
        )
        .await?;
        info!(%version, total_ms = report.total_ms, "training run finished");
        Ok(report)
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Every list of one run.
pub struct Lists {
    pub users: Vec<(String, Vec<Item>)>,
    pub together: Vec<(String, Vec<Item>)>,
    pub popular: Vec<Item>,
    pub by_category: Vec<(String, Vec<Item>)>,
}

impl Lists {
    /// (Redis key, JSON value) of every list under `version`.
    pub fn keys(&self, version: &str) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.users.len() + self.together.len() + 1);
        out.push((
            published::popular_key(version),
            published::encode(version, &self.popular),
        ));
        for (c, items) in &self.by_category {
            out.push((
                published::category_key(version, c),
                published::encode(version, items),
            ));
        }
        for (u, items) in &self.users {
            out.push((
                published::user_key(version, u),
                published::encode(version, items),
            ));
        }
        for (p, items) in &self.together {
            out.push((
                published::item_key(version, p),
                published::encode(version, items),
            ));
        }
        out
    }
}

/// The run's lists from the dataset and the model's ranking (pure).
pub fn assemble(d: &Dataset, ranked: &recs::topk::RankedLists, k: usize) -> Lists {
    let popular = lists::popular_lists(d, k);
    let favourites = lists::favourite_categories(d);
    let index = d.index();
    let users = (0..d.users.len())
        .map(|u| {
            let model: Vec<(u32, f32)> = ranked
                .ids(u)
                .iter()
                .copied()
                .zip(ranked.scores(u).iter().copied())
                .collect();
            let list =
                lists::user_list(d, u, &model, favourites[u].as_deref(), &popular, &index, k);
            (d.users[u].clone(), list)
        })
        .collect();
    Lists {
        users,
        together: lists::bought_together(d, k),
        popular: popular.0,
        by_category: popular.1,
    }
}

/// The published record of one user's list.
fn summary(
    version: &str,
    now: i64,
    expires: i64,
    user: &str,
    items: &[Item],
) -> UserRecommendations {
    UserRecommendations {
        event_id: runtime::ids::derived(&[version, user]),
        occurred_at: runtime::now_ms(),
        correlation_id: version.to_string(),
        causation_id: None,
        user_id: user.to_string(),
        strategy: if items.iter().any(|i| i.reason == "cf") {
            RecommendationStrategy::CollaborativeFiltering
        } else {
            RecommendationStrategy::PopularityFallback
        },
        items: items
            .iter()
            .enumerate()
            .map(|(n, i)| RecommendedItem {
                product_id: i.product_id.clone(),
                rank: n as i32 + 1,
                score: f64::from(i.score),
                reason: Some(i.reason.to_string()),
            })
            .collect(),
        model_version: version.to_string(),
        computed_at: now,
        expires_at: Some(expires),
    }
}

/// One `UserRecommendations` per user, many in flight, each awaited (a run is reported done
/// only once the broker has every list).
async fn publish(
    source: &Arc<Source>,
    topic: &Topic<UserRecommendations>,
    version: &str,
    now: i64,
    ttl_s: u64,
    users: &[(String, Vec<Item>)],
) -> Result<usize, TrainError> {
    let expires = now + i64::try_from(ttl_s).unwrap_or(i64::MAX / 2000) * 1000;
    let values: Vec<(String, UserRecommendations)> = users
        .iter()
        .map(|(user, items)| (user.clone(), summary(version, now, expires, user, items)))
        .collect();
    let sends = values.into_iter().map(|(user, value)| {
        let (source, topic) = (source.clone(), topic.clone());
        async move { source.send(&topic, &user, &value).await }
    });
    let mut results = futures::stream::iter(sends).buffer_unordered(256);
    let mut sent = 0;
    while let Some(r) = results.next().await {
        r?;
        sent += 1;
    }
    Ok(sent)
}
