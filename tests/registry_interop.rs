//! The registry and the wire format against an independent client, and schema evolution
//! against an independent referee.
//!
//! - Confluent's Python client (`confluent-kafka` SchemaRegistryClient, AvroSerializer,
//!   AvroDeserializer: `tests/python/interop.py`) registers, fetches and serializes against
//!   the registry, and Rust and Python read each other's records from real topics.
//! - Every case of `tests/python/evolution_cases.json` is asked of the registry (a subject per
//!   case and mode, `POST /compatibility/...`, then the registration itself) and of the
//!   Python `avro` package's port of Java's compatibility checker (`tests/python/referee.py`);
//!   both must give the expected verdict for every mode.
//!
//! The Python interpreter is `STOREFLEET_PYTHON`, default `$STOREFLEET_CACHE/venv/bin/python`
//! (`scripts/python-env.sh` creates it; the test command runs that script). A missing venv
//! fails these tests: it is not a reason to skip them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codec::{unframe, RegistryClient, TopicCodec, Value};
use common::{env, repo, unique};
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

/// uuid, timestamp-millis, an enum, a nullable field and an array of records.
const ORDER_SCHEMA: &str = r#"{"type":"record","name":"InteropOrder","namespace":"storefleet.interop","fields":[
  {"name":"event_id","type":{"type":"string","logicalType":"uuid"}},
  {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"status","type":{"type":"enum","name":"OrderStatus","symbols":["PLACED","PAID","SHIPPED","CANCELLED"]}},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"lines","type":{"type":"array","items":{"type":"record","name":"OrderLine","fields":[
    {"name":"sku","type":"string"},{"name":"quantity","type":"int"},{"name":"unit_price_minor","type":"long"}]}}}]}"#;

/// The same plus a decimal, for the records Python writes. Rust reads them with this very
/// schema, and with `ORDER_SCHEMA` as an older reader that skips the decimal; it never
/// resolves a decimal into a reader's decimal (`apache-avro` 0.22 cannot).
fn order_schema_with_decimal() -> String {
    let mut schema: Json = serde_json::from_str(ORDER_SCHEMA).unwrap();
    schema["fields"].as_array_mut().unwrap().push(json!({
        "name": "total",
        "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
    }));
    schema.to_string()
}
const DECIMAL_SCALE: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum OrderStatus {
    Placed,
    Paid,
    Shipped,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderLine {
    sku: String,
    quantity: i32,
    unit_price_minor: i64,
}

/// Serializes to Avro through the codec and to "interop JSON" (uuid string, epoch millis,
/// enum symbol) through serde_json: the form `interop.py` compares records in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InteropOrder {
    event_id: String,
    occurred_at: i64,
    status: OrderStatus,
    note: Option<String>,
    lines: Vec<OrderLine>,
}

fn rust_order(index: u32) -> InteropOrder {
    let statuses = [
        OrderStatus::Placed,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Cancelled,
    ];
    InteropOrder {
        event_id: format!(
            "6f1c2a34-8a7b-4c55-9f0e-{:012x}",
            0x2a1b_0000_0000_u64 + u64::from(index)
        ),
        occurred_at: 1_764_300_000_000 + i64::from(index) * 37,
        status: statuses[index as usize % statuses.len()].clone(),
        note: (index % 2 == 1).then(|| format!("rust {index} ünïcödé ✓")),
        lines: (0..index % 5)
            .map(|n| OrderLine {
                sku: format!("SKU-R{index}-{n}"),
                quantity: n as i32 + 1,
                unit_price_minor: -50 + i64::from(index) * 1_000_003,
            })
            .collect(),
    }
}

// --- Python --------------------------------------------------------------------------------

fn python() -> PathBuf {
    if let Some(explicit) = std::env::var_os("STOREFLEET_PYTHON") {
        return PathBuf::from(explicit);
    }
    let cache = std::env::var_os("STOREFLEET_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/storefleet")))
        .expect("STOREFLEET_CACHE or HOME is set");
    cache.join("venv/bin/python")
}

