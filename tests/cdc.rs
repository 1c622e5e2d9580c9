//! The PostgreSQL CDC connector as a real `fleet connect` process against the real stack
//! (PostgreSQL with logical replication, broker, registry). Each test has its own database,
//! slot, publication and topics.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use apache_avro::types::Value;
use codec::RegistryClient;
use common::*;
use loadgen::kafka::{drain, reader, Seen};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_postgres::{Client, NoTls};

const CONNECTOR: &str = "catalog-cdc";

fn server_url() -> String {
    env().postgres_url
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn db_url(database: &str) -> String {
    let base = server_url();
    let authority = base
        .trim_start_matches("postgres://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    format!("postgres://{authority}/{database}")
}

/// A scratch database with the catalog migrations, a connector topology on its own topics,
/// and a state folder.
struct Scenario {
    database: String,
    db: Client,
    topic: String,
    dead_letter: String,
    slot: String,
    topology_file: std::path::PathBuf,
    admin_port: u16,
    dir: tempfile::TempDir,
}

async fn scenario(label: &str, chunk_rows: u32) -> Scenario {
    let suffix = unique(label);
    let database = format!("cdc_{}", suffix.replace('-', "_"));
    let admin = connect(&server_url()).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    // Every catalog migration: the connector's publication lists every captured table.
    stack::apply_migrations(&db_url(&database), &repo().join("migrations/catalog"))
        .await
        .unwrap();
    let db = connect(&db_url(&database)).await;

    let mut t = topology()
        .isolated_connector(CONNECTOR, &suffix, &database)
        .unwrap();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (topic, dead_letter, slot) = {
        let (spec, params) = t
            .connectors
            .iter_mut()
            .find(|(c, _)| c.name == CONNECTOR)
            .unwrap();
        spec.admin_port = admin_port;
        params.snapshot_chunk_rows = chunk_rows;
        params.heartbeat_ms = 500;
        spec.params = serde_yaml::to_value(&*params).unwrap();
        (
            params.tables[0].topic.clone(),
            params.dead_letter.clone(),
            params.slot.clone(),
        )
    };
    // The real topic is compacted: a reader that falls behind the broker's compaction pass
    // sees only each key's latest change. These tests check every change the connector
    // wrote, so their copies keep everything.
    for topic in t.topics.iter_mut().filter(|x| x.name == topic) {
        topic.cleanup_policy = topology::CleanupPolicy::Delete;
    }
    stack::create_topics_at(&env().bootstrap_servers, &t)
        .await
        .expect("topics created");
    let dir = tempfile::tempdir().unwrap();
    let topology_file = write_topology(&t, dir.path());
    Scenario {
        database,
        db,
        topic,
        dead_letter,
        slot,
        topology_file,
        admin_port,
        dir,
    }
}

impl Scenario {
    fn start(&self) -> tokio::process::Child {
        fleet_command()
            .env("STOREFLEET_POSTGRES", server_url())
            .env("STOREFLEET_STATE_DIR", self.dir.path().join("state"))
            .arg("--topology")
            .arg(&self.topology_file)
            .args(["connect", CONNECTOR])
            .spawn()
            .expect("fleet connect starts")
    }

    fn reader(&self, topic: &str) -> rdkafka::consumer::StreamConsumer {
        reader(&env().bootstrap_servers, topic, &unique("cdc-reader")).unwrap()
    }

    /// Drops the slot and the database (the connector must be stopped).
    async fn cleanup(self) {
        let admin = connect(&server_url()).await;
        let _ = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            ))
            .await;
    }
}

