//! The HTTP API. Every route but `/health` needs an API key; requests are limited per client
//! IP (before the key is even looked at) and per key, bodies are capped, inputs are checked
//! with clear 4xx answers, and error bodies never carry internal details (those go to the
//! log, under the request id the answer names).
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | liveness and whether Redis answers |
//! | `GET /v1/products/{id}` | product page: catalog (cached), images image-quality passed, availability, recommendations (degradable) |
//! | `GET /v1/search?q=&category=&brand=&min_price=&max_price=&in_stock=&sort=&page=&per_page=` | the search service's replicas, or the catalog when none answers ([`crate::search`]) |
//! | `GET /v1/recommendations/{user}` | the recommendations service, or popular products when it is down |
//! | `GET /v1/carts/{user}` | the cart |
//! | `PUT /v1/carts/{user}/lines/{product}` | set a line's quantity (`expected_version` for a conditional update; 0 removes) |
//! | `DELETE /v1/carts/{user}/lines/{product}` | remove a line (`?expected_version=`) |
//! | `POST /v1/checkout` (`Idempotency-Key` header) | place the cart as an order: 202 with the order id |
//! | `GET /v1/orders/{id}?user_id=` | the order's status, for its user |

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, RawQuery, Request, State,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use codec::TopicCodec;
use events::recommendations::{InteractionKind, UserInteraction};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use topology::StorefrontParams;
use tracing::{error, warn};

use crate::catalog::Catalog;
use crate::checkout;
use crate::domain::{
    self, CartLine, CheckoutBody, HotTracker, Product, ProductView, Rejection, SetLine,
};
use crate::images;
use crate::keys::{Client, KeyRing};
use crate::metrics::Metrics;
use crate::projections::{availability_key, image_verdicts_key, order_key};
use crate::redis_store::{LineChange, Store};
use crate::search::{self, Attempt, Refusal, SearchRequest};

/// The search service's replicas, copies of one index (see [`crate::search`]): each request
/// starts at the next replica in turn and moves on to the following one when a replica fails.
pub struct SearchReplicas {
    endpoints: Vec<reqwest::Url>,
    turn: AtomicUsize,
}

