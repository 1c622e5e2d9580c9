//! Kafka storage: a registry restarted on the same topic serves the same ids and versions.
//!
//! Needs the local broker binary (nisshi, see `scripts/install-broker.sh`); the path comes
//! from `NISSHI_BIN`, else `$STOREFLEET_CACHE` or `~/.cache/storefleet`. A missing binary
//! fails the test with that message: durability is not optional.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registry::{serve, RegistryConfig, RegistryError, Storage};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Broker {
    child: Child,
    bootstrap: String,
}

impl Broker {
    async fn start() -> Self {
        let binary = stack::broker_binary();
        assert!(
            binary.exists(),
            "broker binary {} is missing: run scripts/install-broker.sh (or set NISSHI_BIN)",
            binary.display()
        );
        let port = stack::free_port().expect("bind a free port");
        let child = Command::from(stack::broker_command(&binary, port, "memory://nisshi/"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the broker");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(address).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "broker did not listen on {address}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        }
    }
}

struct Registry {
    base: String,
    client: Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RegistryError>>,
}

impl Registry {
    async fn start(bootstrap: &str, topic: &str) -> Self {
        let shutdown = CancellationToken::new();
        let (ready, address) = oneshot::channel::<SocketAddr>();
        let config = RegistryConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            storage: Storage::Kafka {
                bootstrap_servers: bootstrap.to_string(),
                topic: topic.to_string(),
            },
        };
        let task = tokio::spawn(serve(config, shutdown.clone(), Some(ready)));
        let address = match tokio::time::timeout(Duration::from_secs(90), address).await {
            Ok(Ok(address)) => address,
            _ => {
                shutdown.cancel();
                let outcome = task.await;
                panic!("registry did not become ready: {outcome:?}");
            }
        };
        Self {
            base: format!("http://{address}"),
            client: Client::new(),
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("serve");
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.expect("json body"))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn register(&self, subject: &str, schema: Value) -> u64 {
        let path = format!("/subjects/{subject}/versions");
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"schema": schema.to_string()})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register under {subject}: {body}");
        body["id"].as_u64().expect("id")
    }

    /// Everything a client could observe, for before/after comparison.
    async fn snapshot(&self) -> Value {
        let mut subjects = serde_json::Map::new();
        for subject in self
            .get("/subjects?deleted=true")
            .await
            .as_array()
            .expect("list")
            .clone()
        {
            let subject = subject.as_str().expect("subject").to_string();
            let versions = self
                .get(&format!("/subjects/{subject}/versions?deleted=true"))
                .await;
            let mut detail = Vec::new();
            for version in versions.as_array().expect("versions") {
                detail.push(
                    self.get(&format!(
                        "/subjects/{subject}/versions/{version}?deleted=true"
                    ))
                    .await,
                );
            }
            let live = self
                .get(&format!("/subjects?subjectPrefix={subject}"))
                .await;
            subjects.insert(subject, json!({ "live": live, "versions": detail }));
        }
        json!({
            "subjects": subjects,
            "global": self.get("/config").await,
            "orders_config": self.get("/config/orders-value?defaultToGlobal=true").await,
        })
    }
}

fn unique_topic() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("_schemas-test-{}-{nanos}", std::process::id())
}

fn record(name: &str, fields: Value) -> Value {
    json!({"type": "record", "name": name, "namespace": "shop", "fields": fields})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_registry_serves_the_same_ids_and_versions() {
    let mut broker = Broker::start().await;
    let topic = unique_topic();

    let first = Registry::start(&broker.bootstrap, &topic).await;
    let order_v1 = record(
        "Order",
        json!([
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}}]),
    );
    let order_v2 = record(
        "Order",
        json!([
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "note", "type": ["null", "string"], "default": null}]),
    );
    assert_eq!(first.register("orders-value", order_v1.clone()).await, 1);
    assert_eq!(first.register("orders-value", order_v2.clone()).await, 2);
    assert_eq!(first.register("audit-value", order_v2.clone()).await, 2);
    assert_eq!(first.register("scratch-value", json!("string")).await, 3);
    assert_eq!(first.register("gone-value", json!("long")).await, 4);
    let (status, _) = first
        .call(
            reqwest::Method::PUT,
            "/config/orders-value",
            Some(json!({"compatibility": "FULL"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = first
        .call(reqwest::Method::DELETE, "/subjects/scratch-value", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/subjects/gone-value",
        "/subjects/gone-value?permanent=true",
    ] {
        let (status, body) = first.call(reqwest::Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let before = first.snapshot().await;
    first.stop().await;

    let second = Registry::start(&broker.bootstrap, &topic).await;
    assert_eq!(second.snapshot().await, before);
    assert_eq!(
        second.get("/subjects").await,
        json!(["audit-value", "orders-value"])
    );
    // Registering again is still idempotent, and a new schema does not reuse an id.
    assert_eq!(second.register("orders-value", order_v2).await, 2);
    assert_eq!(second.register("fresh-value", json!("int")).await, 5);
    second.stop().await;

    broker.child.kill().await.expect("stop the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_registrations_get_distinct_ids() {
    let mut broker = Broker::start().await;
    let topic = unique_topic();
    let registry = Registry::start(&broker.bootstrap, &topic).await;
    let mut tasks = Vec::new();
    for n in 0..10 {
        let client = registry.client.clone();
        let url = format!("{}/subjects/s{n}/versions", registry.base);
        let schema = record(&format!("R{n}"), json!([]));
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"schema": schema.to_string()}))
                .send()
                .await;
            let body: Value = response.expect("request").json().await.expect("json");
            body["id"].as_u64().unwrap_or_else(|| panic!("{body}"))
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("join"));
    }
    ids.sort();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    registry.stop().await;
    let restarted = Registry::start(&broker.bootstrap, &topic).await;
    for n in 0..10 {
        let found = restarted.get(&format!("/subjects/s{n}/versions/1")).await;
        assert!(found["id"]
            .as_u64()
            .is_some_and(|id| (1..=10).contains(&id)));
    }
    restarted.stop().await;
    broker.child.kill().await.expect("stop the broker");
}
