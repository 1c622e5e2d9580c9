//! The interaction store (the `recommendations` database, migrations/recommendations).
//!
//! Why PostgreSQL and not a state store with a changelog: a model is trained on every user's
//! interactions at once, while a state store is split by partition across the group's
//! instances. One table gives the trainer one consistent read (aggregated by the server with
//! `GROUP BY`), and its primary key on the source event id makes a record handled twice (after
//! a crash, before its offset commit) a no-op, so the store is exactly-once over at-least-once
//! delivery.
//!
//! Single writer per row: the group member owning the record's partition. Writes are grouped
//! like checkout's orders: the handler queues a record's writes with one writer task
//! ([`Store::write`] returns a future at once), which writes what is queued in one
//! transaction; the runtime awaits the future before it commits the record's offset
//! (`Outputs::defer`), so a crash can only make a write happen again, never lose it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tasks::Tasks;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tracing::warn;

use crate::rows::{InteractionRow, Write};

/// Writes per transaction at most.
const BATCH: usize = 2_000;
/// Attempts of a batch before its futures fail (the processor then stops and its restart
/// writes them again); waits grow from 100 ms to 5 s.
const ATTEMPTS: u32 = 15;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("recommendations database not migrated (run `fleet stack up`)")]
    NotMigrated(#[source] tokio_postgres::Error),
    #[error("recommendations database")]
    Database(#[from] tokio_postgres::Error),
    #[error("the store writer stopped")]
    WriterStopped,
    #[error(transparent)]
    Batch(Arc<StoreError>),
}

type Job = (Vec<Write>, oneshot::Sender<Result<(), Arc<StoreError>>>);

pub struct Store {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Store {
    /// Connects (checking the schema) and starts the writer task on `tasks`.
    pub async fn open(url: &str, tasks: &Tasks) -> Result<Self, StoreError> {
        let pool = pg::Pool::new(url, "recommendations", tasks);
        let client = pool.get().await?;
        client
            .query_one("SELECT count(*) FROM model_runs", &[])
            .await
            .map_err(StoreError::NotMigrated)?;
        pool.put(client);
        let (jobs, queue) = mpsc::unbounded_channel();
        tasks.spawn("recommendations store writer", writer(pool, queue));
        Ok(Self { jobs })
    }

    /// Queues `writes` now; the future resolves once they are committed.
    pub fn write(&self, writes: Vec<Write>) -> BoxFuture<'static, Result<(), StoreError>> {
        let (reply, done) = oneshot::channel();
        let queued = self.jobs.send((writes, reply));
        Box::pin(async move {
            queued.map_err(|_| StoreError::WriterStopped)?;
            done.await
                .map_err(|_| StoreError::WriterStopped)?
                .map_err(StoreError::Batch)
        })
    }
}

async fn writer(pool: pg::Pool, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let mut count = batch[0].0.len();
        while count < BATCH {
            match queue.try_recv() {
                Ok(job) => {
                    count += job.0.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let writes: Vec<&Write> = batch.iter().flat_map(|(w, _)| w.iter()).collect();
        let mut outcome = Ok(());
        for attempt in 1..=ATTEMPTS {
            let written = match pool.get().await {
                Ok(mut client) => {
                    let written = apply(&mut client, &writes).await;
                    pool.put(client);
                    written
                }
                Err(e) => Err(StoreError::Database(e)),
            };
            outcome = written.map_err(Arc::new);
            match &outcome {
                Ok(()) => break,
                Err(e) => {
                    let e = runtime::error_chain(e.as_ref());
                    warn!(attempt, writes = writes.len(), error = %e, "store write failed; retrying");
                    let wait = (100u64 << attempt.min(6)).min(5_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
        for (_, reply) in batch {
            let _ = reply.send(outcome.clone());
        }
    }
}

/// One transaction: new interactions inserted (a known event id is skipped), catalog and
/// stock versions upserted where newer. A multi-row upsert may not touch a row twice, so
/// each product keeps only its newest version of the batch.
async fn apply(client: &mut Client, writes: &[&Write]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    let mut interactions: Vec<&InteractionRow> = Vec::new();
    let mut catalog: HashMap<&str, (&Option<String>, bool, i64)> = HashMap::new();
    let mut stock: HashMap<&str, (bool, i64)> = HashMap::new();
    for w in writes {
        match w {
            Write::Interaction(r) => {
                if seen.insert(r.event_id.as_str()) {
                    interactions.push(r);
                }
            }
            Write::Catalog {
                product_id,
                category,
                listed,
                lsn,
            } => {
                let e = catalog
                    .entry(product_id)
                    .or_insert((category, *listed, *lsn));
                if *lsn >= e.2 {
                    *e = (category, *listed, *lsn);
                }
            }
            Write::Stock {
                product_id,
                in_stock,
                sequence,
            } => {
                let e = stock.entry(product_id).or_insert((*in_stock, *sequence));
                if *sequence >= e.1 {
                    *e = (*in_stock, *sequence);
                }
            }
        }
    }
    let tx = client.transaction().await?;
    if !interactions.is_empty() {
        let ids: Vec<&str> = interactions.iter().map(|r| r.event_id.as_str()).collect();
        let users: Vec<&str> = interactions.iter().map(|r| r.user_id.as_str()).collect();
        let products: Vec<&str> = interactions.iter().map(|r| r.product_id.as_str()).collect();
        let kinds: Vec<&str> = interactions.iter().map(|r| r.kind).collect();
        let weights: Vec<f32> = interactions.iter().map(|r| r.weight).collect();
        let orders: Vec<Option<&str>> =
            interactions.iter().map(|r| r.order_id.as_deref()).collect();
        let at: Vec<i64> = interactions.iter().map(|r| r.occurred_at_ms).collect();
        tx.execute(
            "INSERT INTO interactions (event_id, user_id, product_id, kind, weight, order_id, occurred_at)
             SELECT id, usr, prod, kind, w, ord, to_timestamp(at / 1000.0)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::real[],
                           $6::text[], $7::bigint[]) AS t(id, usr, prod, kind, w, ord, at)
             ON CONFLICT (event_id) DO NOTHING",
            &[&ids, &users, &products, &kinds, &weights, &orders, &at],
        )
        .await?;
    }
    if !catalog.is_empty() {
        let ids: Vec<&str> = catalog.keys().copied().collect();
        let categories: Vec<Option<&str>> = ids.iter().map(|id| catalog[id].0.as_deref()).collect();
        let listed: Vec<bool> = ids.iter().map(|id| catalog[id].1).collect();
        let lsns: Vec<i64> = ids.iter().map(|id| catalog[id].2).collect();
        tx.execute(
            "INSERT INTO products (product_id, category, listed, catalog_lsn)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[])
             ON CONFLICT (product_id) DO UPDATE
               SET category = EXCLUDED.category, listed = EXCLUDED.listed,
                   catalog_lsn = EXCLUDED.catalog_lsn
               WHERE products.catalog_lsn <= EXCLUDED.catalog_lsn",
            &[&ids, &categories, &listed, &lsns],
        )
        .await?;
    }
    if !stock.is_empty() {
        let ids: Vec<&str> = stock.keys().copied().collect();
        let in_stock: Vec<bool> = ids.iter().map(|id| stock[id].0).collect();
        let sequences: Vec<i64> = ids.iter().map(|id| stock[id].1).collect();
        tx.execute(
            "INSERT INTO products (product_id, in_stock, stock_sequence)
             SELECT * FROM unnest($1::text[], $2::bool[], $3::bigint[])
             ON CONFLICT (product_id) DO UPDATE
               SET in_stock = EXCLUDED.in_stock, stock_sequence = EXCLUDED.stock_sequence
               WHERE products.stock_sequence <= EXCLUDED.stock_sequence",
            &[&ids, &in_stock, &sequences],
        )
        .await?;
    }
    Ok(tx.commit().await?)
}

/// What training reads from the store.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (user, product, summed weight, bought) per pair that has any weight.
    pub pairs: Vec<(String, String, f32, bool)>,
    /// Products of each placed order (for "bought together").
    pub baskets: Vec<Vec<String>>,
    /// product → (category, listed, in stock).
    pub products: HashMap<String, (Option<String>, bool, bool)>,
    pub interactions: i64,
}

/// Reads the store in one repeatable-read transaction, so the pairs, baskets and products
/// are of one moment.
pub async fn snapshot(client: &mut Client) -> Result<Snapshot, StoreError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut s = Snapshot::default();
    for row in tx
        .query(
            "SELECT user_id, product_id, sum(weight)::real, bool_or(kind = 'purchase'), count(*)
               FROM interactions GROUP BY user_id, product_id",
            &[],
        )
        .await?
    {
        s.interactions += row.get::<_, i64>(4);
        s.pairs
            .push((row.get(0), row.get(1), row.get(2), row.get(3)));
    }
    for row in tx
        .query(
            "SELECT array_agg(DISTINCT product_id) FROM interactions
              WHERE kind = 'purchase' GROUP BY order_id HAVING count(DISTINCT product_id) > 1",
            &[],
        )
        .await?
    {
        s.baskets.push(row.get(0));
    }
    for row in tx
        .query(
            "SELECT product_id, category, listed, in_stock FROM products",
            &[],
        )
        .await?
    {
        s.products
            .insert(row.get(0), (row.get(1), row.get(2), row.get(3)));
    }
    tx.commit().await?;
    Ok(s)
}

/// Whole seconds since the last finished run, if any.
pub async fn since_last_run(client: &Client) -> Result<Option<f64>, StoreError> {
    let row = client
        .query_one(
            "SELECT extract(epoch FROM now() - max(finished_at))::float8 FROM model_runs",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn begin_run(client: &Client, version: &str, trigger: &str) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO model_runs (version, trigger) VALUES ($1, $2)",
            &[&version, &trigger],
        )
        .await?;
    Ok(())
}

pub async fn finish_run(
    client: &Client,
    version: &str,
    users: i32,
    items: i32,
    interactions: i64,
    report: &serde_json::Value,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE model_runs SET finished_at = now(), users = $2, items = $3,
                    interactions = $4, report = $5
              WHERE version = $1",
            &[&version, &users, &items, &interactions, report],
        )
        .await?;
    Ok(())
}

/// Runs that started and never finished (their process died): under the training lock no run
/// is under way, so every unfinished row is abandoned. Their versions were never swapped in.
pub async fn abandoned_runs(client: &Client) -> Result<Vec<String>, StoreError> {
    Ok(client
        .query(
            "SELECT version FROM model_runs WHERE finished_at IS NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub async fn forget_run(client: &Client, version: &str) -> Result<(), StoreError> {
    client
        .execute("DELETE FROM model_runs WHERE version = $1", &[&version])
        .await?;
    Ok(())
}

/// Arbitrary constant key of the advisory lock a training run holds: one run at a time
/// across the group's instances and `fleet recs train`.
pub const TRAIN_LOCK: i64 = 0x5245_4353_5452_4e31; // "RECSTRN1"

/// Takes the training lock on this session if free.
pub async fn try_lock(client: &Client) -> Result<bool, StoreError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&TRAIN_LOCK])
        .await?;
    Ok(row.get(0))
}

pub async fn unlock(client: &Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&TRAIN_LOCK])
        .await?;
    Ok(())
}
