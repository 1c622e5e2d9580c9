//! Typed parameters per processor and connector kind. They live here, beside the rest of the
//! configuration, so `fleet validate` checks them without linking the processors.

use serde::{Deserialize, Serialize};

use crate::model::ProcessorKind;

/// Parameters of one processor, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorParams {
    Shipping(ShippingParams),
    Inventory(InventoryParams),
    InventoryStockFeed(InventoryStockFeedParams),
    Payment(PaymentParams),
    Checkout(CheckoutParams),
    Storefront(StorefrontParams),
    SearchIndexer(SearchIndexerParams),
    Recommendations(RecommendationsParams),
    ImageQuality(ImageQualityParams),
}

impl ProcessorParams {
    pub(crate) fn parse(
        kind: ProcessorKind,
        raw: &serde_yaml::Value,
    ) -> Result<Self, serde_yaml::Error> {
        let raw = if raw.is_null() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            raw.clone()
        };
        Ok(match kind {
            ProcessorKind::Shipping => ProcessorParams::Shipping(serde_yaml::from_value(raw)?),
            ProcessorKind::Inventory => ProcessorParams::Inventory(serde_yaml::from_value(raw)?),
            ProcessorKind::InventoryStockFeed => {
                ProcessorParams::InventoryStockFeed(serde_yaml::from_value(raw)?)
            }
            ProcessorKind::Payment => ProcessorParams::Payment(serde_yaml::from_value(raw)?),
            ProcessorKind::Checkout => ProcessorParams::Checkout(serde_yaml::from_value(raw)?),
            ProcessorKind::Storefront => ProcessorParams::Storefront(serde_yaml::from_value(raw)?),
            ProcessorKind::SearchIndexer => {
                ProcessorParams::SearchIndexer(serde_yaml::from_value(raw)?)
            }
            ProcessorKind::Recommendations => {
                ProcessorParams::Recommendations(serde_yaml::from_value(raw)?)
            }
            ProcessorKind::ImageQuality => {
                ProcessorParams::ImageQuality(serde_yaml::from_value(raw)?)
            }
        })
    }

    /// The parameters as YAML again, from the typed values: what a copy of the topology
    /// written for another process must carry (a change made to the typed parameters, such
    /// as a bench's private database, lives only here, not in the spec's raw `params`).
    pub fn to_value(&self) -> Result<serde_yaml::Value, serde_yaml::Error> {
        match self {
            ProcessorParams::Shipping(p) => serde_yaml::to_value(p),
            ProcessorParams::Inventory(p) => serde_yaml::to_value(p),
            ProcessorParams::InventoryStockFeed(p) => serde_yaml::to_value(p),
            ProcessorParams::Payment(p) => serde_yaml::to_value(p),
            ProcessorParams::Checkout(p) => serde_yaml::to_value(p),
            ProcessorParams::Storefront(p) => serde_yaml::to_value(p),
            ProcessorParams::SearchIndexer(p) => serde_yaml::to_value(p),
            ProcessorParams::Recommendations(p) => serde_yaml::to_value(p),
            ProcessorParams::ImageQuality(p) => serde_yaml::to_value(p),
        }
    }
}

/// Shipping: order placed → shipment requested and (simulated) label created.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingParams {
    /// Carrier named on labels.
    #[serde(default = "default_carrier")]
    pub carrier: String,
    /// Fulfillment center used when the order names none.
    #[serde(default = "default_fc")]
    pub default_fulfillment_center: String,
}

fn default_carrier() -> String {
    "storefleet-post".to_string()
}

fn default_fc() -> String {
    "FC-EAST-1".to_string()
}

/// The stock ledger.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InventoryParams {}

/// The warehouse stock feed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InventoryStockFeedParams {}

/// The PostgreSQL change-data-capture connector.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCdcParams {
    /// Database on the stack's PostgreSQL server (`STOREFLEET_POSTGRES` says where it runs).
    pub database: String,
    /// Logical replication slot (pgoutput); created on first start.
    pub slot: String,
    /// Publication listing the captured tables; created on first start.
    pub publication: String,
    /// Debezium's logical server name: `source.name` of every event.
    pub server_name: String,
    /// Rows per snapshot chunk (one progress checkpoint per chunk).
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: u32,
    /// How often an idle connector acknowledges the server's WAL position and checks its slot.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Where unconvertible rows go (a `storefleet.dlq.DeadLetter` topic).
    pub dead_letter: String,
    /// Captured tables.
    pub tables: Vec<CdcTable>,
}

