//! The fleet under test as separate OS processes (as `fleet up` runs them), and what the
//! bench reads of them: CPU time from `/proc`, each instance's `/metrics`, and the topics'
//! high watermarks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tokio::process::{Child, Command};
use topology::Topology;

use crate::error::{check, missing};
use crate::{Error, Result};

/// One process of the run, named for the report.
pub struct Proc {
    pub label: String,
    pub pid: u32,
    /// Admin address of a processor instance (`/health`, `/metrics`).
    pub admin: Option<String>,
    pub child: Option<Child>,
}

/// Gives every processor of `t` admin ports of its own, writes it as a topology file in
/// `dir` and starts `instances` instances of each processor as `fleet run` processes, with
/// the environment `env` and logs in `dir/logs`.
pub async fn start(
    t: &mut Topology,
    dir: &Path,
    env: &[(String, String)],
    instances: u16,
) -> Result<Vec<Proc>> {
    let mut taken = std::collections::HashSet::new();
    for (p, _) in &mut t.processors {
        p.instances = instances;
        p.admin_port = loop {
            let port = stack::free_port()?;
            let span: Vec<u16> = (0..instances).map(|i| port + i).collect();
            if span.iter().all(|p| !taken.contains(p)) {
                taken.extend(span);
                break port;
            }
        };
    }
    let file = t.write_to(dir)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let exe = std::env::current_exe()?;
    let mut procs = Vec::new();
    for (spec, _) in &t.processors {
        for i in 0..instances {
            let label = format!("{}-{i}", spec.name);
            let log = std::fs::File::create(logs.join(format!("{label}.log")))?;
            let child = Command::new(&exe)
                .arg("--topology")
                .arg(&file)
                .args(["run", &spec.name, "--instance", &i.to_string()])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| Error::Io {
                    what: format!("starting {label}"),
                    source,
                })?;
            procs.push(Proc {
                label,
                pid: child.id().ok_or_else(missing("child pid"))?,
                admin: Some(format!("127.0.0.1:{}", spec.admin_port + i)),
                child: Some(child),
            });
        }
    }
    Ok(procs)
}

/// Starts the gateway simulator as a process on a free port: (process, URL).
pub fn gateway(dir: &Path, latency_ms: u64) -> Result<(Proc, String)> {
    let port = stack::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("logs").join("gateway-sim.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["gateway-sim", "--listen", &listen])
        .args(["--latency-ms", &latency_ms.to_string()])
        .args(["--jitter-ms", &(latency_ms / 5).to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Io {
            what: "starting the gateway simulator".into(),
            source,
        })?;
    let pid = child.id().ok_or_else(missing("child pid"))?;
    Ok((
        Proc {
            label: "gateway-sim".into(),
            pid,
            admin: None,
            child: Some(child),
        },
        format!("http://{listen}"),
    ))
}

/// Waits until every processor instance answers `/health` with 200 (consuming).
pub async fn wait_healthy(procs: &mut [Proc], within: Duration) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    for proc in procs.iter_mut() {
        let Some(admin) = proc.admin.clone() else {
            continue;
        };
        loop {
            if let Some(child) = proc.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(Error::Check(format!(
                        "{} exited with {status} before it was healthy",
                        proc.label
                    )));
                }
            }
            let ok = client
                .get(format!("http://{admin}/health"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            check!(
                Instant::now() < deadline,
                "{} not healthy within {within:?}",
                proc.label
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// CPU time (user + system) of `pid` in clock ticks; 0 once it is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name, which may itself hold spaces: utime is the 14th field
    // of the line, i.e. the 12th after the closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> u64 {
    100
}

/// The processes of the PostgreSQL cluster listening on `port` of the stack (its postmaster,
/// from the cluster's pid file, and every child of it).
pub fn postgres_pids(port: u16) -> Vec<u32> {
    let pid_file = PathBuf::from(format!(
        "/var/tmp/storefleet-postgres-{port}/postmaster.pid"
    ));
    let Some(master) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return Vec::new();
    };
    let mut pids = vec![master];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                });
            if parent == Some(master) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// What the bench reads at a phase boundary.
#[derive(Default, Clone)]
pub struct Snapshot {
    /// Sum of high watermarks per topic (records ever written; the run's topics only).
    pub records: BTreeMap<String, i64>,
    /// CPU clock ticks per process label.
    pub cpu: BTreeMap<String, u64>,
    /// `/metrics` text per processor instance.
    pub metrics: BTreeMap<String, String>,
}

/// Reads the high watermark of every partition of every topic whose name contains `marker`
/// (the run's renamed topics and its processors' changelogs).
pub fn watermarks(bootstrap: &str, marker: &str) -> Result<BTreeMap<String, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut out = BTreeMap::new();
    for topic in metadata.topics() {
        if !topic.name().contains(marker) {
            continue;
        }
        let mut sum = 0;
        for p in topic.partitions() {
            let (_, high) =
                consumer.fetch_watermarks(topic.name(), p.id(), Duration::from_secs(10))?;
            sum += high;
        }
        out.insert(topic.name().to_string(), sum);
    }
    Ok(out)
}

/// The CPU ticks of every process in `procs` plus the extra `(label, pids)` groups.
pub fn cpu(procs: &[Proc], extra: &[(String, Vec<u32>)]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = procs
        .iter()
        .map(|p| (p.label.clone(), cpu_ticks(p.pid)))
        .collect();
    for (label, pids) in extra {
        out.insert(label.clone(), pids.iter().map(|p| cpu_ticks(*p)).sum());
    }
    out
}

/// Every processor instance's `/metrics` text (empty when unreachable).
pub async fn metrics(procs: &[Proc]) -> BTreeMap<String, String> {
    let client = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for proc in procs {
        let Some(admin) = &proc.admin else { continue };
        let text = match client
            .get(format!("http://{admin}/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.insert(proc.label.clone(), text);
    }
    out
}

/// Stops the processes with SIGTERM (graceful: they commit and leave their groups), then
/// waits for them.
pub async fn stop(procs: &mut [Proc]) {
    for proc in procs.iter() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(proc.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    for proc in procs.iter_mut() {
        if let Some(child) = proc.child.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
        }
    }
}
