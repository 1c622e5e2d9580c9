//! The search-indexer as real `fleet` processes on the real stack: the catalog CDC connector
//! on a private catalog database seeded with the real catalogue, the indexer on isolated
//! topics, availability written to its topic as the ledger would. Checked from outside the
//! process: the catalog table (SQL), the index files themselves (opened after the indexer
//! stopped) and the HTTP answers.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use events::inventory::ProductAvailability;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};
use topology::{ProcessorParams, Topology};

const INDEXER: &str = "search-indexer";
const CONNECTOR: &str = "catalog-cdc";

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

struct Scenario {
    topology_file: PathBuf,
    state: tempfile::TempDir,
    _dir: tempfile::TempDir,
    catalog: Client,
    catalog_url: String,
    slot: String,
    availability_topic: String,
    availability: codec::TopicCodec,
    producer: FutureProducer,
    http: String,
    /// Latest availability sent per product: (sequence, quantity).
    sent: HashMap<String, (i64, i32)>,
    products: Vec<String>,
}

async fn scenario(label: &str) -> Option<Scenario> {
    let csv = dirs_csv();
    if !csv.exists() {
        eprintln!(
            "note: skipped, {} is missing (bash scripts/fetch-dataset.sh fetches it)",
            csv.display()
        );
        return None;
    }
    let suffix = unique(label);
    let catalog_url =
        private_database("search_catalog", &suffix.replace('-', "_"), "catalog").await;
    let warehouse_url =
        private_database("search_warehouse", &suffix.replace('-', "_"), "warehouse").await;
    let data = seed::parse(&std::fs::read(&csv).unwrap()).unwrap();
    seed::seed_catalog(&data, &catalog_url, &warehouse_url)
        .await
        .unwrap();
    let mut t: Topology = topology()
        .isolated_all(&[INDEXER], &suffix)
        .unwrap()
        .isolated_connector(CONNECTOR, &suffix, &database_name(&catalog_url))
        .unwrap();
    t.processors.retain(|(p, _)| p.name == INDEXER);
    t.connectors.retain(|(c, _)| c.name == CONNECTOR);
    let http_port = free_port_pair();
    let slot = {
        let (spec, params) = t.connectors.iter_mut().next().unwrap();
        spec.admin_port = free_port_pair();
        params.heartbeat_ms = 500;
        spec.params = serde_yaml::to_value(&*params).unwrap();
        params.slot.clone()
    };
    for (spec, params) in &mut t.processors {
        spec.instances = 1;
        if let ProcessorParams::SearchIndexer(p) = params {
            p.http_port = http_port;
            p.fault_injection = true;
            p.freshness_ms = 200;
        }
    }
    let raw = serde_yaml::to_value(match &t.processors[0].1 {
        ProcessorParams::SearchIndexer(p) => p.clone(),
        _ => unreachable!(),
    })
    .unwrap();
    t.processors[0].0.params = raw;
    // This test plays the ledger: it writes the availability topic itself.
    let availability_topic = t.processors[0].0.inputs["availability"].topic.clone();
    for topic in t.topics.iter_mut().filter(|x| x.name == availability_topic) {
        topic.external_writers.push("search-test".into());
    }
    let (topology_file, dir) = deploy_avoiding(&mut t, &[http_port, http_port + 1]).await;
    let availability = codec_for(&t, &availability_topic).await;
    let producer = loadgen::kafka::producer(&env().bootstrap_servers).unwrap();
    let catalog = connect(&catalog_url).await;
    let products: Vec<String> = catalog
        .query("SELECT id::text FROM products ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut s = Scenario {
        topology_file,
        state: tempfile::tempdir().unwrap(),
        _dir: dir,
        catalog,
        catalog_url,
        slot,
        availability_topic,
        availability,
        producer,
        http: format!("http://127.0.0.1:{http_port}"),
        sent: HashMap::new(),
        products,
    };
    // The ledger's first word on every product.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for id in s.products.clone() {
        let qty = if rng.random_bool(0.2) {
            0
        } else {
            rng.random_range(1..50)
        };
        s.send_availability(&id, qty).await;
    }
    Some(s)
}

fn dirs_csv() -> PathBuf {
    let cache = std::env::var_os("STOREFLEET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/storefleet"));
    cache.join("data/superstore.csv")
}