fn default_chunk_rows() -> u32 {
    5_000
}

fn default_heartbeat_ms() -> u64 {
    5_000
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdcTable {
    /// `schema.table`.
    pub table: String,
    pub topic: String,
    /// Avro record name prefix: `<record>Key`, `<record>Row`, `<record>Change`.
    pub record: String,
}

/// The payment processor: one instance group reads the saga's commands, another the retries
/// (so a record waiting for its backoff never holds up new payments). The gateway's address
/// is `STOREFLEET_GATEWAY` (an address, not behaviour); everything else is here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentParams {
    /// The payment service's own database (its transaction log) on `STOREFLEET_POSTGRES`.
    #[serde(default = "default_payments_db")]
    pub database: String,
    /// Payments handled at once per instance (different orders; one order's commands run
    /// one after another). Also the instance's PostgreSQL connections.
    #[serde(default = "default_payment_concurrency")]
    pub concurrency: usize,
    /// Client-side deadline of one gateway call; after it the outcome is unknown (retried).
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Gateway attempts per command before it is dead-lettered and answered FAILED.
    #[serde(default = "default_payment_attempts")]
    pub max_attempts: u32,
    /// Retry backoff: full jitter over `min(retry_max_ms, retry_base_ms * 2^(attempt-1))`.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// The gateway contract's calls per second for this processor, split evenly over its
    /// instances (governor); 0 = unlimited.
    #[serde(default)]
    pub gateway_rate_per_sec: u32,
    /// Circuit breaker: over the last `breaker_window` calls (at least `breaker_min_calls`),
    /// a failure ratio at or above `breaker_failure_ratio` opens it for `breaker_open_ms`.
    #[serde(default = "default_breaker_window")]
    pub breaker_window: u32,
    #[serde(default = "default_breaker_min_calls")]
    pub breaker_min_calls: u32,
    #[serde(default = "default_breaker_failure_ratio")]
    pub breaker_failure_ratio: f64,
    #[serde(default = "default_breaker_open_ms")]
    pub breaker_open_ms: u64,
}

impl PaymentParams {
    /// Ranges checked before anything connects.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.database.is_empty() {
            problems.push("database is empty".to_string());
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            problems.push(format!("concurrency {} not in 1..=1024", self.concurrency));
        }
        if self.call_timeout_ms == 0 {
            problems.push("call_timeout_ms must be positive".into());
        }
        if self.max_attempts == 0 {
            problems.push("max_attempts must be at least 1".into());
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            problems.push("need 0 < retry_base_ms <= retry_max_ms".into());
        }
        if self.breaker_window == 0 || self.breaker_min_calls > self.breaker_window {
            problems.push("need 0 < breaker_window and breaker_min_calls <= breaker_window".into());
        }
        if !(self.breaker_failure_ratio > 0.0 && self.breaker_failure_ratio <= 1.0) {
            problems.push("breaker_failure_ratio must be in (0, 1]".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Default for PaymentParams {
    fn default() -> Self {
        serde_yaml::from_value(serde_yaml::Value::Mapping(Default::default()))
            .expect("every payment param has a default")
    }
}

fn default_payments_db() -> String {
    "payments".to_string()
}
fn default_payment_concurrency() -> usize {
    32
}
fn default_call_timeout_ms() -> u64 {
    1_000
}
fn default_payment_attempts() -> u32 {
    6
}
fn default_retry_base_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    10_000
}
fn default_breaker_window() -> u32 {
    50
}
fn default_breaker_min_calls() -> u32 {
    20
}
fn default_breaker_failure_ratio() -> f64 {
    0.6
}
fn default_breaker_open_ms() -> u64 {
    2_000
}

/// The checkout saga.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutParams {
    /// The order history store (a database on `STOREFLEET_POSTGRES`).
    #[serde(default = "default_orders_db")]
    pub database: String,
    /// How long a saga step waits for its answer before it is retried (then compensated).
    /// Longer than payment's whole retry budget, so a slow gateway is not mistaken for a
    /// lost answer.
    #[serde(default = "default_step_timeout_ms")]
    pub step_timeout_ms: i64,
    /// How long an ended saga is kept (ms): a repeated request within it is recognised as
    /// the same checkout. At least the storefront's idempotency window.
    #[serde(default = "default_retain_ms")]
    pub retain_ms: i64,
}

