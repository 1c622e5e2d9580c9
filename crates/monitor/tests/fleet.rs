//! The fleet overview against a real broker and live admin ports: instances up and down
//! (one served by the runtime's own admin server, two fake checkout instances, the rest not
//! listening), throughput as a counter's rate, dead-letter counts, stuck sagas, the
//! monitor's `/metrics`, the `/metrics/fleet` federation, `fleet status` rendering, and the
//! one-sample `snapshot`.

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use common::{config, fleet_topology, live_admin, now_ms, produce, Broker, Monitor};
use monitor::{InstanceState, Overview, Status};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SHIPPING_INPUT: &str = "orders.order-placed.v1";
const SHIPPING_DLQ: &str = "dlq.shipping.order-placed.v1";

/// A checkout instance's admin port as the monitor sees it: `/health` running, `/metrics`
/// with records consumed and stuck sagas.
async fn fake_checkout(port: u16, stuck: u32, shutdown: CancellationToken) {
    let metrics = format!(
        "# HELP storefleet_records_in_total Input records consumed\n\
         # TYPE storefleet_records_in_total counter\n\
         storefleet_records_in_total{{instance=\"x\",processor=\"checkout\",topic=\"t\"}} 5\n\
         # HELP storefleet_checkout_sagas_stuck_total Sagas stuck\n\
         # TYPE storefleet_checkout_sagas_stuck_total counter\n\
         storefleet_checkout_sagas_stuck_total {stuck}\n"
    );
    let app = Router::new()
        .route(
            "/health",
            get(|| async { Json(json!({"status": "running", "assigned_partitions": 9})) }),
        )
        .route("/metrics", get(move || async move { metrics.clone() }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_instances_throughput_dead_letters_stuck_sagas_and_metrics() {
    let broker = Broker::start().await;
    let mut topology = fleet_topology();
    topology
        .processors
        .retain(|(p, _)| p.name == "shipping" || p.name == "checkout");
    topology.connectors.retain(|(c, _)| c.name == "catalog-cdc");
    // Free ports instead of the fleet's, so a fleet running on this machine is not probed.
    for (p, _) in &mut topology.processors {
        p.admin_port = free_ports(p.instances);
    }
    topology.connectors[0].0.admin_port = stack::free_port().unwrap();
    let port = |name: &str| topology.processor(name).unwrap().0.admin_port;
    let (shipping_port, checkout_port) = (port("shipping"), port("checkout"));

    let mut topics: Vec<(&str, i32)> = vec![(SHIPPING_INPUT, 6), (SHIPPING_DLQ, 3)];
    let (checkout, _) = topology.processor("checkout").unwrap();
    for input in checkout.inputs.values() {
        topics.push((&input.topic, 6));
        topics.push((&input.dead_letter, 3));
    }
    broker.create_topics(&topics).await;
    let producer = broker.producer();
    let now = now_ms();
    produce(&producer, SHIPPING_INPUT, 0, 5, |_| now - 5000).await;
    produce(&producer, SHIPPING_DLQ, 1, 4, |_| now).await;

    // shipping #0: the runtime's own admin server; shipping #1: nobody listens.
    let shutdown = CancellationToken::new();
    let metrics = live_admin("shipping", 0, shipping_port, &shutdown).await;
    metrics.assigned_partitions.set(6);
    let counter = metrics.records_in.with_label_values(&[SHIPPING_INPUT]);
    let ticking = shutdown.clone();
    tokio::spawn(async move {
        while !ticking.is_cancelled() {
            counter.inc_by(50);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    fake_checkout(checkout_port, 2, shutdown.clone()).await;
    fake_checkout(checkout_port + 1, 1, shutdown.clone()).await;

    let cfg = config(&broker.bootstrap, Duration::from_millis(300), 5);
    let monitor = Monitor::start(cfg.clone(), topology.clone()).await;
    let overview = monitor
        .wait_overview("throughput measured", Duration::from_secs(20), |o| {
            shipping_of(o).throughput.is_some_and(|t| t > 0.0)
        })
        .await;

    let shipping = shipping_of(&overview);
    let states: Vec<InstanceState> = shipping.instances.iter().map(|i| i.state).collect();
    assert_eq!(states, vec![InstanceState::Up, InstanceState::Down]);
    assert_eq!(shipping.instances_up, 1);
    assert_eq!(shipping.instances[0].assigned_partitions, Some(6));
    let rate = shipping.instances[0].throughput.unwrap();
    assert!(
        (200.0..5000.0).contains(&rate),
        "about 1000 records/s, got {rate}"
    );
    assert_eq!(shipping.throughput, Some(rate));
    // Records waiting and nobody in the group: STOPPED, whatever the admin port says.
    assert_eq!(shipping.offset_lag, 5);
    assert_eq!(shipping.members, Some(0));
    assert_eq!(shipping.status, Status::Stopped);
    let time_lag = shipping.max_time_lag_seconds.unwrap();
    assert!((4.0..10.0).contains(&time_lag), "{time_lag}");
    let checkout = overview
        .processors
        .iter()
        .find(|p| p.name == "checkout")
        .unwrap();
    assert_eq!(checkout.instances_up, 2);
    assert_eq!(checkout.status, Status::Ok, "empty inputs: nothing waits");
    assert_eq!(overview.stuck_sagas, Some(3));
    assert_eq!(
        overview.connectors[0].instances[0].state,
        InstanceState::Down
    );
    let dlq = overview
        .dlq
        .iter()
        .find(|d| d.topic == SHIPPING_DLQ)
        .unwrap();
    assert_eq!(dlq.records, Some(4));
    assert_eq!(overview.dlq_total, 4);
    let absent = overview
        .dlq
        .iter()
        .find(|d| d.topic == "dlq.payment.commands.v1")
        .unwrap();
    assert_eq!(absent.records, None, "not created on this broker");
    assert_eq!(overview.status, Status::Stopped);

    // The monitor's metrics.
    let text = monitor.text("/metrics").await;
    for needle in [
        "storefleet_monitor_stuck_sagas 3",
        &format!("storefleet_monitor_dlq_records{{topic=\"{SHIPPING_DLQ}\"}} 4"),
        &format!(
            "storefleet_monitor_instance_up{{address=\"127.0.0.1:{shipping_port}\",instance=\"0\",processor=\"shipping\"}} 1"
        ),
        &format!(
            "storefleet_monitor_instance_up{{address=\"127.0.0.1:{}\",instance=\"1\",processor=\"shipping\"}} 0",
            shipping_port + 1
        ),
        "storefleet_monitor_partition_offset_lag{group=\"storefleet.shipping\",partition=\"0\",topic=\"orders.order-placed.v1\"} 5",
        "storefleet_monitor_partition_status_code{group=\"storefleet.shipping\",partition=\"0\",topic=\"orders.order-placed.v1\"} 3",
        "storefleet_monitor_partition_time_lag_seconds{group=\"storefleet.shipping\",partition=\"0\"",
        "storefleet_monitor_group_status{group=\"storefleet.checkout\",processor=\"checkout\",status=\"OK\"} 1",
        "storefleet_monitor_broker_up 1",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }

    // One scrape target for every instance's own metrics.
    let fleet = monitor.text("/metrics/fleet").await;
    assert_eq!(
        fleet
            .matches("# TYPE storefleet_records_in_total counter")
            .count(),
        1,
        "{fleet}"
    );
    let line = format!(
        "storefleet_records_in_total{{processor=\"shipping\",instance=\"0\",topic=\"{SHIPPING_INPUT}\"}}"
    );
    assert!(fleet.contains(&line), "{line} in\n{fleet}");
    // A label the instance set otherwise is replaced: each instance's series stay distinct.
    assert!(fleet.contains(
        "storefleet_records_in_total{processor=\"checkout\",instance=\"1\",topic=\"t\"} 5"
    ));
    assert!(fleet.contains(
        "storefleet_checkout_sagas_stuck_total{processor=\"checkout\",instance=\"0\"} 2"
    ));
    assert!(fleet.contains(
        "storefleet_checkout_sagas_stuck_total{processor=\"checkout\",instance=\"1\"} 1"
    ));

    // `fleet status` and `fleet status --monitor URL`.
    let fetched = monitor::fetch_overview(&monitor.url).await.unwrap();
    assert!(fetched.seq >= overview.seq);
    let text = monitor::render_status(&fetched);
    let row = text.lines().find(|l| l.starts_with("shipping ")).unwrap();
    assert!(row.contains("STOPPED") && row.contains("1/2"), "{row}");
    assert!(text.contains("stuck sagas: 3"), "{text}");
    assert!(
        text.contains(&format!("not up: #1 127.0.0.1:{}", shipping_port + 1)),
        "{text}"
    );

    // Routes that answer 404 / HTML / health.
    assert_eq!(monitor.get("/api/groups/no-such-group").await.status(), 404);
    assert_eq!(monitor.get("/api/overview?seq=999999").await.status(), 404);
    assert_eq!(monitor.get("/api/history?group=nope").await.status(), 404);
    assert!(monitor.text("/").await.contains("Storefleet fleet"));
    assert_eq!(monitor.get("/health").await.status(), 200);

    // One sample without a running monitor: what one sample can say.
    let snap = monitor::snapshot(&cfg, &topology).await.unwrap();
    assert_eq!(snap.seq, 1);
    let shipping = shipping_of(&snap);
    assert_eq!((shipping.status, shipping.offset_lag), (Status::Stopped, 5));
    assert_eq!(
        shipping.instances[0].throughput, None,
        "a rate needs two samples"
    );
    assert_eq!(snap.stuck_sagas, Some(3));
    assert_eq!(snap.dlq_total, 4);
    shutdown.cancel();
}

fn shipping_of(overview: &Overview) -> &monitor::ProcessorView {
    overview
        .processors
        .iter()
        .find(|p| p.name == "shipping")
        .unwrap()
}

/// The first of `count` consecutive free ports.
fn free_ports(count: u16) -> u16 {
    loop {
        let first = stack::free_port().unwrap();
        let all_free = (1..count).all(|i| {
            first
                .checked_add(i)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return first;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_unknown_not_an_error() {
    let mut topology = fleet_topology();
    for (p, _) in &mut topology.processors {
        p.admin_port = free_ports(p.instances);
    }
    topology.connectors.clear();
    let nobody = format!("127.0.0.1:{}", stack::free_port().unwrap());
    let mut cfg = config(&nobody, Duration::from_secs(1), 5);
    cfg.kafka_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let snap = monitor::snapshot(&cfg, &topology).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(!snap.broker.reachable);
    assert_eq!(snap.status, Status::Unknown);
    assert!(snap.processors.iter().all(|p| p.status == Status::Unknown));
    assert!(
        snap.problems
            .iter()
            .any(|p| p.contains("reading topic metadata")),
        "{:?}",
        snap.problems
    );
    let text = monitor::render_status(&snap);
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(text.contains("broker unreachable"), "{text}");
    // Nothing listens there: fetching an overview fails with the URL in the message.
    let error = monitor::fetch_overview(&format!("http://{nobody}"))
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains(&nobody), "{error:#}");
}
