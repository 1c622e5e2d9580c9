//! HTTP: each request becomes at most one ledger call. For a mutating call the gateway first
//! takes a rate-limit token, then plans its fate (see `faults`), applies it under the ledger
//! lock if the plan says so, and only then waits. Whether a call took effect therefore never
//! depends on when the client gave up, only on the plan.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::GatewayConfig;
use crate::faults::{self, Delivery, InjectedError, Plan, Refusal};
use crate::ledger::{Cents, Command, Ledger, LedgerError, Payment};
use crate::rate_limit::{retry_after_secs, TokenBucket};
use crate::stats::{Endpoint, Stats};

pub(crate) fn router(config: GatewayConfig, shutdown: CancellationToken) -> Router {
    let gateway = Arc::new(Gateway {
        ledger: Mutex::new(Ledger::default()),
        control: Mutex::new(Control::new(config)),
        shutdown,
    });
    Router::new()
        .route("/health", get(health))
        .route("/v1/payments/{key}", get(get_payment))
        .route("/v1/payments/{key}/authorize", post(authorize))
        .route("/v1/payments/{key}/capture", post(capture))
        .route("/v1/payments/{key}/void", post(void))
        .route("/v1/payments/{key}/refund", post(refund))
        .route("/v1/ledger", get(ledger))
        .route("/v1/stats", get(stats))
        .route("/v1/faults", get(get_faults).put(put_faults))
        .with_state(gateway)
}

type Shared = State<Arc<Gateway>>;

struct Gateway {
    /// Every change to the books happens under this one lock.
    ledger: Mutex<Ledger>,
    control: Mutex<Control>,
    /// Cuts hangs and latencies short, so a graceful shutdown does not wait them out.
    shutdown: CancellationToken,
}

/// The behaviour side: configuration, the fault RNG, the rate limit and the counters.
struct Control {
    config: GatewayConfig,
    rng: StdRng,
    bucket: TokenBucket,
    stats: Stats,
}

impl Control {
    fn new(config: GatewayConfig) -> Self {
        Self {
            rng: rng_for(config.seed),
            bucket: TokenBucket::new(config.rate_limit_per_sec, Instant::now()),
            stats: Stats::default(),
            config,
        }
    }

    /// A new seed restarts the RNG (reproducible from here); a new rate refills the bucket.
    fn reconfigure(&mut self, config: GatewayConfig) {
        if config.seed.is_some() {
            self.rng = rng_for(config.seed);
        }
        if config.rate_limit_per_sec != self.bucket.per_sec() {
            self.bucket = TokenBucket::new(config.rate_limit_per_sec, Instant::now());
        }
        self.config = config;
    }
}

fn rng_for(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

/// A panic under a lock is a bug elsewhere; the books stay readable for the audit.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gateway {
    fn count(&self, endpoint: Endpoint) {
        lock(&self.control).stats.record_request(endpoint);
    }

    async fn mutate(&self, endpoint: Endpoint, key: &str, command: Command) -> Response {
        let (plan, decline_rate) = match self.admit() {
            Ok(admitted) => admitted,
            Err(wait) => return rate_limited(wait),
        };
        if !matches!(plan, Plan::Apply(Delivery::Answer { slow: false, .. })) {
            debug!(key, ?endpoint, ?plan, "injecting fault");
        }
        match plan {
            Plan::Refuse(Refusal::Error(InjectedError::Internal)) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (injected)",
            ),
            Plan::Refuse(Refusal::Error(InjectedError::Unavailable)) => {
                error(StatusCode::SERVICE_UNAVAILABLE, "unavailable (injected)")
            }
            Plan::Refuse(Refusal::Timeout { hang }) => {
                self.wait(hang).await;
                gateway_timeout()
            }
            Plan::Apply(delivery) => {
                // Before any await: the call takes effect even if the client hangs up.
                let outcome = lock(&self.ledger).apply(key, &command, decline_rate);
                match delivery {
                    Delivery::Answer { delay, .. } => {
                        self.wait(delay).await;
                        ledger_response(outcome)
                    }
                    Delivery::Lost { hang } => {
                        self.wait(hang).await;
                        gateway_timeout()
                    }
                }
            }
        }
    }

    /// A rate-limit token and a plan, or how long to wait for a token.
    fn admit(&self) -> Result<(Plan, f64), Duration> {
        let mut control = lock(&self.control);
        let control = &mut *control;
        if let Err(wait) = control.bucket.try_take(Instant::now()) {
            control.stats.rate_limited += 1;
            return Err(wait);
        }
        let plan = faults::plan(&control.config, &mut control.rng);
        control.stats.record_plan(&plan);
        Ok((plan, control.config.decline_rate))
    }

    async fn wait(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

#[derive(Deserialize)]
struct AuthorizeBody {
    amount_cents: Cents,
    currency: String,
    /// Capture in the same call (a sale).
    #[serde(default)]
    capture: bool,
}

async fn authorize(State(gateway): Shared, Path(key): Path<String>, body: Bytes) -> Response {
    gateway.count(Endpoint::Authorize);
    let body: AuthorizeBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid authorize body: {e}"),
            )
        }
    };
    let command = Command::Authorize {
        amount_cents: body.amount_cents,
        currency: body.currency,
        capture: body.capture,
    };
    gateway.mutate(Endpoint::Authorize, &key, command).await
}

