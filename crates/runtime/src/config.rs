//! Typed runtime configuration, built from the validated topology plus the stack's
//! addresses, and checked before anything connects.

use std::net::SocketAddr;
use std::time::Duration;

use topology::{InputSpec, OffsetReset, ProcessorSpec};

use crate::RuntimeError;

/// Where the stack listens. Read once from the environment with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEnv {
    /// `STOREFLEET_BOOTSTRAP`, default `127.0.0.1:19092`.
    pub bootstrap_servers: String,
    /// `STOREFLEET_REGISTRY`, default `http://127.0.0.1:18081`.
    pub registry_url: String,
    /// `STOREFLEET_ADMIN_HOST`, default `127.0.0.1`: where admin ports (/metrics, /health)
    /// bind; `0.0.0.0` in containers so Prometheus can scrape them.
    pub admin_host: std::net::IpAddr,
    /// `STOREFLEET_STATE_DIR`, default `.storefleet/state`: local snapshots of state stores.
    pub state_dir: std::path::PathBuf,
    /// `STOREFLEET_POSTGRES`, default `postgres://postgres@127.0.0.1:15432/postgres`: the
    /// PostgreSQL server; each component names its own database on it.
    pub postgres_url: String,
    /// `STOREFLEET_GATEWAY`, default `http://127.0.0.1:18090`: the card gateway (the
    /// simulator, `fleet gateway-sim`, locally).
    pub gateway_url: String,
    /// `STOREFLEET_REDIS`, default `redis://127.0.0.1:16379/`: the storefront's carts and
    /// caches.
    pub redis_url: String,
}

impl StackEnv {
    pub const DEFAULT_BOOTSTRAP: &'static str = "127.0.0.1:19092";
    pub const DEFAULT_REGISTRY: &'static str = "http://127.0.0.1:18081";
    pub const DEFAULT_POSTGRES: &'static str = "postgres://postgres@127.0.0.1:15432/postgres";
    pub const DEFAULT_GATEWAY: &'static str = "http://127.0.0.1:18090";
    pub const DEFAULT_REDIS: &'static str = "redis://127.0.0.1:16379/";

    /// Reads the environment; a malformed value is an error, never silently defaulted.
    pub fn from_env() -> Result<Self, RuntimeError> {
        let admin_host = match std::env::var("STOREFLEET_ADMIN_HOST") {
            Ok(h) => h.parse().map_err(|_| {
                RuntimeError::Config(format!("STOREFLEET_ADMIN_HOST={h:?} is not an IP address"))
            })?,
            Err(_) => std::net::IpAddr::from([127, 0, 0, 1]),
        };
        Ok(Self {
            bootstrap_servers: std::env::var("STOREFLEET_BOOTSTRAP")
                .unwrap_or_else(|_| Self::DEFAULT_BOOTSTRAP.to_string()),
            registry_url: std::env::var("STOREFLEET_REGISTRY")
                .unwrap_or_else(|_| Self::DEFAULT_REGISTRY.to_string()),
            admin_host,
            state_dir: std::env::var_os("STOREFLEET_STATE_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::path::PathBuf::from(".storefleet/state")),
            postgres_url: std::env::var("STOREFLEET_POSTGRES")
                .unwrap_or_else(|_| Self::DEFAULT_POSTGRES.to_string()),
            gateway_url: std::env::var("STOREFLEET_GATEWAY")
                .unwrap_or_else(|_| Self::DEFAULT_GATEWAY.to_string()),
            redis_url: std::env::var("STOREFLEET_REDIS")
                .unwrap_or_else(|_| Self::DEFAULT_REDIS.to_string()),
        })
    }
}

/// `server_url` (`postgres://user@host:port/anything`) pointed at `database` instead.
pub fn postgres_database_url(server_url: &str, database: &str) -> Result<String, RuntimeError> {
    let bad = || {
        RuntimeError::Config(format!(
            "`{server_url}` is not a postgres://user@host:port/db URL"
        ))
    };
    let rest = server_url
        .strip_prefix("postgres://")
        .or_else(|| server_url.strip_prefix("postgresql://"))
        .ok_or_else(bad)?;
    let authority = rest.split(['/', '?']).next().ok_or_else(bad)?;
    if authority.is_empty() {
        return Err(bad());
    }
    Ok(format!("postgres://{authority}/{database}"))
}

/// Exponential backoff with full jitter for transient failures.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts of a transient handler failure before the record is dead-lettered.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub processor: String,
    pub instance: u16,
    pub group: String,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<String>,
    pub offset_reset: OffsetReset,
    /// At-least-once with idempotent effects, or Kafka transactions (exactly-once).
    pub guarantee: topology::Guarantee,
    pub admin_addr: SocketAddr,
    pub stack: StackEnv,
    pub retry: RetryPolicy,
    /// How often acknowledged offsets are committed.
    pub commit_interval: Duration,
    /// librdkafka `fetch.wait.max.ms`: the broker holds an empty fetch this long. Low on the
    /// critical path (latency), higher for idle-tolerant consumers (CPU).
    pub fetch_wait_max_ms: u32,
    /// Records whose outputs may await acknowledgement at once (backpressure bound).
    pub max_in_flight: usize,
    /// Folder for state snapshots (from [`StackEnv::state_dir`]).
    pub state_dir: std::path::PathBuf,
    /// How often due timers are looked for.
    pub timer_interval: Duration,
    /// How long a stateful processor gathers state changes before writing them as one
    /// changelog batch (zero: a batch per record). Outputs never wait for it; only offset
    /// commits do, and a crash handles this much input again.
    pub state_flush_interval: Duration,
    /// A store partition is snapshotted locally when this much time passed since its last
    /// snapshot and it changed, or after `snapshot_records` changelog records.
    pub snapshot_interval: Duration,
    pub snapshot_records: u64,
}

