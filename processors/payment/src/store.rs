//! The payment service's transaction log in PostgreSQL (its own `payments` database): the
//! payment row (state as the gateway last told us) and one audit row per gateway call.
//!
//! Single writer per payment: every command holds the payment row's lock (`SELECT … FOR
//! UPDATE`) from before its first gateway call until its outcome is recorded. The saga's
//! commands and their retries arrive through different topics (so possibly in different
//! processes), and this lock is what keeps a refund from running beside a late charge.

use tasks::Tasks;
use tokio_postgres::{Client, Statement};

use crate::plan::Status;

/// Why the payments database did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("payments database not migrated (run `fleet stack up`)")]
    NotMigrated(#[source] tokio_postgres::Error),
    #[error("payments database")]
    Database(#[from] tokio_postgres::Error),
    #[error("payment {payment_id} has unknown status {status:?}")]
    UnknownStatus { payment_id: String, status: String },
}

/// A payment row as locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub status: Status,
    pub amount_minor: i64,
    pub currency: String,
    pub gateway_reference: Option<String>,
    pub decline_code: Option<String>,
}

/// One audited gateway call.
pub struct Attempt<'a> {
    pub payment_id: &'a str,
    pub command_id: &'a str,
    pub command_kind: &'a str,
    pub attempt: i32,
    pub operation: &'a str,
    pub outcome: &'a str,
    pub status_after: Option<Status>,
    pub detail: Option<&'a str>,
    pub latency_ms: i32,
}

/// Connections to the payments database, reused. At most one per in-flight command, so the
/// pool never grows past the processor's concurrency.
pub struct Store {
    pool: pg::Pool<Conn>,
}

/// A connection with the statements a command runs, prepared once (a statement given as text
/// is parsed again on every call: one more round trip and the server's parse each time).
struct Conn {
    client: Client,
    insert: Statement,
    lock: Statement,
    status: Statement,
    audit: Statement,
}

impl pg::Connection for Conn {
    fn client(&self) -> &Client {
        &self.client
    }
}

const INSERT: &str = "INSERT INTO payments (payment_id, order_id, amount_minor, currency, status)
     VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (payment_id) DO NOTHING";
const LOCK: &str = "SELECT status, amount_minor, currency, gateway_reference, decline_code
     FROM payments WHERE payment_id = $1 FOR UPDATE";
const STATUS: &str = "UPDATE payments SET status = $2,
       gateway_reference = coalesce($3, gateway_reference),
       decline_code = coalesce($4, decline_code), updated_at = now()
     WHERE payment_id = $1";
const AUDIT: &str = "INSERT INTO payment_attempts (payment_id, command_id, command_kind, attempt,
       operation, outcome, status_after, detail, latency_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A connection inside an open transaction. Dropped without [`Session::commit`], its
/// connection is closed (the server rolls back), never reused.
pub struct Session<'a> {
    store: &'a Store,
    conn: Option<Conn>,
    /// Gateway calls this session recorded (breaker refusals are not calls).
    calls: std::sync::atomic::AtomicI32,
}

impl Store {
    /// Checks the database is reachable and migrated. The connections' tasks run on `tasks`.
    pub async fn open(url: &str, tasks: &Tasks) -> Result<Self, StoreError> {
        let client = pg::connect(url, "payments", tasks).await?;
        client
            .query_one("SELECT count(*) FROM payments", &[])
            .await
            .map_err(StoreError::NotMigrated)?;
        Ok(Self {
            pool: pg::Pool::with_setup(url, "payments", tasks, prepare),
        })
    }

    fn release(&self, conn: Conn) {
        self.pool.put(conn);
    }

