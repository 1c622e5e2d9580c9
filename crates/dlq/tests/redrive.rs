//! `fleet dlq` against a real broker: redrive re-produces the original bytes with the
//! deferral headers, logs every redrive, skips what was redriven unless `--again`, and
//! refuses bad targets before producing anything.
//!
//! Runs a private broker (the cached nisshi build: `NISSHI_BIN`, `$STOREFLEET_CACHE` or
//! `~/.cache/storefleet`; see scripts/install-broker.sh) and an in-memory schema registry
//! in-process. A missing broker binary fails the test with that message.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use codec::{RegistryClient, TopicCodec};
use dlq::redrive_log::{self, RedriveHistory};
use dlq::{Coordinates, DlqAction};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use runtime::{headers, DeadLetter, DeadLetterErrorKind, DeadLetterHeader, StackEnv};
use tokio_util::sync::CancellationToken;
use topology::Topology;

const SOURCE: &str = "orders.order-placed.v1";
const OTHER: &str = "shipping.shipment-events.v1";
const DLQ: &str = "dlq.shipping.order-placed.v1";

const TOPOLOGY: &str = r#"
version: 1
topics:
  - name: orders.order-placed.v1
    partitions: 2
    key: string
    value: avro
    value_schema: orders/OrderPlaced.avsc
    external_writers: [load-generator]
  - name: shipping.shipment-events.v1
    partitions: 1
    key: string
    value: avro
    value_schema: shipping/ShipmentEvent.avsc
  - name: dlq.shipping.order-placed.v1
    partitions: 2
    retention_ms: 2592000000
    key: bytes
    value: avro
    value_schema: dlq/DeadLetter.avsc
processors:
  - name: shipping
    kind: shipping
    group: storefleet.shipping
    inputs:
      placed:
        topic: orders.order-placed.v1
        dead_letter: dlq.shipping.order-placed.v1
    outputs:
      shipments: shipping.shipment-events.v1
    admin_port: 9101
    params:
      carrier: acme
"#;

const TINY: &str = r#"{"type":"record","name":"Tiny","namespace":"storefleet.test",
  "fields":[{"name":"a","type":"string"}]}"#;

struct Stack {
    _broker: stack::PrivateBroker,
    registry_shutdown: CancellationToken,
    env: StackEnv,
    topology: Topology,
}

impl Stack {
    async fn start() -> Self {
        let broker = stack::PrivateBroker::start("memory://nisshi/")
            .await
            .expect("a private broker");
        let address = broker.bootstrap.clone();
        let registry_shutdown = CancellationToken::new();
        let (ready, bound) = tokio::sync::oneshot::channel();
        let config = registry::RegistryConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            storage: registry::Storage::Memory,
        };
        tokio::spawn(registry::serve(
            config,
            registry_shutdown.clone(),
            Some(ready),
        ));
        let registry_address = tokio::time::timeout(Duration::from_secs(30), bound)
            .await
            .expect("registry ready in time")
            .expect("registry ready");
        let env = StackEnv {
            bootstrap_servers: address.to_string(),
            registry_url: format!("http://{registry_address}"),
            ..StackEnv::from_env().expect("a valid environment")
        };
        let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let topology = topology::load_str(TOPOLOGY, &schemas).expect("valid topology");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &env.bootstrap_servers)
            .create()
            .unwrap();
        let topics: Vec<NewTopic> = topology
            .topics
            .iter()
            .map(|t| NewTopic::new(&t.name, t.partitions as i32, TopicReplication::Fixed(1)))
            .collect();
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .unwrap()
        {
            result.expect("topic created");
        }
        Self {
            _broker: broker,
            registry_shutdown,
            env,
            topology,
        }
    }

    async fn run(&self, args: &[&str]) -> dlq::Result<()> {
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            action: DlqAction,
        }
        let cli = Cli::try_parse_from(std::iter::once("dlq").chain(args.iter().copied()))
            .expect("valid command line");
        dlq::run(cli.action, &self.env, &self.topology).await
    }

    fn registry(&self) -> RegistryClient {
        RegistryClient::new(&self.env.registry_url)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.registry_shutdown.cancel();
    }
}

fn letter(kind: DeadLetterErrorKind, key: Option<&[u8]>, value: &[u8]) -> DeadLetter {
    DeadLetter {
        original_key: key.map(<[u8]>::to_vec),
        original_value: Some(value.to_vec()),
        source_topic: SOURCE.into(),
        source_partition: 1,
        source_offset: 41,
        original_timestamp: Some(1_764_300_000_000),
        original_schema_id: None,
        processor: "shipping".into(),
        consumer_group: "storefleet.shipping".into(),
        error_kind: kind,
        reason: "carrier unavailable".into(),
        attempts: 5,
        failed_at: 1_764_300_000_500,
        headers: vec![
            DeadLetterHeader {
                key: "trace-id".into(),
                value: Some(b"t-1".to_vec()),
            },
            DeadLetterHeader {
                key: headers::NOT_BEFORE.into(),
                value: Some(b"1".to_vec()),
            },
        ],
    }
}