async fn insert_products(
    db: &impl tokio_postgres::GenericClient,
    from: usize,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in from..from + n {
        let id = uuid::Uuid::new_v4().to_string();
        db.execute(
            "INSERT INTO products (id, sku, title, price, image_urls, seller) \
             VALUES ($1::text::uuid, $2, $3, 10, ARRAY['https://img/' || $2, 'b'], 'seller-1')",
            &[&id, &format!("SKU-{i}"), &format!("Product {i}")],
        )
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

/// One decoded record of a CDC topic.
#[derive(Debug, Clone)]
struct Event {
    partition: i32,
    offset: i64,
    key: String,
    /// `None` for a tombstone.
    op: Option<String>,
    after: BTreeMap<String, Value>,
    before: BTreeMap<String, Value>,
    snapshot: String,
    lsn: Option<i64>,
    tx_id: Option<i64>,
    total_order: Option<i64>,
    unchanged_toast: Vec<String>,
    schema_id: u32,
}

impl Event {
    fn price_cents(&self) -> i128 {
        match self.after.get("price") {
            Some(Value::Decimal(d)) => {
                let bytes: Vec<u8> = d.try_into().unwrap();
                let mut buf = [if bytes[0] & 0x80 != 0 { 0xff } else { 0 }; 16];
                buf[16 - bytes.len()..].copy_from_slice(&bytes);
                i128::from_be_bytes(buf)
            }
            other => panic!("price is {other:?}"),
        }
    }
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn fields(v: &Value) -> BTreeMap<String, Value> {
    match unwrap_union(v) {
        Value::Record(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), unwrap_union(v).clone()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

async fn decode(registry: &RegistryClient, bytes: &[u8]) -> (u32, Value) {
    let (id, body) = codec::unframe(bytes).unwrap();
    let schema = registry.schema_by_id(id).await.unwrap();
    let mut reader = body;
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(&schema, &mut reader, None).unwrap();
    (id, value)
}

async fn decode_all(seen: &[Seen]) -> Vec<Event> {
    let registry = RegistryClient::new(&env().registry_url);
    let mut out = Vec::new();
    for s in seen {
        let key_bytes = s.key.as_deref().expect("change records are keyed");
        let (_, key) = decode(&registry, key_bytes).await;
        let key = match fields(&key).get("id") {
            Some(Value::String(id)) => id.clone(),
            other => panic!("key id {other:?}"),
        };
        let Some(payload) = &s.payload else {
            out.push(Event {
                partition: s.partition,
                offset: s.offset,
                key,
                op: None,
                after: BTreeMap::new(),
                before: BTreeMap::new(),
                snapshot: String::new(),
                lsn: None,
                tx_id: None,
                total_order: None,
                unchanged_toast: Vec::new(),
                schema_id: 0,
            });
            continue;
        };
        let (schema_id, value) = decode(&registry, payload).await;
        let top = fields(&value);
        let source = fields(&top["source"]);
        let op = match &top["op"] {
            Value::String(s) => s.clone(),
            other => panic!("op {other:?}"),
        };
        let long = |v: Option<&Value>| match v {
            Some(Value::Long(l)) => Some(*l),
            _ => None,
        };
        let transaction = top.get("transaction").map(fields).unwrap_or_default();
        out.push(Event {
            partition: s.partition,
            offset: s.offset,
            key,
            op: Some(op),
            after: top.get("after").map(fields).unwrap_or_default(),
            before: top.get("before").map(fields).unwrap_or_default(),
            snapshot: match source.get("snapshot") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            },
            lsn: long(source.get("lsn")),
            tx_id: long(source.get("txId")),
            total_order: long(transaction.get("total_order")),
            unchanged_toast: match top.get("unchanged_toast") {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                _ => Vec::new(),
            },
            schema_id,
        });
    }
    out
}

/// Reads until `want` records arrived (or 60 s of silence).
async fn read(consumer: &rdkafka::consumer::StreamConsumer, want: usize) -> Vec<Event> {
    let seen = drain(consumer, want, Duration::from_secs(60)).await;
    assert!(
        seen.len() >= want,
        "expected {want} records, got {}",
        seen.len()
    );
    decode_all(&seen).await
}

async fn stop(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let _ = child.kill().await;
}

fn sigkill(child: &tokio::process::Child) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_inserts_updates_deletes_and_a_multi_row_transaction() {
    let s = scenario("cdc-ops", 7).await;
    let seeded = insert_products(&s.db, 0, 30).await;
    let consumer = s.reader(&s.topic);
    let child = s.start();

    let snapshot = read(&consumer, 30).await;
    assert!(snapshot.iter().all(|e| e.op.as_deref() == Some("r")));
    let mut ids: Vec<&str> = snapshot.iter().map(|e| e.key.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "each seeded row read once");
    assert!(seeded.iter().all(|id| ids.contains(&id.as_str())));
    assert_eq!(snapshot.iter().filter(|e| e.snapshot == "last").count(), 1);
    let consistent_point = snapshot[0].lsn;
    assert!(consistent_point.is_some());
    assert!(snapshot.iter().all(|e| e.lsn == consistent_point));
    let first = &snapshot[0];
    assert_eq!(
        first.price_cents(),
        1000,
        "numeric(12,2) 10 → decimal 10.00"
    );
    assert!(
        matches!(first.after.get("updated_at"), Some(Value::TimestampMicros(t)) if *t > 1_700_000_000_000_000)
    );
    match first.after.get("image_urls") {
        Some(Value::Array(items)) => assert_eq!(items.len(), 2),
        other => panic!("image_urls {other:?}"),
    }

    let inserted = insert_products(&s.db, 100, 5).await;
    for id in &seeded[..3] {
        s.db.execute(
            "UPDATE products SET price = 12.34 WHERE id = $1::text::uuid",
            &[id],
        )
        .await
        .unwrap();
    }
    for id in &seeded[3..5] {
        s.db.execute("DELETE FROM products WHERE id = $1::text::uuid", &[id])
            .await
            .unwrap();
    }
    let tx_ids = {
        let mut db = connect(&db_url(&s.database)).await;
        let tx = db.transaction().await.unwrap();
        let ids = insert_products(&tx, 200, 2).await;
        tx.execute(
            "UPDATE products SET title = 'renamed' WHERE id = $1::text::uuid",
            &[&seeded[5]],
        )
        .await
        .unwrap();
        tx.execute(
            "DELETE FROM products WHERE id = $1::text::uuid",
            &[&seeded[6]],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        ids
    };
    // 5 c + 3 u + 2 (d + tombstone) + txn: 2 c + 1 u + d + tombstone.
    let events = read(&consumer, 17).await;
    let ops = |op: &str| {
        events
            .iter()
            .filter(|e| e.op.as_deref() == Some(op))
            .count()
    };
    assert_eq!((ops("c"), ops("u"), ops("d")), (7, 4, 3));
    assert_eq!(events.iter().filter(|e| e.op.is_none()).count(), 3);
    for id in &inserted {
        assert!(events
            .iter()
            .any(|e| &e.key == id && e.op.as_deref() == Some("c")));
    }
    for e in events
        .iter()
        .filter(|e| e.op.as_deref() == Some("u") && e.tx_id.is_some())
    {
        if seeded[..3].contains(&e.key) {
            assert_eq!(e.price_cents(), 1234);
        }
    }
    // A delete carries the key in `before`, and the next record of its partition is the
    // tombstone of the same key.
    for d in events.iter().filter(|e| e.op.as_deref() == Some("d")) {
        assert!(d.after.is_empty());
        assert!(matches!(d.before.get("id"), Some(Value::String(id)) if id == &d.key));
        let next = events
            .iter()
            .find(|e| e.partition == d.partition && e.offset == d.offset + 1)
            .expect("tombstone follows");
        assert!(next.op.is_none() && next.key == d.key);
    }
    // The multi-row transaction: one txId and commit LSN, events numbered 1..=4.
    let in_txn: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.op.is_some() && (tx_ids.contains(&e.key) || e.key == seeded[5] || e.key == seeded[6])
        })
        .collect();
    assert_eq!(in_txn.len(), 4);
    assert!(in_txn
        .iter()
        .all(|e| e.tx_id == in_txn[0].tx_id && e.lsn == in_txn[0].lsn));
    let mut orders: Vec<i64> = in_txn.iter().filter_map(|e| e.total_order).collect();
    orders.sort();
    assert_eq!(orders, vec![1, 2, 3, 4]);
    assert!(in_txn[0].lsn > consistent_point);

    // Idle: WAL written elsewhere in the server must not pile up behind the slot.
    let admin = connect(&server_url()).await;
    s.db.batch_execute(
        "CREATE TABLE noise (n int); INSERT INTO noise SELECT generate_series(1, 20000)",
    )
    .await
    .unwrap();
    let target: String = admin
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut advanced = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let row = admin
            .query_one(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&s.slot, &target],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            advanced = true;
            break;
        }
    }
    assert!(
        advanced,
        "an idle slot is confirmed up to the server's position"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", s.admin_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("storefleet_cdc_slot_retained_wal_bytes"),
        "{metrics}"
    );
    assert!(metrics.contains("storefleet_cdc_acknowledged_lsn"));

    stop(child).await;
    s.cleanup().await;
}

/// Increments the price of the rows in `ids` round-robin (and, with `insert_every`, inserts
/// a new row every that many updates) until `stop`; returns the number of updates.
fn spawn_price_writer(
    url: String,
    ids: Vec<String>,
    insert_every: Option<usize>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let db = connect(&url).await;
        let mut n = 0usize;
        while !stop.is_cancelled() {
            db.execute(
                "UPDATE products SET price = price + 1 WHERE id = $1::text::uuid",
                &[&ids[(n * 7919) % ids.len()]],
            )
            .await
            .unwrap();
            if insert_every.is_some_and(|every| n.is_multiple_of(every)) {
                insert_products(&db, 10_000 + n, 1).await;
            }
            n += 1;
        }
        n
    })
}

