//! The order history store (the `orders` database): one row per placed order, written when
//! its saga places it. Single writer per order: the checkout instance owning the order's
//! partition; each write is an idempotent upsert keyed by the order id, so a record handled
//! again after a crash rewrites the same row.
//!
//! Writes are grouped: the saga hands each placed order to one writer task ([`OrdersDb::place`]
//! returns at once with a future), which writes whatever is queued as one multi-row insert in
//! one transaction. The runtime awaits each order's future before it commits the record that
//! placed it (`Outputs::defer`), so a crash can only make a write happen again, never lose it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tasks::Tasks;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tracing::warn;

/// Orders written in one transaction at most.
const BATCH: usize = 500;
/// Attempts of a batch before its orders' futures fail (which stops the processor: its
/// restart writes them again); the waits between grow from 100 ms to 5 s, about a minute in all.
const ATTEMPTS: u32 = 15;

/// A placed order's row.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: String,
    pub idempotency_key: String,
    pub user_id: String,
    pub currency: String,
    pub total_minor: i64,
    pub payment_id: String,
    pub lines: serde_json::Value,
}

/// Why an order's row was not written.
#[derive(Debug, thiserror::Error)]
pub enum OrdersDbError {
    #[error("orders database not migrated (run `fleet stack up`)")]
    NotMigrated(#[source] tokio_postgres::Error),
    #[error("orders database")]
    Database(#[from] tokio_postgres::Error),
    #[error("the orders writer stopped")]
    WriterStopped,
    /// The batch the order was written in failed (every order of the batch shares the error).
    #[error(transparent)]
    Batch(Arc<OrdersDbError>),
}

type Job = (NewOrder, oneshot::Sender<Result<(), Arc<OrdersDbError>>>);

pub struct OrdersDb {
    /// Unbounded: the runtime's in-flight limit bounds what waits here.
    jobs: mpsc::UnboundedSender<Job>,
}

/// Where the saga hands a placed order's row: the `orders` database ([`OrdersDb`]), or in a
/// test anything that records them. The future resolves once the row is durable; the runtime
/// awaits it before committing the record that placed the order.
pub trait PlaceOrders: Send + Sync {
    fn place(&self, order: NewOrder) -> BoxFuture<'static, Result<(), OrdersDbError>>;
}

impl PlaceOrders for OrdersDb {
    fn place(&self, order: NewOrder) -> BoxFuture<'static, Result<(), OrdersDbError>> {
        OrdersDb::place(self, order)
    }
}

impl OrdersDb {
    /// Connects (checking the schema is there) and starts the writer task on `tasks`, with
    /// its connection. The writer does not stop on cancellation: it ends once every order
    /// queued before this `OrdersDb` was dropped is answered (the runtime awaits them).
    pub async fn open(url: &str, tasks: &Tasks) -> Result<Self, OrdersDbError> {
        let pool = pg::Pool::new(url, "orders", tasks);
        let client = pool.get().await?;
        client
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .map_err(OrdersDbError::NotMigrated)?;
        pool.put(client);
        let (jobs, queue) = mpsc::unbounded_channel();
        tasks.spawn("orders writer", writer(pool, queue));
        Ok(Self { jobs })
    }

    /// Queues the row of a placed order now (so the writer can group it with the orders
    /// handled after it); the future resolves once it is committed.
    pub fn place(&self, order: NewOrder) -> BoxFuture<'static, Result<(), OrdersDbError>> {
        let (reply, done) = oneshot::channel();
        let queued = self.jobs.send((order, reply));
        Box::pin(async move {
            queued.map_err(|_| OrdersDbError::WriterStopped)?;
            done.await
                .map_err(|_| OrdersDbError::WriterStopped)?
                .map_err(OrdersDbError::Batch)
        })
    }
}

/// The single writer: takes what is queued (up to [`BATCH`]), writes it in one transaction,
/// answers every order of the batch; reconnects and retries with backoff on failure. Its one
/// connection lives in `pool` between batches (a closed one is not put back).
async fn writer(pool: pg::Pool, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // One row per order id (an order handled twice may be queued twice): a multi-row
        // upsert may not touch a row twice.
        let mut seen = std::collections::HashSet::new();
        let orders: Vec<&NewOrder> = batch
            .iter()
            .map(|(o, _)| o)
            .filter(|o| seen.insert(o.order_id.as_str()))
            .collect();
        let mut outcome = Ok(());
        for attempt in 1..=ATTEMPTS {
            let written = match pool.get().await {
                Ok(mut client) => {
                    let written = insert(&mut client, &orders).await;
                    pool.put(client);
                    written
                }
                Err(e) => Err(OrdersDbError::Database(e)),
            };
            outcome = written.map_err(Arc::new);
            match &outcome {
                Ok(()) => break,
                Err(e) => {
                    let e = runtime::error_chain(e.as_ref());
                    warn!(attempt, orders = orders.len(), error = %e, "orders write failed; retrying");
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

async fn insert(client: &mut Client, orders: &[&NewOrder]) -> Result<(), OrdersDbError> {
    let ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
    let keys: Vec<&str> = orders.iter().map(|o| o.idempotency_key.as_str()).collect();
    let users: Vec<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
    let currencies: Vec<&str> = orders.iter().map(|o| o.currency.as_str()).collect();
    let totals: Vec<i64> = orders.iter().map(|o| o.total_minor).collect();
    let payments: Vec<&str> = orders.iter().map(|o| o.payment_id.as_str()).collect();
    let lines: Vec<&serde_json::Value> = orders.iter().map(|o| &o.lines).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO orders (order_id, idempotency_key, user_id, status, currency,
           total_minor, payment_id, lines)
         SELECT id, key, usr, 'placed', cur, total, pay, line
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                       $6::text[], $7::jsonb[]) AS t(id, key, usr, cur, total, pay, line)
         ON CONFLICT (order_id) DO UPDATE SET status = 'placed', updated_at = now()
           WHERE orders.status <> 'placed'",
        &[&ids, &keys, &users, &currencies, &totals, &payments, &lines],
    )
    .await?;
    Ok(tx.commit().await?)
}
