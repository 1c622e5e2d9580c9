//! The recommendations processor as a real `fleet` process on the real stack (broker,
//! registry, PostgreSQL, Redis), on isolated topics, a private database and a Redis database
//! of its own. Checked from outside: the store's table (SQL), the Redis keys the storefront
//! reads, and the lists published on the topic (decoded through the registry).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use events::inventory::ProductAvailability;
use events::orders::{OrderLine, OrderPlaced, PaymentStatus};
use events::recommendations::{InteractionKind, UserInteraction, UserRecommendations};
use events::{Address, ShippingSpeed};
use loadgen::kafka::{drain, produce_all, producer, reader};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use recommendations::published::{self, Found};
use topology::Topology;

const PROCESSOR: &str = "recommendations";
/// The Redis database this test owns (the storefront's tests use 0 and expect no version).
const REDIS_DB: u32 = 5;
const GROUPS: usize = 3;
const PER_GROUP: usize = 10;
const USERS_PER_GROUP: usize = 20;

fn redis_url() -> String {
    let base = env().redis_url;
    let base = base.trim_end_matches('/');
    let base = match base.rsplit_once('/') {
        Some((head, db)) if db.chars().all(|c| c.is_ascii_digit()) && head.contains("//") => {
            head.to_string()
        }
        _ => base.to_string(),
    };
    format!("{base}/{REDIS_DB}")
}

fn product(group: usize, n: usize) -> String {
    format!("00000000-0000-4000-8000-{:06}{:06}", group, n)
}

fn group_of(product: &str) -> usize {
    product[24..30].parse().unwrap()
}

struct Names {
    interactions: String,
    placed: String,
    availability: String,
    lists: String,
    dead_letters: String,
}

fn names(t: &Topology) -> Names {
    let (spec, _) = t.processor(PROCESSOR).unwrap();
    Names {
        interactions: spec.inputs["interactions"].topic.clone(),
        placed: spec.inputs["placed"].topic.clone(),
        availability: spec.inputs["availability"].topic.clone(),
        lists: spec.outputs["lists"].clone(),
        dead_letters: spec.inputs["interactions"].dead_letter.clone(),
    }
}

fn interaction(user: &str, kind: InteractionKind, product: Option<&str>) -> UserInteraction {
    UserInteraction {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: runtime::now_ms(),
        correlation_id: user.into(),
        causation_id: None,
        user_id: user.into(),
        session_id: None,
        kind,
        product_id: product.map(str::to_string),
        quantity: None,
        order_id: None,
        query: None,
        surface: None,
    }
}

fn order(user: &str, n: usize, products: &[String]) -> OrderPlaced {
    OrderPlaced {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: runtime::now_ms(),
        correlation_id: format!("{user}-o{n}"),
        causation_id: None,
        order_id: format!("{user}-o{n}"),
        user_id: user.into(),
        lines: products
            .iter()
            .enumerate()
            .map(|(i, p)| OrderLine {
                line_number: i as i32 + 1,
                product_id: p.clone(),
                sku: "SKU".into(),
                quantity: 1,
                unit_price_minor: 1_000,
                fulfillment_center: None,
            })
            .collect(),
        currency: "USD".into(),
        subtotal_minor: 2_000,
        shipping_fee_minor: 0,
        tax_minor: 0,
        total_minor: 2_000,
        shipping_address: Address {
            recipient_name: "R".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Springfield".into(),
            region: None,
            postal_code: "12345".into(),
            country_code: "US".into(),
            phone: None,
        },
        shipping_speed: ShippingSpeed::Standard,
        payment_id: format!("pay-{user}-{n}"),
        payment_status: PaymentStatus::Captured,
        gateway_reference: None,
    }
}

fn run_processor(file: &std::path::Path, state: &std::path::Path) -> tokio::process::Child {
    fleet_command()
        .env("STOREFLEET_POSTGRES", env().postgres_url)
        .env("STOREFLEET_REDIS", redis_url())
        .env("STOREFLEET_STATE_DIR", state)
        .arg("--topology")
        .arg(file)
        .args(["run", PROCESSOR, "--instance", "0"])
        .spawn()
        .expect("fleet starts")
}