async fn capture(State(gateway): Shared, Path(key): Path<String>) -> Response {
    gateway.count(Endpoint::Capture);
    gateway
        .mutate(Endpoint::Capture, &key, Command::Capture)
        .await
}

async fn void(State(gateway): Shared, Path(key): Path<String>) -> Response {
    gateway.count(Endpoint::Void);
    gateway.mutate(Endpoint::Void, &key, Command::Void).await
}

async fn refund(State(gateway): Shared, Path(key): Path<String>) -> Response {
    gateway.count(Endpoint::Refund);
    gateway
        .mutate(Endpoint::Refund, &key, Command::Refund)
        .await
}

async fn get_payment(State(gateway): Shared, Path(key): Path<String>) -> Response {
    gateway.count(Endpoint::GetPayment);
    let payment = lock(&gateway.ledger).get(&key).cloned();
    match payment {
        Some(payment) => Json(payment).into_response(),
        None => ledger_response(Err(LedgerError::NotFound { key })),
    }
}

async fn ledger(State(gateway): Shared) -> Response {
    gateway.count(Endpoint::Ledger);
    let audit = lock(&gateway.ledger).audit();
    Json(audit).into_response()
}

async fn stats(State(gateway): Shared) -> Response {
    let mut control = lock(&gateway.control);
    control.stats.record_request(Endpoint::Stats);
    Json(control.stats.clone()).into_response()
}

async fn get_faults(State(gateway): Shared) -> Response {
    let mut control = lock(&gateway.control);
    control.stats.record_request(Endpoint::Faults);
    Json(control.config.clone()).into_response()
}

async fn put_faults(State(gateway): Shared, body: Bytes) -> Response {
    gateway.count(Endpoint::Faults);
    let config: GatewayConfig = match serde_json::from_slice(&body) {
        Ok(config) => config,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid fault config: {e}"),
            )
        }
    };
    if let Err(problems) = config.validate() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid fault config: {problems}"),
        );
    }
    info!(?config, "gateway reconfigured");
    lock(&gateway.control).reconfigure(config.clone());
    Json(config).into_response()
}

async fn health(State(gateway): Shared) -> &'static str {
    gateway.count(Endpoint::Health);
    "ok"
}

fn ledger_response(outcome: Result<Payment, LedgerError>) -> Response {
    match outcome {
        Ok(payment) => Json(payment).into_response(),
        Err(e @ LedgerError::NotFound { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (LedgerError::AmountMismatch { .. } | LedgerError::InvalidTransition { .. })) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
    }
}

fn rate_limited(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    response
}

fn gateway_timeout() -> Response {
    error(StatusCode::GATEWAY_TIMEOUT, "gateway timeout (injected)")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}
