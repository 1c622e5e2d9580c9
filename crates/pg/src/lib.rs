//! PostgreSQL connections for every component: the one place that connects (plain TCP, no
//! TLS: the stack's PostgreSQL listens on loopback only) and runs each connection's I/O task
//! on its owner's [`Tasks`], and two small pools on top of it:
//! - [`Shared`]: a fixed number of clients handed out round robin to any number of callers
//!   at once (a tokio-postgres client pipelines concurrent queries), each connected on first
//!   use and again after it closes. For reads and single statements.
//! - [`Pool`]: exclusive check-out, for transactions and for what is kept per connection
//!   (prepared statements, session settings): a connection is handed back with [`Pool::put`]
//!   or dropped, which closes it, so one left in an unknown transaction state is never reused.
//!
//! No pool crate (deadpool, bb8): the fleet needs these few lines, not their health checks,
//! timeouts and recycling policies, and the connection tasks here must run on the owner's
//! tracker, which those spawn outside of.
//!
//! A connection's task ends when its client is dropped (the server then ends the session), not
//! when the owner's token is cancelled: work still in flight at shutdown (a last batch of
//! writes) keeps its connection. So an owner drops its clients and pools, then drains.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tasks::Tasks;
use tokio_postgres::NoTls;
use tracing::warn;

pub use tokio_postgres::{Client, Error};

/// A client on `url`; its connection's task runs on `tasks`, named after `database` (a
/// label for logs: which database this is to its owner).
pub async fn connect(url: &str, database: &str, tasks: &Tasks) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let label = database.to_string();
    // Owner: whoever owns `tasks`. Ends when `client` is dropped.
    tasks.spawn(format!("postgresql connection ({database})"), async move {
        if let Err(error) = connection.await {
            warn!(database = %label, %error, "postgresql connection ended");
        }
    });
    Ok(client)
}

/// A client that owns its connection's task: for tools and one-shot commands, which hold a
/// client for a while and have no longer-lived owner to hand the task to. [`Owned::close`]
/// ends the session and waits (a bounded time) for the task; dropping it ends the session
/// too, without waiting.
pub struct Owned {
    client: Client,
    tasks: Tasks,
}

impl Owned {
    pub async fn connect(url: &str, database: &str) -> Result<Self, Error> {
        let tasks = Tasks::new(tasks::CancellationToken::new());
        let client = connect(url, database, &tasks).await?;
        Ok(Self { client, tasks })
    }

    /// Ends the session and waits for its connection's task.
    pub async fn close(self) {
        let Self { client, tasks } = self;
        drop(client);
        tasks.drain(tasks::DRAIN_TIME).await;
    }
}

impl std::ops::Deref for Owned {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Owned {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Runs `work` with an [`Owned`] client, then closes it. The outer `Err` is a failed connect;
/// `work`'s own result is passed through.
pub async fn with_client<T>(
    url: &str,
    database: &str,
    work: impl AsyncFnOnce(&mut Client) -> T,
) -> Result<T, Error> {
    let mut owned = Owned::connect(url, database).await?;
    let outcome = work(&mut owned).await;
    owned.close().await;
    Ok(outcome)
}

/// Where a pool connects and who owns the connections' tasks.
struct Target {
    url: String,
    database: String,
    tasks: Tasks,
}

impl Target {
    async fn connect(&self) -> Result<Client, Error> {
        connect(&self.url, &self.database, &self.tasks).await
    }
}

/// `size` clients shared round robin (see the crate docs).
pub struct Shared {
    target: Target,
    slots: Vec<tokio::sync::Mutex<Option<Arc<Client>>>>,
    next: AtomicUsize,
}

impl Shared {
    /// Connects nothing yet: each slot connects on its first use.
    pub fn new(url: &str, database: &str, size: usize, tasks: &Tasks) -> Self {
        Self {
            target: Target {
                url: url.to_string(),
                database: database.to_string(),
                tasks: tasks.clone(),
            },
            slots: (0..size.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next slot's client, connected (again) if it has none or it closed. Callers of one
    /// slot wait for one connection attempt rather than each making their own.
    pub async fn client(&self) -> Result<Arc<Client>, Error> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut held = slot.lock().await;
        if let Some(client) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(self.target.connect().await?);
        *held = Some(client.clone());
        Ok(client)
    }
}

/// What a [`Pool`] hands out: a client, maybe with things prepared on it.
pub trait Connection: Send + 'static {
    fn client(&self) -> &Client;
}

impl Connection for Client {
    fn client(&self) -> &Client {
        self
    }
}

type Setup<C> =
    Box<dyn Fn(Client) -> Pin<Box<dyn Future<Output = Result<C, Error>> + Send>> + Send + Sync>;

/// Connections checked out one caller at a time (see the crate docs). It holds what was put
/// back, so it never has more than the most connections checked out at once.
pub struct Pool<C: Connection = Client> {
    target: Target,
    setup: Setup<C>,
    idle: Mutex<Vec<C>>,
}

impl Pool<Client> {
    /// A pool of plain clients.
    pub fn new(url: &str, database: &str, tasks: &Tasks) -> Self {
        Self::with_setup(url, database, tasks, |client| async move { Ok(client) })
    }
}

impl<C: Connection> Pool<C> {
    /// A pool whose every new connection is first passed through `setup` (session settings,
    /// prepared statements); a connection whose setup fails is dropped.
    pub fn with_setup<F, Fut>(url: &str, database: &str, tasks: &Tasks, setup: F) -> Self
    where
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, Error>> + Send + 'static,
    {
        Self {
            target: Target {
                url: url.to_string(),
                database: database.to_string(),
                tasks: tasks.clone(),
            },
            setup: Box::new(move |client| Box::pin(setup(client))),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection for this caller alone: one put back earlier, or a new one.
    pub async fn get(&self) -> Result<C, Error> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(connection) => Ok(connection),
            None => (self.setup)(self.target.connect().await?).await,
        }
    }

    /// Hands `connection` back for reuse, unless it has closed.
    pub fn put(&self, connection: C) {
        if !connection.client().is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(connection);
        }
    }
}

#[cfg(test)]
mod tests;