fn default_retain_ms() -> i64 {
    24 * 60 * 60 * 1000
}

fn default_orders_db() -> String {
    "orders".to_string()
}
fn default_step_timeout_ms() -> i64 {
    60_000
}

/// The storefront API's settings. Instance `i` serves HTTP on `http_port + i`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorefrontParams {
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// The catalog service's database (product pages read it on a cache miss).
    #[serde(default = "default_catalog_db")]
    pub catalog_database: String,
    /// The storefront's own database: API keys (hashed).
    #[serde(default = "default_storefront_db")]
    pub database: String,
    /// Requests per second per API key (token bucket; `key_burst` at once).
    #[serde(default = "default_key_rate")]
    pub key_rate_per_sec: u32,
    #[serde(default = "default_key_burst")]
    pub key_burst: u32,
    /// Requests per second per client IP, whatever the key (also counts refused keys).
    #[serde(default = "default_ip_rate")]
    pub ip_rate_per_sec: u32,
    #[serde(default = "default_ip_burst")]
    pub ip_burst: u32,
    /// Largest request body accepted (413 above).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_cart_lines")]
    pub max_cart_lines: u32,
    #[serde(default = "default_max_quantity")]
    pub max_quantity: u32,
    /// How long a product page stays in the Redis cache.
    #[serde(default = "default_product_ttl")]
    pub product_cache_ttl_secs: u64,
    /// Views per second that promote a product to the in-process hot tier.
    #[serde(default = "default_hot_views")]
    pub hot_views_per_sec: u32,
    /// How long a product stays in the in-process hot tier before it is read again.
    #[serde(default = "default_hot_ttl")]
    pub hot_ttl_ms: u64,
    /// The search service's instances (base URLs), replicas of one index: each request
    /// starts at the next replica in turn and tries the others on a failure. Empty (or all
    /// down) degrades search to a catalog query.
    #[serde(default)]
    pub search_urls: Vec<String>,
    /// Time allowed to one search call before the page degrades (search tries its replicas
    /// within twice this in all). Recommendations are read from Redis (the lists the
    /// recommendations processor precomputes), not over HTTP.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_ms: u64,
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Flat shipping fee per order, in minor units.
    #[serde(default)]
    pub shipping_fee_minor: i64,
    /// How long an idempotency key keeps its order (a retried checkout within it is the same
    /// order).
    #[serde(default = "default_idempotency_ttl")]
    pub idempotency_ttl_secs: u64,
}

