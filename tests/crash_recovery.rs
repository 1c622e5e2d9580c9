//! `kill -9` and SIGTERM of a real `fleet run` process mid-stream: nothing is lost; after a
//! crash, duplicates are exact re-sends (same event id), and after SIGTERM there are none.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use events::shipping::ShipmentEvent;
use loadgen::kafka::{drain, produce_all, producer, reader, Seen};
use loadgen::orders::{shipments_of, OrderGenerator};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Run {
    topology_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    output: String,
    expected: usize,
    orders: HashSet<String>,
}

async fn preload(label: &str, orders: usize) -> Run {
    let t = isolated_shipping(label, 6).await;
    let (input, output, _) = shipping_names(&t);
    let dir = tempfile::tempdir().unwrap();
    let topology_file = write_topology(&t, dir.path());
    let codec = codec_for(&t, &input).await;
    let mut generator = OrderGenerator::new(label, 3, 2_000);
    let mut expected = 0;
    let mut ids = HashSet::new();
    let mut records = Vec::new();
    for _ in 0..orders {
        let order = generator.next_order(1);
        expected += 2 * shipments_of(&order);
        ids.insert(order.order_id.clone());
        records.push((order.order_id.clone(), codec.encode(&order).unwrap()));
    }
    produce_all(
        &producer(&env().bootstrap_servers).unwrap(),
        &input,
        records,
    )
    .await
    .unwrap();
    Run {
        topology_file,
        _dir: dir,
        output,
        expected,
        orders: ids,
    }
}

fn spawn_shipping(run: &Run) -> tokio::process::Child {
    fleet_command()
        .arg("--topology")
        .arg(&run.topology_file)
        .args(["run", "shipping"])
        .spawn()
        .expect("fleet run starts")
}

fn signal(child: &tokio::process::Child, sig: Signal) {
    kill(Pid::from_raw(child.id().unwrap() as i32), sig).unwrap();
}

/// Reads until every expected event id has arrived (duplicates make the raw count larger),
/// or nothing new came for 45 s: the restarted member first waits out the killed member's
/// session (10 s) and the rebalance, longer when the machine is busy.
async fn read_until_complete(
    out: &rdkafka::consumer::StreamConsumer,
    seen: &mut Vec<Seen>,
    run: &Run,
) {
    loop {
        let more = drain(out, 5_000, Duration::from_secs(45)).await;
        if more.is_empty() {
            return;
        }
        seen.extend(more);
        let ids: HashSet<String> = decode(seen, run).await.into_iter().map(|e| e.0).collect();
        if ids.len() >= run.expected {
            // Give late duplicates a moment, so they are counted too.
            seen.extend(drain(out, usize::MAX, Duration::from_secs(2)).await);
            return;
        }
    }
}

/// Decodes every output into (event id, order id, shipment id, kind).
async fn decode(seen: &[Seen], run: &Run) -> Vec<(String, String, String, String)> {
    let t = topology::load(&run.topology_file).unwrap();
    let codec = codec_for(&t, &run.output).await;
    let mut out = Vec::new();
    for record in seen {
        let e: ShipmentEvent = codec::from_value(
            &codec
                .decode(record.payload.as_ref().unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        out.push((
            e.event_id,
            e.order_id,
            e.shipment_id,
            format!("{:?}", e.kind),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    let run = preload("kill9", 8_000).await;
    let out = reader(&env().bootstrap_servers, &run.output, &unique("kill9-out")).unwrap();

    let mut first = spawn_shipping(&run);
    let before = drain(&out, run.expected / 4, Duration::from_secs(60)).await;
    assert!(
        !before.is_empty(),
        "the processor made progress before the kill"
    );
    signal(&first, Signal::SIGKILL);
    first.wait().await.unwrap();

    let mut second = spawn_shipping(&run);
    let mut seen = before;
    read_until_complete(&out, &mut seen, &run).await;
    signal(&second, Signal::SIGTERM);
    assert!(
        second.wait().await.unwrap().success(),
        "graceful exit after SIGTERM"
    );

    let events = decode(&seen, &run).await;
    let unique_ids: HashSet<&str> = events.iter().map(|e| e.0.as_str()).collect();
    let facts: HashMap<(&str, &str, &str), HashSet<&str>> =
        events.iter().fold(HashMap::new(), |mut m, e| {
            m.entry((e.1.as_str(), e.2.as_str(), e.3.as_str()))
                .or_default()
                .insert(e.0.as_str());
            m
        });
    let shipped: HashSet<&str> = events.iter().map(|e| e.1.as_str()).collect();
    println!(
        "kill -9: {} outputs read, {} unique, {} duplicates",
        events.len(),
        unique_ids.len(),
        events.len() - unique_ids.len()
    );
    assert_eq!(
        unique_ids.len(),
        run.expected,
        "every input has all its outputs, none invented"
    );
    assert_eq!(shipped.len(), run.orders.len(), "every order shipped");
    assert!(
        facts.values().all(|ids| ids.len() == 1),
        "a re-sent event carries the same event id (consumers can drop it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_a_restart_duplicates_nothing() {
    let run = preload("sigterm", 4_000).await;
    let out = reader(
        &env().bootstrap_servers,
        &run.output,
        &unique("sigterm-out"),
    )
    .unwrap();

    let mut first = spawn_shipping(&run);
    let mut seen = drain(&out, run.expected / 3, Duration::from_secs(60)).await;
    signal(&first, Signal::SIGTERM);
    assert!(
        first.wait().await.unwrap().success(),
        "graceful exit after SIGTERM"
    );

    let mut second = spawn_shipping(&run);
    read_until_complete(&out, &mut seen, &run).await;
    signal(&second, Signal::SIGTERM);
    assert!(second.wait().await.unwrap().success());

    let events = decode(&seen, &run).await;
    let unique_ids: HashSet<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(unique_ids.len(), run.expected, "nothing lost");
    assert_eq!(
        events.len(),
        run.expected,
        "nothing re-sent: offsets were committed at shutdown"
    );
}