/// Writes the dead letters of the scenario: partition 0 holds two PROCESSING letters and a
/// DECODE one, partition 1 one record that is not a dead letter at all.
async fn write_dead_letters(stack: &Stack) -> Vec<u8> {
    let registry = stack.registry();
    let dead_letter_schema = stack
        .topology
        .schema_text(Path::new("dlq/DeadLetter.avsc"))
        .unwrap();
    let codec = TopicCodec::register(&registry, &format!("{DLQ}-value"), dead_letter_schema)
        .await
        .unwrap();
    let tiny = TopicCodec::register(&registry, "tiny-value", TINY)
        .await
        .unwrap();
    #[derive(serde::Serialize)]
    struct Tiny {
        a: String,
    }
    let framed = tiny.encode(&Tiny { a: "x".into() }).unwrap();
    let letters = [
        letter(DeadLetterErrorKind::Processing, Some(b"order-1"), &framed),
        letter(DeadLetterErrorKind::Processing, None, b"plain text"),
        letter(DeadLetterErrorKind::Decode, Some(b"order-3"), b"\xff\x00"),
    ];
    let producer: FutureProducer = runtime::producer_config(&stack.env.bootstrap_servers, "test")
        .create()
        .unwrap();
    for l in &letters {
        let payload = codec.encode(l).unwrap();
        let mut record = FutureRecord::<[u8], [u8]>::to(DLQ)
            .partition(0)
            .payload(&payload);
        if let Some(key) = &l.original_key {
            record = record.key(key);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let junk = FutureRecord::<[u8], [u8]>::to(DLQ)
        .partition(1)
        .payload(&b"junk"[..]);
    producer.send(junk, Duration::from_secs(10)).await.unwrap();
    framed
}

#[derive(Debug)]
struct Read {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: HashMap<String, Vec<u8>>,
    header_keys: Vec<String>,
}

/// Every record of `topic` now, all partitions.
fn read_all(bootstrap: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dlq-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        expected += high - low;
        assignment
            .add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let started = Instant::now();
    while (out.len() as i64) < expected {
        assert!(started.elapsed() < Duration::from_secs(30), "read stalled");
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let mut headers = HashMap::new();
        let mut header_keys = Vec::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                header_keys.push(header.key.to_string());
                headers.insert(
                    header.key.to_string(),
                    header.value.unwrap_or_default().to_vec(),
                );
            }
        }
        out.push(Read {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            header_keys,
        });
    }
    out
}

fn not_before(read: &Read) -> i64 {
    std::str::from_utf8(&read.headers[headers::NOT_BEFORE])
        .unwrap()
        .parse()
        .unwrap()
}

