//! How the local broker (nisshi) is found and launched: one definition for the stack, the
//! registry's durability test and the broker conformance check.

use std::path::{Path, PathBuf};

use crate::StackError;

/// The broker version the stack installs (keep in step with `scripts/install-broker.sh`).
pub const BROKER_VERSION: &str = "0.8.1";

/// SQLite storage in the working directory, compaction and cleanup every 15 s.
pub const SQLITE_STORAGE: &str = "sqlite://nisshi.db?maintenance_interval=15s";

/// nisshi's PostgreSQL storage in `database` on the server of `server_url`
/// (`postgres://user@host:port/...`). The host is written `localhost`: nisshi checks TLS
/// first and a server's certificate, if it offers one, names `localhost`, not an address.
pub fn postgres_storage(server_url: &str, database: &str) -> Result<String, StackError> {
    let bad = || {
        StackError::Failed(format!(
            "`{server_url}` is not a postgres://user@host:port URL"
        ))
    };
    let rest = server_url
        .strip_prefix("postgres://")
        .or_else(|| server_url.strip_prefix("postgresql://"))
        .ok_or_else(bad)?;
    let authority = rest.split(['/', '?']).next().ok_or_else(bad)?;
    let (user, host_port) = authority
        .rsplit_once('@')
        .unwrap_or(("postgres", authority));
    let port = host_port.rsplit_once(':').map_or("5432", |(_, p)| p);
    Ok(format!(
        "postgres://{user}@localhost:{port}/{database}?sslmode=disable"
    ))
}

/// The cached broker binary: `NISSHI_BIN`, else `<cache>/nisshi-<version>/bin/nisshi` with the
/// cache from `STOREFLEET_CACHE` or `~/.cache/storefleet`.
pub fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NISSHI_BIN") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("STOREFLEET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/storefleet")
        });
    broker_binary_in(&cache)
}

pub fn broker_binary_in(cache: &Path) -> PathBuf {
    cache.join(format!("nisshi-{BROKER_VERSION}/bin/nisshi"))
}

/// `nisshi broker` listening (and advertised) on 127.0.0.1:`port` with `storage`. A relative
/// SQLite path resolves against the command's working directory.
pub fn broker_command(binary: &Path, port: u16, storage: &str) -> std::process::Command {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = std::process::Command::new(binary);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", storage])
        // Kafka's default is 3 s; one second keeps local restarts and tests snappy.
        .args(["--group-initial-rebalance-delay", "1s"]);
    command
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A broker of a test's or benchmark's own, on a free port, in a folder of its own (where the
/// SQLite engine keeps its file); killed and removed when dropped.
pub struct PrivateBroker {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    pub bootstrap: String,
}

impl PrivateBroker {
    /// Starts one on `storage` (`memory://nisshi/` or [`SQLITE_STORAGE`]) and waits until it
    /// listens.
    pub async fn start(storage: &str) -> Result<Self, StackError> {
        let binary = broker_binary();
        if !binary.exists() {
            return Err(StackError::Failed(format!(
                "broker binary {} is missing: run scripts/install-broker.sh (or set NISSHI_BIN)",
                binary.display()
            )));
        }
        let dir = tempfile::tempdir().map_err(crate::io("create a broker folder"))?;
        let port = free_port().map_err(crate::io("find a free port"))?;
        let child = broker_command(&binary, port, storage)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(crate::io("start a private broker"))?;
        let broker = Self {
            child,
            _dir: dir,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        crate::wait_for_port(port, std::time::Duration::from_secs(30)).await?;
        Ok(broker)
    }
}

impl PrivateBroker {
    /// The broker's process id (to measure its CPU).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
