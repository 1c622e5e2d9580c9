//! `fleet load` (and the load of `fleet demo`): shoppers against the storefront API, and a
//! report computed from what the fleet recorded (the saga's transitions topic, the orders and
//! warehouse databases, the gateway's ledger), not from the generator's own counters. Only
//! request latencies and the search and recommendations sections are the generator's: they
//! are what a shopper waits for and sees.
//!
//! Shoppers arrive open-loop at `--rate` sessions per second. Each browses a few products
//! (Zipf popularity over the catalog), searches sometimes (three sessions in ten: one or two
//! searches with words of titles it knows, some narrowed to a category), asks for its
//! recommendations sometimes (two sessions in ten, with its last product's category as the
//! cold-start hint), adds some of what it
//! saw to its cart, checks out with an idempotency key (a few press the button twice), and
//! polls its order until the saga ends. During the middle of the run a flash sale sends a
//! share of all product picks to a few new products released with a small stock: they sell
//! out, and the report shows no unit sold beyond stock. The search and recommendations
//! sections count what the answers said (which source answered, whether degraded).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::checkout::SagaState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use topology::Topology;

use crate::orders::Zipf;
use crate::{percentile, Error, Result};

mod answers;
mod search;
mod session;
mod settle;

use session::{Catalog, Shared, Shopper};
use settle::{dead_letters, settle};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Storefront base URLs; sessions are spread over them.
    pub storefronts: Vec<String>,
    /// An API key; without one, a key for client `loadgen` is created in the storefront's
    /// database.
    pub api_key: Option<String>,
    /// Shopper sessions started per second.
    pub rate: f64,
    pub duration: Duration,
    /// New products released for the flash sale, and units of each.
    pub flash_products: usize,
    pub flash_stock: i32,
    /// How long to wait after the load for every accepted order to end.
    pub settle: Duration,
    pub seed: u64,
    /// Undecodable records written straight to the checkout-request topic mid-run: each must
    /// come out as one dead letter while the partition moves on.
    pub poison: u64,
}

fn database(env: &runtime::StackEnv, name: &str) -> Result<String> {
    Ok(runtime::postgres_database_url(&env.postgres_url, name)?)
}

/// New products for the flash sale, in the catalog and with `stock` units in one warehouse:
/// the CDC connectors carry both to the fleet.
async fn release_flash_products(
    env: &runtime::StackEnv,
    run: &str,
    templates: &[(String, String)],
    stock: i32,
) -> Result<Vec<(String, String)>> {
    let catalog = stack::connect_postgres(&database(env, "catalog")?).await?;
    let warehouse = stack::connect_postgres(&database(env, "warehouse")?).await?;
    let mut out = Vec::new();
    for (i, (template, title)) in templates.iter().enumerate() {
        let id = uuid::Uuid::new_v4().to_string();
        let title = format!("Flash deal {run}-{i}: {title}");
        catalog
            .execute(
                "INSERT INTO products (id, sku, title, description, category, brand, price, seller)
                 SELECT $1::text::uuid, $2, $3, description, category, brand, round(price * 0.7, 2), seller
                 FROM products WHERE id = $4::text::uuid",
                &[&id, &format!("FLASH-{run}-{i}"), &title, template],
            )
            .await?;
        warehouse
            .execute(
                "INSERT INTO stock (product_id, fulfillment_center, status, on_hand)
                 VALUES ($1::text::uuid, 'FC-EAST-1', 'available', $2)",
                &[&id, &stock],
            )
            .await?;
        out.push((id, title));
    }
    Ok(out)
}

/// The storefront instances' base URLs, from the topology.
pub fn storefront_urls(topology: &Topology) -> Vec<String> {
    topology
        .processors
        .iter()
        .filter_map(|(spec, params)| match params {
            topology::ProcessorParams::Storefront(p) => Some((spec.instances, p.http_port)),
            _ => None,
        })
        .flat_map(|(n, port)| (0..n).map(move |i| format!("http://127.0.0.1:{}", port + i)))
        .collect()
}