async fn train(file: &std::path::Path) -> String {
    let out = fleet_command()
        .env("STOREFLEET_POSTGRES", env().postgres_url)
        .env("STOREFLEET_REDIS", redis_url())
        .arg("--topology")
        .arg(file)
        .args(["recs", "train"])
        .output()
        .await
        .expect("fleet recs train runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fleet recs train failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

async fn rows(db: &tokio_postgres::Client) -> (i64, i64) {
    let r = db
        .query_one(
            "SELECT count(*), count(DISTINCT event_id) FROM interactions",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn interactions_survive_kill_9_and_lists_swap_atomically_into_redis() {
    let suffix = unique("recs");
    let database = private_database("recs", &suffix.replace('-', "_"), "recommendations").await;
    let mut t = topology().isolated(PROCESSOR, &suffix).unwrap();
    t.processors.retain(|(p, _)| p.name == PROCESSOR);
    t.connectors.clear();
    set_params(
        &mut t,
        PROCESSOR,
        &[
            ("database", database_name(&database).into()),
            ("top_k", 5.into()),
            (
                "model",
                serde_yaml::from_str(
                    "{factors: 8, iterations: 10, regularization: 0.1, alpha: 10.0, threads: 2}",
                )
                .unwrap(),
            ),
        ],
    );
    let n = names(&t);
    let products_topic = t.processor(PROCESSOR).unwrap().0.inputs["products"]
        .topic
        .clone();
    // This test plays the storefront, checkout, the ledger and the catalog's connector: it
    // writes (or, for the catalog, leaves empty) their topics.
    for topic in t.topics.iter_mut().filter(|x| {
        [&n.interactions, &n.placed, &n.availability, &products_topic].contains(&&x.name)
    }) {
        topic.external_writers.push("recs-test".into());
    }
    let (file, _dir) = deploy(&mut t).await;
    let state = tempfile::tempdir().unwrap();
    let interaction_codec = codec_for(&t, &n.interactions).await;
    let order_codec = codec_for(&t, &n.placed).await;
    let availability_codec = codec_for(&t, &n.availability).await;
    let lists_codec = codec_for(&t, &n.lists).await;
    let kafka = producer(&env().bootstrap_servers).unwrap();
    let (db, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let redis_client = redis::Client::open(redis_url()).unwrap();
    let mut redis = redis::aio::ConnectionManager::new(redis_client)
        .await
        .unwrap();
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    // Three taste groups: each user views and adds to the cart products of their own group
    // (with a little noise), then buys two of them.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut interactions: Vec<(String, Vec<u8>)> = Vec::new();
    let mut orders: Vec<(String, Vec<u8>)> = Vec::new();
    let mut bought: HashMap<String, HashSet<String>> = HashMap::new();
    let mut users = Vec::new();
    for g in 0..GROUPS {
        for u in 0..USERS_PER_GROUP {
            let user = format!("user-{g}-{u}");
            users.push((user.clone(), g));
            for _ in 0..8 {
                let group = if rng.random_bool(0.1) {
                    rng.random_range(0..GROUPS)
                } else {
                    g
                };
                let p = product(group, rng.random_range(0..PER_GROUP));
                let kind = if rng.random_bool(0.25) {
                    InteractionKind::AddToCart
                } else {
                    InteractionKind::View
                };
                let i = interaction(&user, kind, Some(&p));
                interactions.push((user.clone(), interaction_codec.encode(&i).unwrap()));
            }
            // Searches carry no product: they write nothing.
            let mut s = interaction(&user, InteractionKind::Search, None);
            s.query = Some("chair".into());
            interactions.push((user.clone(), interaction_codec.encode(&s).unwrap()));
            let a = rng.random_range(0..PER_GROUP);
            let b = (a + 1 + rng.random_range(0..PER_GROUP - 1)) % PER_GROUP;
            let lines = vec![product(g, a), product(g, b)];
            bought.insert(user.clone(), lines.iter().cloned().collect());
            orders.push((
                user.clone(),
                order_codec.encode(&order(&user, 1, &lines)).unwrap(),
            ));
        }
    }
    // One bad record: a view without a product (dead-lettered, the partition moves on).
    let bad = interaction("user-0-0", InteractionKind::View, None);
    interactions.push(("user-0-0".into(), interaction_codec.encode(&bad).unwrap()));
    // One product of each group is out of stock.
    let out_of_stock: HashSet<String> = (0..GROUPS).map(|g| product(g, 0)).collect();
    let mut availability = Vec::new();
    for g in 0..GROUPS {
        for p in 0..PER_GROUP {
            let id = product(g, p);
            let a = ProductAvailability {
                event_id: uuid::Uuid::new_v4().to_string(),
                occurred_at: runtime::now_ms(),
                correlation_id: id.clone(),
                causation_id: None,
                product_id: id.clone(),
                in_stock: !out_of_stock.contains(&id),
                available_quantity: if out_of_stock.contains(&id) { 0 } else { 10 },
                fulfillment_centers: vec![],
                sequence: 1,
            };
            availability.push((id, availability_codec.encode(&a).unwrap()));
        }
    }
    let expected_rows = (GROUPS * USERS_PER_GROUP * (8 + 2)) as i64;

    // Half the interactions, kill -9 while the processor works, the rest (and a duplicate of
    // the first half: redelivery), restart.
    let half = interactions.len() / 2;
    produce_all(&kafka, &n.availability, availability)
        .await
        .unwrap();
    produce_all(&kafka, &n.interactions, interactions[..half].to_vec())
        .await
        .unwrap();
    let mut child = run_processor(&file, state.path());
    let started = Instant::now();
    while rows(&db).await.0 == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing stored within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait().await;
    produce_all(&kafka, &n.interactions, interactions[half..].to_vec())
        .await
        .unwrap();
    produce_all(&kafka, &n.interactions, interactions[..half].to_vec())
        .await
        .unwrap();
    produce_all(&kafka, &n.placed, orders).await.unwrap();
    let mut child = run_processor(&file, state.path());
    let started = Instant::now();
    loop {
        let (count, distinct) = rows(&db).await;
        assert_eq!(count, distinct, "one row per event id");
        assert!(
            count <= expected_rows,
            "{count} rows, more than the {expected_rows} sent"
        );
        if count == expected_rows {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "only {count} of {expected_rows} interactions stored within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let purchases: i64 = db
        .query_one(
            "SELECT count(*) FROM interactions WHERE kind = 'purchase'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(purchases, (GROUPS * USERS_PER_GROUP * 2) as i64);
    let dead = reader(
        &env().bootstrap_servers,
        &n.dead_letters,
        &unique("recs-dlq"),
    )
    .unwrap();
    let letters = drain(&dead, 1, Duration::from_secs(20)).await;
    assert_eq!(
        letters.len(),
        1,
        "the view without a product is dead-lettered"
    );
    // Availability reached the store before training (the processor has read its topic).
    let started = Instant::now();
    loop {
        let hidden: i64 = db
            .query_one("SELECT count(*) FROM products WHERE NOT in_stock", &[])
            .await
            .unwrap()
            .get(0);
        if hidden == GROUPS as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "availability not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A first training run (the command line's; the schedule found an empty store at start).
    let printed = train(&file).await;
    assert!(printed.contains("60 users"), "{printed}");
    let script = published::read_script();
    let first = match published::read(&mut redis, &script, &["p"]).await.unwrap() {
        Found::List { version, .. } => version,
        other => panic!("no popular list after training: {other:?}"),
    };
    let mut in_group = 0;
    let mut cf = 0;
    for (user, g) in &users {
        let key = published::user_key(&first, user);
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            (43_000..=43_200).contains(&ttl),
            "{key}: TTL {ttl} s, 12 h wanted"
        );
        let Found::List { json, suffix, .. } =
            published::read(&mut redis, &script, &[&format!("u:{user}")])
                .await
                .unwrap()
        else {
            panic!("{user} has no list");
        };
        assert_eq!(suffix, format!("u:{user}"));
        let list: serde_json::Value = serde_json::from_str(&json).unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 5, "{user}: {list}");
        for item in items {
            let p = item["product_id"].as_str().unwrap();
            assert!(
                !bought[user].contains(p),
                "{user} is offered {p}, which they bought"
            );
            assert!(
                !out_of_stock.contains(p),
                "{user} is offered {p}, out of stock"
            );
            if item["reason"] == "cf" {
                cf += 1;
                if group_of(p) == *g {
                    in_group += 1;
                }
            }
        }
    }
    assert!(cf >= users.len() * 4, "the model fills most lists ({cf})");
    assert!(
        in_group * 10 >= cf * 8,
        "the model recovers the taste groups: {in_group} of {cf} in the user's group"
    );
    let together = published::read(&mut redis, &script, &[&format!("i:{}", product(1, 3))])
        .await
        .unwrap();
    assert!(matches!(together, Found::List { .. }), "{together:?}");

    // A second run while readers read: every answer is one whole version, old or new.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for r in 0..4 {
        let mut redis = redis.clone();
        let (stop, reads) = (stop.clone(), reads.clone());
        let (first, users) = (first.clone(), users.clone());
        readers.push(tokio::spawn(async move {
            let script = published::read_script();
            let mut versions = HashSet::new();
            let mut n = r;
            while !stop.load(Ordering::Relaxed) {
                let (user, _) = &users[n % users.len()];
                n += 1;
                match published::read(&mut redis, &script, &[&format!("u:{user}")])
                    .await
                    .unwrap()
                {
                    Found::List { version, json, .. } => {
                        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                        assert_eq!(v["version"], version.as_str(), "a list of its own version");
                        versions.insert(version);
                    }
                    other => panic!("{user}: {other:?} during the swap from {first}"),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            versions
        }));
    }
    train(&file).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = HashSet::new();
    for r in readers {
        seen.extend(r.await.unwrap());
    }
    let second = match published::read(&mut redis, &script, &["p"]).await.unwrap() {
        Found::List { version, .. } => version,
        other => panic!("{other:?}"),
    };
    assert_ne!(first, second);
    assert!(
        seen.contains(&second),
        "readers saw the new version: {seen:?}"
    );
    assert!(reads.load(Ordering::Relaxed) > 100);
    let old: Vec<String> = redis::cmd("KEYS")
        .arg(format!("recs:{first}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        old.is_empty(),
        "the old version is deleted after the swap: {}",
        old.len()
    );

    // Every run published each user's list on the topic (the schedule's run at the restart
    // too: read until nothing more comes).
    let out = reader(&env().bootstrap_servers, &n.lists, &unique("recs-lists")).unwrap();
    let seen = drain(&out, usize::MAX, Duration::from_secs(5)).await;
    let mut by_version: HashMap<String, HashSet<String>> = HashMap::new();
    for record in &seen {
        let value = lists_codec
            .decode(record.payload.as_ref().unwrap())
            .await
            .unwrap();
        let list: UserRecommendations = codec::from_value(&value).unwrap();
        assert_eq!(record.key.as_deref(), Some(list.user_id.as_bytes()));
        by_version
            .entry(list.model_version.clone())
            .or_default()
            .insert(list.user_id);
    }
    for version in [&first, &second] {
        assert_eq!(
            by_version.get(version).map(HashSet::len),
            Some(users.len()),
            "{version}: one list per user"
        );
    }
    let runs: i64 = db
        .query_one(
            "SELECT count(*) FROM model_runs WHERE finished_at IS NOT NULL AND users = 60",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(runs >= 2);
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}
