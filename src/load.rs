//! `fleet load`: shoppers against the storefront API, and a report computed from what the
//! fleet recorded (the saga's transitions topic, the orders and warehouse databases, the
//! gateway's ledger), not from the generator's own counters. Only request latencies are the
//! generator's: they are what a shopper waits.
//!
//! Shoppers arrive open-loop at `--rate` sessions per second. Each browses a few products
//! (Zipf popularity over the catalog), searches sometimes, adds some of what it saw to its
//! cart, checks out with an idempotency key (a few press the button twice), and polls its
//! order until the saga ends. During the middle of the run a flash sale sends a share of all
//! product picks to a few new products released with a small stock: they sell out, and the
//! report shows no unit sold beyond stock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use events::checkout::{SagaState, SagaTransition};
use loadgen::orders::Zipf;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use topology::Topology;

use crate::bench::percentile;

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

/// Per-endpoint request figures.
#[derive(Default)]
struct Endpoint {
    micros: Vec<i64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

#[derive(Default)]
struct Shared {
    endpoints: Mutex<BTreeMap<&'static str, Endpoint>>,
    /// Order id → total the storefront quoted, for every accepted checkout.
    accepted: Mutex<HashMap<String, i64>>,
    /// Same key sent twice: the order ids the two answers named.
    double_submits: Mutex<Vec<(String, String)>>,
    sessions: AtomicU64,
    checkouts: AtomicU64,
    ended_seen: AtomicU64,
}

impl Shared {
    fn record(&self, endpoint: &'static str, started: Instant, status: Option<u16>) {
        let mut all = self.endpoints.lock().unwrap();
        let e = all.entry(endpoint).or_default();
        e.micros.push(started.elapsed().as_micros() as i64);
        match status {
            Some(s) => *e.statuses.entry(s).or_default() += 1,
            None => e.transport_errors += 1,
        }
    }
}

struct Catalog {
    /// (id, title), in popularity order (rank 0 first).
    products: Vec<(String, String)>,
    popularity: Zipf,
    flash: Vec<String>,
}

struct Shopper {
    http: reqwest::Client,
    base: String,
    key: String,
    shared: Arc<Shared>,
    catalog: Arc<Catalog>,
    run: String,
    flash_window: (Instant, Instant),
    settle_until: Instant,
}

impl Shopper {
    async fn call(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, Value, Option<u64>)> {
        let started = Instant::now();
        let result = request
            .header("x-api-key", &self.key)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match result {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                self.shared.record(endpoint, started, Some(status));
                Some((status, body, retry_after))
            }
            Err(_) => {
                self.shared.record(endpoint, started, None);
                None
            }
        }
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let now = Instant::now();
        let flash = now >= self.flash_window.0 && now < self.flash_window.1;
        if flash && !self.catalog.flash.is_empty() && rng.random_bool(0.3) {
            // Flash products sit after the catalog in `products`.
            return self.catalog.products.len() - self.catalog.flash.len()
                + rng.random_range(0..self.catalog.flash.len());
        }
        self.catalog.popularity.sample(rng)
    }