async fn history(stack: &Stack) -> RedriveHistory {
    dlq::kafka::read_history(&stack.env.bootstrap_servers)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_reproduces_the_original_bytes_deferred_logs_it_and_skips_it_next_time() {
    let stack = Stack::start().await;
    let framed = write_dead_letters(&stack).await;
    let bootstrap = stack.env.bootstrap_servers.clone();
    let at = |partition, offset| Coordinates::new(DLQ, partition, offset);

    // A dry run shows and produces nothing.
    let dry = [
        "redrive",
        DLQ,
        "--all",
        "--error-kind",
        "processing",
        "--dry-run",
    ];
    stack.run(&dry).await.unwrap();
    assert!(read_all(&bootstrap, SOURCE).is_empty());

    // The two PROCESSING letters go back to their source, deferred 0.5-1 s (n = 0).
    let before = runtime::now_ms();
    stack
        .run(&[
            "redrive",
            DLQ,
            "--all",
            "--error-kind",
            "processing",
            "--defer",
            "1",
            "--max-defer",
            "4",
        ])
        .await
        .unwrap();
    let after = runtime::now_ms();
    let mut redriven = read_all(&bootstrap, SOURCE);
    redriven.sort_by_key(|r| r.headers[headers::REDRIVEN_FROM].clone());
    assert_eq!(redriven.len(), 2);
    let (first, second) = (&redriven[0], &redriven[1]);
    assert_eq!(first.key.as_deref(), Some(&b"order-1"[..]));
    assert_eq!(
        first.value.as_deref(),
        Some(framed.as_slice()),
        "bytes kept"
    );
    assert_eq!(second.key, None);
    assert_eq!(second.value.as_deref(), Some(&b"plain text"[..]));
    assert_eq!(
        first.header_keys,
        ["trace-id", headers::NOT_BEFORE, headers::REDRIVEN_FROM],
        "the old sf.not-before is replaced, not repeated"
    );
    assert_eq!(first.headers["trace-id"], b"t-1");
    assert_eq!(
        first.headers[headers::REDRIVEN_FROM],
        at(0, 0).to_string().as_bytes()
    );
    for r in &redriven {
        let nb = not_before(r);
        assert!(
            nb >= before + 500 && nb <= after + 1_000,
            "not-before {nb} outside [{}, {}]",
            before + 500,
            after + 1_000
        );
    }
    let h = history(&stack).await;
    assert_eq!((h.count(&at(0, 0)), h.count(&at(0, 1))), (1, 1));
    assert_eq!(h.count(&at(0, 2)), 0);
    assert_eq!(h.latest(&at(0, 0)).unwrap().to, SOURCE);

    // Everything again: the redriven two are skipped, the DECODE one goes, the junk record
    // is not a dead letter and stays.
    stack.run(&["redrive", DLQ, "--all"]).await.unwrap();
    assert_eq!(read_all(&bootstrap, SOURCE).len(), 3);
    assert_eq!(history(&stack).await.count(&at(0, 2)), 1);

    // --again redrives one more time with n = 1: deferred 0.5-2 s.
    let from_first = |reads: &[Read]| -> Vec<i64> {
        reads
            .iter()
            .filter(|r| r.headers[headers::REDRIVEN_FROM] == at(0, 0).to_string().as_bytes())
            .map(not_before)
            .collect()
    };
    let earlier = from_first(&read_all(&bootstrap, SOURCE));
    let before = runtime::now_ms();
    stack
        .run(&[
            "redrive",
            DLQ,
            "--partition",
            "0",
            "--offset",
            "0",
            "--again",
            "--defer",
            "1",
            "--max-defer",
            "4",
        ])
        .await
        .unwrap();
    let after = runtime::now_ms();
    let all = read_all(&bootstrap, SOURCE);
    assert_eq!(all.len(), 4);
    let later: Vec<i64> = from_first(&all)
        .into_iter()
        .filter(|nb| !earlier.contains(nb))
        .collect();
    assert_eq!(later.len(), 1, "{earlier:?} then {:?}", from_first(&all));
    assert!(
        later[0] >= before + 500 && later[0] <= after + 2_000,
        "{later:?}"
    );
    assert_eq!(history(&stack).await.count(&at(0, 0)), 2);

    // --to a topology topic; unknown targets and non-dead-letters are refused up front.
    stack
        .run(&[
            "redrive",
            DLQ,
            "--partition",
            "0",
            "--offset",
            "1",
            "--again",
            "--to",
            OTHER,
        ])
        .await
        .unwrap();
    assert_eq!(read_all(&bootstrap, OTHER).len(), 1);
    let refused = stack
        .run(&["redrive", DLQ, "--all", "--again", "--to", "orders.typo.v1"])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("orders.typo.v1"), "{refused}");
    let junk = stack
        .run(&["redrive", DLQ, "--partition", "1", "--offset", "0"])
        .await
        .unwrap_err();
    assert!(
        junk.to_string().contains("not a readable dead letter"),
        "{junk}"
    );
    let missing = stack
        .run(&["redrive", DLQ, "--partition", "0", "--offset", "99"])
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("no record at"), "{missing}");
    assert_eq!(
        read_all(&bootstrap, SOURCE).len(),
        4,
        "nothing more produced"
    );
    assert_eq!(
        read_all(&bootstrap, redrive_log::TOPIC).len(),
        5,
        "one log record per redrive"
    );

    // Listing and inspecting work on the same data.
    stack.run(&["list"]).await.unwrap();
    stack.run(&["list", DLQ, "--limit", "2"]).await.unwrap();
    stack.run(&["inspect", DLQ, "0", "0"]).await.unwrap();
    assert!(stack.run(&["inspect", DLQ, "1", "0"]).await.is_err());
    assert!(stack.run(&["list", SOURCE]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_originals_decode_with_their_writer_schema_and_the_rest_shows_as_bytes() {
    let stack = Stack::start().await;
    let framed = write_dead_letters(&stack).await;
    let decoder =
        dlq::decode::Decoder::new(&stack.env.registry_url, stack.topology.value_schema(DLQ));
    let avro = decoder.original(Some(&framed)).await;
    assert_eq!(avro["format"], "avro");
    assert_eq!(avro["schema"], "storefleet.test.Tiny");
    assert_eq!(avro["value"], serde_json::json!({"a": "x"}));
    let text = decoder.original(Some(b"plain text")).await;
    assert_eq!(text["text"], "plain text");
    let unknown_id = decoder.original(Some(&[0, 0, 0, 0x7f, 0x7f, 1])).await;
    assert_eq!(unknown_id["format"], "hex");
    assert!(unknown_id["avro_error"].is_string());

    let records = dlq::kafka::read(
        &stack.env.bootstrap_servers,
        DLQ,
        vec![dlq::kafka::PartitionRange {
            partition: 0,
            start: 0,
            end: 3,
        }],
    )
    .await
    .unwrap();
    assert_eq!(records.len(), 3);
    let first = decoder
        .dead_letter(records[0].value.as_deref())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.error_kind, DeadLetterErrorKind::Processing);
    assert_eq!(first.original_value.as_deref(), Some(framed.as_slice()));
    let junk = dlq::kafka::read(
        &stack.env.bootstrap_servers,
        DLQ,
        vec![dlq::kafka::PartitionRange {
            partition: 1,
            start: 0,
            end: 1,
        }],
    )
    .await
    .unwrap();
    assert!(decoder
        .dead_letter(junk[0].value.as_deref())
        .await
        .unwrap()
        .is_err());
}
