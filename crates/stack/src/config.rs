use std::num::ParseIntError;
use std::path::PathBuf;

/// A stack setting in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("working directory")]
    WorkingDirectory(#[source] std::io::Error),
    #[error("set STOREFLEET_CACHE or HOME")]
    NoCacheDir,
    #[error("{name}={value:?} is not a port number")]
    Port {
        name: String,
        value: String,
        #[source]
        source: ParseIntError,
    },
    #[error("stack ports must differ: {0:?}")]
    SamePorts([u16; 5]),
    #[error("STOREFLEET_SLOT_WAL_KEEP_MB={value:?} is not a number of MB")]
    SlotWalKeep {
        value: String,
        #[source]
        source: ParseIntError,
    },
    #[error("STOREFLEET_BROKER_STORAGE={0:?}: expected sqlite (durable, the default) or memory")]
    BrokerStorage(String),
}

/// Ports and folders of the local stack. Defaults suit a developer's `fleet demo`; the test
/// command uses other ports and a separate folder so both can run side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// `STOREFLEET_DATA`, default `.storefleet` in the working directory.
    pub data_dir: PathBuf,
    /// Folder with cached installs (the broker build), outside any clone.
    /// `STOREFLEET_CACHE`, default `~/.cache/storefleet`.
    pub cache_dir: PathBuf,
    pub broker_port: u16,
    pub registry_port: u16,
    pub postgres_port: u16,
    pub redis_port: u16,
    /// The payment gateway simulator (`fleet gateway-sim`), standing in for the card
    /// processor. `STOREFLEET_GATEWAY_PORT`, default 18090.
    pub gateway_port: u16,
    /// WAL a replication slot may hold back before PostgreSQL invalidates it (MB,
    /// `max_slot_wal_keep_size`). `STOREFLEET_SLOT_WAL_KEEP_MB`, default 1024.
    pub slot_wal_keep_mb: u32,
    /// Program and leading arguments that run the schema registry (`fleet registry`).
    pub registry_command: Vec<String>,
    /// Script that installs the broker and prints its path.
    pub broker_installer: PathBuf,
    /// The broker's storage engine. `STOREFLEET_BROKER_STORAGE=sqlite|memory`, default
    /// `sqlite`: durable across `kill -9` of the broker. `memory` is faster and keeps nothing
    /// when the broker stops; it is only ever chosen explicitly.
    pub broker_storage: BrokerStorage,
}

/// Where the stack's broker keeps its log (docs/broker-conformance.md compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStorage {
    /// SQLite file in the stack's folder: durable, the default.
    Sqlite,
    /// In the broker's memory: lost when the broker stops. Opt-in only.
    Memory,
}

impl BrokerStorage {
    fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("STOREFLEET_BROKER_STORAGE").as_deref() {
            Err(_) | Ok("sqlite") => Ok(Self::Sqlite),
            Ok("memory") => Ok(Self::Memory),
            Ok(other) => Err(ConfigError::BrokerStorage(other.to_string())),
        }
    }

    /// The broker's `--storage-engine` argument.
    pub fn url(self) -> &'static str {
        match self {
            Self::Sqlite => crate::SQLITE_STORAGE,
            Self::Memory => "memory://nisshi/",
        }
    }
}

fn env_port(name: &str, default: u16) -> Result<u16, ConfigError> {
    match std::env::var(name) {
        Ok(value) => value.parse().map_err(|source| ConfigError::Port {
            name: name.to_string(),
            value,
            source,
        }),
        Err(_) => Ok(default),
    }
}

impl StackConfig {
    /// Reads the environment, validating every value before anything starts.
    pub fn from_env(registry_command: Vec<String>) -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(ConfigError::WorkingDirectory)?;
        let data_dir = std::env::var_os("STOREFLEET_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".storefleet"));
        let data_dir = if data_dir.is_absolute() {
            data_dir
        } else {
            cwd.join(data_dir)
        };
        let cache_dir = std::env::var_os("STOREFLEET_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/storefleet"))
            })
            .ok_or(ConfigError::NoCacheDir)?;
        let ports = [
            env_port("STOREFLEET_BROKER_PORT", 19092)?,
            env_port("STOREFLEET_REGISTRY_PORT", 18081)?,
            env_port("STOREFLEET_POSTGRES_PORT", 15432)?,
            env_port("STOREFLEET_REDIS_PORT", 16379)?,
            env_port("STOREFLEET_GATEWAY_PORT", 18090)?,
        ];
        let mut unique = ports.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != ports.len() {
            return Err(ConfigError::SamePorts(ports));
        }
        Ok(Self {
            data_dir,
            cache_dir,
            broker_port: ports[0],
            registry_port: ports[1],
            postgres_port: ports[2],
            redis_port: ports[3],
            gateway_port: ports[4],
            slot_wal_keep_mb: match std::env::var("STOREFLEET_SLOT_WAL_KEEP_MB") {
                Ok(value) => value
                    .parse()
                    .map_err(|source| ConfigError::SlotWalKeep { value, source })?,
                Err(_) => 1024,
            },
            registry_command,
            broker_installer: cwd.join("scripts/install-broker.sh"),
            broker_storage: BrokerStorage::from_env()?,
        })
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    pub fn postgres_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.postgres_port
        )
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }
}