impl SearchReplicas {
    /// `endpoints` from [`search::endpoint`]; `first_turn` spreads instances' first requests.
    pub fn new(endpoints: Vec<reqwest::Url>, first_turn: usize) -> Self {
        Self {
            endpoints,
            turn: AtomicUsize::new(first_turn),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Asks the replica whose turn it is, then on its failure the next, each try within
    /// `per_try` and all within [`search::budget`] of it; `failed` hears of each failed try
    /// (replica, endpoint, reason). The first answer wins; a refusal of the request (the
    /// same at every replica) ends the round as `Some(Err)`; `None` when no replica
    /// answered.
    pub async fn ask(
        &self,
        http: &reqwest::Client,
        per_try: Duration,
        request: &SearchRequest,
        mut failed: impl FnMut(usize, &reqwest::Url, &'static str),
    ) -> Option<Result<Value, Refusal>> {
        let deadline = Instant::now() + search::budget(per_try);
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        for replica in search::replica_order(turn, self.endpoints.len()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(timeout) = search::try_timeout(per_try, left) else {
                break;
            };
            let endpoint = &self.endpoints[replica];
            let attempt = match http
                .get(search::service_url(endpoint, request))
                .timeout(timeout)
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.bytes().await {
                        Ok(body) => search::classify(status, &body),
                        Err(e) if e.is_timeout() => Attempt::Failed(search::TIMEOUT),
                        Err(_) => Attempt::Failed(search::UNREACHABLE),
                    }
                }
                Err(e) if e.is_timeout() => Attempt::Failed(search::TIMEOUT),
                Err(_) => Attempt::Failed(search::UNREACHABLE),
            };
            match attempt {
                Attempt::Answered(answer) => return Some(Ok(answer)),
                Attempt::Refused(refusal) => return Some(Err(refusal)),
                Attempt::Failed(reason) => failed(replica, endpoint, reason),
            }
        }
        None
    }
}

/// Topics the storefront writes.
#[derive(Clone)]
pub struct Topics {
    pub checkout: String,
    pub interactions: String,
}

pub struct App {
    pub params: StorefrontParams,
    pub store: Store,
    pub catalog: Catalog,
    pub keys: KeyRing,
    pub producer: FutureProducer,
    pub checkout_codec: TopicCodec,
    pub interactions_codec: TopicCodec,
    pub topics: Topics,
    pub http: reqwest::Client,
    /// The search service's replicas (from `search_urls`).
    pub search: SearchReplicas,
    pub key_limiter: DefaultKeyedRateLimiter<String>,
    pub ip_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Products promoted to this instance's memory (see [`HotTracker`]), with their expiry.
    pub hot: Mutex<HotTier>,
    pub metrics: Metrics,
    /// The storefront's tasks (see `crate::run`): the delivery watchers run there.
    pub tasks: tasks::Tasks,
}

/// The view counter and the promoted products with their expiry.
pub type HotTier = (
    HotTracker,
    std::collections::HashMap<String, (Instant, Arc<Product>)>,
);

/// Builds the two limiters from the params (validated: rates are positive).
pub fn limiters(
    p: &StorefrontParams,
) -> (
    DefaultKeyedRateLimiter<String>,
    DefaultKeyedRateLimiter<IpAddr>,
) {
    let quota = |rate: u32, burst: u32| {
        Quota::per_second(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
    };
    (
        RateLimiter::hashmap(quota(p.key_rate_per_sec, p.key_burst)),
        RateLimiter::hashmap(quota(p.ip_rate_per_sec, p.ip_burst)),
    )
}

/// An answer other than success: status, stable code, message, and for 429/503 when to retry.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The search service's refusal of the shopper's request, passed on as it came.
    fn refused_by_search(r: Refusal) -> Self {
        Self {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            code: Cow::Owned(r.code),
            message: r.message,
            retry_after_secs: None,
        }
    }

    fn rejected(status: StatusCode, r: Rejection) -> Self {
        Self::new(status, r.code, r.message)
    }

    /// A dependency failed: logged in full here, answered as 503 without the detail.
    fn unavailable(what: &str, detail: impl std::fmt::Display) -> Self {
        error!(dependency = what, error = %detail, "dependency failed");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} is unavailable; retry shortly"),
        );
        e.retry_after_secs = Some(1);
        e
    }

    fn too_many(scope: &str, wait: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this {scope}; retry after the Retry-After seconds"),
        );
        e.retry_after_secs = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        // The rejection's text names the field and the problem, never server internals.
        Self::new(status, code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        // The rejection's text names the parameter and the problem, never server internals.
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", r.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/products/{id}", get(product))
        .route("/v1/search", get(search))
        .route("/v1/recommendations/{user}", get(recommendations))
        .route("/v1/carts/{user}", get(cart))
        .route(
            "/v1/carts/{user}/lines/{product}",
            put(set_line).delete(remove_line),
        )
        .route("/v1/checkout", post(checkout))
        .route("/v1/orders/{id}", get(order))
        .route_layer(middleware::from_fn_with_state(app.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(app.params.max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Times every request by route and status, and applies the per-IP limit first of all.
async fn observe(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let response = match app.ip_limiter.check_key(&peer.ip()) {
        Err(not_until) => {
            app.metrics.rate_limited.with_label_values(&["ip"]).inc();
            ApiError::too_many(
                "client address",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
            .into_response()
        }
        Ok(()) => next.run(request).await,
    };
    app.metrics
        .requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// API key, then the per-key limit; the client rides along as a request extension.
async fn authenticate(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = api_key(request.headers()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "send the API key in the x-api-key header",
        )
    })?;
    if key.is_empty() || key.len() > 128 {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "unknown API key",
        ));
    }
    let client = app.keys.authenticate(key).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "unknown API key",
        )
    })?;
    if let Err(not_until) = app.key_limiter.check_key(&client.key_hash) {
        app.metrics.rate_limited.with_label_values(&["key"]).inc();
        return Err(ApiError::too_many(
            "API key",
            not_until.wait_time_from(DefaultClock::default().now()),
        ));
    }
    request.extensions_mut().insert(client);
    Ok(next.run(request).await)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match app.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            warn!(error = %e, "health: redis does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "redis unavailable"})),
            )
                .into_response()
        }
    }
}

fn bad(r: Rejection) -> ApiError {
    ApiError::rejected(StatusCode::BAD_REQUEST, r)
}

