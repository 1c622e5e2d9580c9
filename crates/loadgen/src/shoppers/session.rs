//! One shopper's session against the storefront, and what all sessions of a run record.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::answers::AnswerFigures;
use super::search;
use crate::orders::Zipf;

/// Per-endpoint request figures.
#[derive(Default)]
pub(super) struct Endpoint {
    pub(super) micros: Vec<i64>,
    pub(super) statuses: BTreeMap<u16, u64>,
    pub(super) transport_errors: u64,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) endpoints: Mutex<BTreeMap<&'static str, Endpoint>>,
    /// Order id → total the storefront quoted, for every accepted checkout.
    pub(super) accepted: Mutex<HashMap<String, i64>>,
    /// Same key sent twice: the order ids the two answers named.
    pub(super) double_submits: Mutex<Vec<(String, String)>>,
    /// What the searches got (the report's search section).
    pub(super) search: Mutex<AnswerFigures>,
    /// What the recommendation requests got (the report's recommendations section).
    pub(super) recommendations: Mutex<AnswerFigures>,
    pub(super) sessions: AtomicU64,
    pub(super) checkouts: AtomicU64,
    pub(super) ended_seen: AtomicU64,
}

impl Shared {
    fn record(&self, endpoint: &'static str, micros: i64, status: Option<u16>) {
        let mut all = self.endpoints.lock().unwrap();
        let e = all.entry(endpoint).or_default();
        e.micros.push(micros);
        match status {
            Some(s) => *e.statuses.entry(s).or_default() += 1,
            None => e.transport_errors += 1,
        }
    }
}

pub(super) struct Catalog {
    /// (id, title), in popularity order (rank 0 first).
    pub(super) products: Vec<(String, String)>,
    /// Each product's category, where the catalog names one.
    pub(super) categories: HashMap<String, String>,
    pub(super) popularity: Zipf,
    pub(super) flash: Vec<String>,
}

pub(super) struct Shopper {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) key: String,
    pub(super) shared: Arc<Shared>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) run: String,
    pub(super) flash_window: (Instant, Instant),
    pub(super) settle_until: Instant,
}

impl Shopper {
    async fn call(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, Value, Option<u64>)> {
        self.call_measured(endpoint, request).await.1
    }

    /// [`Self::call`], also returning the latency it recorded (µs): the wait until the whole
    /// answer is read.
    async fn call_measured(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> (i64, Option<(u16, Value, Option<u64>)>) {
        let started = Instant::now();
        let result = request
            .header("x-api-key", &self.key)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let answer = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                Some((status, body, retry_after))
            }
            Err(_) => None,
        };
        let micros = started.elapsed().as_micros() as i64;
        self.shared
            .record(endpoint, micros, answer.as_ref().map(|(s, _, _)| *s));
        (micros, answer)
    }

    /// One search: `q`, narrowed to `category` if given. Recorded for the search section
    /// from the answer received; returns the answer's body if it was a 200.
    async fn search(&self, user: &str, q: &str, category: Option<&str>) -> Option<Value> {
        let mut params = vec![("q", q), ("user_id", user), ("per_page", "10")];
        if let Some(c) = category {
            params.push(("category", c));
        }
        let request = self
            .http
            .get(format!("{}/v1/search", self.base))
            .query(&params);
        let (micros, answer) = self.call_measured("GET /v1/search", request).await;
        self.shared.search.lock().unwrap().record(
            micros,
            category.is_some(),
            answer.as_ref().map(|(s, b, _)| (*s, b)),
        );
        match answer {
            Some((200, body, _)) => Some(body),
            _ => None,
        }
    }

    /// A searching shopper's one or two searches, with words of a title it knows (one it
    /// viewed, else a popular one); a quarter of first searches are narrowed to that
    /// product's category, and half of second searches narrow the first by a category its
    /// answer offers (its facets; the product's own category when it offers none), the rest
    /// look for something else.
    async fn searches(&self, user: &str, seen: &[(String, String)], rng: &mut StdRng) {
        let known = |rng: &mut StdRng| match seen {
            [] => self.catalog.products[self.catalog.popularity.sample(rng)].clone(),
            seen => seen[rng.random_range(0..seen.len())].clone(),
        };
        let (id, title) = known(rng);
        let Some(q) = search::query(&title, rng) else {
            return;
        };
        let category = self.catalog.categories.get(&id).map(String::as_str);
        let first_category = category.filter(|_| rng.random_bool(0.25));
        let answer = self.search(user, &q, first_category).await;
        if !rng.random_bool(0.4) {
            return;
        }
        if first_category.is_none() && rng.random_bool(0.5) {
            let refined = answer
                .as_ref()
                .and_then(|a| search::facet_category(a, rng))
                .or_else(|| category.map(str::to_string));
            if let Some(c) = refined {
                self.search(user, &q, Some(&c)).await;
                return;
            }
        }
        let (_, title) = known(rng);
        if let Some(q) = search::query(&title, rng) {
            self.search(user, &q, None).await;
        }
    }

    /// The shopper's recommendations (the "recommended for you" strip), with the category of
    /// the last product it viewed as the cold-start hint.
    async fn recommendations(&self, user: &str, seen: &[(String, String)]) {
        let category = seen
            .last()
            .and_then(|(id, _)| self.catalog.categories.get(id))
            .map(|c| c.split('/').next().unwrap_or(c).trim().to_string());
        let mut request = self
            .http
            .get(format!("{}/v1/recommendations/{user}", self.base));
        if let Some(c) = &category {
            request = request.query(&[("category", c)]);
        }
        let (micros, answer) = self
            .call_measured("GET /v1/recommendations/{user}", request)
            .await;
        self.shared.recommendations.lock().unwrap().record(
            micros,
            category.is_some(),
            answer.as_ref().map(|(s, b, _)| (*s, b)),
        );
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

    pub(super) async fn session(self, n: u64) {
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
        if rng.random_bool(0.3) {
            self.searches(&user, &seen, &mut rng).await;
        }
        if rng.random_bool(0.2) {
            self.recommendations(&user, &seen).await;
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