    async fn session(self, n: u64) {
        let mut rng = StdRng::seed_from_u64(n ^ 0x5eed);
        let user = format!("shopper-{}-{n}", self.run);
        let mut seen = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let (id, title) = self.catalog.products[self.pick(&mut rng)].clone();
            let url = format!("{}/v1/products/{id}?user_id={user}", self.base);
            if let Some((200, _, _)) = self.call("GET /v1/products/{id}", self.http.get(url)).await
            {
                seen.push((id, title));
            }
        }
        if rng.random_bool(0.4) {
            if let Some((_, title)) = seen.first() {
                let word = title
                    .split_whitespace()
                    .max_by_key(|w| w.len())
                    .unwrap_or("chair");
                let request = self.http.get(format!("{}/v1/search", self.base)).query(&[
                    ("q", word),
                    ("user_id", &user),
                    ("limit", "10"),
                ]);
                self.call("GET /v1/search", request).await;
            }
        }
        let viewed_flash = seen.iter().any(|(id, _)| self.catalog.flash.contains(id));
        let cart_chance = if viewed_flash { 0.8 } else { 0.35 };
        if seen.is_empty() || !rng.random_bool(cart_chance) {
            return;
        }
        if rng.random_bool(0.01) {
            // A buggy client: a quantity beyond the limit must be a clear 400, nothing else.
            let url = format!("{}/v1/carts/{user}/lines/{}", self.base, seen[0].0);
            self.call(
                "PUT /v1/carts/{user}/lines/{product}",
                self.http.put(url).json(&json!({"quantity": 999})),
            )
            .await;
        }
        let lines = rng.random_range(1..=seen.len().min(3));
        for (id, _) in seen.iter().take(lines) {
            let url = format!("{}/v1/carts/{user}/lines/{id}", self.base);
            let body = json!({"quantity": rng.random_range(1..=2)});
            self.call(
                "PUT /v1/carts/{user}/lines/{product}",
                self.http.put(url).json(&body),
            )
            .await;
        }
        self.call(
            "GET /v1/carts/{user}",
            self.http.get(format!("{}/v1/carts/{user}", self.base)),
        )
        .await;
        if !rng.random_bool(0.6) {
            return;
        }
        let key = format!("co-{}-{n}", self.run);
        let body = json!({
            "user_id": user,
            "shipping_address": {"recipient_name": format!("Shopper {n}"), "line1": "1 Loop Rd",
                                 "city": "Seattle", "region": "WA", "postal_code": "98109",
                                 "country_code": "US"},
            "payment": {"token": format!("tok_{n}"), "kind": "CARD", "last4": "4242"},
        });
        let checkout = || {
            self.http
                .post(format!("{}/v1/checkout", self.base))
                .header("idempotency-key", &key)
                .json(&body)
        };
        self.shared.checkouts.fetch_add(1, Ordering::Relaxed);
        let mut order = None;
        if rng.random_bool(0.05) {
            // A double click: the same key twice at once must be one order.
            let (a, b) = tokio::join!(
                self.call("POST /v1/checkout", checkout()),
                self.call("POST /v1/checkout", checkout())
            );
            if let (Some((_, a, _)), Some((_, b, _))) = (&a, &b) {
                if let (Some(x), Some(y)) = (a["order_id"].as_str(), b["order_id"].as_str()) {
                    self.shared
                        .double_submits
                        .lock()
                        .unwrap()
                        .push((x.to_string(), y.to_string()));
                }
            }
            order = [a, b]
                .into_iter()
                .flatten()
                .find(|(s, _, _)| *s == 200 || *s == 202);
        } else {
            // A shopper retries a refused checkout with the same key, as told by Retry-After.
            for _ in 0..4 {
                match self.call("POST /v1/checkout", checkout()).await {
                    Some((s, body, _)) if s == 200 || s == 202 => {
                        order = Some((s, body, None));
                        break;
                    }
                    Some((429 | 503, _, wait)) => {
                        tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1))).await
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                    Some(_) => break,
                }
            }
        }
        let Some((_, body, _)) = order else { return };
        let (Some(id), Some(total)) = (body["order_id"].as_str(), body["total_minor"].as_i64())
        else {
            return;
        };
        self.shared
            .accepted
            .lock()
            .unwrap()
            .insert(id.to_string(), total);
        // Poll the order like a confirmation page does, until the saga ends.
        while Instant::now() < self.settle_until {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            let url = format!("{}/v1/orders/{id}?user_id={user}", self.base);
            if let Some((200, status, _)) =
                self.call("GET /v1/orders/{id}", self.http.get(url)).await
            {
                if matches!(
                    status["status"].as_str(),
                    Some("PLACED" | "FAILED" | "STUCK")
                ) {
                    self.shared.ended_seen.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
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
        None => storefront::keys::create(&crate::storefront_database(topology)?, "loadgen").await?,
    };
    let catalog_db = stack::connect_postgres(&database(&env, "catalog")?).await?;
    let rows = catalog_db
        .query(
            "SELECT id::text, title FROM products WHERE sku NOT LIKE 'FLASH-%' ORDER BY sku",
            &[],
        )
        .await?;
    anyhow::ensure!(
        !rows.is_empty(),
        "the catalog is empty: run `fleet seed` first"
    );
    let mut products: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
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
    let popularity = Zipf::new(products.len(), 1.0);
    products.extend(flash.iter().cloned());
    let catalog = Arc::new(Catalog {
        products,
        popularity,
        flash: flash.iter().map(|(id, _)| id.clone()).collect(),
    });

    let transitions_topic = crate::processors::output(
        &topology
            .processor("checkout")
            .context("no checkout in the topology")?
            .0,
        "checkout.saga-transitions",
    )?;
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
    let checkout_topic = crate::processors::output(
        &topology
            .processor("storefront")
            .context("no storefront in the topology")?
            .0,
        "orders.checkout-requested",
    )?;
    while started.elapsed() < options.duration {
        if !poison_sent && started.elapsed() >= options.duration / 2 {
            poison_sent = true;
            let producer = loadgen::kafka::producer(&env.bootstrap_servers)?;
            let records = (0..options.poison)
                .map(|i| (format!("poison-{run}-{i}"), b"{\"not\": \"avro\"}".to_vec()));
            loadgen::kafka::produce_all(&producer, &checkout_topic, records).await?;
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
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcome.values().filter(|o| o.state == SagaState::Failed) {
        *reasons.entry(o.failure.clone()).or_default() += 1;
    }
    line(format!(
        "  orders (from checkout.saga-transitions and the orders database)\n    checkouts accepted {}  placed {} (orders db: {placed_in_db})  failed {failed} (of which compensated: {compensated})  stuck {stuck}  not ended {unsettled}",
        accepted.len(), placed.len()
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

async fn dead_letters(env: &runtime::StackEnv, topics: &[String]) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for t in topics {
        let marks = dlq::kafka::topic_watermarks(&env.bootstrap_servers, t).await?;
        out.insert(t.clone(), marks.iter().map(|m| m.high).sum());
    }
    Ok(out)
}

struct Outcome {
    state: SagaState,
    compensated: bool,
    failure: String,
    sequence: i64,
    /// First and last transition times (the saga's clock).
    first_at: i64,
    last_at: i64,
}

/// Reads the saga's transitions since the run began until every accepted order has ended
/// (PLACED, FAILED or STUCK) or `until` passes.
async fn settle(
    env: &runtime::StackEnv,
    topic: &str,
    start: &[dlq::kafka::Watermarks],
    accepted: &HashMap<String, i64>,
    until: Instant,
) -> Result<HashMap<String, Outcome>> {
    let mut outcome: HashMap<String, Outcome> = HashMap::new();
    let mut from: HashMap<i32, i64> = start.iter().map(|m| (m.partition, m.high)).collect();
    loop {
        let marks = dlq::kafka::topic_watermarks(&env.bootstrap_servers, topic).await?;
        let ranges = marks
            .iter()
            .map(|m| dlq::kafka::PartitionRange {
                partition: m.partition,
                start: from.get(&m.partition).copied().unwrap_or(m.low),
                end: m.high,
            })
            .collect();
        for t in crate::orders::read_values_in::<SagaTransition>(env, topic, ranges).await? {
            if !accepted.contains_key(&t.order_id) {
                continue;
            }
            let o = outcome.entry(t.order_id.clone()).or_insert(Outcome {
                state: SagaState::Unknown,
                compensated: false,
                failure: String::new(),
                sequence: -1,
                first_at: t.occurred_at,
                last_at: t.occurred_at,
            });
            // Compensated: the saga undid something (released holds, voided or refunded).
            o.compensated |= matches!(
                t.to_state,
                SagaState::ReleasingInventory
                    | SagaState::VoidingPayment
                    | SagaState::RefundingPayment
            );
            o.first_at = o.first_at.min(t.occurred_at);
            o.last_at = o.last_at.max(t.occurred_at);
            if t.sequence > o.sequence {
                o.sequence = t.sequence;
                o.state = t.to_state;
                if let Some(code) = t.failure_code {
                    o.failure = format!("{code:?}");
                }
            }
        }
        for m in &marks {
            from.insert(m.partition, m.high);
        }
        let ended: HashSet<&String> = outcome
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o.state,
                    SagaState::Placed | SagaState::Failed | SagaState::Stuck
                )
            })
            .map(|(id, _)| id)
            .collect();
        if ended.len() == accepted.len() || Instant::now() >= until {
            outcome.retain(|_, o| {
                matches!(
                    o.state,
                    SagaState::Placed | SagaState::Failed | SagaState::Stuck
                )
            });
            return Ok(outcome);
        }
        eprint!("\r   orders ended {}/{}   ", ended.len(), accepted.len());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