impl App {
    /// The product, from this instance's hot tier, then Redis, then the catalog database
    /// (cache-aside: a miss fills Redis with a TTL; Redis evicts least recently used).
    async fn product(&self, id: &str) -> ApiResult<Option<Arc<Product>>> {
        let now = Instant::now();
        let promote = {
            let mut hot = self.hot.lock().unwrap_or_else(|e| e.into_inner());
            let promote = hot.0.view(id, runtime::now_ms());
            if let Some((until, p)) = hot.1.get(id) {
                if *until > now {
                    self.metrics.product_reads.with_label_values(&["hot"]).inc();
                    return Ok(Some(p.clone()));
                }
            }
            promote
        };
        // v2: with the image rows (a v1 entry, without them, is another version's).
        let key = format!("product:v2:{id}");
        let cached = match self.store.get_string(&key).await {
            Ok(v) => v.and_then(|text| serde_json::from_str::<Product>(&text).ok()),
            Err(e) => {
                // Redis down: the catalog still answers, slower.
                warn!(error = %e, "product cache unreachable");
                None
            }
        };
        let product = match cached {
            Some(p) => {
                self.metrics
                    .product_reads
                    .with_label_values(&["redis"])
                    .inc();
                Arc::new(p)
            }
            None => {
                self.metrics
                    .product_reads
                    .with_label_values(&["catalog"])
                    .inc();
                let Some(p) = self
                    .catalog
                    .product_by_id(id)
                    .await
                    .map_err(|e| ApiError::unavailable("the catalog", e))?
                else {
                    return Ok(None);
                };
                if let Ok(text) = serde_json::to_string(&p) {
                    if let Err(e) = self
                        .store
                        .set_string(&key, &text, self.params.product_cache_ttl_secs)
                        .await
                    {
                        warn!(error = %e, "product not cached");
                    }
                }
                Arc::new(p)
            }
        };
        if promote {
            let mut hot = self.hot.lock().unwrap_or_else(|e| e.into_inner());
            if hot.1.len() >= 1_000 {
                hot.1.retain(|_, (until, _)| *until > now);
            }
            if hot.1.len() < 1_000 {
                let until = now + Duration::from_millis(self.params.hot_ttl_ms);
                hot.1.insert(id.to_string(), (until, product.clone()));
            }
        }
        Ok(Some(product))
    }

    /// The search service's answer to `request` ([`SearchReplicas::ask`], each try within
    /// the upstream timeout). `Some(Err)` is the service refusing the request; `None` means
    /// no replica answered (or none is configured): the caller falls back to the catalog.
    async fn search_service(&self, request: &SearchRequest) -> Option<ApiResult<Value>> {
        if self.search.is_empty() {
            return None;
        }
        let per_try = Duration::from_millis(self.params.upstream_timeout_ms);
        let asked = self
            .search
            .ask(&self.http, per_try, request, |replica, endpoint, reason| {
                warn!(
                    replica,
                    search = %endpoint,
                    reason,
                    "search replica failed; trying the next"
                );
                self.metrics
                    .search_tries_failed
                    .with_label_values(&[reason])
                    .inc();
            })
            .await;
        match asked {
            Some(Ok(answer)) => Some(Ok(answer)),
            Some(Err(refusal)) => Some(Err(ApiError::refused_by_search(refusal))),
            None => {
                self.metrics.degraded.with_label_values(&["search"]).inc();
                None
            }
        }
    }

    /// The first image shown on each of `products`' pages ([`images::gallery`]), for search
    /// hits: their catalog rows and their verdicts read at once (one catalog query beside one
    /// pipelined Redis round trip), within the search budget. `None` when either fails or is
    /// late: the caller shows no image.
    async fn thumbnails(&self, products: &[String]) -> Option<HashMap<String, String>> {
        if products.is_empty() {
            return Some(HashMap::new());
        }
        let keys: Vec<String> = products.iter().map(|p| image_verdicts_key(p)).collect();
        let budget = search::budget(Duration::from_millis(self.params.upstream_timeout_ms));
        let read = async {
            tokio::join!(
                self.catalog.image_rows(products),
                self.store.image_verdicts_of(&keys)
            )
        };
        let failure = match tokio::time::timeout(budget, read).await {
            Ok((Ok(rows), Ok(verdicts))) => {
                return Some(
                    products
                        .iter()
                        .zip(verdicts)
                        .filter_map(|(p, v)| {
                            let rows = rows.get(p).map_or(&[][..], Vec::as_slice);
                            let first = images::gallery(rows, &v).images.into_iter().next()?;
                            Some((p.clone(), first.url))
                        })
                        .collect(),
                )
            }
            Ok((Err(e), _)) => format!("image rows: {e}"),
            Ok((_, Err(e))) => format!("image verdicts: {e}"),
            Err(_) => "image rows and verdicts: timed out".to_string(),
        };
        warn!(error = %failure, "search thumbnails unreadable; no image shown");
        self.metrics.degraded.with_label_values(&["images"]).inc();
        None
    }

    /// The first of the precomputed lists `suffixes` in the recommendations' current version
    /// (see recommendations::published), as `{version, list, items}`; `None` when there is no
    /// current version or Redis fails: the caller degrades.
    async fn precomputed(&self, suffixes: &[&str]) -> Option<Value> {
        use recommendations::published::Found;
        match self.store.recommendations(suffixes).await {
            Ok(Found::List {
                version,
                suffix,
                json,
            }) => {
                let list = match suffix.split_once(':').map_or(suffix.as_str(), |(k, _)| k) {
                    "u" => "user",
                    "c" => "popular_in_category",
                    "i" => "bought_together",
                    _ => "popular",
                };
                match serde_json::from_str::<Value>(&json) {
                    Ok(v) => {
                        // An emptied list comes back as `{}` (see RECOMMENDATIONS_IN_STOCK).
                        let items = match &v["items"] {
                            Value::Array(items) => Value::Array(items.clone()),
                            _ => json!([]),
                        };
                        return Some(json!({"version": version, "list": list, "items": items}));
                    }
                    Err(e) => warn!(error = %e, "unreadable recommendations list"),
                }
            }
            Ok(Found::Missing { version }) => {
                return Some(json!({"version": version, "list": null, "items": []}))
            }
            Ok(Found::NoVersion) => {}
            Err(e) => warn!(error = %e, "recommendations unreachable"),
        }
        self.metrics
            .degraded
            .with_label_values(&["recommendations"])
            .inc();
        None
    }

