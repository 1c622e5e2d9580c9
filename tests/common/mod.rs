//! Shared helpers for integration tests against the real local stack (broker + registry),
//! whose addresses come from STOREFLEET_BOOTSTRAP / STOREFLEET_REGISTRY (the test command
//! starts a stack and sets them). Every test runs on its own isolated copies of the topics,
//! so tests run in parallel on one broker.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use codec::{RegistryClient, TopicCodec};
use topology::Topology;

pub fn env() -> runtime::StackEnv {
    runtime::StackEnv::from_env().expect("valid stack environment")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn topology() -> Topology {
    topology::load(&repo().join("topology.yaml")).expect("the repo topology is valid")
}

/// A unique suffix per call (process id, time, counter).
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{label}-{}-{millis}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The repo topology with shipping's topics renamed for this test (and `partitions`
/// partitions each), created on the broker.
pub async fn isolated_shipping(label: &str, partitions: u32) -> Topology {
    let suffix = unique(label);
    let mut t = topology().isolated("shipping", &suffix).unwrap();
    for topic in &mut t.topics {
        if topic.name.ends_with(&suffix) {
            topic.partitions = partitions;
        }
    }
    // Free admin ports of its own (instance i binds admin_port + i), so tests running side
    // by side do not collide.
    // Only shipping runs on this copy (`fleet up` on it must not start the rest of the fleet).
    t.processors.retain(|(p, _)| p.name == "shipping");
    t.connectors.clear();
    for (p, _) in &mut t.processors {
        p.admin_port = free_port_pair();
    }
    stack::create_topics_at(&env().bootstrap_servers, &t)
        .await
        .expect("topics created");
    t
}

/// Gives every processor of `t` free admin ports, creates its topics on the broker and
/// writes it as a topology file for `fleet` processes: the file and the folder holding it.
pub async fn deploy(t: &mut Topology) -> (PathBuf, tempfile::TempDir) {
    deploy_avoiding(t, &[]).await
}

/// [`deploy`], keeping admin ports off `avoid` (ports the test has given to something else).
pub async fn deploy_avoiding(t: &mut Topology, avoid: &[u16]) -> (PathBuf, tempfile::TempDir) {
    // A pair free now can be handed out twice (nothing holds it between calls): keep asking
    // until every processor has a pair of its own.
    let mut taken: std::collections::HashSet<u16> = avoid.iter().copied().collect();
    for (p, _) in &mut t.processors {
        p.admin_port = loop {
            let port = free_port_pair();
            if !taken.contains(&port) && !taken.contains(&(port + 1)) {
                break port;
            }
        };
        taken.extend([p.admin_port, p.admin_port + 1]);
    }
    stack::create_topics_at(&env().bootstrap_servers, t)
        .await
        .expect("topics created");
    let dir = tempfile::tempdir().unwrap();
    let file = write_topology(t, dir.path());
    (file, dir)
}

/// Writes `t` as a topology file (with `schemas/` linked beside it) for a `fleet` process.
pub fn write_topology(t: &Topology, dir: &Path) -> PathBuf {
    t.write_to(dir).expect("topology file written")
}

pub async fn codec_for(t: &Topology, topic: &str) -> TopicCodec {
    let base = topic
        .split(".v1.")
        .next()
        .map(|b| format!("{b}.v1"))
        .unwrap();
    let spec = t.topic(topic).or_else(|| t.topic(&base)).unwrap();
    let text = t
        .schema_text(spec.value_schema.as_deref().unwrap())
        .unwrap();
    TopicCodec::register(
        &RegistryClient::new(&env().registry_url),
        &format!("{topic}-value"),
        text,
    )
    .await
    .expect("registry reachable")
}

pub fn shipping_names(t: &Topology) -> (String, String, String) {
    let (spec, _) = t.processor("shipping").unwrap();
    (
        spec.inputs["placed"].topic.clone(),
        spec.outputs["shipments"].clone(),
        spec.inputs["placed"].dead_letter.clone(),
    )
}

/// The `fleet` binary as a child process with the stack's environment.
pub fn fleet_command() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"));
    c.env("STOREFLEET_BOOTSTRAP", env().bootstrap_servers)
        .env("STOREFLEET_REGISTRY", env().registry_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    c
}

/// A port `p` with `p` and `p + 1` both free now (two instances' admin ports).
pub fn free_port_pair() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A scratch database `<prefix>_<suffix>` on the stack's PostgreSQL with `migrations/<dir>`
/// applied; its URL.
pub async fn private_database(prefix: &str, suffix: &str, migrations: &str) -> String {
    let migrations = repo().join("migrations").join(migrations);
    let (_, url) = wiring::private_database(&env().postgres_url, &migrations, prefix, suffix)
        .await
        .unwrap();
    url
}

/// The database name of a URL from [`private_database`].
pub fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Sets `params` on processor `name` of `t` (over the file's own; raw and typed together).
pub fn set_params(t: &mut Topology, name: &str, params: &[(&str, serde_yaml::Value)]) {
    let found = t
        .set_params(name, params)
        .unwrap_or_else(|e| panic!("{name}: parameters {params:?} do not fit its kind: {e}"));
    assert!(found, "no processor {name} in the topology");
}

/// The payment gateway simulator as a real HTTP server on a free port, stopped on drop.
pub struct GatewaySim {
    pub url: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for GatewaySim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One payment in the simulator's ledger: (status, captured, refunded).
pub type LedgerEntry = (String, i64, i64);

impl GatewaySim {
    pub async fn start(faults: gateway_sim::GatewayConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(gateway_sim::serve(listener, faults, stop.clone()));
        Self { url, stop }
    }

    /// What was really charged, per payment key.
    pub async fn ledger(&self) -> std::collections::HashMap<String, LedgerEntry> {
        let v: serde_json::Value = reqwest::get(format!("{}/v1/ledger", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["key"].as_str().unwrap().to_string(),
                    (
                        p["status"].as_str().unwrap().to_string(),
                        p["captured_cents"].as_i64().unwrap(),
                        p["refunded_cents"].as_i64().unwrap(),
                    ),
                )
            })
            .collect()
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/v1/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn set_faults(&self, faults: &gateway_sim::GatewayConfig) {
        let status = reqwest::Client::new()
            .put(format!("{}/v1/faults", self.url))
            .json(faults)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "PUT /v1/faults: {status}");
    }
}

/// A warehouse level for the stock ledger: `on_hand` units of `product` at `center`.
pub fn level(product: &str, center: &str, on_hand: i32) -> events::inventory::StockCommand {
    use events::inventory::{StockCommand, StockCommandKind, StockLevel};
    StockCommand {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: 0,
        correlation_id: product.into(),
        causation_id: None,
        kind: StockCommandKind::SetLevel,
        product_id: product.into(),
        order_id: None,
        command_id: None,
        lines: Vec::new(),
        level: Some(StockLevel {
            fulfillment_center: center.into(),
            status: "available".into(),
            on_hand,
            source_lsn: None,
        }),
        hold_ms: 0,
        reason: None,
        return_item: None,
    }
}
