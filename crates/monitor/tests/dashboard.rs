//! The dashboard in a real browser: headless Chromium (Debian `chromium`) opens the page
//! while a load runs (records produced and consumed, dead letters, live admin ports), the
//! numbers on the rendered page are checked against the JSON API for the very sample the
//! page shows, and a screenshot is saved as `target/monitor-dashboard.png`.
//!
//! Chromium must be installed (`apt-get install -y chromium`); the test fails with that
//! message when `/usr/bin/chromium` (or `$CHROMIUM`) is missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{
    config, fleet_topology, live_admin, now_ms, produce, Broker, ConsumerLoop, Member, Monitor,
};
use monitor::{GroupDetail, Overview};
use tokio_util::sync::CancellationToken;

const SHIPPING_INPUT: &str = "orders.order-placed.v1";
const SHIPPING_GROUP: &str = "storefleet.shipping";

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: the dashboard test needs headless Chromium \
         (Debian: `apt-get install -y chromium`; or set CHROMIUM to its path)",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout.
async fn run_chromium(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium ran");
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 DOM")
}

/// A start tag as Chromium serialises it: name and attributes (values unescaped).
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: BTreeMap<String, String>,
}

/// Every start tag of the DOM, in document order. Enough for the page's own markup:
/// attributes are double-quoted, `"` inside values is `&quot;`.
fn tags(dom: &str) -> Vec<Tag> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let mut attrs = BTreeMap::new();
        let mut body = &rest[name_end..];
        loop {
            body = body.trim_start();
            if body.starts_with('>') || body.starts_with("/>") || body.is_empty() {
                break;
            }
            let key_end = body
                .find(|c: char| c == '=' || c.is_whitespace() || c == '>')
                .unwrap_or(body.len());
            let key = body[..key_end].to_string();
            body = &body[key_end..];
            if let Some(after) = body.strip_prefix("=\"") {
                let end = after.find('"').unwrap_or(after.len());
                attrs.insert(key, unescape(&after[..end]));
                body = &after[(end + 1).min(after.len())..];
            } else {
                attrs.insert(key, String::new());
            }
        }
        rest = body;
        out.push(Tag { name, attrs });
    }
    out
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The page's numbers: each `data-field` cell keyed by its row (the nearest preceding
/// `<tr>`'s identifying attribute) or by the element id for the header figures.
fn page_values(tags: &[Tag]) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut row = String::new();
    for tag in tags {
        if tag.name == "tr" {
            row = ["data-processor", "data-connector", "data-dlq"]
                .iter()
                .find_map(|a| tag.attrs.get(*a).map(|v| format!("{a}={v}")))
                .or_else(|| {
                    let p = tag.attrs.get("data-partition")?;
                    Some(format!("partition={}/{p}", tag.attrs.get("data-topic")?))
                })
                .unwrap_or_default();
            continue;
        }
        if let Some(field) = tag.attrs.get("data-field") {
            let key = match tag.attrs.get("id") {
                Some(id) => format!("#{id}"),
                None => row.clone(),
            };
            let value = tag.attrs.get("data-value").cloned().unwrap_or_default();
            out.insert((key, field.clone()), value);
        }
    }
    out
}