/// Every key's price history (cents) as the topic tells it, in order, read until each row
/// of the database shows its final price; with a readable trail per key for failures.
struct History {
    prices: HashMap<String, Vec<i128>>,
    trail: HashMap<String, Vec<String>>,
}

impl History {
    fn add(&mut self, events: &[Event]) {
        for e in events.iter().filter(|e| e.op.is_some()) {
            self.prices
                .entry(e.key.clone())
                .or_default()
                .push(e.price_cents());
            self.trail.entry(e.key.clone()).or_default().push(format!(
                "{} p{}@{} lsn {:?} tx {:?} {}",
                e.op.as_deref().unwrap_or("-"),
                e.partition,
                e.offset,
                e.lsn,
                e.tx_id,
                e.snapshot
            ));
        }
    }

    async fn until_final(
        mut self,
        db: &Client,
        consumer: &rdkafka::consumer::StreamConsumer,
    ) -> Self {
        let rows = db
            .query("SELECT id::text, (price * 100)::bigint FROM products", &[])
            .await
            .unwrap();
        let finals: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while finals
            .iter()
            .any(|(k, p)| self.prices.get(k).and_then(|v| v.last()) != Some(&i128::from(*p)))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not every row reached its final value"
            );
            let seen = drain(consumer, 5_000, Duration::from_secs(2)).await;
            self.add(&decode_all(&seen).await);
        }
        self
    }

    /// Asserts `step(previous, next)` along every key's history.
    fn check(&self, step: impl Fn(i128, i128) -> bool, what: &str) {
        for (key, prices) in &self.prices {
            for pair in prices.windows(2) {
                assert!(
                    step(pair[0], pair[1]),
                    "key {key}: prices {prices:?} {what}: {:?}",
                    self.trail[key]
                );
            }
        }
    }
}

