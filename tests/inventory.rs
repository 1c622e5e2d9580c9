//! Inventory on the real broker: thousands of concurrent orders for a product with small
//! stock, two ledger instances and one of them `kill -9`ed mid-run; exactly the stock is
//! reserved and sold, every other order gets a clean out-of-stock answer, partial holds of
//! multi-product orders are given back, and reservations that are not committed expire.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use codec::TopicCodec;
use common::*;
use events::inventory::{
    InventoryCommand, InventoryCommandKind, InventoryLine, ProductAvailability, RejectReason,
    ReleaseCause, ReservationEvent, ReservationEventKind,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SCARCE: &str = "00000000-0000-4000-8000-00000000000a";
const PLENTY: &str = "00000000-0000-4000-8000-00000000000b";

struct Fleet {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    state: tempfile::TempDir,
    commands: String,
    stock_commands: String,
    answers: String,
    availability: String,
    /// The warehouse CDC topic inventory-stock-feed reads.
    stock_cdc: String,
    topology: topology::Topology,
}

/// `processors` on private copies of their topics, each with its own admin ports.
async fn fleet(label: &str, processors: &[&str]) -> Fleet {
    let suffix = unique(label);
    let mut t = topology().isolated_all(processors, &suffix).unwrap();
    let (file, dir) = deploy(&mut t).await;
    let name = |base: &str| format!("{base}.{suffix}");
    Fleet {
        file,
        _dir: dir,
        state: tempfile::tempdir().unwrap(),
        commands: name("inventory.commands.v1"),
        stock_commands: name("inventory.stock-commands.v1"),
        answers: name("inventory.reservation-events.v1"),
        availability: name("inventory.availability.v1"),
        stock_cdc: t
            .topics
            .iter()
            .map(|topic| topic.name.clone())
            .find(|topic| topic.starts_with("cdc.warehouse.stock.v1"))
            .unwrap(),
        topology: t,
    }
}

impl Fleet {
    fn start(&self, processor: &str, instance: u16) -> tokio::process::Child {
        fleet_command()
            .env("STOREFLEET_STATE_DIR", self.state.path())
            .arg("--topology")
            .arg(&self.file)
            .args(["run", processor, "--instance", &instance.to_string()])
            .spawn()
            .unwrap()
    }

    async fn codec(&self, topic: &str) -> TopicCodec {
        codec_for(&self.topology, topic).await
    }
}

fn command(
    kind: InventoryCommandKind,
    order: &str,
    lines: &[(&str, i32)],
    hold_ms: i64,
) -> InventoryCommand {
    InventoryCommand {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: 0,
        correlation_id: order.into(),
        causation_id: None,
        command_id: uuid::Uuid::new_v4().to_string(),
        kind,
        order_id: order.into(),
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (product, quantity))| InventoryLine {
                line_number: i as i32 + 1,
                product_id: (*product).into(),
                quantity: *quantity,
                fulfillment_center: None,
            })
            .collect(),
        hold_ms,
        destination_country: None,
        reason: None,
        return_item: None,
    }
}

/// Reads answers until `done` says every order of interest has its final answer.
async fn answers_until(
    consumer: &rdkafka::consumer::StreamConsumer,
    codec: &TopicCodec,
    seen: &mut BTreeMap<String, Vec<ReservationEvent>>,
    within: Duration,
    done: impl Fn(&BTreeMap<String, Vec<ReservationEvent>>) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(seen) {
        assert!(
            Instant::now() < deadline,
            "answers did not arrive in {within:?}"
        );
        for record in drain(consumer, 10_000, Duration::from_secs(1)).await {
            let value = codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let event: ReservationEvent = codec::from_value(&value).unwrap();
            seen.entry(event.order_id.clone()).or_default().push(event);
        }
    }
}