impl StorefrontParams {
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.http_port == 0 {
            problems.push("http_port must be set".to_string());
        }
        if self.catalog_database.is_empty() || self.database.is_empty() {
            problems.push("catalog_database and database must be named".into());
        }
        if self.key_rate_per_sec == 0 || self.key_burst == 0 {
            problems.push("key_rate_per_sec and key_burst must be positive".into());
        }
        if self.ip_rate_per_sec == 0 || self.ip_burst == 0 {
            problems.push("ip_rate_per_sec and ip_burst must be positive".into());
        }
        if !(256..=1 << 20).contains(&self.max_body_bytes) {
            problems.push(format!(
                "max_body_bytes {} not in 256..=1MiB",
                self.max_body_bytes
            ));
        }
        if self.max_cart_lines == 0 || self.max_quantity == 0 {
            problems.push("max_cart_lines and max_quantity must be positive".into());
        }
        if self.product_cache_ttl_secs == 0 || self.idempotency_ttl_secs == 0 {
            problems
                .push("product_cache_ttl_secs and idempotency_ttl_secs must be positive".into());
        }
        if self.upstream_timeout_ms == 0 {
            problems.push("upstream_timeout_ms must be positive".into());
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            problems.push(format!(
                "currency {:?} is not an ISO 4217 code",
                self.currency
            ));
        }
        if self.shipping_fee_minor < 0 {
            problems.push("shipping_fee_minor must not be negative".into());
        }
        let urls = self
            .search_urls
            .iter()
            .enumerate()
            .map(|(i, url)| (format!("search_urls[{i}]"), url));
        for (name, url) in urls {
            if !is_http_url(url) {
                problems.push(format!("{name} {url:?} is not an http(s) URL"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// `http://host…` or `https://host…`: a scheme the storefront's client speaks and a host.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty() && !r.starts_with('/') && !r.chars().any(|c| c.is_whitespace())
    })
}

/// The search index and its query service (processors/search). Every instance is a full
/// replica: it reads every partition of its inputs into its own index and answers queries
/// on `http_port + instance`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchIndexerParams {
    /// Query service port of instance 0.
    pub http_port: u16,
    /// Top-level categories that get a shard of their own (the blast-radius rule: a query
    /// filtered to one of them touches only its shard); the rest share `other`.
    #[serde(default)]
    pub shards: Vec<String>,
    /// The freshness target: a change is searchable within this long of reaching the
    /// indexer. The index commits every quarter of it while changes wait.
    #[serde(default = "default_freshness")]
    pub freshness_ms: u64,
    /// Time a shard has to answer a query before the answer leaves it out (degraded).
    #[serde(default = "default_shard_budget")]
    pub shard_budget_ms: u64,
    /// Popular-query cache: how long an answer is kept (0 turns the cache off), and how many.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl_ms: u64,
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Indexing memory per shard writer, MB.
    #[serde(default = "default_writer_mb")]
    pub writer_memory_mb: usize,
    /// Lets `POST /admin/shards/{name}/fault` slow down or break a shard (tests, game days).
    #[serde(default)]
    pub fault_injection: bool,
}

fn default_freshness() -> u64 {
    1_000
}
fn default_shard_budget() -> u64 {
    100
}
fn default_cache_ttl() -> u64 {
    10_000
}
fn default_cache_entries() -> usize {
    10_000
}
fn default_writer_mb() -> usize {
    32
}

impl SearchIndexerParams {
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.http_port == 0 {
            problems.push("http_port must be set".to_string());
        }
        if !(40..=60_000).contains(&self.freshness_ms) {
            problems.push(format!(
                "freshness_ms {} not in 40..=60000",
                self.freshness_ms
            ));
        }
        if self.shard_budget_ms == 0 {
            problems.push("shard_budget_ms must be positive".into());
        }
        if !(15..=1024).contains(&self.writer_memory_mb) {
            problems.push(format!(
                "writer_memory_mb {} not in 15..=1024",
                self.writer_memory_mb
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.shards {
            let key = s.trim().to_lowercase();
            if key.is_empty() || key.contains('/') || key == "other" || key.starts_with('_') {
                problems.push(format!("shard {s:?} must be a top-level category name"));
            }
            if !seen.insert(key) {
                problems.push(format!("shard {s:?} is listed twice"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The recommendations precompute (processors/recommendations): interactions, purchases,
/// availability and catalog rows into its PostgreSQL store; on a schedule (and on demand,
/// `fleet recs train`) an implicit-feedback ALS model trained from that store, its top-K per
/// user and item lists written to Redis under a new version that readers switch to at once.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsParams {
    /// Its database on the stack's PostgreSQL (the interaction store).
    #[serde(default = "default_recs_db")]
    pub database: String,
    /// Time between two trainings (the seed: every 6 hours). The last run's end is kept in
    /// the database, so a restart does not retrain early.
    #[serde(default = "default_train_every")]
    pub train_every_s: u64,
    /// How long a version's lists live in Redis (the seed: 12 hours).
    #[serde(default = "default_recs_ttl")]
    pub ttl_s: u64,
    /// Items per user list, per "bought together" list, per popular list.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Interaction weights (the implicit feedback r of Hu, Koren & Volinsky).
    #[serde(default)]
    pub weights: InteractionWeights,
    /// The ALS model.
    #[serde(default)]
    pub model: AlsParams,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionWeights {
    #[serde(default = "one")]
    pub view: f32,
    #[serde(default = "three")]
    pub add_to_cart: f32,
    #[serde(default = "five")]
    pub purchase: f32,
}

impl Default for InteractionWeights {
    fn default() -> Self {
        Self {
            view: 1.0,
            add_to_cart: 3.0,
            purchase: 5.0,
        }
    }
}

fn one() -> f32 {
    1.0
}
fn three() -> f32 {
    3.0
}
fn five() -> f32 {
    5.0
}

/// Hyperparameters of the implicit-feedback ALS model.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlsParams {
    #[serde(default = "default_factors")]
    pub factors: usize,
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    #[serde(default = "default_regularization")]
    pub regularization: f32,
    /// Confidence c = 1 + alpha * r.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// Training threads (never the consumer's: training runs on threads of its own).
    #[serde(default = "default_train_threads")]
    pub threads: usize,
}

impl Default for AlsParams {
    fn default() -> Self {
        serde_yaml::from_value(serde_yaml::Value::Mapping(Default::default()))
            .expect("every ALS param has a default")
    }
}

fn default_recs_db() -> String {
    "recommendations".to_string()
}
fn default_train_every() -> u64 {
    6 * 3600
}
fn default_recs_ttl() -> u64 {
    12 * 3600
}
fn default_top_k() -> usize {
    20
}
fn default_factors() -> usize {
    64
}
fn default_iterations() -> usize {
    15
}
fn default_regularization() -> f32 {
    0.1
}
fn default_alpha() -> f32 {
    10.0
}
fn default_train_threads() -> usize {
    2
}

impl RecommendationsParams {
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.train_every_s < 10 {
            problems.push(format!("train_every_s {} is under 10", self.train_every_s));
        }
        if self.ttl_s <= self.train_every_s {
            problems.push(format!(
                "ttl_s {} must exceed train_every_s {} (lists would expire before the next run)",
                self.ttl_s, self.train_every_s
            ));
        }
        if !(1..=200).contains(&self.top_k) {
            problems.push(format!("top_k {} not in 1..=200", self.top_k));
        }
        let w = &self.weights;
        for (name, v) in [
            ("view", w.view),
            ("add_to_cart", w.add_to_cart),
            ("purchase", w.purchase),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                problems.push(format!("weights.{name} {v} must be a non-negative number"));
            }
        }
        let m = &self.model;
        if !(1..=512).contains(&m.factors) {
            problems.push(format!("model.factors {} not in 1..=512", m.factors));
        }
        if !(1..=200).contains(&m.iterations) {
            problems.push(format!("model.iterations {} not in 1..=200", m.iterations));
        }
        if !(m.regularization.is_finite() && m.regularization > 0.0) {
            problems.push("model.regularization must be positive".into());
        }
        if !(m.alpha.is_finite() && m.alpha > 0.0) {
            problems.push("model.alpha must be positive".into());
        }
        if !(1..=64).contains(&m.threads) {
            problems.push(format!("model.threads {} not in 1..=64", m.threads));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Default for StorefrontParams {
    fn default() -> Self {
        serde_yaml::from_value(serde_yaml::Value::Mapping(Default::default()))
            .expect("every storefront param has a default")
    }
}

fn default_http_port() -> u16 {
    8080
}
fn default_catalog_db() -> String {
    "catalog".to_string()
}
fn default_storefront_db() -> String {
    "storefront".to_string()
}
fn default_key_rate() -> u32 {
    2_000
}
fn default_key_burst() -> u32 {
    4_000
}
fn default_ip_rate() -> u32 {
    5_000
}
fn default_ip_burst() -> u32 {
    10_000
}
fn default_max_body() -> usize {
    16 * 1024
}
fn default_cart_lines() -> u32 {
    50
}
fn default_max_quantity() -> u32 {
    20
}
fn default_product_ttl() -> u64 {
    60
}
fn default_hot_views() -> u32 {
    20
}
fn default_hot_ttl() -> u64 {
    1_000
}
fn default_upstream_timeout() -> u64 {
    150
}
fn default_currency() -> String {
    "USD".to_string()
}
fn default_idempotency_ttl() -> u64 {
    24 * 3600
}

/// The image-quality check (processors/image-quality): downloads, their limits and retries.
/// The scoring thresholds are the checker's own (`imageq::Policy`, versioned in each verdict).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageQualityParams {
    /// Its database on the stack's PostgreSQL (the verdicts).
    #[serde(default = "default_images_db")]
    pub database: String,
    /// Checks in flight per instance (different images; one image's records run in order).
    #[serde(default = "default_image_concurrency")]
    pub concurrency: usize,
    /// Threads of the bounded pool that decodes and scores (never the async runtime's).
    #[serde(default = "default_image_cpu_threads")]
    pub cpu_threads: usize,
    #[serde(default = "default_image_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the next bytes of a download.
    #[serde(default = "default_image_read_timeout")]
    pub read_timeout_ms: u64,
    /// Longest whole download (a server that trickles forever ends here).
    #[serde(default = "default_image_download_timeout")]
    pub download_timeout_ms: u64,
    /// Largest image accepted, in bytes; a larger one is rejected TOO_LARGE unread.
    #[serde(default = "default_image_max_bytes")]
    pub max_bytes: u64,
    /// Retries after a retryable download failure, then NEEDS_MANUAL_REVIEW (the seed: 3).
    #[serde(default = "default_image_max_retries")]
    pub max_retries: u32,
    /// Backoff: full jitter over `min(retry_max_ms, retry_base_ms * 2^(attempt-1))`.
    #[serde(default = "default_image_retry_base")]
    pub retry_base_ms: u64,
    #[serde(default = "default_image_retry_max")]
    pub retry_max_ms: u64,
    /// Downloads per second per host and instance (governor, keyed by host).
    #[serde(default = "default_image_host_rate")]
    pub host_rate_per_sec: u32,
    #[serde(default = "default_image_host_burst")]
    pub host_burst: u32,
    /// Refuse URLs whose host is (or resolves to) a loopback, private, link-local or
    /// unspecified address: on in production (sellers' URLs must not reach the fleet's own
    /// network), off locally where the image host is on 127.0.0.1.
    #[serde(default)]
    pub block_private_networks: bool,
    /// Run the text-overlay heuristic and reject what it flags (WATERMARK). Off by default:
    /// on the calibration photos it flags 5% of clean ones and finds 38-68% of added
    /// captions (crates/imageq/src/watermark.rs says what it can and cannot see).
    #[serde(default)]
    pub watermark_check: bool,
}

fn default_images_db() -> String {
    "images".to_string()
}
fn default_image_concurrency() -> usize {
    16
}
fn default_image_cpu_threads() -> usize {
    1
}
fn default_image_connect_timeout() -> u64 {
    2_000
}
fn default_image_read_timeout() -> u64 {
    5_000
}
fn default_image_download_timeout() -> u64 {
    15_000
}
fn default_image_max_bytes() -> u64 {
    20 * 1024 * 1024
}
fn default_image_max_retries() -> u32 {
    3
}
fn default_image_retry_base() -> u64 {
    1_000
}
fn default_image_retry_max() -> u64 {
    60_000
}
fn default_image_host_rate() -> u32 {
    20
}
fn default_image_host_burst() -> u32 {
    20
}

impl ImageQualityParams {
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !(1..=1024).contains(&self.concurrency) {
            problems.push(format!("concurrency {} not in 1..=1024", self.concurrency));
        }
        if !(1..=64).contains(&self.cpu_threads) {
            problems.push(format!("cpu_threads {} not in 1..=64", self.cpu_threads));
        }
        for (name, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("download_timeout_ms", self.download_timeout_ms),
            ("retry_base_ms", self.retry_base_ms),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be positive"));
            }
        }
        if self.download_timeout_ms < self.read_timeout_ms {
            problems.push(format!(
                "download_timeout_ms {} is under read_timeout_ms {}",
                self.download_timeout_ms, self.read_timeout_ms
            ));
        }
        if self.retry_max_ms < self.retry_base_ms {
            problems.push(format!(
                "retry_max_ms {} is under retry_base_ms {}",
                self.retry_max_ms, self.retry_base_ms
            ));
        }
        if !(1024..=1 << 30).contains(&self.max_bytes) {
            problems.push(format!("max_bytes {} not in 1 KiB..=1 GiB", self.max_bytes));
        }
        if self.max_retries > 10 {
            problems.push(format!("max_retries {} is over 10", self.max_retries));
        }
        if self.host_rate_per_sec == 0 || self.host_burst == 0 {
            problems.push("host_rate_per_sec and host_burst must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