/// The JSON value as the page writes it into `data-value` ("" for null).
fn expect_value(
    page: &BTreeMap<(String, String), String>,
    row: &str,
    field: &str,
    api: Option<f64>,
) {
    let shown = page
        .get(&(row.to_string(), field.to_string()))
        .unwrap_or_else(|| panic!("{row} {field} is on the page"));
    match api {
        None => assert_eq!(shown, "", "{row} {field}: null in the API"),
        Some(v) => {
            let on_page: f64 = shown
                .parse()
                .unwrap_or_else(|_| panic!("{row} {field} = {shown:?} is a number"));
            assert!(
                (on_page - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{row} {field}: page {on_page}, API {v}"
            );
        }
    }
}

fn expect_text(page: &BTreeMap<(String, String), String>, row: &str, field: &str, api: &str) {
    assert_eq!(
        page.get(&(row.to_string(), field.to_string()))
            .map(String::as_str),
        Some(api),
        "{row} {field}"
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_says_while_a_load_runs() {
    chromium();
    let broker = Broker::start().await;
    let mut topology = fleet_topology();
    // Admin ports moved to free ones, so a fleet running on this machine is not probed.
    let mut ports = BTreeSet::new();
    for (p, _) in &mut topology.processors {
        p.admin_port = consecutive_free_ports(p.instances, &mut ports);
    }
    for (c, _) in &mut topology.connectors {
        c.admin_port = consecutive_free_ports(1, &mut ports);
    }
    // Every watched topic exists on the private broker.
    let mut topics: BTreeMap<String, i32> = BTreeMap::new();
    for (p, _) in &topology.processors {
        for input in p.inputs.values() {
            topics.insert(input.topic.clone(), partitions(&topology, &input.topic));
            topics.insert(
                input.dead_letter.clone(),
                partitions(&topology, &input.dead_letter),
            );
        }
    }
    let list: Vec<(&str, i32)> = topics.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    broker.create_topics(&list).await;
    let producer = broker.producer();
    let now = now_ms();
    produce(&producer, "dlq.shipping.order-placed.v1", 0, 3, |_| now).await;
    produce(&producer, "dlq.payment.commands.v1", 1, 2, |_| now).await;
    // Older records nobody consumes: inventory's group shows lag and STOPPED.
    produce(&producer, "inventory.stock-commands.v1", 2, 25, |i| {
        now - 90_000 + i as i64 * 1000
    })
    .await;

    // Live admin ports: shipping #0 (the runtime's admin server, counting records), both
    // checkout instances; the others are down.
    let shutdown = CancellationToken::new();
    let shipping_port = topology.processor("shipping").unwrap().0.admin_port;
    let metrics = live_admin("shipping", 0, shipping_port, &shutdown).await;
    let checkout_port = topology.processor("checkout").unwrap().0.admin_port;
    for i in 0..2 {
        live_admin("checkout", i, checkout_port + i, &shutdown).await;
    }

    // The load: orders produced at about 300/s over 6 partitions, a member of shipping's
    // group consuming and committing them, its instance counting them.
    let member = Member::join(&broker.bootstrap, SHIPPING_GROUP, SHIPPING_INPUT).await;
    let consumer = ConsumerLoop::start(member);
    let load = {
        let producer = broker.producer();
        let stop = shutdown.clone();
        let counter = metrics.records_in.with_label_values(&[SHIPPING_INPUT]);
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let now = now_ms();
                for p in 0..6 {
                    produce(&producer, SHIPPING_INPUT, p, 5, |_| now).await;
                }
                counter.inc_by(30);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let cfg = config(&broker.bootstrap, Duration::from_secs(1), 5);
    let monitor = Monitor::start(cfg, topology.clone()).await;
    monitor
        .wait_overview("a few samples of the load", Duration::from_secs(30), |o| {
            o.seq >= 5
                && o.processors
                    .iter()
                    .any(|p| p.name == "shipping" && p.throughput.is_some_and(|t| t > 0.0))
        })
        .await;

    let url = format!("{}/#group={SHIPPING_GROUP}", monitor.url);
    let before = monitor.overview().await.unwrap().seq;
    let dom = run_chromium(&url, &["--dump-dom".to_string()]).await;
    let after = monitor.overview().await.unwrap().seq;
    let tags = tags(&dom);
    let body = tags.iter().find(|t| t.name == "body").expect("a body");
    assert_eq!(
        body.attrs.get("data-rendered").map(String::as_str),
        Some("true"),
        "the page rendered from the API:\n{dom}"
    );
    let seq: u64 = body.attrs["data-seq"].parse().unwrap();
    assert!(
        (before..=after).contains(&seq),
        "the page shows a sample taken while it loaded: {before} <= {seq} <= {after}"
    );

    // The API's answer for exactly that sample.
    let overview: Overview = monitor
        .json(&format!("/api/overview?seq={seq}"))
        .await
        .expect("the page's sample is still kept");
    let detail: GroupDetail = monitor
        .json(&format!("/api/groups/{SHIPPING_GROUP}?seq={seq}"))
        .await
        .unwrap();
    let page = page_values(&tags);

    expect_text(&page, "#fleet-status", "status", overview.status.as_str());
    expect_value(
        &page,
        "#dlq-total",
        "dlq_total",
        Some(overview.dlq_total as f64),
    );
    expect_value(
        &page,
        "#stuck-sagas",
        "stuck_sagas",
        overview.stuck_sagas.map(|n| n as f64),
    );
    assert_eq!(overview.dlq_total, 5);
    assert_eq!(overview.stuck_sagas, Some(0));
    let total_lag: i64 = overview.processors.iter().map(|p| p.offset_lag).sum();
    expect_value(
        &page,
        "#total-lag",
        "total_offset_lag",
        Some(total_lag as f64),
    );
    for p in &overview.processors {
        let row = format!("data-processor={}", p.name);
        expect_text(&page, &row, "status", p.status.as_str());
        expect_value(&page, &row, "offset_lag", Some(p.offset_lag as f64));
        expect_value(&page, &row, "max_time_lag_seconds", p.max_time_lag_seconds);
        expect_value(&page, &row, "throughput", p.throughput);
        expect_value(&page, &row, "consume_rate", p.consume_rate);
        expect_value(&page, &row, "produce_rate", p.produce_rate);
        expect_value(&page, &row, "members", p.members.map(f64::from));
        expect_value(&page, &row, "instances_up", Some(p.instances_up as f64));
    }
    for d in &overview.dlq {
        expect_value(
            &page,
            &format!("data-dlq={}", d.topic),
            "records",
            d.records.map(|n| n as f64),
        );
    }
    for c in &overview.connectors {
        expect_value(
            &page,
            &format!("data-connector={}", c.name),
            "throughput",
            c.throughput,
        );
    }
    // The partition table is the shipping group's at the same sample.
    let table = tags
        .iter()
        .find(|t| t.attrs.get("id").map(String::as_str) == Some("partitions"))
        .unwrap();
    assert_eq!(table.attrs["data-group"], SHIPPING_GROUP);
    assert_eq!(table.attrs["data-seq"], seq.to_string());
    assert_eq!(detail.partitions.len(), 6);
    for p in &detail.partitions {
        let row = format!("partition={}/{}", p.topic, p.partition);
        expect_text(&page, &row, "status", p.status.as_str());
        expect_value(&page, &row, "committed", p.committed.map(|c| c as f64));
        expect_value(&page, &row, "high", Some(p.high as f64));
        expect_value(&page, &row, "offset_lag", Some(p.offset_lag as f64));
        expect_value(&page, &row, "time_lag_seconds", p.time_lag_seconds);
        expect_value(&page, &row, "consume_rate", p.consume_rate);
    }
    // The load is on the page: shipping consumes, inventory has old records waiting.
    let shipping = overview
        .processors
        .iter()
        .find(|p| p.name == "shipping")
        .unwrap();
    assert!(shipping.produce_rate.unwrap() > 0.0 && shipping.consume_rate.unwrap() > 0.0);
    assert_eq!(shipping.members, Some(1));
    let inventory = overview
        .processors
        .iter()
        .find(|p| p.name == "inventory")
        .unwrap();
    assert_eq!(inventory.offset_lag, 25);
    assert!(inventory.max_time_lag_seconds.unwrap() > 80.0);
    // Both charts drew a line per group with history.
    for chart in ["chart-time-lag", "chart-offset-lag"] {
        let at = tags
            .iter()
            .position(|t| t.attrs.get("id").map(String::as_str) == Some(chart))
            .unwrap();
        let lines = tags[at..]
            .iter()
            .take_while(|t| t.name != "div")
            .filter(|t| t.name == "polyline")
            .count();
        assert_eq!(lines, overview.processors.len(), "{chart}");
    }

    // The screenshot, for people.
    let png = target_dir().join("monitor-dashboard.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &url,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1000".to_string(),
            "--hide-scrollbars".to_string(),
        ],
    )
    .await;
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "a page, not a blank: {} bytes",
        bytes.len()
    );
    println!("dashboard screenshot: {}", png.display());

    shutdown.cancel();
    let _ = load.await;
    drop(consumer);
}

fn partitions(topology: &topology::Topology, topic: &str) -> i32 {
    topology.topic(topic).map_or(1, |t| t.partitions as i32)
}

/// The first of `count` consecutive free ports not handed out before.
fn consecutive_free_ports(count: u16, taken: &mut BTreeSet<u16>) -> u16 {
    loop {
        let first = stack::free_port().unwrap();
        let ports: Vec<u16> = (0..count).filter_map(|i| first.checked_add(i)).collect();
        let free = ports.len() == count as usize
            && ports.iter().all(|p| {
                !taken.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
            });
        if free {
            taken.extend(ports);
            return first;
        }
    }
}
