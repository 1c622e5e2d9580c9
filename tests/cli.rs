//! The `fleet` command line: validation reports every problem of a broken topology at once.

mod common;

use common::repo;

#[test]
fn validate_accepts_the_repo_topology() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .current_dir(repo())
        .arg("validate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok ("));
}

#[test]
fn validate_reports_several_problems_in_one_run_and_fails() {
    let good = std::fs::read_to_string(repo().join("topology.yaml")).unwrap();
    let broken = good
        .replacen(
            "dead_letter: dlq.shipping.order-placed.v1",
            "dead_letter: dlq.nowhere.v1",
            1,
        )
        .replacen(
            "value_schema: shipping/ShipmentEvent.avsc",
            "value_schema: shipping/Missing.avsc",
            1,
        )
        .replacen(
            "    admin_port: 9101",
            "    admin_port: 9101\n    colour: blue",
            1,
        )
        // An output port bound under a wrong name: `fleet run checkout` could not find it,
        // so `fleet validate` must refuse it.
        .replacen(
            "      placed: orders.order-placed.v1",
            "      plaecd: orders.order-placed.v1",
            1,
        )
        .replacen(
            "  - name: orders.order-placed.v1\n    partitions: 6",
            "  - name: orders.order-placed.v1\n    partitions: 0",
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("schemas"), dir.path().join("schemas")).unwrap();
    let path = dir.path().join("topology.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .arg("--topology")
        .arg(&path)
        .arg("validate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Missing.avsc"), "{stderr}");
    assert!(
        stderr.contains("partitions: must be at least 1"),
        "{stderr}"
    );
    assert!(stderr.contains("colour"), "{stderr}");
    assert!(
        stderr.contains("port `placed` of kind checkout is not bound")
            && stderr.contains("kind checkout has no outputs port `plaecd`"),
        "{stderr}"
    );
    let problems = stderr.lines().filter(|l| l.starts_with("  ")).count();
    assert!(problems >= 3, "several problems in one run: {stderr}");
}