/// Runs `tests/python/<script>` and returns the JSON it prints; panics with its output if it
/// fails or the interpreter is missing.
async fn run_python(script: &str, args: &[&str]) -> Json {
    let interpreter = python();
    assert!(
        interpreter.exists(),
        "the Python venv for the interop tests is missing ({}): run `bash scripts/python-env.sh` \
         (scripts/test.sh does) or set STOREFLEET_PYTHON",
        interpreter.display()
    );
    let script_path = repo().join("tests/python").join(script);
    let child = tokio::process::Command::new(&interpreter)
        .arg(&script_path)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", interpreter.display()));
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} did not finish in 180 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

// --- registry over HTTP ----------------------------------------------------------------------

struct Registry {
    base: String,
    http: reqwest::Client,
}

impl Registry {
    fn new() -> Self {
        Self {
            base: env().registry_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("registry reachable");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Json::String(text)),
        )
    }

    async fn set_level(&self, subject: &str, level: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                &format!("/config/{subject}"),
                Some(json!({ "compatibility": level })),
            )
            .await;
        assert_eq!(status, 200, "PUT /config/{subject}: {body}");
    }

    /// HTTP status of registering `schema`: 200, or 409 when incompatible.
    async fn register(&self, subject: &str, schema: &Json) -> (u16, Json) {
        self.call(
            reqwest::Method::POST,
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": schema.to_string() })),
        )
        .await
    }

    /// `is_compatible` and the verbose messages of a compatibility test at `path`.
    async fn compatible(&self, path: &str, schema: &Json) -> (bool, Json) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                path,
                Some(json!({ "schema": schema.to_string() })),
            )
            .await;
        assert_eq!(status, 200, "POST {path}: {body}");
        let verdict = body["is_compatible"]
            .as_bool()
            .unwrap_or_else(|| panic!("POST {path}: no is_compatible in {body}"));
        (verdict, body["messages"].clone())
    }

    /// Removes a test subject and its config so the registry does not fill up with them.
    async fn forget(&self, subject: &str) {
        use reqwest::Method;
        self.call(Method::DELETE, &format!("/subjects/{subject}"), None)
            .await;
        self.call(
            Method::DELETE,
            &format!("/subjects/{subject}?permanent=true"),
            None,
        )
        .await;
        self.call(Method::DELETE, &format!("/config/{subject}"), None)
            .await;
    }
}

// --- Kafka -----------------------------------------------------------------------------------

async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env().bootstrap_servers)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
}

/// A decoded Avro value in interop JSON, independent of any serde type.
fn interop_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Long(l) => json!(l),
        Value::String(s) => json!(s),
        Value::Uuid(u) => json!(u.to_string()),
        Value::TimestampMillis(millis) => json!(millis),
        Value::Enum(_, symbol) => json!(symbol),
        Value::Union(_, inner) => interop_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(interop_json).collect()),
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), interop_json(v)))
                .collect(),
        ),
        Value::Decimal(decimal) => {
            let bytes = Vec::<u8>::try_from(decimal).expect("decimal bytes");
            let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
            let unscaled = bytes
                .iter()
                .fold(if negative { -1i128 } else { 0 }, |acc, b| {
                    (acc << 8) | i128::from(*b)
                });
            let unit = 10i128.pow(DECIMAL_SCALE);
            let sign = if unscaled < 0 { "-" } else { "" };
            let magnitude = unscaled.abs();
            json!(format!(
                "{sign}{}.{:0width$}",
                magnitude / unit,
                magnitude % unit,
                width = DECIMAL_SCALE as usize
            ))
        }
        other => panic!("no interop form for {other:?}"),
    }
}

