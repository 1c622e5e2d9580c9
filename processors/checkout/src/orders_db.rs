//! The order history store (the `orders` database). Single writer per order: the checkout
//! instance owning the order's partition; each write is idempotent (an upsert keyed by the
//! order id, or an update to a state), so a record handled again after a crash rewrites the
//! same row.

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};
use tracing::warn;

pub struct OrdersDb {
    url: String,
    /// One connection: the driver handles records one at a time.
    client: Mutex<Option<Client>>,
}

/// What the saga writes when the payment is secured.
pub struct NewOrder<'a> {
    pub order_id: &'a str,
    pub idempotency_key: &'a str,
    pub user_id: &'a str,
    pub currency: &'a str,
    pub total_minor: i64,
    pub payment_id: &'a str,
    pub lines: serde_json::Value,
}

impl OrdersDb {
    pub async fn open(url: &str) -> Result<Self, String> {
        let db = Self {
            url: url.to_string(),
            client: Mutex::new(None),
        };
        let guard = db.client().await?;
        connected(&guard)
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .map_err(|e| format!("orders database not migrated (run `fleet stack up`): {e}"))?;
        drop(guard);
        Ok(db)
    }

    /// The connection, (re)connected first when needed.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, String> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(|e| format!("orders database: {e}"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(error = %e, "orders database connection ended");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    pub async fn create(&self, order: &NewOrder<'_>) -> Result<(), String> {
        let guard = self.client().await?;
        connected(&guard)
            .execute(
                "INSERT INTO orders (order_id, idempotency_key, user_id, status, currency,
                   total_minor, payment_id, lines)
                 VALUES ($1, $2, $3, 'created', $4, $5, $6, $7)
                 ON CONFLICT (order_id) DO NOTHING",
                &[
                    &order.order_id,
                    &order.idempotency_key,
                    &order.user_id,
                    &order.currency,
                    &order.total_minor,
                    &order.payment_id,
                    &order.lines,
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("orders database: {e}"))
    }

    /// Marks the order `placed` or `failed` (with why).
    pub async fn finish(
        &self,
        order_id: &str,
        status: &str,
        failure: Option<&str>,
    ) -> Result<(), String> {
        let guard = self.client().await?;
        connected(&guard)
            .execute(
                "UPDATE orders SET status = $2, failure = $3, updated_at = now()
                 WHERE order_id = $1",
                &[&order_id, &status, &failure],
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("orders database: {e}"))
    }
}

fn connected<'a>(guard: &'a MutexGuard<'_, Option<Client>>) -> &'a Client {
    guard
        .as_ref()
        .expect("client() connects before handing out the guard")
}
