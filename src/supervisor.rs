//! `fleet up`: one OS process per processor instance, per connector and for the lag monitor,
//! restarted with backoff when it dies, all stopped with SIGTERM (then SIGKILL after a grace
//! period) on shutdown.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use topology::Topology;
use tracing::{error, info, warn};

const GRACE: Duration = Duration::from_secs(20);
/// A process that stayed up this long is considered healthy again: its backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run_fleet(
    topology_path: &Path,
    topology: &Topology,
    monitor: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
) -> Result<()> {
    let exe = std::env::current_exe().context("locating the fleet binary")?;
    let mut tasks = Vec::new();
    let mut units = Vec::new();
    for (spec, _) in &topology.processors {
        for instance in 0..spec.instances {
            units.push(Unit {
                exe: exe.clone(),
                topology: topology_path.to_path_buf(),
                processor: spec.name.clone(),
                instance,
                args: vec![
                    "run".into(),
                    spec.name.clone(),
                    "--instance".into(),
                    instance.to_string(),
                ],
            });
        }
    }
    // A connector runs as one process: its slot admits one reader at a time.
    for (spec, _) in &topology.connectors {
        units.push(Unit {
            exe: exe.clone(),
            topology: topology_path.to_path_buf(),
            processor: spec.name.clone(),
            instance: 0,
            args: vec!["connect".into(), spec.name.clone()],
        });
    }
    // The lag monitor watches the fleet from outside it: its own process, like any other.
    if let Some(listen) = monitor {
        units.push(Unit {
            exe: exe.clone(),
            topology: topology_path.to_path_buf(),
            processor: "monitor".into(),
            instance: 0,
            args: vec!["monitor".into(), "--listen".into(), listen.to_string()],
        });
    }
    for unit in units {
        // Owner: this function, which awaits every handle below.
        tasks.push(tokio::spawn(unit.supervise(shutdown.clone())));
    }
    info!(processes = tasks.len(), "fleet up");
    for task in tasks {
        task.await.context("supervisor task")?;
    }
    info!("fleet stopped");
    Ok(())
}

struct Unit {
    exe: std::path::PathBuf,
    topology: std::path::PathBuf,
    /// Processor or connector name (for logs).
    processor: String,
    instance: u16,
    /// The `fleet` subcommand that runs it.
    args: Vec<String>,
}

impl Unit {
    fn spawn(&self) -> std::io::Result<Child> {
        Command::new(&self.exe)
            .arg("--topology")
            .arg(&self.topology)
            .args(&self.args)
            // Own process group: a terminal Ctrl-C reaches the supervisor only, which then
            // stops the children in order rather than all at once.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    }

    async fn supervise(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let mut child = match self.spawn() {
                Ok(child) => child,
                Err(e) => {
                    error!(processor = %self.processor, instance = self.instance, error = %e, "cannot start");
                    return;
                }
            };
            info!(processor = %self.processor, instance = self.instance, pid = child.id(), "started");
            let status = tokio::select! {
                status = child.wait() => status,
                _ = shutdown.cancelled() => {
                    stop(&mut child).await;
                    info!(processor = %self.processor, instance = self.instance, "stopped");
                    return;
                }
            };
            if shutdown.is_cancelled() {
                return;
            }
            if started.elapsed() > HEALTHY_AFTER {
                backoff = Duration::from_secs(1);
            }
            warn!(processor = %self.processor, instance = self.instance, ?status, ?backoff, "exited; restarting");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
