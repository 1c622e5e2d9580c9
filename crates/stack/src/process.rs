//! Background processes the stack owns: started detached with a pid file and a log file,
//! stopped by pid file only.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::info;

use crate::{io, path_str, StackConfig, StackError};

/// A process of the stack, identified by its pid file.
pub struct Managed {
    pub name: &'static str,
    pub port: u16,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    kind: Kind,
}

enum Kind {
    Broker,
    Registry,
    Gateway,
}

impl Managed {
    pub fn broker(config: &StackConfig) -> Self {
        Self {
            name: "broker",
            port: config.broker_port,
            pid_file: config.data_dir.join("broker.pid"),
            log_file: config.data_dir.join("broker.log"),
            kind: Kind::Broker,
        }
    }

    pub fn registry(config: &StackConfig) -> Self {
        Self {
            name: "registry",
            port: config.registry_port,
            pid_file: config.data_dir.join("registry.pid"),
            log_file: config.data_dir.join("registry.log"),
            kind: Kind::Registry,
        }
    }

    /// The payment gateway simulator: an external service in production, ours locally.
    pub fn gateway(config: &StackConfig) -> Self {
        Self {
            name: "gateway-sim",
            port: config.gateway_port,
            pid_file: config.data_dir.join("gateway-sim.pid"),
            log_file: config.data_dir.join("gateway-sim.log"),
            kind: Kind::Gateway,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|pid| is_running(*pid))
    }

    /// Starts the process unless our pid file names a live one.
    pub async fn ensure_started(&self, config: &StackConfig) -> Result<(), StackError> {
        if let Some(pid) = self.pid() {
            info!(name = self.name, pid, "already running");
            return Ok(());
        }
        if port_open(self.port) {
            return Err(StackError::Failed(format!(
                "port {} is taken by a process this stack did not start; stop it or set another port",
                self.port
            )));
        }
        let mut command = match self.kind {
            Kind::Broker => self.broker_command(config).await?,
            Kind::Registry => self.registry_command(config)?,
            Kind::Gateway => self.gateway_command(config)?,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(io(format!("open {}", self.log_file.display())))?;
        let log_err = log.try_clone().map_err(io("clone log handle"))?;
        // Own process group: the stack outlives the command that started it, and a Ctrl-C in
        // that terminal does not reach it.
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(io(format!("start {}", self.name)))?;
        std::fs::write(&self.pid_file, child.id().to_string()).map_err(io("write pid file"))?;
        info!(name = self.name, pid = child.id(), log = %self.log_file.display(), "started");
        Ok(())
    }

    async fn broker_command(
        &self,
        config: &StackConfig,
    ) -> Result<std::process::Command, StackError> {
        let binary = install_broker(config).await?;
        let dir = config.data_dir.join("broker");
        std::fs::create_dir_all(&dir).map_err(io("create broker folder"))?;
        if config.broker_storage == crate::BrokerStorage::Memory {
            tracing::warn!("broker storage is memory (STOREFLEET_BROKER_STORAGE): nothing survives a broker stop");
        }
        let mut command = crate::broker_command(&binary, self.port, config.broker_storage.url());
        command.current_dir(&dir);
        Ok(command)
    }

    fn registry_command(&self, config: &StackConfig) -> Result<std::process::Command, StackError> {
        let (program, args) = config
            .registry_command
            .split_first()
            .ok_or_else(|| StackError::Failed("no registry command configured".into()))?;
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("STOREFLEET_BOOTSTRAP", config.bootstrap_servers());
        Ok(command)
    }

    /// `fleet gateway-sim` (the same program as the registry's), without faults: the demo
    /// and benchmarks set theirs through its `PUT /v1/faults`.
    fn gateway_command(&self, config: &StackConfig) -> Result<std::process::Command, StackError> {
        let program = config
            .registry_command
            .first()
            .ok_or_else(|| StackError::Failed("no fleet program configured".into()))?;
        let mut command = std::process::Command::new(program);
        command.args([
            "gateway-sim",
            "--listen",
            &format!("127.0.0.1:{}", self.port),
        ]);
        Ok(command)
    }

    /// SIGTERM, then SIGKILL after 10 s; removes the pid file.
    pub async fn stop(&self) -> Result<(), StackError> {
        let Some(pid) = self.pid() else {
            let _ = std::fs::remove_file(&self.pid_file);
            return Ok(());
        };
        terminate(pid, Duration::from_secs(10)).await;
        let _ = std::fs::remove_file(&self.pid_file);
        info!(name = self.name, pid, "stopped");
        Ok(())
    }
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL.
pub async fn terminate(pid: i32, grace: Duration) {
    let target = Pid::from_raw(pid);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while is_running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if is_running(pid) {
        let _ = kill(target, Signal::SIGKILL);
    }
}

/// The broker binary, built once into the cache by `scripts/install-broker.sh`.
async fn install_broker(config: &StackConfig) -> Result<PathBuf, StackError> {
    let output = tokio::process::Command::new("bash")
        .arg(&config.broker_installer)
        .env("STOREFLEET_CACHE", path_str(&config.cache_dir))
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(io("run the broker installer"))?;
    if !output.status.success() {
        return Err(StackError::Failed(
            "installing the broker failed (see above)".into(),
        ));
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(PathBuf::from(path))
}

/// True when `pid` is a live process (zombies count as gone).
pub fn is_running(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

pub async fn wait_for_port(port: u16, timeout: Duration) -> Result<(), StackError> {
    let deadline = Instant::now() + timeout;
    while !port_open(port) {
        if Instant::now() > deadline {
            return Err(StackError::Failed(format!(
                "nothing listens on 127.0.0.1:{port} after {timeout:?}; see the log in the data folder"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