    /// Records an interaction for the recommendations precompute. Fire and forget: a shopper's
    /// page never waits for analytics; failures are counted.
    fn interaction(
        &self,
        user: &str,
        kind: InteractionKind,
        fill: impl FnOnce(&mut UserInteraction),
    ) {
        let mut event = UserInteraction {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: runtime::now_ms(),
            correlation_id: user.to_string(),
            causation_id: None,
            user_id: user.to_string(),
            session_id: None,
            kind,
            product_id: None,
            quantity: None,
            order_id: None,
            query: None,
            surface: None,
        };
        fill(&mut event);
        let payload = match self.interactions_codec.encode(&event) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "interaction does not fit its schema");
                return;
            }
        };
        let record = FutureRecord::to(&self.topics.interactions)
            .key(user)
            .payload(&payload);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let failed = self.metrics.interactions_dropped.clone();
                let stop = self.tasks.token().clone();
                // At shutdown a watcher stops waiting: the process exit used to drop it too.
                self.tasks.spawn("interaction delivery watcher", async move {
                    tokio::select! {
                        delivered = delivery => if !matches!(delivered, Ok(Ok(_))) { failed.inc() },
                        _ = stop.cancelled() => {}
                    }
                });
            }
            Err(_) => self.metrics.interactions_dropped.inc(),
        }
    }
}

#[derive(Deserialize)]
struct ViewerQuery {
    user_id: Option<String>,
}

async fn product(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<ViewerQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let id = domain::parse_product_id(&id).map_err(bad)?;
    if let Some(user) = &q.user_id {
        domain::check_token("user_id", user).map_err(bad)?;
    }
    let product = app.product(&id).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_product", "no such product")
    })?;
    // Availability, the image verdicts and the view count travel together (one round trip's
    // wait).
    let avail_key = availability_key(&id);
    let verdicts_key = image_verdicts_key(&id);
    let image_ids: Vec<&str> = product.image_rows.iter().map(|r| r.id.as_str()).collect();
    let (availability, verdicts, _) = tokio::join!(
        app.store.projection(&avail_key),
        app.store.image_verdicts(&verdicts_key, &image_ids),
        app.store.count_view(&id)
    );
    let availability = match availability {
        Ok(doc) => doc.and_then(|d| serde_json::from_str::<Value>(&d).ok()),
        Err(e) => {
            warn!(error = %e, "availability unreachable");
            None
        }
    };
    let mut degraded = Vec::new();
    // Without the verdicts no image is known to have passed: none is shown.
    let verdicts = verdicts.unwrap_or_else(|e| {
        warn!(error = %e, "image verdicts unreachable; no image shown");
        app.metrics.degraded.with_label_values(&["images"]).inc();
        degraded.push("images");
        HashMap::new()
    });
    let gallery = images::gallery(&product.image_rows, &verdicts);
    let user_list = q.user_id.as_ref().map(|user| format!("u:{user}"));
    let together = format!("i:{id}");
    let together = [together.as_str()];
    let (recommendations, bought_together) = tokio::join!(
        async {
            match &user_list {
                Some(key) => app.precomputed(&[key, "p"]).await,
                None => None,
            }
        },
        app.precomputed(&together)
    );
    if (user_list.is_some() && recommendations.is_none()) || bought_together.is_none() {
        degraded.push("recommendations");
    }
    if let Some(user) = &q.user_id {
        let pid = id.clone();
        app.interaction(user, InteractionKind::View, |e| {
            e.product_id = Some(pid);
            e.surface = Some("product_page".into());
        });
    }
    Ok(Json(json!({
        "product": ProductView::new(&product, gallery),
        "availability": availability,
        "recommendations": recommendations,
        "bought_together": bought_together,
        "degraded": degraded,
    })))
}

/// The search request in the query string, or the 400 saying what is wrong with it. The
/// storefront decodes the query itself: whatever bytes it holds, the answer is a request or a
/// 400 with a stable code (see [`search::parse_query`]).
fn search_request(raw: Option<&str>) -> ApiResult<SearchRequest> {
    search::parse_query(raw).map_err(bad)
}

