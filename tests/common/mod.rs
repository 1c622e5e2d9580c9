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

/// Writes `t` as a topology file (with `schemas/` linked beside it) for a `fleet` process.
pub fn write_topology(t: &Topology, dir: &Path) -> PathBuf {
    let link = dir.join("schemas");
    if !link.exists() {
        std::os::unix::fs::symlink(repo().join("schemas"), &link).unwrap();
    }
    let path = dir.join("topology.yaml");
    std::fs::write(&path, t.to_yaml()).unwrap();
    path
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
        spec.inputs[0].topic.clone(),
        spec.outputs[0].clone(),
        spec.inputs[0].dead_letter.clone(),
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
