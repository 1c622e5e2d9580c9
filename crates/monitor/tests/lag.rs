//! The lag monitor against a real broker (a private nisshi): offset and time lag appear when
//! a consumer is paused and drain when it resumes; the status moves through the rules (OK,
//! STALLED, WARN, OK, STOPPED); an idle topic with its group at the end stays OK.
//!
//! The monitor samples every 200 ms and judges on 5 samples, so a rule's window is about a
//! second.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{config, now_ms, produce, topology, unique, Broker, ConsumerLoop, Member, Monitor};
use monitor::{GroupDetail, GroupHistory, PartitionView, Status};

const INTERVAL: Duration = Duration::from_millis(200);
const WINDOW: usize = 5;
const WAIT: Duration = Duration::from_secs(20);

/// Two processors on private topics: `lagger` reads a 3-partition topic, `idler` a
/// 2-partition one. Their admin ports are free ports nobody serves (instances down), so
/// whether anybody consumes comes from the broker's member list.
fn test_topology(suffix: &str) -> (topology::Topology, Names) {
    let names = Names {
        input: format!("lag.in.{suffix}"),
        idle: format!("lag.idle.{suffix}"),
        dlq: format!("dlq.lag.{suffix}"),
        group: format!("lag.group.{suffix}"),
        idle_group: format!("idle.group.{suffix}"),
    };
    let yaml = format!(
        r#"
version: 1
topics:
  - name: {input}
    partitions: 3
    key: string
    value: bytes
    external_writers: [test]
  - name: {idle}
    partitions: 2
    key: string
    value: bytes
    external_writers: [test]
  - name: {dlq}
    partitions: 1
    key: bytes
    value: avro
    value_schema: dlq/DeadLetter.avsc
processors:
  - name: lagger
    kind: shipping
    group: {group}
    inputs:
      placed:
        topic: {input}
        dead_letter: {dlq}
    outputs:
      shipments: {idle}
    admin_port: {port1}
  - name: idler
    kind: shipping
    group: {idle_group}
    inputs:
      placed:
        topic: {idle}
        dead_letter: {dlq}
    outputs:
      shipments: {idle}
    admin_port: {port2}
"#,
        input = names.input,
        idle = names.idle,
        dlq = names.dlq,
        group = names.group,
        idle_group = names.idle_group,
        port1 = stack::free_port().unwrap(),
        port2 = stack::free_port().unwrap(),
    );
    (topology(&yaml), names)
}

struct Names {
    input: String,
    idle: String,
    dlq: String,
    group: String,
    idle_group: String,
}

fn partition(detail: &GroupDetail, p: i32) -> &PartitionView {
    detail
        .partitions
        .iter()
        .find(|x| x.partition == p)
        .unwrap_or_else(|| panic!("partition {p} in {detail:#?}"))
}