/// Searches: the search service's replicas (see [`App::search_service`]), or the catalog's
/// title search when none answers.
async fn search(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let request = search_request(raw.as_deref())?;
    if let Some(user) = &request.user_id {
        let query = request.q.clone();
        app.interaction(user, InteractionKind::Search, |e| {
            e.query = Some(query);
            e.surface = Some("search".into());
        });
    }
    let answered = |source: &str| {
        app.metrics.searches.with_label_values(&[source]).inc();
        app.metrics
            .search_seconds
            .with_label_values(&[source])
            .observe(started.elapsed().as_secs_f64());
    };
    match app.search_service(&request).await {
        Some(Ok(mut answer)) => {
            let thumbnails = app.thumbnails(&search::hit_ids(&answer)).await;
            search::checked_thumbnails(&mut answer, thumbnails.as_ref());
            answered("search");
            return Ok(Json(answer));
        }
        Some(Err(refused)) => return Err(refused),
        None => {}
    }
    let limit = i64::from(request.per_page);
    let offset = i64::try_from(request.offset()).unwrap_or(i64::MAX);
    let products = app
        .catalog
        .search(&request.q, limit, offset)
        .await
        .map_err(|e| ApiError::unavailable("search", e))?;
    let keys: Vec<String> = products.iter().map(|p| image_verdicts_key(&p.id)).collect();
    let verdicts = app.store.image_verdicts_of(&keys).await;
    let galleries: Vec<images::Gallery> = match &verdicts {
        Ok(verdicts) => products
            .iter()
            .zip(verdicts)
            .map(|(p, v)| images::gallery(&p.image_rows, v))
            .collect(),
        Err(e) => {
            warn!(error = %e, "image verdicts unreachable; no image shown");
            products
                .iter()
                .map(|p| images::gallery(&p.image_rows, &HashMap::new()))
                .collect()
        }
    };
    let mut answer = search::catalog_answer(&request, &products, &galleries);
    if verdicts.is_err() {
        app.metrics.degraded.with_label_values(&["images"]).inc();
        search::degrade(&mut answer, "images");
    }
    answered("catalog");
    Ok(Json(answer))
}

#[derive(Deserialize)]
struct RecommendationsQuery {
    /// A top-level category: a user without a list gets its popular items.
    category: Option<String>,
}

/// A user's precomputed list (or, for a user without history, the popular items of
/// `category` or overall, from the same model version); popular views when the
/// recommendations are down (no current version), marked degraded.
async fn recommendations(
    State(app): State<Arc<App>>,
    Path(user): Path<String>,
    query: Result<Query<RecommendationsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    domain::check_token("user_id", &user).map_err(bad)?;
    let user_key = format!("u:{user}");
    let category_key = match q.category.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => {
            if c.len() > 100 || c.chars().any(char::is_control) {
                return Err(bad(domain::Rejection::new(
                    "invalid_parameter",
                    "category must be a category name",
                )));
            }
            Some(format!("c:{c}"))
        }
        _ => None,
    };
    let mut suffixes = vec![user_key.as_str()];
    suffixes.extend(category_key.as_deref());
    suffixes.push("p");
    let answer = match app.precomputed(&suffixes).await {
        Some(list) => {
            json!({"source": "recommendations", "products": list["items"], "version": list["version"], "list": list["list"], "degraded": []})
        }
        None => {
            let popular = app
                .store
                .popular(10)
                .await
                .map_err(|e| ApiError::unavailable("recommendations", e))?;
            json!({"source": "popular", "products": popular, "degraded": ["recommendations"]})
        }
    };
    Ok(Json(answer))
}

async fn cart(State(app): State<Arc<App>>, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    domain::check_token("user_id", &user).map_err(bad)?;
    let lines = app
        .store
        .cart(&user)
        .await
        .map_err(|e| ApiError::unavailable("the cart", e))?;
    let lines: Vec<_> = lines.into_iter().map(|(l, _)| l).collect();
    Ok(Json(json!({"user_id": user, "lines": lines})))
}

async fn change_line(app: &App, user: &str, product: &str, set: SetLine) -> ApiResult<Response> {
    domain::check_token("user_id", user).map_err(bad)?;
    let product = domain::parse_product_id(product).map_err(bad)?;
    domain::check_quantity(set.quantity, app.params.max_quantity).map_err(bad)?;
    if set.quantity > 0 && app.product(&product).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_product",
            "no such product",
        ));
    }
    let change = app
        .store
        .set_line(
            user,
            &product,
            set.quantity,
            set.expected_version,
            runtime::now_ms(),
            app.params.max_cart_lines,
        )
        .await
        .map_err(|e| ApiError::unavailable("the cart", e))?;
    match change {
        LineChange::Set { version } => {
            let quantity = set.quantity;
            let pid = product.clone();
            app.interaction(user, InteractionKind::AddToCart, |e| {
                e.product_id = Some(pid);
                e.quantity = Some(quantity as i32);
                e.surface = Some("cart".into());
            });
            Ok(
                Json(json!({"product_id": product, "quantity": quantity, "version": version}))
                    .into_response(),
            )
        }
        LineChange::Removed => Ok(StatusCode::NO_CONTENT.into_response()),
        LineChange::Conflict { current_version } => Ok((
            StatusCode::CONFLICT,
            Json(json!({"error": {
                "code": "version_conflict",
                "message": "the line changed since you read it; read the cart again",
                "current_version": current_version,
            }})),
        )
            .into_response()),
        LineChange::CartFull => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cart_full",
            format!("a cart holds at most {} lines", app.params.max_cart_lines),
        )),
    }
}