/// The snapshot/stream handover under concurrent writes: every committed price change of
/// every row appears exactly once, in order (per key the prices are consecutive, ending at
/// the database's final value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_under_concurrent_writes_delivers_every_change_exactly_once() {
    let s = scenario("cdc-handover", 250).await;
    let ids = insert_products(&s.db, 0, 2_000).await;
    let consumer = s.reader(&s.topic);
    let stop_writer = tokio_util::sync::CancellationToken::new();
    let writer = spawn_price_writer(db_url(&s.database), ids, Some(10), stop_writer.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let child = s.start();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop_writer.cancel();
    let updates = writer.await.unwrap();
    assert!(
        updates > 100,
        "the writer ran concurrently ({updates} updates)"
    );
    let empty = History {
        prices: HashMap::new(),
        trail: HashMap::new(),
    };
    let history = empty.until_final(&s.db, &consumer).await;
    history.check(|a, b| b == a + 100, "skip or repeat a change");
    stop(child).await;
    s.cleanup().await;
}

/// `kill -9` mid-stream, then restart: every committed row arrives; a row seen twice is the
/// same change (same LSN), which consumers drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_nothing() {
    let s = scenario("cdc-kill", 500).await;
    let consumer = s.reader(&s.topic);
    let first = s.start();
    // Streaming has started once a first insert arrives.
    insert_products(&s.db, 0, 1).await;
    read(&consumer, 1).await;
    let url = db_url(&s.database);
    let writer = tokio::spawn(async move {
        let mut db = connect(&url).await;
        let mut ids = Vec::new();
        for batch in 0..150 {
            let tx = db.transaction().await.unwrap();
            ids.extend(insert_products(&tx, 1_000 + batch * 10, 10).await);
            tx.commit().await.unwrap();
        }
        ids
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    sigkill(&first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = s.start();
    let ids = writer.await.unwrap();
    let seen = drain(&consumer, 1_000_000, Duration::from_secs(15)).await;
    let events = decode_all(&seen).await;
    let mut lsns: HashMap<&str, Vec<Option<i64>>> = HashMap::new();
    for e in &events {
        lsns.entry(e.key.as_str()).or_default().push(e.lsn);
    }
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !lsns.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} rows lost",
        missing.len(),
        ids.len()
    );
    let duplicated = lsns.values().filter(|v| v.len() > 1).count();
    for v in lsns.values() {
        assert!(
            v.iter().all(|l| *l == v[0]),
            "a duplicate is a re-send of the same change"
        );
    }
    println!("after kill -9: {} rows, {duplicated} re-sent", ids.len());
    stop(second).await;
    s.cleanup().await;
}

