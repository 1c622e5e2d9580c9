//! `fleet up`: a processor killed with SIGKILL is restarted by the supervisor, and SIGTERM to
//! the supervisor stops the whole fleet.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

async fn health(port: u16) -> Option<serde_json::Value> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .ok()?;
    response.json().await.ok()
}

async fn wait_for_pid(port: u16, not: Option<u64>, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(pid) = health(port).await.and_then(|h| h["pid"].as_u64()) {
            if Some(pid) != not {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no (new) processor answered on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_processor_is_restarted_and_sigterm_stops_the_fleet() {
    let mut t = isolated_shipping("supervisor", 1).await;
    t.processors[0].0.instances = 1;
    let port = t.processors[0].0.admin_port;
    let dir = tempfile::tempdir().unwrap();
    let file = write_topology(&t, dir.path());
    let mut fleet = fleet_command()
        .arg("--topology")
        .arg(&file)
        .args(["up", "--monitor", "127.0.0.1:0"])
        .spawn()
        .unwrap();

    let first = wait_for_pid(port, None, Duration::from_secs(30)).await;
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let second = wait_for_pid(port, Some(first), Duration::from_secs(30)).await;
    assert_ne!(first, second, "a new process took over");

    kill(Pid::from_raw(fleet.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), fleet.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "supervisor exits cleanly: {status:?}");
    assert!(health(port).await.is_none(), "its processors are gone too");
    assert!(
        kill(Pid::from_raw(second as i32), None).is_err(),
        "child {second} stopped"
    );
}
