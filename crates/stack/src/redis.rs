//! A private Redis on its own port (nothing persisted), started with a pid file. Eviction is
//! `volatile-lru`: under memory pressure only keys with a TTL (the storefront's caches and
//! projections) go, never carts (see the storefront's `redis_store`).

use std::time::Duration;

use tokio::process::Command;
use tracing::info;

use crate::process::terminate;
use crate::{
    apt_install, command_exists, io, is_running, path_str, port_open, wait_for_port, StackConfig,
    StackError,
};

fn pid_file(config: &StackConfig) -> std::path::PathBuf {
    config.data_dir.join("redis.pid")
}

fn running_pid(config: &StackConfig) -> Option<i32> {
    std::fs::read_to_string(pid_file(config))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|pid| is_running(*pid))
}

pub async fn ensure_started(config: &StackConfig) -> Result<(), StackError> {
    if running_pid(config).is_some() {
        info!(port = config.redis_port, "redis already running");
        return Ok(());
    }
    if port_open(config.redis_port) {
        return Err(StackError::Failed(format!(
            "port {} is taken by a process this stack did not start",
            config.redis_port
        )));
    }
    if !command_exists("redis-server") {
        apt_install(&["redis-server"]).await?;
    }
    let dir = config.data_dir.join("redis");
    std::fs::create_dir_all(&dir).map_err(io("create redis folder"))?;
    let status = Command::new("redis-server")
        .args(["--daemonize", "yes", "--bind", "127.0.0.1"])
        .args(["--port", &config.redis_port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--maxmemory", "512mb", "--maxmemory-policy", "volatile-lru"])
        .args(["--dir", &path_str(&dir)])
        .args(["--pidfile", &path_str(&pid_file(config))])
        .args(["--logfile", &path_str(&dir.join("redis.log"))])
        .status()
        .await
        .map_err(io("start redis-server"))?;
    if !status.success() {
        return Err(StackError::Failed("redis-server failed to start".into()));
    }
    wait_for_port(config.redis_port, Duration::from_secs(15)).await?;
    info!(port = config.redis_port, "redis started");
    Ok(())
}

pub async fn stop(config: &StackConfig) -> Result<(), StackError> {
    if let Some(pid) = running_pid(config) {
        terminate(pid, Duration::from_secs(5)).await;
        info!("redis stopped");
    }
    let _ = std::fs::remove_file(pid_file(config));
    Ok(())
}
