//! A private PostgreSQL cluster with `wal_level=logical` (for CDC), owned by the `postgres`
//! user, in the data folder, on its own port. The machine's shared cluster is left alone.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use tracing::info;

use crate::{apt_install, io, path_str, port_open, wait_for_port, StackConfig, StackError};

fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The cluster lives outside the data folder: the `postgres` user must traverse every parent
/// folder, and a clone may sit in a private one (`mktemp -d` makes 0700 folders). One
/// cluster per port, under the world-traversable `/var/tmp`.
fn cluster_dir(config: &StackConfig) -> PathBuf {
    PathBuf::from(format!(
        "/var/tmp/storefleet-postgres-{}",
        config.postgres_port
    ))
}

async fn as_postgres(program: PathBuf, args: &[String]) -> Result<bool, StackError> {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&program)
        .args(args)
        .status()
        .await
        .map_err(io(format!("run {}", program.display())))?;
    Ok(status.success())
}

pub async fn ensure_started(config: &StackConfig) -> Result<(), StackError> {
    let dir = cluster_dir(config);
    if port_open(config.postgres_port) && dir.join("postmaster.pid").is_file() {
        info!(port = config.postgres_port, "postgresql already running");
        return Ok(());
    }
    let bin = match bin_dir() {
        Some(bin) => bin,
        None => {
            apt_install(&["postgresql"]).await?;
            bin_dir().ok_or_else(|| {
                StackError::Failed("postgresql installed but no pg_ctl found".into())
            })?
        }
    };
    if !dir.join("PG_VERSION").is_file() {
        std::fs::create_dir_all(&dir).map_err(io("create postgres folder"))?;
        chown_postgres(&dir).await?;
        let ok = as_postgres(
            bin.join("initdb"),
            &[
                "-D".into(),
                path_str(&dir),
                "-U".into(),
                "postgres".into(),
                "--auth=trust".into(),
                "-E".into(),
                "UTF8".into(),
            ],
        )
        .await?;
        if !ok {
            return Err(StackError::Failed("initdb failed".into()));
        }
    }
    let socket_dir = dir.join("socket");
    std::fs::create_dir_all(&socket_dir).map_err(io("create socket folder"))?;
    chown_postgres(&socket_dir).await?;
    let options = format!(
        "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c wal_level=logical \
         -c max_replication_slots=16 -c max_wal_senders=16 -c max_slot_wal_keep_size={} \
         -c fsync=on -c max_connections=200",
        config.postgres_port,
        path_str(&socket_dir),
        config.slot_wal_keep_mb
    );
    let ok = as_postgres(
        bin.join("pg_ctl"),
        &[
            "-D".into(),
            path_str(&dir),
            "-o".into(),
            options,
            "-l".into(),
            path_str(&dir.join("server.log")),
            "-w".into(),
            "start".into(),
        ],
    )
    .await?;
    if !ok {
        return Err(StackError::Failed(format!(
            "pg_ctl start failed; see {}",
            dir.join("server.log").display()
        )));
    }
    wait_for_port(config.postgres_port, Duration::from_secs(30)).await?;
    info!(
        port = config.postgres_port,
        "postgresql started (wal_level=logical)"
    );
    Ok(())
}

async fn chown_postgres(dir: &std::path::Path) -> Result<(), StackError> {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .await
        .map_err(io("chown postgres folder"))?;
    if status.success() {
        Ok(())
    } else {
        Err(StackError::Failed(format!(
            "chown {} failed",
            dir.display()
        )))
    }
}

pub async fn stop(config: &StackConfig) -> Result<(), StackError> {
    let dir = cluster_dir(config);
    if !dir.join("postmaster.pid").is_file() {
        return Ok(());
    }
    let Some(bin) = bin_dir() else { return Ok(()) };
    as_postgres(
        bin.join("pg_ctl"),
        &[
            "-D".into(),
            path_str(&dir),
            "-m".into(),
            "fast".into(),
            "-w".into(),
            "stop".into(),
        ],
    )
    .await?;
    info!("postgresql stopped");
    Ok(())
}