    /// Begins a transaction holding the lock of payment `payment_id`, creating the row as
    /// `pending` when the payment is new.
    pub async fn lock(
        &self,
        payment_id: &str,
        order_id: &str,
        amount_minor: i64,
        currency: &str,
    ) -> Result<(Session<'_>, PaymentRow), StoreError> {
        let conn = self.pool.get().await?;
        let session = Session {
            store: self,
            conn: Some(conn),
            calls: std::sync::atomic::AtomicI32::new(0),
        };
        let c = session.conn();
        // BEGIN and the insert share a round trip (the server runs them in the order they
        // were sent). The select is sent after the insert's answer: it must see the row.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&payment_id, &order_id, &amount_minor, &currency];
        let (begun, inserted) = tokio::join!(
            c.client.batch_execute("BEGIN"),
            c.client.execute(&c.insert, &params)
        );
        begun?;
        inserted?;
        let row = c.client.query_one(&c.lock, &[&payment_id]).await?;
        let status: String = row.get(0);
        let row = PaymentRow {
            status: Status::parse(&status).ok_or_else(|| StoreError::UnknownStatus {
                payment_id: payment_id.to_string(),
                status: status.clone(),
            })?,
            amount_minor: row.get(1),
            currency: row.get(2),
            gateway_reference: row.get(3),
            decline_code: row.get(4),
        };
        Ok((session, row))
    }
}

/// A new connection's session settings and the statements a command runs.
async fn prepare(client: Client) -> Result<Conn, tokio_postgres::Error> {
    // A lock wait longer than a few gateway calls means something is stuck: fail (the
    // runtime retries the record) rather than wait forever.
    client
        .batch_execute("SET lock_timeout = '15s'; SET statement_timeout = '30s'")
        .await?;
    let (insert, lock, status, audit) = tokio::join!(
        client.prepare(INSERT),
        client.prepare(LOCK),
        client.prepare(STATUS),
        client.prepare(AUDIT)
    );
    Ok(Conn {
        insert: insert?,
        lock: lock?,
        status: status?,
        audit: audit?,
        client,
    })
}

impl Session<'_> {
    fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("session has its connection until commit")
    }

    fn client(&self) -> &Client {
        &self.conn().client
    }

    pub async fn set_status(
        &self,
        payment_id: &str,
        status: Status,
        gateway_reference: Option<&str>,
        decline_code: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(
                &self.conn().status,
                &[
                    &payment_id,
                    &status.as_str(),
                    &gateway_reference,
                    &decline_code,
                ],
            )
            .await
            .map(|_| ())
            .map_err(StoreError::from)
    }

    pub async fn audit(&self, a: Attempt<'_>) -> Result<(), StoreError> {
        if a.outcome != "breaker_open" {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.client()
            .execute(
                &self.conn().audit,
                &[
                    &a.payment_id,
                    &a.command_id,
                    &a.command_kind,
                    &a.attempt,
                    &a.operation,
                    &a.outcome,
                    &a.status_after.map(Status::as_str),
                    &a.detail,
                    &a.latency_ms,
                ],
            )
            .await
            .map(|_| ())
            .map_err(StoreError::from)
    }

    /// Gateway calls recorded by this session (this attempt of the command).
    pub fn calls(&self) -> i32 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Gateway calls made for `command_id` so far, and a one-line history of them.
    pub async fn history(&self, command_id: &str) -> Result<(i32, String), StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT attempt, operation, outcome, coalesce(detail, ''),
                        to_char(at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')
                 FROM payment_attempts WHERE command_id = $1 ORDER BY id",
                &[&command_id],
            )
            .await?;
        let calls = rows
            .iter()
            .filter(|r| r.get::<_, String>(2) != "breaker_open")
            .count();
        let history = rows
            .iter()
            .map(|r| {
                format!(
                    "#{} {} {} {} {}",
                    r.get::<_, i32>(0),
                    r.get::<_, String>(4),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Ok((i32::try_from(calls).unwrap_or(i32::MAX), history))
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        let conn = self.conn.take().expect("session has its connection");
        conn.client.batch_execute("COMMIT").await?;
        self.store.release(conn);
        Ok(())
    }
}
