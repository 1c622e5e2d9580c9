//! Inventory on the real broker, against the stock ledger as checkout's saga uses it: one
//! HOLD per product of an order (key product id) answered on the results topic (key order
//! id), then COMMIT or RELEASE per product (no answer). Thousands of concurrent orders for a
//! product with small stock, two ledger instances and the one owning the scarce product
//! `kill -9`ed mid-run: exactly the stock is held, every other hold of it is refused with the
//! units left, committed units are sold and released ones back on the shelf, and a HOLD sent
//! again after its hold ended is answered as the first time without taking anything.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use codec::TopicCodec;
use common::*;
use events::inventory::{
    ProductAvailability, ReturnLine, StockCommand, StockCommandKind, StockCommandLine, StockResult,
    StockResultKind,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rdkafka::consumer::StreamConsumer;

const SCARCE: &str = "00000000-0000-4000-8000-00000000000a";
const PLENTY: &str = "00000000-0000-4000-8000-00000000000b";

struct Fleet {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    state: tempfile::TempDir,
    stock_commands: String,
    results: String,
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
        stock_commands: name("inventory.stock-commands.v1"),
        results: name("inventory.stock-results.v1"),
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

    /// The admin endpoint of `processor`'s instance `instance` (admin_port + instance).
    fn admin(&self, processor: &str, instance: u16) -> String {
        let (spec, _) = self.topology.processor(processor).unwrap();
        format!("http://127.0.0.1:{}", spec.admin_port + instance)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The ledger's state under `key` if this instance owns the key's partition (`/state/{key}`
/// answers 200 only there; a dead instance does not answer at all).
async fn state_at(admin: &str, key: &str) -> Option<serde_json::Value> {
    let response = http()
        .get(format!("{admin}/state/{key}"))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    Some(body["value"].clone())
}

/// The instance of the ledger owning `product`'s partition, and the product's state there.
async fn owner(f: &Fleet, product: &str, within: Duration) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + within;
    loop {
        let mut found = Vec::new();
        for instance in 0..2 {
            if let Some(v) = state_at(&f.admin("inventory", instance), product).await {
                found.push((instance, v));
            }
        }
        assert!(
            found.len() < 2,
            "two instances answer for {product}: {found:?}"
        );
        if let Some(one) = found.pop() {
            return one;
        }
        assert!(Instant::now() < deadline, "no instance owns {product}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Units of `bucket` (available, reserved, committed, ...) over the centers of a product's
/// ledger state (`{"Centers": {center: {bucket: n}}}`).
fn units(state: &serde_json::Value, bucket: &str) -> i64 {
    state["Centers"]
        .as_object()
        .unwrap_or_else(|| panic!("a product's centers: {state}"))
        .values()
        .map(|c| c[bucket].as_i64().unwrap())
        .sum()
}

/// Input partitions assigned to an instance, as its `/health` reports them (0 when it does
/// not answer).
async fn assigned(admin: &str) -> i64 {
    let Ok(response) = http().get(format!("{admin}/health")).send().await else {
        return 0;
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["assigned_partitions"].as_i64().unwrap_or(0)
}

/// A command of checkout's saga to the ledger of `product` for `order`.
fn stock_command(
    kind: StockCommandKind,
    product: &str,
    order: &str,
    command_id: &str,
    lines: &[(i32, i32)],
) -> StockCommand {
    StockCommand {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: runtime::now_ms(),
        correlation_id: order.into(),
        causation_id: None,
        kind,
        product_id: product.into(),
        order_id: Some(order.into()),
        command_id: Some(command_id.into()),
        lines: lines
            .iter()
            .map(|(line_number, quantity)| StockCommandLine {
                line_number: *line_number,
                quantity: *quantity,
                fulfillment_center: None,
            })
            .collect(),
        level: None,
        hold_ms: 0,
        reason: None,
        return_item: None,
    }
}

/// Reads answers into `seen` until `done` holds.
async fn results_until(
    consumer: &StreamConsumer,
    codec: &TopicCodec,
    seen: &mut Vec<StockResult>,
    within: Duration,
    done: impl Fn(&[StockResult]) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(seen) {
        assert!(
            Instant::now() < deadline,
            "answers did not arrive in {within:?} ({} so far)",
            seen.len()
        );
        for record in drain(consumer, 500, Duration::from_millis(200)).await {
            let value = codec
                .decode(record.payload.as_deref().unwrap())
                .await
                .unwrap();
            seen.push(codec::from_value(&value).unwrap());
        }
    }
}

/// Reads the availability projection into `latest` (newest sequence per product) until
/// `done` holds.
async fn availability_until(
    consumer: &StreamConsumer,
    codec: &TopicCodec,
    latest: &mut HashMap<String, ProductAvailability>,
    within: Duration,
    done: impl Fn(&HashMap<String, ProductAvailability>) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        for a in read_availability(consumer, codec).await {
            let newer = latest
                .get(&a.product_id)
                .is_none_or(|old| old.sequence <= a.sequence);
            if newer {
                latest.insert(a.product_id.clone(), a);
            }
        }
        if done(latest) {
            return;
        }
        let figures: BTreeMap<&str, i32> = latest
            .iter()
            .map(|(p, a)| (p.as_str(), a.available_quantity))
            .collect();
        assert!(
            Instant::now() < deadline,
            "availability did not converge in {within:?}: {figures:?}"
        );
    }
}

async fn read_availability(
    consumer: &StreamConsumer,
    codec: &TopicCodec,
) -> Vec<ProductAvailability> {
    let mut out = Vec::new();
    for record in drain(consumer, 10_000, Duration::from_secs(1)).await {
        let value = codec
            .decode(record.payload.as_deref().unwrap())
            .await
            .unwrap();
        out.push(codec::from_value(&value).unwrap());
    }
    out
}

/// Sends `records` to `topic` 50 at a time, 40 ms apart.
async fn stream(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    mut records: Vec<(String, Vec<u8>)>,
) {
    while !records.is_empty() {
        let rest = records.split_off(records.len().min(50));
        produce_all(producer, topic, records).await.unwrap();
        records = rest;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// One order of the run: (product, line number, quantity) per product it holds.
struct Order {
    id: String,
    command_id: String,
    wants: Vec<(&'static str, i32, i32)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scarce_stock_is_sold_exactly_once_with_a_ledger_killed_mid_run() {
    let started = Instant::now();
    let f = fleet("inv-race", &["inventory"]).await;
    let bootstrap = env().bootstrap_servers;
    let producer = producer(&bootstrap).unwrap();
    let stock_codec = f.codec(&f.stock_commands).await;
    let result_codec = f.codec(&f.results).await;
    let availability_codec = f.codec(&f.availability).await;
    let results = reader(&bootstrap, &f.results, &unique("inv-results")).unwrap();
    // From the beginning in a group of its own: a compacted topic, where only the newest
    // figure per product (all this reads) is sure to stay.
    let projection = reader(&bootstrap, &f.availability, &unique("inv-availability")).unwrap();
    let partitions = i64::from(f.topology.topic(&f.stock_commands).unwrap().partitions);

    // 30 units of the scarce product (20 more arrive mid-run); plenty of the other.
    let levels = [
        level(SCARCE, "FC-EAST-1", 30),
        level(PLENTY, "FC-EAST-1", 10_000),
    ];
    let records = levels
        .iter()
        .map(|l| (l.product_id.clone(), stock_codec.encode(l).unwrap()));
    produce_all(&producer, &f.stock_commands, records)
        .await
        .unwrap();

    let mut ledgers = vec![f.start("inventory", 0), f.start("inventory", 1)];
    // Both instances in the group with their share of the partitions before the orders come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = assigned(&f.admin("inventory", 0)).await;
        let b = assigned(&f.admin("inventory", 1)).await;
        if a > 0 && b > 0 && a + b == partitions {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ledger instances did not share the {partitions} partitions: {a} + {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    eprintln!(
        "both ledger instances up, {:.1} s in",
        started.elapsed().as_secs_f64()
    );

    // 2,000 orders want one scarce unit each; every other one also wants two plentiful ones.
    // One HOLD per product of an order, as the saga sends them.
    let orders: Vec<Order> = (0..2_000)
        .map(|i| Order {
            id: format!("order-{i:04}"),
            command_id: uuid::Uuid::new_v4().to_string(),
            wants: if i % 2 == 0 {
                vec![(SCARCE, 1, 1)]
            } else {
                vec![(SCARCE, 1, 1), (PLENTY, 2, 2)]
            },
        })
        .collect();
    // The HOLD each answer's causation names: (order index, product).
    let mut holds: HashMap<String, (usize, &str)> = HashMap::new();
    let mut batch = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        for (product, line, quantity) in &order.wants {
            let cmd = stock_command(
                StockCommandKind::Hold,
                product,
                &order.id,
                &order.command_id,
                &[(*line, *quantity)],
            );
            holds.insert(cmd.event_id.clone(), (i, product));
            batch.push((product.to_string(), stock_codec.encode(&cmd).unwrap()));
        }
    }
    // The orders arrive as a stream (50 holds every 40 ms): the first half from now on, the
    // second once the ledger has died.
    let second_half = batch.split_off(batch.len() / 2);
    let (killed, on_kill) = tokio::sync::oneshot::channel::<()>();
    let sender = {
        let producer = producer.clone();
        let topic = f.stock_commands.clone();
        tokio::spawn(async move {
            stream(&producer, &topic, batch).await;
            on_kill.await.unwrap();
            stream(&producer, &topic, second_half).await;
        })
    };

    // Mid-run: once the scarce product's ledger has answered a couple of hundred holds, the
    // instance owning it dies; 20 more units of it arrive from the warehouse while it is down,
    // and it is restarted at once (its partitions move when the group notices, within the
    // session timeout). Whoever owns the product next must know from the restored state what
    // was held before the kill.
    let mut seen: Vec<StockResult> = Vec::new();
    results_until(
        &results,
        &result_codec,
        &mut seen,
        Duration::from_secs(60),
        |s| s.iter().filter(|r| r.product_id == SCARCE).count() >= 200,
    )
    .await;
    let (victim, at_kill) = owner(&f, SCARCE, Duration::from_secs(10)).await;
    assert!(
        units(&at_kill, "reserved") > 0,
        "the instance killed was holding the scarce product's units: {at_kill}"
    );
    kill(
        Pid::from_raw(ledgers[victim as usize].id().unwrap() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    ledgers[victim as usize].wait().await.unwrap();
    let killed_after = seen.len();
    let restock = level(SCARCE, "FC-WEST-1", 20);
    produce_all(
        &producer,
        &f.stock_commands,
        [(SCARCE.to_string(), stock_codec.encode(&restock).unwrap())],
    )
    .await
    .unwrap();
    killed.send(()).unwrap();
    let restarted_ms = runtime::now_ms();
    ledgers[victim as usize] = f.start("inventory", victim);
    eprintln!(
        "killed inventory-{victim} (owner of the scarce product, {} units held there) after {killed_after} answers, {:.1} s in",
        units(&at_kill, "reserved"),
        started.elapsed().as_secs_f64()
    );
    sender.await.unwrap();

    // Every HOLD answered.
    let answered = |s: &[StockResult]| {
        let mut got = HashSet::new();
        for r in s {
            if let Some(hold) = r.causation_id.as_ref().and_then(|c| holds.get(c)) {
                got.insert(*hold);
            }
        }
        got.len() == holds.len()
    };
    results_until(
        &results,
        &result_codec,
        &mut seen,
        Duration::from_secs(120),
        answered,
    )
    .await;
    eprintln!(
        "every hold answered ({} answers for {} holds), {:.1} s in",
        seen.len(),
        holds.len(),
        started.elapsed().as_secs_f64()
    );

    // Exactly one answer per order and product (given twice after the kill at most, then the
    // same answer).
    let mut answers: HashMap<(usize, &str), Vec<&StockResult>> = HashMap::new();
    for r in &seen {
        let hold = r
            .causation_id
            .as_ref()
            .and_then(|c| holds.get(c))
            .unwrap_or_else(|| panic!("an answer to no HOLD sent: {r:?}"));
        assert_eq!(r.order_id, orders[hold.0].id);
        assert_eq!(r.product_id, hold.1);
        answers.entry(*hold).or_default().push(r);
    }
    let mut duplicates = 0;
    let mut answer: HashMap<(usize, &str), &StockResult> = HashMap::new();
    for (hold, given) in &answers {
        let first = given[0];
        for other in &given[1..] {
            assert_eq!(
                (other.kind, &other.lines, other.available_quantity),
                (first.kind, &first.lines, first.available_quantity),
                "{} / {}: two different answers",
                first.order_id,
                first.product_id
            );
        }
        duplicates += given.len() - 1;
        answer.insert(*hold, first);
    }
    // The kill mattered: the units that arrived while the scarce product's owner was dead
    // were held after the restart, next to the ones held before it.
    let west: Vec<&StockResult> = answer
        .iter()
        .filter(|((_, product), _)| *product == SCARCE)
        .map(|(_, r)| *r)
        .filter(|r| r.lines.iter().any(|l| l.fulfillment_center == "FC-WEST-1"))
        .collect();
    let west_units: i32 = west
        .iter()
        .flat_map(|r| &r.lines)
        .filter(|l| l.fulfillment_center == "FC-WEST-1")
        .map(|l| l.quantity)
        .sum();
    assert_eq!(west_units, 20, "the restocked units were held");
    assert!(
        west.iter().all(|r| r.occurred_at >= restarted_ms),
        "units that arrived after the kill were held before the restart"
    );
    let after_restart = seen
        .iter()
        .filter(|r| r.product_id == SCARCE && r.occurred_at >= restarted_ms)
        .count();
    eprintln!(
        "{duplicates} answers given twice; {after_restart} scarce answers decided after the restart"
    );

    // Exactly the stock is held; every refusal says no unit was left.
    let mut scarce_held = 0;
    for (i, order) in orders.iter().enumerate() {
        for (product, line, quantity) in &order.wants {
            let r = answer[&(i, *product)];
            match r.kind {
                StockResultKind::Held => {
                    assert!(r.lines.iter().all(|l| l.line_number == *line), "{r:?}");
                    let units: i32 = r.lines.iter().map(|l| l.quantity).sum();
                    assert_eq!(units, *quantity, "all of the line or nothing: {r:?}");
                    if *product == SCARCE {
                        scarce_held += units;
                    }
                }
                StockResultKind::Refused => {
                    assert_eq!(*product, SCARCE, "the plentiful product refused: {r:?}");
                    assert!(
                        r.available_quantity.is_some_and(|left| left < *quantity),
                        "a refusal names the units left: {r:?}"
                    );
                    assert_eq!(r.available_quantity, Some(0), "{r:?}");
                }
                other => panic!("{} / {product}: {other:?}", order.id),
            }
        }
    }
    assert_eq!(scarce_held, 50, "exactly the scarce stock is held");

    // The saga's part: an order whose products all held is reserved; the others give back
    // what did hold. 30 reservations are committed, 20 released.
    let held = |i: usize, product: &str| {
        answer
            .get(&(i, product))
            .is_some_and(|r| r.kind == StockResultKind::Held)
    };
    let reserved: Vec<usize> = (0..orders.len())
        .filter(|i| orders[*i].wants.iter().all(|(p, _, _)| held(*i, p)))
        .collect();
    assert_eq!(reserved.len(), 50);
    let partial: Vec<usize> = (0..orders.len())
        .filter(|i| !reserved.contains(i) && held(*i, PLENTY))
        .collect();
    let (committed, released) = reserved.split_at(30);
    let committed_plenty: i32 = committed
        .iter()
        .flat_map(|i| &orders[*i].wants)
        .filter(|(p, _, _)| *p == PLENTY)
        .map(|(_, _, q)| q)
        .sum();
    let mut settle = Vec::new();
    let mut end = |kind, i: usize, products: &[&str]| {
        for product in products {
            let o = &orders[i];
            let cmd = stock_command(kind, product, &o.id, &o.command_id, &[]);
            settle.push((product.to_string(), stock_codec.encode(&cmd).unwrap()));
        }
    };
    for i in &partial {
        end(StockCommandKind::Release, *i, &[PLENTY]);
    }
    for (set, kind) in [
        (committed, StockCommandKind::Commit),
        (released, StockCommandKind::Release),
    ] {
        for i in set {
            let products: Vec<&str> = orders[*i].wants.iter().map(|(p, _, _)| *p).collect();
            end(kind, *i, &products);
        }
    }
    produce_all(&producer, &f.stock_commands, settle)
        .await
        .unwrap();
    // The ledger publishes a large stock only when it moved by 1% (a small one on every
    // change), but every warehouse change: one unit arriving at a second center, sent after
    // the settlement on the same partition, makes the plentiful product's figure exact.
    let restock = level(PLENTY, "FC-WEST-1", 1);
    produce_all(
        &producer,
        &f.stock_commands,
        [(PLENTY.to_string(), stock_codec.encode(&restock).unwrap())],
    )
    .await
    .unwrap();

    // The projection converges: stock − committed units.
    let scarce_left = 50 - committed.len() as i32;
    let plenty_left = 10_001 - committed_plenty;
    let mut latest = HashMap::new();
    availability_until(
        &projection,
        &availability_codec,
        &mut latest,
        Duration::from_secs(60),
        |l| {
            l.get(SCARCE).map(|a| a.available_quantity) == Some(scarce_left)
                && l.get(PLENTY).map(|a| a.available_quantity) == Some(plenty_left)
        },
    )
    .await;
    // And the ledgers agree: nothing held any more, the committed units sold.
    let (now_owner, scarce) = owner(&f, SCARCE, Duration::from_secs(10)).await;
    eprintln!("the scarce product is now owned by inventory-{now_owner}");
    assert_eq!(
        (
            units(&scarce, "available"),
            units(&scarce, "reserved"),
            units(&scarce, "committed")
        ),
        (i64::from(scarce_left), 0, 30),
        "{scarce}"
    );
    let (_, plenty) = owner(&f, PLENTY, Duration::from_secs(10)).await;
    assert_eq!(
        (
            units(&plenty, "available"),
            units(&plenty, "reserved"),
            units(&plenty, "committed")
        ),
        (i64::from(plenty_left), 0, i64::from(committed_plenty)),
        "{plenty}"
    );

    // HOLDs sent again (a saga handling its records again): after a COMMIT the same lines
    // come back and nothing more is taken; after a RELEASE (the saga's own or its
    // compensation of a partial hold) nothing is held.
    let mut again: HashMap<String, (usize, &str)> = HashMap::new();
    let mut batch = Vec::new();
    let resend = committed[..5]
        .iter()
        .map(|i| (*i, SCARCE))
        .chain(released[..5].iter().map(|i| (*i, SCARCE)))
        .chain(partial[..2].iter().map(|i| (*i, PLENTY)));
    for (i, product) in resend {
        let o = &orders[i];
        let (_, line, quantity) = *o.wants.iter().find(|(p, _, _)| *p == product).unwrap();
        let cmd = stock_command(
            StockCommandKind::Hold,
            product,
            &o.id,
            &o.command_id,
            &[(line, quantity)],
        );
        again.insert(cmd.event_id.clone(), (i, product));
        batch.push((product.to_string(), stock_codec.encode(&cmd).unwrap()));
    }
    produce_all(&producer, &f.stock_commands, batch)
        .await
        .unwrap();
    let mut seen_again = Vec::new();
    results_until(
        &results,
        &result_codec,
        &mut seen_again,
        Duration::from_secs(60),
        |s| {
            let got: HashSet<&String> = s
                .iter()
                .filter_map(|r| r.causation_id.as_ref())
                .filter(|c| again.contains_key(*c))
                .collect();
            got.len() == again.len()
        },
    )
    .await;
    for r in &seen_again {
        let Some(hold) = r.causation_id.as_ref().and_then(|c| again.get(c)) else {
            continue;
        };
        if committed.contains(&hold.0) {
            let first = answer[hold];
            assert_eq!(r.kind, StockResultKind::Held, "{r:?}");
            assert_eq!(r.lines, first.lines, "the same lines as the first time");
        } else {
            assert_eq!(r.kind, StockResultKind::NotHeld, "{r:?}");
            assert!(r.lines.is_empty(), "{r:?}");
        }
    }
    let (_, scarce) = owner(&f, SCARCE, Duration::from_secs(10)).await;
    assert_eq!(
        (units(&scarce, "available"), units(&scarce, "reserved")),
        (i64::from(scarce_left), 0),
        "HOLDs sent again took nothing: {scarce}"
    );
    let (_, plenty) = owner(&f, PLENTY, Duration::from_secs(10)).await;
    assert_eq!(
        (units(&plenty, "available"), units(&plenty, "reserved")),
        (i64::from(plenty_left), 0),
        "HOLDs sent again took nothing: {plenty}"
    );
    for a in read_availability(&projection, &availability_codec).await {
        let want = if a.product_id == SCARCE {
            scarce_left
        } else {
            plenty_left
        };
        assert_eq!(a.available_quantity, want, "availability moved: {a:?}");
    }

    // Returns: two units come back and pass inspection (inspected twice: counted once), one
    // more comes back damaged: two more sellable.
    let ret = |kind, id: &str, quantity, restockable| {
        let mut cmd = stock_command(kind, SCARCE, &orders[committed[0]].id, "", &[]);
        cmd.command_id = None;
        cmd.return_item = Some(ReturnLine {
            return_id: id.into(),
            fulfillment_center: "FC-EAST-1".into(),
            quantity,
            restockable,
        });
        (SCARCE.to_string(), stock_codec.encode(&cmd).unwrap())
    };
    let returns = vec![
        ret(StockCommandKind::ReceiveReturn, "rma-1", 2, None),
        ret(StockCommandKind::RecordInspection, "rma-1", 2, Some(true)),
        ret(StockCommandKind::RecordInspection, "rma-1", 2, Some(true)),
        ret(StockCommandKind::ReceiveReturn, "rma-2", 1, None),
        ret(StockCommandKind::RecordInspection, "rma-2", 1, Some(false)),
    ];
    produce_all(&producer, &f.stock_commands, returns)
        .await
        .unwrap();
    availability_until(
        &projection,
        &availability_codec,
        &mut latest,
        Duration::from_secs(60),
        |l| l.get(SCARCE).map(|a| a.available_quantity) == Some(scarce_left + 2),
    )
    .await;
    // Nothing more moves it (the repeated inspection and the damaged unit change nothing).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for a in read_availability(&projection, &availability_codec).await {
        assert!(
            a.product_id != SCARCE || a.available_quantity == scarce_left + 2,
            "{a:?}"
        );
    }

    for child in &ledgers {
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    }
    for child in &mut ledgers {
        child.wait().await.unwrap();
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
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