fn has(events: &[ReservationEvent], kind: ReservationEventKind) -> bool {
    events.iter().any(|e| e.kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scarce_stock_is_sold_exactly_once_with_a_ledger_killed_mid_run() {
    let f = fleet("inv-race", &["inventory", "inventory-orders"]).await;
    let bootstrap = env().bootstrap_servers;
    let producer = producer(&bootstrap).unwrap();
    let stock_codec = f.codec(&f.stock_commands).await;
    let command_codec = f.codec(&f.commands).await;
    let answer_codec = f.codec(&f.answers).await;
    let availability_codec = f.codec(&f.availability).await;
    let answers = reader(&bootstrap, &f.answers, &unique("inv-answers")).unwrap();

    // 50 units of the scarce product over two centers; plenty of the other.
    let levels = [
        level(SCARCE, "FC-EAST-1", 30),
        level(SCARCE, "FC-WEST-1", 20),
        level(PLENTY, "FC-EAST-1", 10_000),
    ];
    let records = levels
        .iter()
        .map(|l| (l.product_id.clone(), stock_codec.encode(l).unwrap()));
    produce_all(&producer, &f.stock_commands, records)
        .await
        .unwrap();

    let mut ledger_a = f.start("inventory", 0);
    let mut ledger_b = f.start("inventory", 1);
    let mut orders_a = f.start("inventory-orders", 0);
    let mut orders_b = f.start("inventory-orders", 1);

    // 2,000 orders want one scarce unit each; every other one also wants two plentiful ones.
    let orders: Vec<String> = (0..2_000).map(|i| format!("order-{i:04}")).collect();
    let mut wanted_plenty = HashMap::new();
    let mut batch = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let lines: Vec<(&str, i32)> = if i % 2 == 0 {
            vec![(SCARCE, 1)]
        } else {
            vec![(SCARCE, 1), (PLENTY, 2)]
        };
        wanted_plenty.insert(order.clone(), i % 2 == 1);
        let cmd = command(InventoryCommandKind::Reserve, order, &lines, 120_000);
        batch.push((order.clone(), command_codec.encode(&cmd).unwrap()));
    }
    let second_half = batch.split_off(1_000);
    produce_all(&producer, &f.commands, batch).await.unwrap();
    // One ledger instance dies mid-run; the survivor takes its products and their state.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    kill(
        Pid::from_raw(ledger_a.id().unwrap() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    ledger_a.wait().await.unwrap();
    produce_all(&producer, &f.commands, second_half)
        .await
        .unwrap();

    let mut seen = BTreeMap::new();
    answers_until(
        &answers,
        &answer_codec,
        &mut seen,
        Duration::from_secs(120),
        |s| {
            orders.iter().all(|o| {
                s.get(o).is_some_and(|e| {
                    has(e, ReservationEventKind::Reserved) || has(e, ReservationEventKind::Rejected)
                })
            })
        },
    )
    .await;
    let reserved: Vec<&String> = orders
        .iter()
        .filter(|o| has(&seen[*o], ReservationEventKind::Reserved))
        .collect();
    assert_eq!(reserved.len(), 50, "exactly the stock is reserved");
    for order in &orders {
        let events = &seen[order];
        assert!(
            !(has(events, ReservationEventKind::Reserved)
                && has(events, ReservationEventKind::Rejected)),
            "{order} got both answers: {events:?}"
        );
        if let Some(rejected) = events
            .iter()
            .find(|e| e.kind == ReservationEventKind::Rejected)
        {
            let rejection = rejected.rejection.as_ref().unwrap();
            assert_eq!(rejection.reason, RejectReason::OutOfStock);
            assert!(rejection.lines.iter().all(|l| l.product_id == SCARCE));
        }
    }

    // Checkout commits 30 of the reservations and releases 20.
    let mut settle = Vec::new();
    let mut committed_plenty = 0;
    for (i, order) in reserved.iter().enumerate() {
        let kind = if i < 30 {
            if wanted_plenty[*order] {
                committed_plenty += 2;
            }
            InventoryCommandKind::Commit
        } else {
            InventoryCommandKind::Release
        };
        let cmd = command(kind, order, &[], 0);
        settle.push(((*order).clone(), command_codec.encode(&cmd).unwrap()));
    }
    produce_all(&producer, &f.commands, settle).await.unwrap();
    // And 20 reservations of the plentiful product are never committed: they expire.
    let expiring: Vec<String> = (0..20).map(|i| format!("expiring-{i}")).collect();
    let holds = expiring.iter().map(|o| {
        let cmd = command(InventoryCommandKind::Reserve, o, &[(PLENTY, 3)], 3_000);
        (o.clone(), command_codec.encode(&cmd).unwrap())
    });
    produce_all(&producer, &f.commands, holds).await.unwrap();

    answers_until(
        &answers,
        &answer_codec,
        &mut seen,
        Duration::from_secs(90),
        |s| {
            reserved.iter().enumerate().all(|(i, o)| {
                let kind = if i < 30 {
                    ReservationEventKind::Committed
                } else {
                    ReservationEventKind::Released
                };
                has(&s[*o], kind)
            }) && expiring.iter().all(|o| {
                s.get(o).is_some_and(|e| {
                    e.iter().any(|x| {
                        x.kind == ReservationEventKind::Released
                            && x.release_cause == Some(ReleaseCause::Expired)
                    })
                })
            })
        },
    )
    .await;

    // The projection converges: 30 scarce units sold, 20 back on the shelf; the plentiful
    // product lost only what committed orders bought (every other hold was given back).
    let projection = reader(&bootstrap, &f.availability, &unique("inv-availability")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latest: HashMap<String, ProductAvailability> = HashMap::new();
    loop {
        for record in drain(&projection, 10_000, Duration::from_secs(1)).await {
            let value = availability_codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let a: ProductAvailability = codec::from_value(&value).unwrap();
            let newer = latest
                .get(&a.product_id)
                .is_none_or(|old| old.sequence < a.sequence);
            if newer {
                latest.insert(a.product_id.clone(), a);
            }
        }
        let scarce = latest.get(SCARCE).map(|a| a.available_quantity);
        let plenty = latest.get(PLENTY).map(|a| a.available_quantity);
        if scarce == Some(20) && plenty == Some(10_000 - committed_plenty) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "availability did not converge: scarce {scarce:?} (want 20), plenty {plenty:?} (want {})",
            10_000 - committed_plenty
        );
    }

    // Returns: two units come back and pass inspection (sent twice: counted once), one more
    // comes back damaged: 22 sellable.
    let ret = |kind, id: &str, quantity, outcome| {
        let mut cmd = command(kind, "order-0000", &[], 0);
        cmd.return_item = Some(events::inventory::ReturnItem {
            return_id: id.into(),
            product_id: SCARCE.into(),
            fulfillment_center: "FC-EAST-1".into(),
            quantity,
            outcome,
        });
        (cmd.order_id.clone(), command_codec.encode(&cmd).unwrap())
    };
    use events::inventory::InspectionOutcome::{Damaged, Restockable};
    let returns = vec![
        ret(InventoryCommandKind::ReceiveReturn, "rma-1", 2, None),
        ret(
            InventoryCommandKind::RecordInspection,
            "rma-1",
            2,
            Some(Restockable),
        ),
        ret(
            InventoryCommandKind::RecordInspection,
            "rma-1",
            2,
            Some(Restockable),
        ),
        ret(InventoryCommandKind::ReceiveReturn, "rma-2", 1, None),
        ret(
            InventoryCommandKind::RecordInspection,
            "rma-2",
            1,
            Some(Damaged),
        ),
    ];
    produce_all(&producer, &f.commands, returns).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for record in drain(&projection, 10_000, Duration::from_secs(1)).await {
            let value = availability_codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let a: ProductAvailability = codec::from_value(&value).unwrap();
            latest.insert(a.product_id.clone(), a);
        }
        let scarce = latest.get(SCARCE).map(|a| a.available_quantity);
        if scarce == Some(22) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "returns: scarce {scarce:?} (want 22)"
        );
    }
    // Nothing more moves it (the repeated inspection and the damaged unit change nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for record in drain(&projection, 10_000, Duration::from_secs(1)).await {
        let value = availability_codec
            .decode(record.payload.as_deref().unwrap())
            .await
            .unwrap();
        let a: ProductAvailability = codec::from_value(&value).unwrap();
        assert!(
            a.product_id != SCARCE || a.available_quantity == 22,
            "{a:?}"
        );
    }

    for child in [&mut ledger_b, &mut orders_a, &mut orders_b] {
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        child.wait().await.unwrap();
    }
}