async fn set_line(
    State(app): State<Arc<App>>,
    Path((user, product)): Path<(String, String)>,
    body: Result<Json<SetLine>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(set) = body?;
    change_line(&app, &user, &product, set).await
}

#[derive(Deserialize)]
struct RemoveQuery {
    expected_version: Option<u64>,
}

async fn remove_line(
    State(app): State<Arc<App>>,
    Path((user, product)): Path<(String, String)>,
    query: Result<Query<RemoveQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let set = SetLine {
        quantity: 0,
        expected_version: q.expected_version,
    };
    change_line(&app, &user, &product, set).await
}

/// Places the cart as an order. The idempotency key names the order: the first request with
/// a key stores the checkout request it built (SET NX), and every retry with the key
/// re-publishes that same stored request, so a retried or double-clicked checkout is one
/// order even if the cart changed in between, and a request whose publish failed is
/// published by its retry.
async fn checkout(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    body: Result<Json<CheckoutBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            bad(Rejection::new(
                "missing_idempotency_key",
                "send an Idempotency-Key header (one per checkout attempt, reused on retry)",
            ))
        })?;
    domain::check_token("Idempotency-Key", idempotency_key).map_err(bad)?;
    let (address, payment, speed) = body.validate().map_err(bad)?;
    let remembered_key = checkout::remembered_key(&client.name, idempotency_key);

    let existing = app
        .store
        .get_string(&remembered_key)
        .await
        .map_err(|e| ApiError::unavailable("checkout", e))?;
    let (request, replay, read) = match existing {
        Some(stored) => (stored, true, Vec::new()),
        None => {
            let read = app
                .store
                .cart(&body.user_id)
                .await
                .map_err(|e| ApiError::unavailable("the cart", e))?;
            let mut products = HashMap::with_capacity(read.len());
            for (line, _) in &read {
                if let Some(product) = app.product(&line.product_id).await? {
                    products.insert(line.product_id.clone(), Product::clone(&product));
                }
            }
            let cart: Vec<CartLine> = read.iter().map(|(line, _)| line.clone()).collect();
            let priced = checkout::price(&cart, &products)
                .map_err(|r| ApiError::rejected(StatusCode::UNPROCESSABLE_ENTITY, r))?;
            let request_id = uuid::Uuid::new_v4().to_string();
            let ctx = domain::CheckoutContext {
                client: &client.name,
                idempotency_key,
                request_id: &request_id,
                user_id: &body.user_id,
                currency: &app.params.currency,
                shipping_fee_minor: app.params.shipping_fee_minor,
                now_ms: runtime::now_ms(),
            };
            let request = domain::checkout_request(&ctx, priced, address, payment, speed)
                .map_err(|r| ApiError::rejected(StatusCode::UNPROCESSABLE_ENTITY, r))?;
            let text = serde_json::to_string(&request)
                .map_err(|e| ApiError::unavailable("checkout", e))?;
            let stored = app
                .store
                .remember_checkout(&remembered_key, &text, app.params.idempotency_ttl_secs)
                .await
                .map_err(|e| ApiError::unavailable("checkout", e))?;
            let replay = checkout::is_replay(&stored, &text);
            (stored, replay, if replay { Vec::new() } else { read })
        }
    };
    let request: events::checkout::CheckoutRequested =
        serde_json::from_str(&request).map_err(|e| ApiError::unavailable("checkout", e))?;
    checkout::check_owner(&request, &body.user_id)
        .map_err(|r| ApiError::rejected(StatusCode::UNPROCESSABLE_ENTITY, r))?;
    let payload = app
        .checkout_codec
        .encode(&request)
        .map_err(|e| ApiError::unavailable("checkout", e))?;
    let record = FutureRecord::to(&app.topics.checkout)
        .key(&request.order_id)
        .payload(&payload);
    if let Err((e, _)) = app.producer.send(record, Duration::from_secs(5)).await {
        app.metrics
            .checkouts
            .with_label_values(&["not_queued"])
            .inc();
        return Err(ApiError::unavailable("checkout", format!("publish: {e}")));
    }
    let accepted = checkout::accepted_view(&request);
    if let Ok(doc) = serde_json::to_string(&accepted) {
        if let Err(e) = app
            .store
            .project(&order_key(&request.order_id), -1, &doc)
            .await
        {
            warn!(error = %e, "accepted status not recorded; the saga's will be");
        }
    }
    if !replay {
        if let Err(e) = app.store.remove_ordered(&body.user_id, &read).await {
            warn!(error = %e, "ordered lines left in the cart");
        }
        for line in &request.lines {
            let (pid, qty, order) = (
                line.product_id.clone(),
                line.quantity,
                request.order_id.clone(),
            );
            app.interaction(&request.user_id, InteractionKind::Purchase, |e| {
                e.product_id = Some(pid);
                e.quantity = Some(qty);
                e.order_id = Some(order);
                e.surface = Some("checkout".into());
            });
        }
    }
    app.metrics
        .checkouts
        .with_label_values(&[if replay { "replayed" } else { "queued" }])
        .inc();
    let status = if replay {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(checkout::answer(&request, replay))).into_response())
}