/// A crash during the initial snapshot under concurrent updates: the restart resumes at the
/// next chunk and no row's state goes backwards or misses its final value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_interrupted_by_kill_9_resumes_without_regressing_any_row() {
    let s = scenario("cdc-resume", 50).await;
    let ids = insert_products(&s.db, 0, 3_000).await;
    let consumer = s.reader(&s.topic);
    let stop_writer = tokio_util::sync::CancellationToken::new();
    let writer = spawn_price_writer(db_url(&s.database), ids, None, stop_writer.clone());
    let first = s.start();
    let early = read(&consumer, 500).await;
    sigkill(&first);
    let second = s.start();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_writer.cancel();
    writer.await.unwrap();
    let mut history = History {
        prices: HashMap::new(),
        trail: HashMap::new(),
    };
    history.add(&early);
    let history = history.until_final(&s.db, &consumer).await;
    history.check(
        |a, b| b == a || b == a + 100,
        "go backwards or skip a change",
    );
    stop(second).await;
    s.cleanup().await;
}

/// A column added while running evolves the value schema (a new registry version, the new
/// field in the next event); unchanged TOASTed values are marked, not nulled; a row that
/// cannot be converted goes to the dead-letter topic and the stream moves on; a column
/// retyped incompatibly stops the connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_toast_and_bad_rows() {
    let s = scenario("cdc-schema", 100).await;
    let consumer = s.reader(&s.topic);
    let dlq = s.reader(&s.dead_letter);
    let mut child = s.start();
    let first = insert_products(&s.db, 0, 1).await;
    let before = read(&consumer, 1).await;

    s.db.batch_execute("ALTER TABLE products ADD COLUMN color text")
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    s.db.execute(
        "INSERT INTO products (id, sku, title, price, seller, color) VALUES ($1::text::uuid, 'C-1', 'Red', 1, 's', 'red')",
        &[&id],
    )
    .await
    .unwrap();
    let evolved = read(&consumer, 1).await;
    assert_eq!(evolved[0].key, id);
    assert!(matches!(evolved[0].after.get("color"), Some(Value::String(c)) if c == "red"));
    assert_ne!(
        evolved[0].schema_id, before[0].schema_id,
        "a new schema version"
    );

    // TOAST: a large, uncompressed description survives an update of another column.
    s.db.batch_execute("ALTER TABLE products ALTER COLUMN description SET STORAGE EXTERNAL")
        .await
        .unwrap();
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    s.db.execute(
        "UPDATE products SET description = $2 WHERE id = $1::text::uuid",
        &[&first[0], &big],
    )
    .await
    .unwrap();
    s.db.execute(
        "UPDATE products SET price = 2 WHERE id = $1::text::uuid",
        &[&first[0]],
    )
    .await
    .unwrap();
    let toast = read(&consumer, 2).await;
    assert!(matches!(toast[0].after.get("description"), Some(Value::String(d)) if d == &big));
    assert_eq!(toast[1].unchanged_toast, vec!["description".to_string()]);
    assert!(
        matches!(toast[1].after.get("description"), Some(Value::String(d)) if d == "__debezium_unavailable_value")
    );

    // numeric(12,2) admits NaN, which no Avro decimal can hold: dead-lettered, then the
    // next row flows.
    let bad = uuid::Uuid::new_v4().to_string();
    s.db.execute(
        "INSERT INTO products (id, sku, title, price, seller) VALUES ($1::text::uuid, 'NAN', 'x', 'NaN', 's')",
        &[&bad],
    )
    .await
    .unwrap();
    let after_bad = insert_products(&s.db, 50, 1).await;
    let next = read(&consumer, 1).await;
    assert_eq!(next[0].key, after_bad[0]);
    let letters = drain(&dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 1);
    let registry = RegistryClient::new(&env().registry_url);
    let (_, letter) = decode(&registry, letters[0].payload.as_deref().unwrap()).await;
    let letter = fields(&letter);
    assert!(
        matches!(letter.get("reason"), Some(Value::String(r)) if r.contains("price")),
        "{letter:?}"
    );

    // Retyping a column cannot be read by old consumers: the connector stops, loudly.
    s.db.batch_execute("ALTER TABLE products ALTER COLUMN seller TYPE integer USING 0")
        .await
        .unwrap();
    s.db.execute(
        "INSERT INTO products (id, sku, title, price, seller) VALUES ($1::text::uuid, 'T', 't', 1, 7)",
        &[&uuid::Uuid::new_v4().to_string()],
    )
    .await
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the connector stops")
        .unwrap();
    assert!(!status.success());
    assert!(
        drain(&consumer, 1, Duration::from_secs(2)).await.is_empty(),
        "nothing unreadable was written"
    );
    s.cleanup().await;
}