impl RuntimeConfig {
    pub fn from_spec(
        spec: &ProcessorSpec,
        instance: u16,
        stack: StackEnv,
    ) -> Result<Self, RuntimeError> {
        if instance >= spec.instances {
            return Err(RuntimeError::Config(format!(
                "instance {instance} out of range: `{}` has {} instance(s)",
                spec.name, spec.instances
            )));
        }
        let port = spec.admin_port.checked_add(instance).ok_or_else(|| {
            RuntimeError::Config(format!(
                "admin port {} + {instance} overflows",
                spec.admin_port
            ))
        })?;
        let stack_state_dir = stack.state_dir.clone();
        Ok(Self {
            processor: spec.name.clone(),
            instance,
            group: spec.group.clone(),
            inputs: spec.inputs.values().cloned().collect(),
            outputs: spec.output_topics().map(String::from).collect(),
            offset_reset: spec.offset_reset,
            guarantee: spec.guarantee,
            admin_addr: SocketAddr::new(stack.admin_host, port),
            stack,
            retry: RetryPolicy::default(),
            commit_interval: Duration::from_millis(1_000),
            fetch_wait_max_ms: spec.fetch_wait_ms,
            max_in_flight: 10_000,
            state_dir: stack_state_dir,
            timer_interval: Duration::from_millis(100),
            state_flush_interval: Duration::from_millis(u64::from(spec.state_flush_ms)),
            snapshot_interval: Duration::from_secs(60),
            snapshot_records: 200_000,
        })
    }

    pub fn dead_letter_for(&self, input_topic: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|i| i.topic == input_topic)
            .map(|i| i.dead_letter.as_str())
    }
}

#[cfg(test)]
impl RuntimeConfig {
    /// A config for unit tests: a shipping processor reading `input` (dead letters to
    /// `<input>.dlq`) on the default stack addresses, whatever the environment says.
    pub(crate) fn for_tests(input: &str) -> Self {
        let spec: ProcessorSpec = serde_json::from_value(serde_json::json!({
            "name": "shipping",
            "kind": "shipping",
            "group": "shipping",
            "inputs": {"placed": {"topic": input, "dead_letter": format!("{input}.dlq")}},
            "admin_port": 9000,
        }))
        .expect("a processor spec");
        let stack = StackEnv {
            bootstrap_servers: StackEnv::DEFAULT_BOOTSTRAP.into(),
            registry_url: StackEnv::DEFAULT_REGISTRY.into(),
            admin_host: std::net::IpAddr::from([127, 0, 0, 1]),
            state_dir: std::env::temp_dir(),
            postgres_url: StackEnv::DEFAULT_POSTGRES.into(),
            gateway_url: StackEnv::DEFAULT_GATEWAY.into(),
            redis_url: StackEnv::DEFAULT_REDIS.into(),
        };
        Self::from_spec(&spec, 0, stack).expect("a runtime config")
    }
}
