//! The pools against a stand-in server that speaks just enough of the protocol to accept a
//! session (startup, `AuthenticationOk`, `ReadyForQuery`): no PostgreSQL needed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;

struct FakeServer {
    url: String,
    accepted: Arc<AtomicUsize>,
    /// Sessions the client side closed.
    ended: Arc<AtomicUsize>,
    /// Cancelled to drop every session accepted so far (then replaced).
    sessions: Arc<Mutex<CancellationToken>>,
}

impl FakeServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("postgres://test@{}/test", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let sessions = Arc::new(Mutex::new(CancellationToken::new()));
        let (count, done, current) = (accepted.clone(), ended.clone(), sessions.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (end, done) = (current.lock().unwrap().clone(), done.clone());
                tokio::spawn(async move {
                    if session(socket, end).await {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            url,
            accepted,
            ended,
            sessions,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open session, as a server restart would.
    fn close_sessions(&self) {
        let mut current = self.sessions.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }
}

/// One session; true when the client closed it.
async fn session(mut socket: TcpStream, end: CancellationToken) -> bool {
    let Ok(len) = socket.read_i32().await else {
        return false;
    };
    let mut startup = vec![0; usize::try_from(len).unwrap() - 4];
    if socket.read_exact(&mut startup).await.is_err() {
        return false;
    }
    let ok = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
    let ready = [b'Z', 0, 0, 0, 5, b'I'];
    if socket
        .write_all(&[&ok[..], &ready[..]].concat())
        .await
        .is_err()
    {
        return false;
    }
    let mut sink = [0u8; 256];
    loop {
        tokio::select! {
            _ = end.cancelled() => return false,
            read = socket.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return true },
        }
    }
}

async fn until_closed(client: &Client) {
    for _ in 0..500 {
        if client.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the client did not see its session end");
}

fn tasks() -> Tasks {
    Tasks::new(CancellationToken::new())
}

#[tokio::test]
async fn the_connection_task_is_the_owners_and_ends_when_its_client_is_dropped() {
    let server = FakeServer::start().await;
    let tasks = tasks();
    let client = connect(&server.url, "orders", &tasks).await.unwrap();
    assert_eq!(tasks.running(), vec!["postgresql connection (orders)"]);
    // Cancellation does not cut a connection its client still uses: the drain reports it.
    assert_eq!(
        tasks.drain(Duration::from_millis(200)).await,
        vec!["postgresql connection (orders)"]
    );
    assert!(!client.is_closed());
    drop(client);
    assert!(tasks.drain(Duration::from_secs(5)).await.is_empty());
}

#[tokio::test]
async fn a_failed_connect_leaves_no_task() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("postgres://test@{}/test", closed.local_addr().unwrap());
    drop(closed);
    let tasks = tasks();
    assert!(connect(&url, "orders", &tasks).await.is_err());
    assert!(tasks.running().is_empty());
    let pool = Pool::new(&url, "orders", &tasks);
    assert!(pool.get().await.is_err());
    let shared = Shared::new(&url, "catalog", 2, &tasks);
    assert!(shared.client().await.is_err());
    assert!(tasks.running().is_empty());
}

#[tokio::test]
async fn shared_clients_go_round_robin_and_a_closed_one_is_replaced() {
    let server = FakeServer::start().await;
    let tasks = tasks();
    let shared = Shared::new(&server.url, "catalog", 2, &tasks);
    let handed: Vec<Arc<Client>> = hand_out(&shared, 4).await;
    assert_eq!(
        server.accepted(),
        2,
        "one connection per slot, made on first use"
    );
    assert!(Arc::ptr_eq(&handed[0], &handed[2]));
    assert!(Arc::ptr_eq(&handed[1], &handed[3]));
    assert!(!Arc::ptr_eq(&handed[0], &handed[1]));

    server.close_sessions();
    until_closed(&handed[0]).await;
    until_closed(&handed[1]).await;
    let again = shared.client().await.unwrap();
    assert!(!again.is_closed());
    assert_eq!(server.accepted(), 3, "the closed slot connected again");
    drop((handed, again, shared));
    assert!(tasks.drain(Duration::from_secs(5)).await.is_empty());
}

async fn hand_out(shared: &Shared, n: usize) -> Vec<Arc<Client>> {
    let mut handed = Vec::new();
    for _ in 0..n {
        handed.push(shared.client().await.unwrap());
    }
    handed
}

#[tokio::test]
async fn the_pool_reuses_what_is_put_back_never_what_is_dropped_or_closed() {
    let server = FakeServer::start().await;
    let tasks = tasks();
    let pool = Pool::new(&server.url, "payments", &tasks);
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    assert_eq!(server.accepted(), 2, "checked out: one caller each");
    pool.put(first);
    drop(second);
    let reused = pool.get().await.unwrap();
    assert_eq!(server.accepted(), 2, "the one put back is reused");
    let fresh = pool.get().await.unwrap();
    assert_eq!(server.accepted(), 3, "the dropped one is not");

    server.close_sessions();
    until_closed(&reused).await;
    until_closed(&fresh).await;
    let open = pool.get().await.unwrap();
    assert_eq!(server.accepted(), 4);
    pool.put(reused);
    pool.put(open);
    pool.put(fresh);
    let _open = pool.get().await.unwrap();
    assert_eq!(server.accepted(), 4, "the open one is reused");
    let _next = pool.get().await.unwrap();
    assert_eq!(server.accepted(), 5, "the closed ones were never put back");
}

#[tokio::test]
async fn a_scoped_client_is_closed_and_its_task_ended_on_return() {
    let server = FakeServer::start().await;
    let closed = with_client(&server.url, "catalog", async |client| {
        assert!(!client.is_closed());
        "done"
    })
    .await
    .unwrap();
    assert_eq!(closed, "done");
    assert_eq!(server.accepted(), 1);
    for _ in 0..500 {
        if server.ended.load(Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the scoped client's session was not closed");
}

#[tokio::test]
async fn an_owned_client_waits_for_its_connection_on_close() {
    let server = FakeServer::start().await;
    let owned = Owned::connect(&server.url, "warehouse").await.unwrap();
    assert_eq!(
        owned.tasks.running(),
        vec!["postgresql connection (warehouse)"]
    );
    let tasks = owned.tasks.clone();
    owned.close().await;
    assert!(tasks.running().is_empty(), "close waited for the task");
}

/// A connection with something kept per connection (as prepared statements are).
struct Numbered {
    client: Client,
    number: usize,
}

impl Connection for Numbered {
    fn client(&self) -> &Client {
        &self.client
    }
}

#[tokio::test]
async fn setup_runs_once_per_new_connection() {
    let server = FakeServer::start().await;
    let tasks = tasks();
    let setups = Arc::new(AtomicUsize::new(0));
    let counted = setups.clone();
    let pool = Pool::with_setup(&server.url, "payments", &tasks, move |client| {
        let number = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Numbered { client, number }) }
    });
    let first = pool.get().await.unwrap();
    assert_eq!(first.number, 1);
    pool.put(first);
    assert_eq!(
        pool.get().await.unwrap().number,
        1,
        "kept with its connection"
    );
    assert_eq!(pool.get().await.unwrap().number, 2);
    assert_eq!(setups.load(Ordering::SeqCst), 2);
}