impl Scenario {
    fn command(&self, args: &[&str]) -> tokio::process::Child {
        fleet_command()
            .env("STOREFLEET_POSTGRES", env().postgres_url)
            .env("STOREFLEET_STATE_DIR", self.state.path())
            .arg("--topology")
            .arg(&self.topology_file)
            .args(args)
            .spawn()
            .expect("fleet starts")
    }

    fn connector(&self) -> tokio::process::Child {
        self.command(&["connect", CONNECTOR])
    }

    fn indexer(&self) -> tokio::process::Child {
        self.command(&["run", INDEXER, "--instance", "0"])
    }

    async fn send_availability(&mut self, product: &str, quantity: i32) {
        let seq = self.sent.get(product).map_or(1, |(s, _)| s + 1);
        let record = ProductAvailability {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: runtime::now_ms(),
            correlation_id: product.into(),
            causation_id: None,
            product_id: product.into(),
            in_stock: quantity > 0,
            available_quantity: quantity,
            fulfillment_centers: vec![],
            sequence: seq,
        };
        let payload = self.availability.encode(&record).unwrap();
        self.producer
            .send(
                FutureRecord::to(&self.availability_topic)
                    .key(product)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        self.sent.insert(product.to_string(), (seq, quantity));
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path_and_query}", self.http))
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self) -> Option<Value> {
        let r = reqwest::get(format!("{}/admin/status", self.http))
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Waits until the connector has sent every catalog row and the index covers everything
    /// in both topics.
    async fn settle(&self, within: Duration) {
        let started = Instant::now();
        let t = self.topology_file_topology();
        let products = t.processor(INDEXER).unwrap().0.inputs["products"]
            .topic
            .clone();
        loop {
            let sent: i64 = end_offsets(&t)
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{products}/")))
                .map(|(_, e)| e)
                .sum();
            if sent >= self.products.len() as i64 {
                break;
            }
            assert!(
                started.elapsed() < within,
                "the connector did not send the catalog within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ends = end_offsets(&t);
        loop {
            if let Some(s) = self.status().await {
                let positions = &s["status"]["positions"];
                if ends
                    .iter()
                    .all(|(k, end)| positions[k].as_i64().unwrap_or(0) >= *end)
                {
                    return;
                }
            }
            assert!(
                started.elapsed() < within,
                "the index did not catch up within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Records the indexer process consumed since it started (its own metric).
    async fn records_in(&self) -> u64 {
        let t = self.topology_file_topology();
        let port = t.processor(INDEXER).unwrap().0.admin_port;
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("storefleet_records_in_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn topology_file_topology(&self) -> Topology {
        topology::load(&self.topology_file).unwrap()
    }

    /// The catalog table: id → price in cents.
    async fn table(&self) -> BTreeMap<String, u64> {
        self.catalog
            .query("SELECT id::text, (price * 100)::bigint FROM products", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect()
    }

    /// Every document in the index files (the indexer must be stopped).
    fn documents(&self) -> Vec<search::doc::Product> {
        let t = self.topology_file_topology();
        let ProcessorParams::SearchIndexer(p) = &t.processor(INDEXER).unwrap().1 else {
            unreachable!()
        };
        let root = self
            .state
            .path()
            .join("search")
            .join(format!("{INDEXER}-0"));
        let current = std::fs::read_to_string(root.join("CURRENT")).unwrap();
        let layout = search::index::Layout::new(&p.shards);
        let (writers, opened) =
            search::index::Generation::open(&root.join(current.trim()), &layout, 16 << 20).unwrap();
        assert!(
            matches!(opened, search::index::Opened::Consistent(_)),
            "shards at one commit"
        );
        writers.searchable.all_products().unwrap()
    }

    /// The index equals the catalog table and the availability sent: every product once,
    /// its latest price and stock state.
    async fn assert_index_equals_catalog(&self) {
        let docs = self.documents();
        let ids: Vec<&String> = docs.iter().map(|d| &d.id).collect();
        let unique: HashSet<&&String> = ids.iter().collect();
        assert_eq!(ids.len(), unique.len(), "no product has two documents");
        let table = self.table().await;
        let listed: BTreeMap<&String, &search::doc::Product> = docs
            .iter()
            .filter(|d| d.listed)
            .map(|d| (&d.id, d))
            .collect();
        assert_eq!(
            listed.len(),
            table.len(),
            "every catalog row is one listed document"
        );
        for (id, price) in &table {
            let d = listed
                .get(id)
                .unwrap_or_else(|| panic!("{id} missing from the index"));
            assert_eq!(d.price_minor, *price, "{id}: latest price");
            let (seq, qty) = self.sent[id];
            assert_eq!(
                (d.availability_seq, d.available_quantity, d.in_stock),
                (seq, Some(qty), Some(qty > 0)),
                "{id}: latest stock state"
            );
        }
    }

    async fn cleanup(self) {
        let admin = connect(&env().postgres_url).await;
        let _ = admin
            .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", &[&self.slot])
            .await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                database_name(&self.catalog_url)
            ))
            .await;
    }
}

fn end_offsets(t: &Topology) -> Vec<(String, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", env().bootstrap_servers)
        .create()
        .unwrap();
    let (spec, _) = t.processor(INDEXER).unwrap();
    let mut out = Vec::new();
    for input in spec.inputs.values() {
        let partitions = t.topic(&input.topic).unwrap().partitions;
        for p in 0..partitions as i32 {
            let (_, high) = consumer
                .fetch_watermarks(&input.topic, p, Duration::from_secs(10))
                .unwrap();
            out.push((format!("{}/{p}", input.topic), high));
        }
    }
    out
}

async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}

async fn kill9(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let _ = child.wait().await;
}

/// A price change committed in PostgreSQL: one cent up.
async fn bump_price(db: &Client, id: &str) {
    db.execute(
        "UPDATE products SET price = price + 0.01, updated_at = now() WHERE id = $1::text::uuid",
        &[&id],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_mid_stream_the_index_equals_the_catalog() {
    let Some(mut s) = scenario("search-kill").await else {
        return;
    };
    let mut connector = s.connector();
    let mut indexer = s.indexer();
    s.settle(Duration::from_secs(120)).await;
    let before = s.status().await.unwrap();
    let generation = before["status"]["generation"].as_str().unwrap().to_string();

    // A stream of price and stock changes; the indexer is killed in the middle of it.
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut killed_at_seq = None;
    for i in 0..600 {
        let id = s.products[rng.random_range(0..s.products.len())].clone();
        if i % 2 == 0 {
            bump_price(&s.catalog, &id).await;
        } else {
            let qty = rng.random_range(0..5);
            s.send_availability(&id, qty).await;
        }
        if i == 250 {
            let seq = s
                .status()
                .await
                .map(|v| v["status"]["commit_seq"].as_u64().unwrap_or(0));
            killed_at_seq = seq;
            kill9(&mut indexer).await;
        }
        if i == 300 {
            indexer = s.indexer();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.settle(Duration::from_secs(120)).await;
    let after = s.status().await.unwrap();
    // Resumed at its commit's positions, not from the start: the restarted process read
    // fewer records than the topics held before the kill (the seeded catalogue and the
    // first availability alone are twice the products).
    let read_after_restart = s.records_in().await;
    stop(&mut indexer).await;
    stop(&mut connector).await;
    assert!(
        read_after_restart < 2 * s.products.len() as u64,
        "the restarted indexer read {read_after_restart} records: it did not resume from its commit"
    );
    assert_eq!(
        after["status"]["generation"].as_str(),
        Some(generation.as_str()),
        "resumed the same generation, no rebuild"
    );
    assert!(
        after["status"]["commit_seq"].as_u64().unwrap()
            > killed_at_seq.expect("status before the kill"),
        "commits continued after the restart"
    );
    s.assert_index_equals_catalog().await;
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_facets_like_sql_and_refuses_bad_requests_with_codes() {
    let Some(s) = scenario("search-query").await else {
        return;
    };
    let mut connector = s.connector();
    let mut indexer = s.indexer();
    s.settle(Duration::from_secs(120)).await;

    // Facet counts against SQL: "desk" (4 letters: no typo budget; a trailing space: no
    // prefix) matches a product whose title, description, brand or category has the word
    // "desk" or its plural.
    let (status, answer) = s.get("/search?q=desk+&per_page=1").await;
    assert_eq!(status, 200, "{answer}");
    let rows = s
        .catalog
        .query(
            "SELECT category, count(*) FROM products \
             WHERE title ~* '\\mdesks?\\M' OR description ~* '\\mdesks?\\M' OR brand ~* '\\mdesks?\\M' OR category ~* '\\mdesks?\\M' \
             GROUP BY category",
            &[],
        )
        .await
        .unwrap();
    let sql: BTreeMap<String, u64> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let facets: BTreeMap<String, u64> = answer["facets"]["category"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(facets, sql, "{answer}");
    assert_eq!(answer["total"].as_u64().unwrap(), sql.values().sum::<u64>());
    // The stock facet counts what the ledger said.
    let (_, answer) = s.get("/search?q=desk+&in_stock=true&per_page=100").await;
    assert!(answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["in_stock"] == true));

    // Bad requests: a 4xx with a code, never a 5xx, whatever the bytes.
    for (query, code) in [
        ("q=", "empty_query"),
        ("q=%20%20", "empty_query"),
        ("q=%21%21%3F", "empty_query"),
        (&format!("q={}", "a".repeat(201)), "query_too_long"),
        ("q=%22open", "query_syntax"),
        ("q=%FF%FE%FD", "invalid_encoding"),
        ("q=%E0%A4", "invalid_encoding"),
        ("q=desk&page=0", "invalid_parameter"),
        ("q=desk&per_page=1000", "invalid_parameter"),
        ("q=desk&page=11&per_page=100", "page_out_of_range"),
        ("q=desk&min_price=abc", "invalid_parameter"),
        ("q=desk&sort=cheapest", "invalid_parameter"),
    ] {
        let (status, body) = s.get(&format!("/search?{query}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{query}: {body}"
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for _ in 0..200 {
        let bytes: Vec<u8> = (0..rng.random_range(0..300))
            .map(|_| rng.random())
            .collect();
        let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        let (status, _) = s.get(&format!("/search?q={encoded}")).await;
        assert!(status == 200 || status == 400, "random bytes got {status}");
    }
    stop(&mut indexer).await;
    stop(&mut connector).await;
    s.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_swaps_in_with_no_downtime_and_no_missed_update() {
    let Some(mut s) = scenario("search-rebuild").await else {
        return;
    };
    let mut connector = s.connector();
    let mut indexer = s.indexer();
    s.settle(Duration::from_secs(120)).await;
    let old = s.status().await.unwrap()["status"]["generation"]
        .as_str()
        .unwrap()
        .to_string();

    // Shoppers keep searching the whole time: every answer a 200 with no degraded shard.
    let http = s.http.clone();
    let stop_queries = tokio_util::sync::CancellationToken::new();
    let querier = tokio::spawn({
        let stop_queries = stop_queries.clone();
        async move {
            let client = reqwest::Client::new();
            let (mut ok, mut bad) = (0, Vec::new());
            while !stop_queries.is_cancelled() {
                let r = client
                    .get(format!("{http}/search?q=chair"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if status == 200
                    && body["degraded"].as_array().is_some_and(Vec::is_empty)
                    && body["total"].as_u64() > Some(0)
                {
                    ok += 1;
                } else {
                    bad.push((status, body));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, bad)
        }
    });
    let r = reqwest::Client::new()
        .post(format!("{}/admin/rebuild", s.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let new = r.json::<Value>().await.unwrap()["generation"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    // Changes keep coming during the rebuild.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let started = Instant::now();
    let mut i = 0;
    loop {
        let id = s.products[rng.random_range(0..s.products.len())].clone();
        if i % 2 == 0 {
            bump_price(&s.catalog, &id).await;
        } else {
            s.send_availability(&id, rng.random_range(0..5)).await;
        }
        i += 1;
        let st = s.status().await.unwrap();
        if st["status"]["rebuild"]["state"] == "done" && i > 100 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "rebuild not done: {st}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.settle(Duration::from_secs(60)).await;
    stop_queries.cancel();
    let (ok, bad) = querier.await.unwrap();
    let st = s.status().await.unwrap();
    assert_eq!(st["status"]["generation"].as_str(), Some(new.as_str()));
    assert!(
        ok > 20 && bad.is_empty(),
        "{ok} good answers, bad: {:?}",
        bad.first()
    );
    stop(&mut indexer).await;
    stop(&mut connector).await;
    s.assert_index_equals_catalog().await;
    assert!(
        !s.state
            .path()
            .join("search")
            .join(format!("{INDEXER}-0"))
            .join(&old)
            .exists(),
        "the old generation is removed"
    );
    s.cleanup().await;
}