// --- (a) an independent client ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_registers_fetches_and_serializes_against_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let schema = order_schema_with_decimal();
    let schema_file = write(dir.path(), "order.avsc", &schema);
    let subject = format!("{}-value", unique("interop.python-registry"));
    let report = run_python(
        "interop.py",
        &[
            "registry",
            "--registry",
            &env().registry_url,
            "--subject",
            &subject,
            "--schema",
            &schema_file,
        ],
    )
    .await;
    let id_v1 = report["id_v1"].as_u64().unwrap() as u32;
    let id_v2 = report["id_v2"].as_u64().unwrap() as u32;
    assert_eq!(report["incompatible_error_code"], json!(409), "{report}");

    // What Python registered, Rust fetches by id and registers to the same id elsewhere.
    let rust = RegistryClient::new(&env().registry_url);
    let fetched = rust.schema_by_id(id_v1).await.unwrap();
    assert_eq!(
        fetched.canonical_form(),
        codec::Schema::parse_str(&schema).unwrap().canonical_form()
    );
    let elsewhere = format!("{}-value", unique("interop.rust-registry"));
    assert_eq!(rust.register(&elsewhere, &schema).await.unwrap(), id_v1);

    // Python's locally serialized v2 record decodes in Rust with the writer's schema.
    let framed: Vec<u8> = (0..report["framed_hex"].as_str().unwrap().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&report["framed_hex"].as_str().unwrap()[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .unwrap();
    let (id, body) = unframe(&framed).unwrap();
    assert_eq!(id, id_v2);
    let writer = rust.schema_by_id(id).await.unwrap();
    let decoded = interop_json(&codec::decode_body(&writer, None, body).unwrap());
    assert_eq!(decoded, report["record"]);
    assert_eq!(decoded["channel"], json!("web"), "{decoded}");

    let registry = Registry::new();
    registry.forget(&subject).await;
    registry.forget(&elsewhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_records_rust_wrote_byte_for_byte() {
    let topic = unique("interop.rust-to-python");
    create_topic(&topic, 3).await;
    let rust = RegistryClient::new(&env().registry_url);
    let codec = TopicCodec::register(&rust, &format!("{topic}-value"), ORDER_SCHEMA)
        .await
        .unwrap();
    let orders: Vec<InteropOrder> = (0..60).map(rust_order).collect();
    let records: Vec<(String, Vec<u8>)> = orders
        .iter()
        .map(|o| (o.event_id.clone(), codec.encode(o).unwrap()))
        .collect();
    let producer = loadgen::kafka::producer(&env().bootstrap_servers).unwrap();
    loadgen::kafka::produce_all(&producer, &topic, records)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let schema_file = write(dir.path(), "order.avsc", ORDER_SCHEMA);
    let expected = write(
        dir.path(),
        "expected.json",
        &serde_json::to_string(&orders).unwrap(),
    );
    let report = run_python(
        "interop.py",
        &[
            "consume",
            "--bootstrap",
            &env().bootstrap_servers,
            "--registry",
            &env().registry_url,
            "--topic",
            &topic,
            "--schema",
            &schema_file,
            "--expected",
            &expected,
        ],
    )
    .await;
    assert_eq!(report["consumed"], json!(orders.len()), "{report}");
    assert_eq!(report["schema_ids"], json!([codec.schema_id()]), "{report}");
    assert_eq!(report["byte_identical"], json!(true), "{report}");
    Registry::new().forget(&format!("{topic}-value")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_reads_records_python_wrote() {
    let topic = unique("interop.python-to-rust");
    create_topic(&topic, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let schema = order_schema_with_decimal();
    let schema_file = write(dir.path(), "order.avsc", &schema);
    let count = 60;
    let report = run_python(
        "interop.py",
        &[
            "produce",
            "--bootstrap",
            &env().bootstrap_servers,
            "--registry",
            &env().registry_url,
            "--topic",
            &topic,
            "--schema",
            &schema_file,
            "--count",
            &count.to_string(),
        ],
    )
    .await;
    let mut expected: BTreeMap<String, Json> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["event_id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(expected.len(), count);

    // The same schema text registers to the id Python's serializer used: no resolution.
    let rust = RegistryClient::new(&env().registry_url);
    let codec = TopicCodec::register(&rust, &format!("{topic}-value"), &schema)
        .await
        .unwrap();
    assert_eq!(json!(codec.schema_id()), report["schema_id"]);

    let old_reader = TopicCodec::register(&rust, &format!("{topic}-old-reader"), ORDER_SCHEMA)
        .await
        .unwrap();
    let reader = loadgen::kafka::reader(
        &env().bootstrap_servers,
        &topic,
        &unique("interop-rust-reader"),
    )
    .unwrap();
    let seen = loadgen::kafka::drain(&reader, count, Duration::from_secs(30)).await;
    assert_eq!(seen.len(), count, "records Python wrote");
    for record in &seen {
        let payload = record.payload.as_deref().expect("a value");
        let decoded = interop_json(&codec.decode(payload).await.unwrap());
        let event_id = decoded["event_id"].as_str().unwrap().to_string();
        assert_eq!(
            record.key.as_deref(),
            Some(event_id.as_bytes()),
            "key is the event id"
        );
        let want = expected
            .remove(&event_id)
            .unwrap_or_else(|| panic!("unexpected or duplicate record {decoded}"));
        // An older reader without the decimal resolves Python's records into its own type.
        let old: InteropOrder =
            codec::from_value(&old_reader.decode(payload).await.unwrap()).unwrap();
        assert_eq!(serde_json::to_value(&old).unwrap()["lines"], want["lines"]);
        assert_eq!(decoded, want);
    }
    assert!(expected.is_empty());
    let registry = Registry::new();
    registry.forget(&format!("{topic}-value")).await;
    registry.forget(&format!("{topic}-old-reader")).await;
}

// --- (b) the evolution table -----------------------------------------------------------------

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
    chains: Vec<Chain>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    writer: Json,
    reader: Json,
    expected: BTreeMap<String, bool>,
}

#[derive(Deserialize)]
struct Chain {
    name: String,
    versions: Vec<Json>,
    candidate: Json,
    expected: BTreeMap<String, bool>,
}

const CASES_FILE: &str = "tests/python/evolution_cases.json";

fn load_cases() -> Cases {
    let text = std::fs::read_to_string(repo().join(CASES_FILE)).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn referee() -> Json {
    let path = repo().join(CASES_FILE);
    run_python("referee.py", &[&path.to_string_lossy()]).await
}

/// One (case, mode) cell: the registry's two answers, the referee's and the expected one.
struct Cell {
    case: String,
    mode: String,
    expected: bool,
    referee: bool,
    compatibility_endpoint: bool,
    registration_accepted: bool,
    messages: Json,
}

impl Cell {
    fn agrees(&self) -> bool {
        self.expected == self.referee
            && self.expected == self.compatibility_endpoint
            && self.expected == self.registration_accepted
    }
}

/// Prints the table (visible with --nocapture, and in the failure message) and asserts that
/// every cell agrees.
fn assert_table(title: &str, cells: &[Cell]) {
    let mut modes: Vec<&str> = cells.iter().map(|c| c.mode.as_str()).collect();
    modes.sort_unstable();
    modes.dedup();
    let mut rows: BTreeMap<&str, BTreeMap<&str, &Cell>> = BTreeMap::new();
    for cell in cells {
        rows.entry(&cell.case).or_default().insert(&cell.mode, cell);
    }
    let mut table = format!("{title}: {} cases x {} modes\n", rows.len(), modes.len());
    table += &format!("{:<42}", "case");
    for mode in &modes {
        table += &format!(" {mode:<20}");
    }
    table += "\n";
    for (case, by_mode) in &rows {
        table += &format!("{case:<42}");
        for mode in &modes {
            let cell = by_mode[mode];
            let verdict = if cell.expected {
                "compatible"
            } else {
                "INCOMPATIBLE"
            };
            let mark = if cell.agrees() { "" } else { " <-- DISAGREE" };
            table += &format!(" {:<20}", format!("{verdict}{mark}"));
        }
        table += "\n";
    }
    println!("{table}");
    let disagreements: Vec<String> = cells
        .iter()
        .filter(|c| !c.agrees())
        .map(|c| {
            format!(
                "{} / {}: expected {}, referee {}, registry compatibility {}, registration accepted {} (messages {})",
                c.case, c.mode, c.expected, c.referee, c.compatibility_endpoint, c.registration_accepted, c.messages
            )
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "{table}\n{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// The registry's verdict on one cell: its own subject at `mode` holding `previous`, asked
/// about `candidate` through the compatibility endpoint, then through registration itself.
async fn registry_cell(
    registry: &Registry,
    subject: &str,
    mode: &str,
    previous: &[Json],
    candidate: &Json,
) -> (bool, bool, Json) {
    // Earlier versions go in under NONE: a chain's history need not satisfy `mode` itself.
    registry.set_level(subject, "NONE").await;
    for schema in previous {
        let (status, body) = registry.register(subject, schema).await;
        assert_eq!(status, 200, "registering a previous version: {body}");
    }
    registry.set_level(subject, mode).await;
    // Confluent's endpoints: `latest` compares with the newest version only; without a
    // version the subject's level decides (every version for *_TRANSITIVE levels).
    let path = if mode.ends_with("_TRANSITIVE") {
        format!("/compatibility/subjects/{subject}/versions?verbose=true")
    } else {
        format!("/compatibility/subjects/{subject}/versions/latest?verbose=true")
    };
    let (compatible, messages) = registry.compatible(&path, candidate).await;
    let (status, body) = registry.register(subject, candidate).await;
    assert!(
        status == 200 || status == 409,
        "registering the candidate: HTTP {status} {body}"
    );
    registry.forget(subject).await;
    (compatible, status == 200, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolution_cases_registry_and_referee_agree_with_the_expected_verdicts() {
    let cases = load_cases().cases;
    assert!(cases.len() >= 20, "at least 20 evolution cases");
    let verdicts = referee().await;
    let registry = Registry::new();
    let run = unique("evolution");
    let jobs: Vec<(&Case, &String, bool)> = cases
        .iter()
        .flat_map(|case| {
            case.expected
                .iter()
                .map(move |(mode, expected)| (case, mode, *expected))
        })
        .collect();
    assert_eq!(jobs.len(), cases.len() * 3, "every case names 3 modes");
    let cells: Vec<Cell> = futures::stream::iter(jobs)
        .map(|(case, mode, expected)| {
            let registry = &registry;
            let verdicts = &verdicts;
            let subject = format!("{run}-{}-{mode}", case.name);
            async move {
                let (compatible, accepted, messages) = registry_cell(
                    registry,
                    &subject,
                    mode,
                    std::slice::from_ref(&case.writer),
                    &case.reader,
                )
                .await;
                Cell {
                    case: case.name.clone(),
                    mode: mode.clone(),
                    expected,
                    referee: verdicts["cases"][&case.name][mode]
                        .as_bool()
                        .unwrap_or_else(|| panic!("referee has no verdict for {}", case.name)),
                    compatibility_endpoint: compatible,
                    registration_accepted: accepted,
                    messages,
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_table("schema evolution", &cells);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitive_levels_check_every_earlier_version_of_a_chain() {
    let chains = load_cases().chains;
    assert!(!chains.is_empty());
    let verdicts = referee().await;
    let registry = Registry::new();
    let run = unique("evolution-chain");
    let mut cells = Vec::new();
    for chain in &chains {
        for (mode, expected) in &chain.expected {
            let subject = format!("{run}-{}-{mode}", chain.name);
            let (compatible, accepted, messages) =
                registry_cell(&registry, &subject, mode, &chain.versions, &chain.candidate).await;
            cells.push(Cell {
                case: chain.name.clone(),
                mode: mode.clone(),
                expected: *expected,
                referee: verdicts["chains"][&chain.name][mode].as_bool().unwrap(),
                compatibility_endpoint: compatible,
                registration_accepted: accepted,
                messages,
            });
        }
    }
    // The chains exist to tell a transitive level from its plain one: make sure they do.
    assert!(chains.iter().all(|c| {
        ["BACKWARD", "FORWARD", "FULL"]
            .iter()
            .any(|m| c.expected[*m] != c.expected[&format!("{m}_TRANSITIVE")])
    }));
    assert_table("transitive chains", &cells);
}

// --- (c) the CI gate: `fleet schemas check` --------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Adds `field` to the schema file at `schemas/<relative>` under `dir`, then reloads the
/// topology there: a working tree with one schema changed.
fn change_schema(dir: &Path, relative: &str, field: Json) -> topology::Topology {
    let path = dir.join("schemas").join(relative);
    let mut schema: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["name"] != field["name"]);
    fields.push(field);
    std::fs::write(&path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    topology::load(&dir.join("topology.yaml")).expect("the changed topology is valid")
}

fn status_of<'a>(
    verdicts: &'a [stack::SubjectVerdict],
    subject: &str,
) -> &'a stack::SubjectVerdict {
    verdicts
        .iter()
        .find(|v| v.subject == subject)
        .unwrap_or_else(|| panic!("no verdict for {subject}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_check_tells_new_registered_compatible_and_incompatible_subjects_apart() {
    use stack::SchemaStatus;
    // A working tree whose shipping topics are private to this test (subjects included).
    let suffix = unique("schemas-check");
    let isolated = common::topology().isolated("shipping", &suffix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("schemas"), &dir.path().join("schemas"));
    std::fs::write(dir.path().join("topology.yaml"), isolated.to_yaml()).unwrap();
    let tree = topology::load(&dir.path().join("topology.yaml")).unwrap();
    let ours: Vec<(String, String)> = tree
        .subjects()
        .into_iter()
        .filter(|(subject, _)| subject.contains(&suffix))
        .collect();
    assert_eq!(
        ours.len(),
        3,
        "order-placed, shipment-events, dead letters: {ours:?}"
    );
    let shipments = format!("shipping.shipment-events.v1.{suffix}-value");
    let url = env().registry_url;

    let verdicts = stack::check_schemas(&url, &tree).await.unwrap();
    assert_eq!(
        verdicts.len(),
        tree.subjects().len(),
        "one verdict per subject"
    );
    for (subject, _) in &ours {
        assert_eq!(status_of(&verdicts, subject).status, SchemaStatus::New);
    }

    let rust = RegistryClient::new(&url);
    for (subject, schema) in &ours {
        rust.register(subject, schema).await.unwrap();
    }
    let verdicts = stack::check_schemas(&url, &tree).await.unwrap();
    for (subject, _) in &ours {
        assert_eq!(
            status_of(&verdicts, subject).status,
            SchemaStatus::Registered { version: 1 }
        );
    }

    // An optional field: compatible under the default level (BACKWARD).
    let tree = change_schema(
        dir.path(),
        "shipping/ShipmentEvent.avsc",
        json!({"name": "parcel_count", "type": ["null", "int"], "default": null}),
    );
    let verdicts = stack::check_schemas(&url, &tree).await.unwrap();
    let verdict = status_of(&verdicts, &shipments);
    assert_eq!(verdict.status, SchemaStatus::Compatible, "{verdict}");
    assert!(!verdicts
        .iter()
        .any(|v| ours.iter().any(|(s, _)| *s == v.subject) && v.is_incompatible()));

    // A required field: BACKWARD refuses it, with the registry's reason.
    let tree = change_schema(
        dir.path(),
        "shipping/ShipmentEvent.avsc",
        json!({"name": "parcel_count", "type": "int"}),
    );
    let verdicts = stack::check_schemas(&url, &tree).await.unwrap();
    let verdict = status_of(&verdicts, &shipments);
    assert_eq!(verdict.level, "BACKWARD");
    match &verdict.status {
        SchemaStatus::Incompatible { messages } => assert!(
            messages
                .iter()
                .any(|m| m.contains("READER_FIELD_MISSING_DEFAULT_VALUE")),
            "{verdict}"
        ),
        other => panic!("expected incompatible, got {other:?}"),
    }
    println!("{verdict}");

    // The subject's own level decides: under FORWARD old readers simply ignore the field.
    let registry = Registry::new();
    registry.set_level(&shipments, "FORWARD").await;
    let verdicts = stack::check_schemas(&url, &tree).await.unwrap();
    let verdict = status_of(&verdicts, &shipments);
    assert_eq!(verdict.level, "FORWARD");
    assert_eq!(verdict.status, SchemaStatus::Compatible, "{verdict}");

    for (subject, _) in &ours {
        registry.forget(subject).await;
    }
}