/// Warehouse stock changes, as the CDC connector writes them (its own envelope builder and
/// schema), reach the ledger through the feed: a restock, an adjustment down, a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_stock_changes_reach_the_ledger_through_the_feed() {
    use apache_avro::types::Value;
    use postgres_cdc::convert::{key_value, row_value, Datum};
    use postgres_cdc::envelope::{envelope, Change, Op, SnapshotMark, Source};
    use postgres_cdc::schema::{Column, TableShape};
    use postgres_cdc::types::ColumnType;

    let f = fleet("inv-feed", &["inventory", "inventory-stock-feed"]).await;
    let cdc_topic = &f.stock_cdc;

    let shape = TableShape {
        schema: "public".into(),
        table: "stock".into(),
        record: "Stock".into(),
        columns: vec![
            Column {
                name: "product_id".into(),
                ty: ColumnType::Uuid,
                key: true,
            },
            Column {
                name: "fulfillment_center".into(),
                ty: ColumnType::Text,
                key: true,
            },
            Column {
                name: "status".into(),
                ty: ColumnType::Text,
                key: true,
            },
            Column {
                name: "on_hand".into(),
                ty: ColumnType::Int4,
                key: false,
            },
            Column {
                name: "updated_at".into(),
                ty: ColumnType::TimestampTz,
                key: false,
            },
        ],
    };
    let registry = codec::RegistryClient::new(&env().registry_url);
    let key_id = registry
        .register(&format!("{cdc_topic}-key"), &shape.key_schema().to_string())
        .await
        .unwrap();
    let value_id = registry
        .register(
            &format!("{cdc_topic}-value"),
            &shape.value_schema().to_string(),
        )
        .await
        .unwrap();
    let key_schema = apache_avro::Schema::parse(&shape.key_schema()).unwrap();
    let value_schema = apache_avro::Schema::parse(&shape.value_schema()).unwrap();
    let row = |center: &str, on_hand: Option<i32>| {
        let mut r = vec![
            Datum::Text(SCARCE.into()),
            Datum::Text(center.into()),
            Datum::Text("available".into()),
        ];
        r.push(on_hand.map_or(Datum::Null, |n| Datum::Text(n.to_string())));
        r.push(Datum::Text("2026-11-28 12:00:00+00".into()));
        r
    };
    let record = |op: Op, center: &str, on_hand: Option<i32>, lsn: u64| {
        let datums = row(center, on_hand);
        let key = key_value(&shape, &datums).unwrap();
        let (after, _) = row_value(&shape, &datums).unwrap();
        let (before, after) = match op {
            Op::Delete => (
                Some(postgres_cdc::convert::key_only_row(&shape, &datums[..3]).unwrap()),
                None,
            ),
            _ => (None, Some(after)),
        };
        let value: Value = envelope(
            &shape,
            Change {
                op,
                before,
                after,
                source: Source {
                    server_name: "warehouse",
                    db: "warehouse",
                    ts_ms: 0,
                    snapshot: SnapshotMark::False,
                    tx_id: Some(1),
                    lsn: Some(lsn),
                    sequence: None,
                },
                ts_ms: 0,
                transaction: None,
                unchanged_toast: Vec::new(),
            },
        );
        #[allow(deprecated)]
        let key = codec::frame(
            key_id,
            &apache_avro::to_avro_datum(&key_schema, key).unwrap(),
        );
        #[allow(deprecated)]
        let value = codec::frame(
            value_id,
            &apache_avro::to_avro_datum(&value_schema, value).unwrap(),
        );
        (key, value)
    };
    // Snapshot read 40 at the east center, 10 arrive at the west one, the east count drops to
    // 35, then the west row is deleted (0 there): 35 sellable.
    let changes = [
        record(Op::Read, "FC-EAST-1", Some(40), 100),
        record(Op::Create, "FC-WEST-1", Some(10), 200),
        record(Op::Update, "FC-EAST-1", Some(35), 300),
        record(Op::Delete, "FC-WEST-1", None, 400),
    ];
    let producer = producer(&env().bootstrap_servers).unwrap();
    for (key, value) in &changes {
        producer
            .send(
                rdkafka::producer::FutureRecord::to(cdc_topic)
                    .key(key)
                    .payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    // The tombstone after the delete: the feed skips it.
    producer
        .send(
            rdkafka::producer::FutureRecord::<[u8], [u8]>::to(cdc_topic).key(&changes[3].0[..]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // Read the projection live, assigned before anything writes it: it is a compacted topic,
    // and a reader that joins a group late can find older values already compacted away
    // (the stack's broker compacts every 15 s; under CI load only the last level was left).
    let projection =
        loadgen::kafka::reader_from_end(&env().bootstrap_servers, &f.availability).unwrap();
    let mut feed = f.start("inventory-stock-feed", 0);
    let mut ledger = f.start("inventory", 0);
    let availability_codec = f.codec(&f.availability).await;
    let mut levels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while levels.len() < 4 || levels.last() != Some(&35) {
        assert!(
            Instant::now() < deadline,
            "availability levels seen: {levels:?}"
        );
        for record in drain(&projection, 100, Duration::from_secs(1)).await {
            let value = availability_codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            let a: ProductAvailability = codec::from_value(&value).unwrap();
            levels.push(a.available_quantity);
        }
    }
    // One projection per change. The two centers' rows are different keys of the CDC topic
    // (different partitions), so their changes may interleave; each row keeps its own order.
    let (east, west) = ([40, 35], [10, 0]);
    let possible: Vec<Vec<i32>> = (0u8..16)
        .filter(|mask| mask.count_ones() == 2)
        .map(|mask| {
            let (mut e, mut w, mut totals) = (0usize, 0usize, Vec::new());
            for bit in 0..4 {
                if mask & (1 << bit) != 0 {
                    e += 1;
                } else {
                    w += 1;
                }
                let level =
                    |history: &[i32; 2], seen: usize| if seen == 0 { 0 } else { history[seen - 1] };
                totals.push(level(&east, e) + level(&west, w));
            }
            totals
        })
        .collect();
    assert!(
        possible.contains(&levels),
        "{levels:?} is not an interleaving of the two rows' histories ({possible:?})"
    );
    for child in [&mut feed, &mut ledger] {
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        child.wait().await.unwrap();
    }
}