/// A slot whose WAL exceeded `max_slot_wal_keep_size` is invalidated by PostgreSQL: the
/// connector refuses to stream with a gap (non-zero exit, the recovery named), and
/// `--resnapshot` recovers by reading the table again. On a PostgreSQL cluster of the test's
/// own (the setting is server-wide; other tests' slots must not be touched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_stops_the_connector_and_resnapshot_recovers() {
    let port = stack::free_port().unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = stack::StackConfig {
        data_dir: data.path().to_path_buf(),
        cache_dir: data.path().to_path_buf(),
        broker_port: 1,
        registry_port: 2,
        postgres_port: port,
        redis_port: 3,
        gateway_port: 4,
        // A slot may hold back only 1 MB of WAL on this cluster.
        slot_wal_keep_mb: 1,
        registry_command: Vec::new(),
        broker_installer: repo().join("scripts/install-broker.sh"),
        broker_storage: stack::BrokerStorage::Sqlite,
    };
    stack::start_postgres(&config)
        .await
        .expect("a private PostgreSQL");
    let _cluster = PrivateCluster(port);
    let server = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let admin = connect(&server).await;
    admin
        .batch_execute("CREATE DATABASE catalog")
        .await
        .unwrap();
    let catalog = format!("postgres://postgres@127.0.0.1:{port}/catalog");
    // Every catalog migration: the connector's publication lists every captured table.
    stack::apply_migrations(&catalog, &repo().join("migrations/catalog"))
        .await
        .unwrap();
    let db = connect(&catalog).await;
    insert_products(&db, 0, 5).await;

    let suffix = unique("cdc-lost");
    let t = topology()
        .isolated_connector(CONNECTOR, &suffix, "catalog")
        .unwrap();
    let mut t = t;
    let topic = {
        let (spec, params) = t
            .connectors
            .iter_mut()
            .find(|(c, _)| c.name == CONNECTOR)
            .unwrap();
        spec.admin_port = stack::free_port().unwrap();
        params.tables[0].topic.clone()
    };
    stack::create_topics_at(&env().bootstrap_servers, &t)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_topology(&t, dir.path());
    let state = dir.path().join("state");
    let run = |extra: &[&str]| {
        fleet_command()
            .env("STOREFLEET_POSTGRES", &server)
            .env("STOREFLEET_STATE_DIR", &state)
            .arg("--topology")
            .arg(&file)
            .arg("connect")
            .arg(CONNECTOR)
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let consumer = reader(&env().bootstrap_servers, &topic, &unique("cdc-lost-reader")).unwrap();
    let first = run(&[]);
    read(&consumer, 5).await;
    stop(first).await;

    // With the connector away, WAL piles up past the 1 MB allowance and a checkpoint removes it.
    admin
        .batch_execute("CREATE TABLE filler (pad text)")
        .await
        .unwrap();
    for _ in 0..4 {
        for statement in [
            "INSERT INTO filler SELECT md5(random()::text) FROM generate_series(1, 200000)",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        ] {
            admin.batch_execute(statement).await.unwrap();
        }
    }
    let status: String = admin
        .query_one(
            "SELECT COALESCE(wal_status, 'gone') FROM pg_replication_slots WHERE slot_name LIKE 'storefleet_catalog_cdc_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "lost", "the slot was invalidated");

    let refused = run(&[]);
    let output = tokio::time::timeout(Duration::from_secs(60), refused.wait_with_output())
        .await
        .expect("the connector stops")
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("invalidated") && log.contains("--resnapshot"),
        "{log}"
    );

    // Recovery: a new slot and a new snapshot of the current rows.
    db.execute("DELETE FROM products WHERE sku = 'SKU-0'", &[])
        .await
        .unwrap();
    insert_products(&db, 100, 2).await;
    let recovered = run(&["--resnapshot"]);
    let events = read(&consumer, 6).await;
    assert!(events.iter().all(|e| e.op.as_deref() == Some("r")));
    stop(recovered).await;
    drop(db);
    drop(admin);
    stack::stop_postgres(&config).await.unwrap();
}

/// Stops and removes the test's private cluster however the test ends (a panic included).
struct PrivateCluster(u16);

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let dir = format!("/var/tmp/storefleet-postgres-{}", self.0);
        if std::path::Path::new(&dir).join("postmaster.pid").is_file() {
            let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin/pg_ctl"))
                .find(|p| p.is_file());
            if let Some(pg_ctl) = pg_ctl {
                let _ = std::process::Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(pg_ctl)
                    .args(["-D", &dir, "-m", "immediate", "stop"])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