/// The figures of one run, all but the latencies read back from the fleet's own records.
pub struct Report {
    pub text: String,
    pub oversold_units: i64,
    pub duplicate_charges: usize,
    pub unsettled: usize,
    pub poison_unmatched: bool,
}

pub async fn run(topology: &Topology, options: LoadOptions) -> Result<Report> {
    let env = runtime::StackEnv::from_env()?;
    let run = format!("{:x}", runtime::now_ms() / 1000 % 0x100000);
    let key = match &options.api_key {
        Some(k) => k.clone(),
        None => {
            storefront::keys::create(&wiring::storefront_database(topology)?, "loadgen").await?
        }
    };
    let catalog_db = stack::connect_postgres(&database(&env, "catalog")?).await?;
    let rows = catalog_db
        .query(
            "SELECT id::text, title, category FROM products WHERE sku NOT LIKE 'FLASH-%' ORDER BY sku",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Err(Error::Failed(
            "the catalog is empty: run `fleet seed` first".into(),
        ));
    }
    let mut products: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut categories: HashMap<String, String> = rows
        .iter()
        .filter_map(|r| Some((r.get(0), r.get::<_, Option<String>>(2)?)))
        .collect();
    let mut rng = StdRng::seed_from_u64(options.seed);
    // Popularity is a random order of the catalog (seeded), not its SKU order.
    for i in (1..products.len()).rev() {
        products.swap(i, rng.random_range(0..=i));
    }
    let templates: Vec<(String, String)> = products
        .iter()
        .take(options.flash_products)
        .cloned()
        .collect();
    let flash = release_flash_products(&env, &run, &templates, options.flash_stock).await?;
    // A flash product is its template's copy, category included.
    for ((template, _), (id, _)) in templates.iter().zip(&flash) {
        if let Some(c) = categories.get(template).cloned() {
            categories.insert(id.clone(), c);
        }
    }
    let popularity = Zipf::new(products.len(), 1.0);
    products.extend(flash.iter().cloned());
    let catalog = Arc::new(Catalog {
        products,
        categories,
        popularity,
        flash: flash.iter().map(|(id, _)| id.clone()).collect(),
    });

    let transitions_topic = wiring::output(topology, "checkout", "transitions")?;
    let start_marks =
        dlq::kafka::topic_watermarks(&env.bootstrap_servers, &transitions_topic).await?;
    let dlq_topics: Vec<String> = topology
        .topics
        .iter()
        .filter(|t| t.name.starts_with("dlq.") && t.name != "dlq.redrives.v1")
        .map(|t| t.name.clone())
        .collect();
    let dlq_before = dead_letters(&env, &dlq_topics).await?;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let flash_window = (
        started + options.duration / 5,
        started + options.duration * 3 / 5,
    );
    let settle_until = started + options.duration + options.settle;
    println!(
        "== shoppers: {:.0} sessions/s for {} s over {} storefront(s); flash sale of {} new products × {} units from {} s to {} s",
        options.rate,
        options.duration.as_secs(),
        options.storefronts.len(),
        flash.len(),
        options.flash_stock,
        (options.duration / 5).as_secs(),
        (options.duration * 3 / 5).as_secs()
    );
    let mut sessions = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(2_000));
    let mut n: u64 = 0;
    let mut last_progress = Instant::now();
    let mut last_requests = 0u64;
    let mut poison_sent = false;
    let mut skipped = 0u64;
    let checkout_topic = wiring::output(topology, "storefront", "checkout_requests")?;
    while started.elapsed() < options.duration {
        if !poison_sent && started.elapsed() >= options.duration / 2 {
            poison_sent = true;
            let producer = crate::kafka::producer(&env.bootstrap_servers)?;
            let records = (0..options.poison)
                .map(|i| (format!("poison-{run}-{i}"), b"{\"not\": \"avro\"}".to_vec()));
            crate::kafka::produce_all(&producer, &checkout_topic, records).await?;
        }
        let due = (started.elapsed().as_secs_f64() * options.rate) as u64;
        while n < due {
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                // 2,000 sessions are open: this shopper is turned away (counted, not queued,
                // so the offered rate stays honest).
                skipped += 1;
                n += 1;
                continue;
            };
            let shopper = Shopper {
                http: http.clone(),
                base: options.storefronts[n as usize % options.storefronts.len()].clone(),
                key: key.clone(),
                shared: shared.clone(),
                catalog: catalog.clone(),
                run: run.clone(),
                flash_window,
                settle_until,
            };
            shared.sessions.fetch_add(1, Ordering::Relaxed);
            let session = n;
            sessions.spawn(async move {
                shopper.session(session).await;
                drop(permit);
            });
            n += 1;
        }
        while sessions.try_join_next().is_some() {}
        if last_progress.elapsed() >= Duration::from_secs(1) {
            let requests: u64 = shared
                .endpoints
                .lock()
                .unwrap()
                .values()
                .map(|e| e.micros.len() as u64)
                .sum();
            let errors: u64 = shared
                .endpoints
                .lock()
                .unwrap()
                .values()
                .map(|e| e.transport_errors + e.statuses.range(500..).map(|(_, c)| c).sum::<u64>())
                .sum();
            eprint!(
                "\r   {:>4} s  {:>6.0} req/s  sessions {:>7}  checkouts {:>6}  accepted {:>6}  ended {:>6}  5xx/errors {:>4}   ",
                started.elapsed().as_secs(),
                (requests - last_requests) as f64 / last_progress.elapsed().as_secs_f64(),
                shared.sessions.load(Ordering::Relaxed),
                shared.checkouts.load(Ordering::Relaxed),
                shared.accepted.lock().unwrap().len(),
                shared.ended_seen.load(Ordering::Relaxed),
                errors,
            );
            last_requests = requests;
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let load_secs = started.elapsed().as_secs_f64();
    eprintln!();
    println!(
        "== load over after {load_secs:.0} s; waiting for open sessions to see their orders end"
    );
    while sessions.join_next().await.is_some() {}

    let accepted = shared.accepted.lock().unwrap().clone();
    let outcome = settle(
        &env,
        &transitions_topic,
        &start_marks,
        &accepted,
        settle_until,
    )
    .await?;
    let mut report = String::new();
    let mut line = |s: String| {
        report.push_str(&s);
        report.push('\n');
    };
    line(format!(
        "REPORT  run {run}: {} sessions in {load_secs:.0} s{}",
        n,
        if skipped > 0 {
            format!(" ({skipped} turned away: 2,000 sessions were open)")
        } else {
            String::new()
        }
    ));
    line("  requests (measured by the shoppers; latency in ms)".into());
    line(format!(
        "    {:<40} {:>8} {:>8} {:>8} {:>8} {:>8}  statuses",
        "endpoint", "count", "req/s", "p50", "p95", "p99"
    ));
    let mut total_requests = 0;
    for (name, e) in shared.endpoints.lock().unwrap().iter_mut() {
        e.micros.sort_unstable();
        total_requests += e.micros.len();
        let ms = |p| percentile(&e.micros, p) as f64 / 1000.0;
        let mut statuses: Vec<String> =
            e.statuses.iter().map(|(s, c)| format!("{s}:{c}")).collect();
        if e.transport_errors > 0 {
            statuses.push(format!("transport-errors:{}", e.transport_errors));
        }
        line(format!(
            "    {:<40} {:>8} {:>8.0} {:>8.1} {:>8.1} {:>8.1}  {}",
            name,
            e.micros.len(),
            e.micros.len() as f64 / load_secs,
            ms(0.50),
            ms(0.95),
            ms(0.99),
            statuses.join(" ")
        ));
    }
    line(format!(
        "    all: {total_requests} requests, {:.0} req/s",
        total_requests as f64 / load_secs
    ));
    for l in shared
        .search
        .lock()
        .unwrap()
        .report("search (what the shoppers' searches got)", load_secs)
    {
        line(l);
    }
    for l in shared.recommendations.lock().unwrap().report(
        "recommendations (what the shoppers' \"recommended for you\" requests got; degraded until the first model run)",
        load_secs,
    ) {
        line(l);
    }

    // Orders: the saga's own transitions, the orders database, the gateway's ledger.
    let orders_db = stack::connect_postgres(&database(&env, "orders")?).await?;
    let ids: Vec<String> = accepted.keys().cloned().collect();
    let rows = orders_db
        .query(
            "SELECT order_id, status, total_minor FROM orders WHERE order_id = ANY($1)",
            &[&ids],
        )
        .await?;
    let db_status: HashMap<String, (String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let placed: Vec<&String> = outcome
        .iter()
        .filter(|(_, o)| o.state == SagaState::Placed)
        .map(|(id, _)| id)
        .collect();
    let failed = outcome
        .iter()
        .filter(|(_, o)| o.state == SagaState::Failed)
        .count();
    let compensated = outcome
        .iter()
        .filter(|(_, o)| o.state == SagaState::Failed && o.compensated)
        .count();
    let stuck = outcome
        .iter()
        .filter(|(_, o)| o.state == SagaState::Stuck)
        .count();
    let unsettled = accepted.len() - placed.len() - failed - stuck;
    let placed_in_db = placed
        .iter()
        .filter(|id| db_status.get(**id).is_some_and(|(s, _)| s == "placed"))
        .count();
    let kind = |f: fn(&settle::Outcome) -> bool| outcome.values().filter(|o| f(o)).count();
    let (released, voided, refunded) = (
        kind(|o| o.released),
        kind(|o| o.voided),
        kind(|o| o.refunded),
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcome.values().filter(|o| o.state == SagaState::Failed) {
        *reasons.entry(o.failure.clone()).or_default() += 1;
    }
    line(format!(
        "  orders (from checkout.saga-transitions and the orders database)\n    checkouts accepted {}  placed {} (orders db: {placed_in_db})  failed {failed} (of which compensated: {compensated})  stuck {stuck}  not ended {unsettled}",
        accepted.len(), placed.len()
    ));
    line(format!(
        "    compensations by kind (orders whose saga ran them): inventory released {released}  payment voided {voided}  payment refunded {refunded}"
    ));
    line(format!("    failures by reason: {reasons:?}"));
    let mut saga_ms: Vec<i64> = outcome
        .values()
        .filter(|o| o.state == SagaState::Placed)
        .map(|o| (o.last_at - o.first_at).max(0))
        .collect();
    saga_ms.sort_unstable();
    line(format!(
        "    saga start → PLACED (transition times): p50 {} ms  p95 {} ms  p99 {} ms",
        percentile(&saga_ms, 0.50),
        percentile(&saga_ms, 0.95),
        percentile(&saga_ms, 0.99)
    ));
    let splits = shared
        .double_submits
        .lock()
        .unwrap()
        .iter()
        .filter(|(a, b)| a != b)
        .count();
    line(format!(
        "    double-submitted checkouts {} (answers naming two different orders: {splits})",
        shared.double_submits.lock().unwrap().len()
    ));

    // Money: every placed order charged its total exactly once, every other order nothing.
    let ledger: Value = reqwest::get(format!("{}/v1/ledger", env.gateway_url))
        .await?
        .json()
        .await?;
    let mut net: HashMap<String, i64> = HashMap::new();
    for p in ledger["payments"].as_array().into_iter().flatten() {
        if let (Some(k), Some(c), Some(r)) = (
            p["key"].as_str(),
            p["captured_cents"].as_i64(),
            p["refunded_cents"].as_i64(),
        ) {
            net.insert(k.to_string(), c - r);
        }
    }
    let mut duplicate_charges = 0;
    let mut wrong_amounts = 0;
    let mut charged_failed = 0;
    for (id, o) in &outcome {
        let kept = net.get(&format!("pay-{id}")).copied().unwrap_or(0);
        match o.state {
            SagaState::Placed => {
                let total = db_status.get(id).map(|(_, t)| *t).unwrap_or(accepted[id]);
                if kept > total {
                    duplicate_charges += 1;
                } else if kept != total {
                    wrong_amounts += 1;
                }
            }
            SagaState::Failed if kept != 0 => charged_failed += 1,
            _ => {}
        }
    }
    line(format!(
        "  money (from the gateway's ledger)\n    duplicate charges {duplicate_charges} (must be 0)  placed orders not charged their total {wrong_amounts}  failed orders keeping money {charged_failed}"
    ));
    // The gateway's own books on this run's payments, by status (voids and refunds are the
    // saga's compensations as the card processor recorded them).
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for p in ledger["payments"].as_array().into_iter().flatten() {
        let ours = p["key"]
            .as_str()
            .and_then(|k| k.strip_prefix("pay-"))
            .is_some_and(|order| outcome.contains_key(order));
        if let (true, Some(status)) = (ours, p["status"].as_str()) {
            *by_status.entry(status.to_string()).or_default() += 1;
        }
    }
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
    line(format!(
        "    this run's payments by status at the gateway: {}",
        if statuses.is_empty() {
            "none".to_string()
        } else {
            statuses.join("  ")
        }
    ));

    // Stock: units sold (placed orders, all time) never beyond what the warehouse holds.
    let warehouse = stack::connect_postgres(&database(&env, "warehouse")?).await?;
    let on_hand: HashMap<String, i64> = warehouse
        .query("SELECT product_id::text, sum(on_hand)::bigint FROM stock WHERE status = 'available' GROUP BY 1", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let sold: Vec<(String, i64)> = orders_db
        .query(
            "SELECT l->>'product_id', sum((l->>'quantity')::bigint)::bigint
             FROM orders, jsonb_array_elements(lines) l WHERE status = 'placed' GROUP BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let oversold_units: i64 = sold
        .iter()
        .map(|(p, s)| (s - on_hand.get(p).copied().unwrap_or(0)).max(0))
        .sum();
    let flash_sold: Vec<String> = flash
        .iter()
        .map(|(id, _)| {
            let s = sold
                .iter()
                .find(|(p, _)| p == id)
                .map(|(_, s)| *s)
                .unwrap_or(0);
            format!("{s}/{}", options.flash_stock)
        })
        .collect();
    line(format!(
        "  stock (orders and warehouse databases)\n    oversold units {oversold_units} (must be 0; all products, all time)  flash products sold/stock: {}",
        flash_sold.join(" ")
    ));
    let dlq_after = dead_letters(&env, &dlq_topics).await?;
    let letters: Vec<String> = dlq_after
        .iter()
        .filter_map(|(t, n)| {
            let d = n - dlq_before.get(t).copied().unwrap_or(0);
            (d > 0).then(|| format!("{t}: {d}"))
        })
        .collect();
    line(format!(
        "  dead letters during the run: {}",
        if letters.is_empty() {
            "none".to_string()
        } else {
            letters.join(", ")
        }
    ));
    let poison_letters = dlq_after
        .iter()
        .filter(|(t, _)| t.starts_with("dlq.checkout.checkout-requested"))
        .map(|(t, n)| n - dlq_before.get(t).copied().unwrap_or(0))
        .sum::<i64>();
    line(format!(
        "    poison records sent {} → dead letters in dlq.checkout.checkout-requested {poison_letters} (must be equal)",
        options.poison
    ));
    Ok(Report {
        text: report,
        oversold_units,
        duplicate_charges,
        unsettled,
        poison_unmatched: poison_letters != options.poison as i64,
    })
}