/// An order's status, for the user who placed it: `user_id` must match, and another user's
/// order answers 404 like a missing one (order ids derive from client-chosen keys, so they are
/// not secrets).
async fn order(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<ViewerQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let id = uuid::Uuid::parse_str(&id)
        .map(|u| u.to_string())
        .map_err(|_| bad(Rejection::new("invalid_id", "order id must be a UUID")))?;
    let user = q.user_id.ok_or_else(|| {
        bad(Rejection::new(
            "missing_user_id",
            "name the order's user: ?user_id=",
        ))
    })?;
    domain::check_token("user_id", &user).map_err(bad)?;
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, "unknown_order", "no such order");
    let doc = app
        .store
        .projection(&order_key(&id))
        .await
        .map_err(|e| ApiError::unavailable("order status", e))?
        .ok_or_else(unknown)?;
    let view: Value =
        serde_json::from_str(&doc).map_err(|e| ApiError::unavailable("order status", e))?;
    if view["user_id"].as_str() != Some(user.as_str()) {
        return Err(unknown());
    }
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::delete;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server whose routes read their query strings the way the real handlers do, first
    /// thing (the rest of a handler needs Redis, the catalog and a broker).
    async fn serve() -> SocketAddr {
        let app = Router::new()
            .route(
                "/v1/search",
                get(|RawQuery(raw): RawQuery| async move {
                    search_request(raw.as_deref()).map(|r| Json(json!({"q": r.q})))
                }),
            )
            .route(
                "/v1/orders/{id}",
                get(
                    |query: Result<Query<ViewerQuery>, QueryRejection>| async move {
                        let Query(q) = query?;
                        Ok::<_, ApiError>(Json(json!({"user_id": q.user_id})))
                    },
                ),
            )
            .route(
                "/v1/carts/{user}/lines/{product}",
                delete(
                    |query: Result<Query<RemoveQuery>, QueryRejection>| async move {
                        let Query(q) = query?;
                        Ok::<_, ApiError>(Json(json!({"expected": q.expected_version})))
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// Sends `method target` byte for byte (no client would send some of these) and returns
    /// the status and the body.
    async fn raw(address: SocketAddr, method: &str, target: &[u8]) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut request = format!("{method} ").into_bytes();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }

    /// A stand-in search replica: `answer` says what it does with every request; the
    /// counter counts the requests it got.
    async fn replica(answer: &'static str) -> (reqwest::Url, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let app = Router::new().route(
            "/search",
            get(move |RawQuery(raw): RawQuery| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match answer {
                        "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
                        "refuse" => (
                            StatusCode::BAD_REQUEST,
                            Json(json!({"error": {"code": "invalid_parameter", "message": "no"}})),
                        )
                            .into_response(),
                        slow_or_live => {
                            if slow_or_live == "slow" {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                            }
                            Json(json!({"hits": [{"id": slow_or_live}], "query": raw}))
                                .into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (search::endpoint(&base).unwrap(), asked)
    }

    /// A replica nobody listens at.
    fn dead_replica() -> reqwest::Url {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        search::endpoint(&base).unwrap()
    }

    #[tokio::test]
    async fn replicas_take_turns_and_a_failing_one_hands_the_request_on() {
        let http = reqwest::Client::new();
        let per_try = Duration::from_millis(150);
        let request = search::parse_query(Some("q=red+chair&page=2")).unwrap();

        // Two live replicas share the requests evenly; the service gets the parameters.
        let (a, asked_a) = replica("a").await;
        let (b, asked_b) = replica("b").await;
        let replicas = SearchReplicas::new(vec![a, b], 0);
        for i in 0..10 {
            let answer = replicas
                .ask(&http, per_try, &request, |_, _, r| panic!("{r}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(answer["hits"][0]["id"], ["a", "b"][i % 2]);
            assert_eq!(answer["source"], "search");
            assert_eq!(answer["query"], "q=red+chair&page=2&per_page=20");
        }
        assert_eq!(
            (
                asked_a.load(Ordering::SeqCst),
                asked_b.load(Ordering::SeqCst)
            ),
            (5, 5)
        );

        // A dead replica and a failing one: every request is still answered, by the live one.
        let (failing, _) = replica("fail").await;
        let (live, asked_live) = replica("live").await;
        let replicas = SearchReplicas::new(vec![dead_replica(), failing, live], 0);
        let mut reasons = Vec::new();
        for _ in 0..3 {
            let answer = replicas
                .ask(&http, per_try, &request, |i, _, r| reasons.push((i, r)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(answer["hits"][0]["id"], "live");
        }
        // Turns 0, 1, 2 start at the dead, the failing and the live replica.
        assert_eq!(
            reasons,
            [(0, search::UNREACHABLE), (1, "status"), (1, "status")]
        );
        assert_eq!(asked_live.load(Ordering::SeqCst), 3);

        // A refusal is the request's: the other replicas are not asked.
        let (refusing, _) = replica("refuse").await;
        let (live, asked_live) = replica("live").await;
        let replicas = SearchReplicas::new(vec![refusing, live], 0);
        let refused = replicas
            .ask(&http, per_try, &request, |_, _, r| panic!("{r}"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (refused.status, refused.code.as_str()),
            (400, "invalid_parameter")
        );
        assert_eq!(asked_live.load(Ordering::SeqCst), 0);

        // Slow replicas use up the budget of two tries; the live fourth is never reached.
        let mut slow = Vec::new();
        for _ in 0..3 {
            slow.push(replica("slow").await.0);
        }
        let (live, asked_live) = replica("live").await;
        slow.push(live);
        let replicas = SearchReplicas::new(slow, 0);
        let started = Instant::now();
        let mut reasons = Vec::new();
        let none = replicas
            .ask(&http, per_try, &request, |_, _, r| reasons.push(r))
            .await;
        let took = started.elapsed();
        assert!(none.is_none());
        assert_eq!(reasons, [search::TIMEOUT, search::TIMEOUT]);
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1_000),
            "{took:?}"
        );
        assert_eq!(asked_live.load(Ordering::SeqCst), 0);

        assert!(SearchReplicas::new(Vec::new(), 0).is_empty());
        let none = SearchReplicas::new(Vec::new(), 3)
            .ask(&http, per_try, &request, |_, _, r| panic!("{r}"))
            .await;
        assert!(none.is_none());
    }

    #[tokio::test]
    async fn whatever_bytes_a_query_holds_the_answer_is_a_request_or_a_coded_400() {
        let address = serve().await;
        let (status, body) = raw(address, "GET", b"/v1/search?q=office+chair&page=2").await;
        assert_eq!((status, &body["q"]), (200, &json!("office chair")));
        for (target, code) in [
            (&b"/v1/search?q=%FF"[..], "invalid_parameter"),
            (b"/v1/search?q=%C3%28&page=1", "invalid_parameter"),
            (b"/v1/search?q=chair&page=abc", "invalid_parameter"),
            (b"/v1/search?q=chair&per_page=-5", "invalid_parameter"),
            (b"/v1/search?q=chair&limit=1e3", "invalid_parameter"),
            (b"/v1/search?q=chair&q=desk", "invalid_parameter"),
            (
                b"/v1/search?q=chair&min_price=10&max_price=5",
                "invalid_parameter",
            ),
            (
                b"/v1/search?q=chair&page=11&per_page=100",
                "page_out_of_range",
            ),
            (b"/v1/search?q=%20%20", "empty_query"),
            (b"/v1/search", "empty_query"),
            (b"/v1/orders/o1?user_id=a&user_id=b", "invalid_parameter"),
        ] {
            let (status, body) = raw(address, "GET", target).await;
            let shown = String::from_utf8_lossy(target);
            assert_eq!(status, 400, "{shown}: {body}");
            assert_eq!(body["error"]["code"], code, "{shown}: {body}");
        }
        let (status, body) = raw(
            address,
            "DELETE",
            b"/v1/carts/u1/lines/p1?expected_version=abc",
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_parameter"))
        );
        // Bytes that are not even a URL's: refused before any handler, never a 5xx.
        for target in [
            &b"/v1/search?q=\xFF"[..],
            b"/v1/search?q=\xC3\x28",
            b"/v1/search?q=a b",
        ] {
            let (status, body) = raw(address, "GET", target).await;
            let shown = String::from_utf8_lossy(target);
            assert!((400..500).contains(&status), "{shown}: {status} {body}");
            if !body.is_null() {
                assert_eq!(
                    body["error"]["code"], "invalid_parameter",
                    "{shown}: {body}"
                );
            }
        }
    }
}