async fn setup(suffix: &str) -> (Broker, topology::Topology, Names) {
    let broker = Broker::start().await;
    let (topology, names) = test_topology(suffix);
    broker
        .create_topics(&[(&names.input, 3), (&names.idle, 2), (&names.dlq, 1)])
        .await;
    (broker, topology, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_lag_is_the_oldest_unconsumed_records_age_and_status_follows_the_rules() {
    let (broker, topology, names) = setup(&unique("r")).await;
    let producer = broker.producer();
    // Record i of every partition is stamped t0 + i seconds, a minute ago.
    let t0 = now_ms() - 60_000;
    for p in 0..3 {
        produce(&producer, &names.input, p, 30, |i| t0 + i as i64 * 1000).await;
    }
    let member = Member::join(&broker.bootstrap, &names.group, &names.input).await;
    member.commit(&[(0, 10), (1, 0), (2, 30)]);
    let monitor = Monitor::start(config(&broker.bootstrap, INTERVAL, WINDOW), topology).await;

    // Lag appears, with the age of the record at the committed offset as time lag.
    let first = monitor
        .wait_group(&names.group, "lag visible", WAIT, |d| {
            d.partitions.len() == 3 && partition(d, 0).committed == Some(10)
        })
        .await;
    let p0 = partition(&first, 0);
    assert_eq!((p0.low, p0.high, p0.offset_lag), (0, 30, 20));
    let expected = (first.at_ms - (t0 + 10_000)) as f64 / 1000.0;
    let time_lag = p0.time_lag_seconds.expect("time lag read");
    assert!(
        (time_lag - expected).abs() < 0.01,
        "time lag {time_lag} is the age of record 10 ({expected})"
    );
    let age_now = (now_ms() - (t0 + 10_000)) as f64 / 1000.0;
    assert!(
        (time_lag - age_now).abs() <= 1.0,
        "{time_lag} vs {age_now} (±1 s)"
    );
    let p1 = partition(&first, 1);
    assert_eq!(p1.offset_lag, 30);
    let expected = (first.at_ms - t0) as f64 / 1000.0;
    assert!((p1.time_lag_seconds.unwrap() - expected).abs() < 0.01);
    let p2 = partition(&first, 2);
    assert_eq!(
        (p2.offset_lag, p2.time_lag_seconds, p2.status),
        (0, Some(0.0), Status::Ok)
    );
    assert_eq!(first.members, Some(1), "the broker lists the member");

    // Commits stand still while there is lag and a member is present: STALLED after the
    // window.
    let stalled = monitor
        .wait_group(&names.group, "STALLED", WAIT, |d| {
            d.status == Status::Stalled
        })
        .await;
    assert_eq!(partition(&stalled, 0).status, Status::Stalled);
    assert!(partition(&stalled, 0)
        .reason
        .contains("committed offset 10 unchanged"));
    assert_eq!(partition(&stalled, 1).status, Status::Stalled);
    assert_eq!(partition(&stalled, 2).status, Status::Ok, "caught up");
    assert!(stalled.reason.contains(&names.input), "{}", stalled.reason);
    // The time lag grows with the clock while the offset stands still.
    assert!(partition(&stalled, 0).time_lag_seconds.unwrap() > time_lag);

    // Committing forward while the lag grows at every step: WARN.
    let mut committed = 10;
    let mut produced = 30;
    let mut step = 0;
    let warned = loop {
        let now = now_ms();
        produce(&producer, &names.input, 0, 5, |_| now).await;
        produced += 5;
        committed += 2;
        member.commit(&[(0, committed)]);
        let detail = monitor.group(&names.group).await.unwrap();
        if partition(&detail, 0).status == Status::Warn {
            break detail;
        }
        step += 1;
        assert!(step < 150, "no WARN while falling behind: {detail:#?}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    };
    let p0 = partition(&warned, 0);
    assert!(p0.reason.contains("lag grew"), "{}", p0.reason);
    assert!(p0.consume_rate.is_some() && p0.lag_change_per_second.unwrap() > 0.0);

    // Everything consumed: OK, no lag, no time lag.
    member.commit(&[(0, produced), (1, 30), (2, 30)]);
    let drained = monitor
        .wait_group(&names.group, "drained", WAIT, |d| d.status == Status::Ok)
        .await;
    for p in &drained.partitions {
        assert_eq!((p.offset_lag, p.time_lag_seconds), (0, Some(0.0)), "{p:#?}");
    }

    // New records and nobody left in the group: STOPPED at once.
    let now = now_ms();
    produce(&producer, &names.input, 2, 5, |_| now).await;
    tokio::task::spawn_blocking(move || drop(member))
        .await
        .unwrap();
    let stopped = monitor
        .wait_group(&names.group, "STOPPED", WAIT, |d| {
            d.status == Status::Stopped
        })
        .await;
    assert_eq!(stopped.members, Some(0));
    assert!(
        stopped.reason.contains("nobody consumes"),
        "{}",
        stopped.reason
    );
    assert_eq!(partition(&stopped, 2).offset_lag, 5);

    // The overview and the metrics say the same.
    let overview = monitor.overview().await.unwrap();
    let lagger = overview
        .processors
        .iter()
        .find(|p| p.name == "lagger")
        .unwrap();
    assert_eq!(lagger.status, Status::Stopped);
    let metrics = monitor.text("/metrics").await;
    let line = format!(
        "storefleet_monitor_group_status{{group=\"{}\",processor=\"lagger\",status=\"STOPPED\"}} 1",
        names.group
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    assert!(metrics.contains(&format!(
        "storefleet_monitor_group_status_code{{group=\"{}\",processor=\"lagger\"}} 3",
        names.group
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_consumer_lags_and_drains_when_resumed() {
    let (broker, topology, names) = setup(&unique("p")).await;
    let producer = broker.producer();
    let now = now_ms();
    for p in 0..3 {
        produce(&producer, &names.input, p, 10, |_| now).await;
    }
    let member = Member::join(&broker.bootstrap, &names.group, &names.input).await;
    let consumer = ConsumerLoop::start(member);
    let monitor = Monitor::start(config(&broker.bootstrap, INTERVAL, WINDOW), topology).await;
    monitor
        .wait_group(&names.group, "caught up", WAIT, |d| {
            d.status == Status::Ok
                && d.partitions
                    .iter()
                    .all(|p| p.offset_lag == 0 && p.high == 10)
        })
        .await;

    consumer.pause();
    // Let a commit in flight land before the paused period starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused_at = now_ms();
    for p in 0..3 {
        produce(&producer, &names.input, p, 40, |_| paused_at).await;
    }
    let lagging = monitor
        .wait_group(&names.group, "lag while paused", WAIT, |d| {
            d.partitions.iter().all(|p| p.offset_lag >= 40)
        })
        .await;
    for p in &lagging.partitions {
        let time_lag = p.time_lag_seconds.expect("time lag read");
        let age = (lagging.at_ms - paused_at) as f64 / 1000.0;
        assert!((time_lag - age).abs() < 0.01, "{time_lag} vs {age}");
    }
    let stalled = monitor
        .wait_group(&names.group, "STALLED while paused", WAIT, |d| {
            d.status == Status::Stalled
        })
        .await;
    assert_eq!(stalled.members, Some(1));
    assert!(stalled
        .partitions
        .iter()
        .all(|p| p.time_lag_seconds.unwrap() > 0.0));

    consumer.resume();
    let drained = monitor
        .wait_group(&names.group, "drained after resume", WAIT, |d| {
            d.status == Status::Ok && d.partitions.iter().all(|p| p.offset_lag == 0)
        })
        .await;
    assert!(drained
        .partitions
        .iter()
        .all(|p| p.high == 50 && p.time_lag_seconds == Some(0.0)));
    // The chart series saw the lag come and go.
    let history: GroupHistory = monitor
        .json(&format!("/api/history?group={}", names.group))
        .await
        .unwrap();
    let peak = history.points.iter().map(|p| p.offset_lag).max().unwrap();
    assert!(peak >= 120, "history peak {peak}");
    assert_eq!(history.points.last().unwrap().offset_lag, 0);
    drop(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_topic_with_its_group_at_the_end_stays_ok() {
    let (broker, topology, names) = setup(&unique("i")).await;
    let producer = broker.producer();
    let now = now_ms();
    // Partition 0 has records, all consumed; partition 1 never had any, never committed.
    produce(&producer, &names.idle, 0, 10, |_| now).await;
    let member = Member::join(&broker.bootstrap, &names.idle_group, &names.idle).await;
    member.commit(&[(0, 10)]);
    let monitor = Monitor::start(config(&broker.bootstrap, INTERVAL, WINDOW), topology).await;

    // Four windows' worth of samples, each one OK, with a member and then without.
    let mut seen: BTreeMap<u64, Status> = BTreeMap::new();
    let mut member = Some(member);
    while seen.len() < 4 * WINDOW {
        if let Some(detail) = monitor.group(&names.idle_group).await {
            assert_eq!(detail.partitions.len(), 2);
            for p in &detail.partitions {
                assert_eq!(p.offset_lag, 0, "{p:#?}");
                assert_eq!(p.time_lag_seconds, Some(0.0));
                assert_eq!(p.status, Status::Ok, "{p:#?}");
            }
            assert_eq!(detail.status, Status::Ok, "{detail:#?}");
            seen.insert(detail.seq, detail.status);
        }
        if seen.len() == 2 * WINDOW {
            if let Some(m) = member.take() {
                tokio::task::spawn_blocking(move || drop(m)).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = monitor.group(&names.idle_group).await.unwrap();
    assert_eq!(
        last.members,
        Some(0),
        "the member left; still OK: nothing waits"
    );
    assert_eq!(partition(&last, 0).committed, Some(10));
    assert_eq!(partition(&last, 1).committed, None);
    assert_eq!(partition(&last, 0).consume_rate, Some(0.0));
    let history: GroupHistory = monitor
        .json(&format!("/api/history?group={}", names.idle_group))
        .await
        .unwrap();
    assert!(history.points.len() >= 4 * WINDOW);
    assert!(history.points.iter().all(|p| p.status == Status::Ok));
}
