//! The payment processor: one [`ConcurrentProcessor`] over two inputs. From
//! `payments.commands.v1` (the saga) it makes attempt 1; from `payments.retries.v1` (its own
//! deferred commands) the later ones. A command whose attempt ends without a usable answer
//! (timeout, 5xx, 429, an open breaker) is written to the retry topic with its next attempt
//! and a `not_before` (exponential backoff, full jitter), so the input partition moves on.
//! After `max_attempts` (or past the command's deadline) it is answered FAILED and
//! dead-lettered with its history; `fleet dlq redrive` gives it a fresh budget.
//!
//! Idempotency: the gateway key is the payment id, every gateway operation is idempotent
//! under it, and the payment row (locked for the whole command, see [`crate::store`]) says
//! what was already done, so a redelivered or re-sent command makes no second charge.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use events::payments::{
    PaymentCommand, PaymentCommandKind, PaymentErrorKind, PaymentResult, PaymentResultKind,
    PaymentRetry,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus::{IntCounterVec, IntGauge};
use rand::Rng;
use runtime::{
    headers, ids, Clock, ConcurrentProcessor, HandlerError, Input, Outputs, RuntimeError, Topic,
};
use runtime::{DeadLetter, DeadLetterErrorKind};
use topology::{PaymentParams, ProcessorSpec};
use tracing::warn;

use crate::breaker::Breaker;
use crate::gateway::{CallError, ClientError, Gateway, Reply};
use crate::plan::{plan, Plan, Status, MAX_STEPS};
use crate::store::{Attempt, PaymentRow, Session, Store, StoreError};

/// Why the payment processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("payment parameters: {0}")]
    Params(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gateway(#[from] ClientError),
}

/// The topics this processor writes, by port (topology.yaml binds them). Its input is
/// either port `commands` (the saga's) or `retries` (its own, the same topic as the output
/// port `retries`): a record from the retry topic is a later attempt.
#[derive(Debug, Clone)]
pub struct Topics {
    pub results: Topic<PaymentResult>,
    pub retries: Topic<PaymentRetry>,
    /// Where exhausted commands go (the retry topic's dead-letter topic).
    pub exhausted: Topic<DeadLetter>,
}

impl Topics {
    pub fn from_spec(spec: &ProcessorSpec) -> Result<Self, RuntimeError> {
        Ok(Self {
            results: Topic::output(spec, "results")?,
            retries: Topic::output(spec, "retries")?,
            exhausted: Topic::output(spec, "exhausted")?,
        })
    }
}

pub struct Payments {
    params: PaymentParams,
    topics: Topics,
    processor: String,
    group: String,
    store: Store,
    gateway: Gateway,
    breaker: Mutex<Breaker>,
    limiter: Option<DefaultDirectRateLimiter>,
    clock: Clock,
    metrics: &'static PaymentMetrics,
}

/// Domain metrics, on the process-wide registry the admin endpoint also serves.
pub struct PaymentMetrics {
    pub gateway_calls: IntCounterVec,
    pub breaker_state: IntGauge,
    pub breaker_rejections: prometheus::IntCounter,
    pub retries_scheduled: IntCounterVec,
    pub exhausted: prometheus::IntCounter,
    pub results: IntCounterVec,
}

fn metrics() -> &'static PaymentMetrics {
    static METRICS: OnceLock<PaymentMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let register = runtime::Registrar::process();
        PaymentMetrics {
            gateway_calls: register.counter_vec(
                "storefleet_payment_gateway_calls_total",
                "Gateway calls by operation and outcome",
                &["operation", "outcome"],
            ),
            breaker_state: register.gauge(
                "storefleet_payment_breaker_state",
                "Gateway circuit breaker: 0 closed, 1 open, 2 half-open",
            ),
            breaker_rejections: register.counter(
                "storefleet_payment_breaker_rejections_total",
                "Gateway calls not made because the breaker was open",
            ),
            retries_scheduled: register.counter_vec(
                "storefleet_payment_retries_scheduled_total",
                "Commands written to the retry topic, by error kind",
                &["error_kind"],
            ),
            exhausted: register.counter(
                "storefleet_payment_exhausted_total",
                "Commands answered FAILED and dead-lettered after their last attempt",
            ),
            results: register.counter_vec(
                "storefleet_payment_results_total",
                "Results emitted, by kind",
                &["kind"],
            ),
        }
    })
}

/// What one command's attempt came to.
enum Outcome {
    Answer {
        kind: PaymentResultKind,
        row: PaymentRow,
        error: Option<(PaymentErrorKind, String)>,
    },
    Retry(CallError),
}

impl Payments {
    /// `instances`: how many instances share the gateway contract's rate; `store`: the
    /// payments database ([`Store::open`]).
    pub async fn new(
        params: PaymentParams,
        topics: Topics,
        processor: &str,
        group: &str,
        instances: u16,
        store: Store,
        gateway_url: &str,
    ) -> Result<Self, SetupError> {
        params.validate().map_err(SetupError::Params)?;
        let gateway = Gateway::new(gateway_url, Duration::from_millis(params.call_timeout_ms))?;
        let limiter = (params.gateway_rate_per_sec > 0).then(|| {
            let share = (params.gateway_rate_per_sec / u32::from(instances.max(1))).max(1);
            let per_sec = std::num::NonZeroU32::new(share).unwrap_or(std::num::NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(per_sec))
        });
        let breaker = Breaker::new(
            params.breaker_window as usize,
            params.breaker_min_calls as usize,
            params.breaker_failure_ratio,
            i64::try_from(params.breaker_open_ms).unwrap_or(i64::MAX),
        );
        Ok(Self {
            params,
            topics,
            processor: processor.to_string(),
            group: group.to_string(),
            store,
            gateway,
            breaker: Mutex::new(breaker),
            limiter,
            clock: Clock::system(),
            metrics: metrics(),
        })
    }

    /// Reads the time from `clock` (tests: a paused one) for the breaker, backoff deadlines
    /// and timestamps, instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the plan against the gateway until it answers or an attempt fails.
    async fn attempt(
        &self,
        cmd: &PaymentCommand,
        attempt: i32,
        session: &Session<'_>,
        mut row: PaymentRow,
    ) -> Result<Outcome, HandlerError> {
        let unrecorded = |e| HandlerError::transient("recording a gateway call", e);
        for _ in 0..MAX_STEPS {
            let op = match plan(cmd.kind, cmd.capture_immediately, Some(row.status)) {
                Plan::Answer(kind) => {
                    return Ok(Outcome::Answer {
                        kind,
                        row,
                        error: None,
                    })
                }
                Plan::Invalid(why) => {
                    return Ok(Outcome::Answer {
                        kind: PaymentResultKind::Failed,
                        row,
                        error: Some((PaymentErrorKind::InvalidCommand, why)),
                    })
                }
                Plan::Call(op) => op,
            };
            let audit = |operation: &'static str, outcome: &'static str, after, detail, ms| {
                session.audit(Attempt {
                    payment_id: &cmd.payment_id,
                    command_id: &cmd.command_id,
                    command_kind: cmd.kind.as_str(),
                    attempt,
                    operation,
                    outcome,
                    status_after: after,
                    detail,
                    latency_ms: ms,
                })
            };
            let allowed = {
                let mut breaker = self.breaker();
                let allowed = breaker.allow(self.clock.now_ms());
                self.metrics.breaker_state.set(breaker.state().gauge());
                allowed
            };
            if !allowed {
                self.metrics.breaker_rejections.inc();
                audit(op.as_str(), "breaker_open", None, None, 0)
                    .await
                    .map_err(unrecorded)?;
                return Ok(Outcome::Retry(CallError {
                    kind: PaymentErrorKind::GatewayUnavailable,
                    detail: "circuit breaker open: gateway failing, call deferred".into(),
                }));
            }
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            let started = Instant::now();
            let reply = self
                .gateway
                .call(
                    op,
                    &cmd.payment_id,
                    row.amount_minor,
                    &row.currency,
                    cmd.capture_immediately,
                )
                .await;
            let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
            {
                let mut breaker = self.breaker();
                breaker.record(reply.is_err(), self.clock.now_ms());
                self.metrics.breaker_state.set(breaker.state().gauge());
            }
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    let outcome = e.kind.as_str();
                    self.metrics
                        .gateway_calls
                        .with_label_values(&[op.as_str(), outcome])
                        .inc();
                    audit(op.as_str(), outcome, None, Some(&e.detail), ms)
                        .await
                        .map_err(unrecorded)?;
                    return Ok(Outcome::Retry(e));
                }
            };
            let seen = match reply {
                Reply::Payment(p) => Some(p),
                Reply::Conflict(_) | Reply::NotFound => {
                    // The payment is not where the row said: ask the gateway what it is.
                    let label = if matches!(reply, Reply::NotFound) {
                        "not_found"
                    } else {
                        "conflict"
                    };
                    self.metrics
                        .gateway_calls
                        .with_label_values(&[op.as_str(), label])
                        .inc();
                    audit(op.as_str(), label, None, None, ms)
                        .await
                        .map_err(unrecorded)?;
                    match self.gateway.lookup(&cmd.payment_id).await {
                        Ok(Reply::Payment(p)) => Some(p),
                        Ok(_) => None,
                        Err(e) => return Ok(Outcome::Retry(e)),
                    }
                }
            };
            let Some(payment) = seen else {
                return Ok(Outcome::Answer {
                    kind: PaymentResultKind::Failed,
                    row,
                    error: Some((
                        PaymentErrorKind::GatewayError,
                        format!("gateway refused {} and has no payment", op.as_str()),
                    )),
                });
            };
            let Some(status) = payment.status() else {
                return Ok(Outcome::Answer {
                    kind: PaymentResultKind::Failed,
                    row,
                    error: Some((
                        PaymentErrorKind::GatewayError,
                        format!("gateway status {:?} not understood", payment.status),
                    )),
                });
            };
            self.metrics
                .gateway_calls
                .with_label_values(&[op.as_str(), "ok"])
                .inc();
            // One round trip: tokio-postgres pipelines the two statements on the connection.
            let (audited, stored) = tokio::join!(
                audit(op.as_str(), "ok", Some(status), None, ms),
                session.set_status(
                    &cmd.payment_id,
                    status,
                    payment.gateway_ref.as_deref(),
                    payment.decline_reason.as_deref(),
                )
            );
            audited.map_err(unrecorded)?;
            stored.map_err(|e| HandlerError::transient("recording the payment's status", e))?;
            row.status = status;
            row.gateway_reference = payment.gateway_ref.or(row.gateway_reference);
            row.decline_code = payment.decline_reason.or(row.decline_code);
        }
        Ok(Outcome::Answer {
            kind: PaymentResultKind::Failed,
            row,
            error: Some((
                PaymentErrorKind::GatewayError,
                "the gateway kept contradicting the plan".into(),
            )),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_result(
        &self,
        input: &Input,
        cmd: &PaymentCommand,
        kind: PaymentResultKind,
        row: &PaymentRow,
        attempts: i32,
        error: Option<(PaymentErrorKind, String)>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let amount = match kind {
            // A void or a declined payment moved no money.
            PaymentResultKind::Voided | PaymentResultKind::Declined => 0,
            _ => row.amount_minor,
        };
        let result = PaymentResult {
            event_id: ids::derived(&[&input.coordinates(), "result"]),
            occurred_at: self.clock.now_ms(),
            correlation_id: cmd.order_id.clone(),
            causation_id: Some(cmd.event_id.clone()),
            kind,
            command_id: cmd.command_id.clone(),
            command_kind: cmd.kind,
            idempotency_key: cmd.idempotency_key.clone(),
            order_id: cmd.order_id.clone(),
            payment_id: cmd.payment_id.clone(),
            amount_minor: amount,
            currency: row.currency.clone(),
            gateway_reference: row.gateway_reference.clone(),
            attempts,
            decline_code: (kind == PaymentResultKind::Declined)
                .then(|| row.decline_code.clone())
                .flatten(),
            error_kind: error.as_ref().map(|(k, _)| *k),
            error: error.map(|(_, e)| e),
        };
        self.metrics
            .results
            .with_label_values(&[&format!("{kind:?}").to_lowercase()])
            .inc();
        out.send(&self.topics.results, &cmd.order_id, &result)
    }

    /// Exponential backoff with full jitter: uniform over [0, min(max, base * 2^(n-1))].
    fn backoff_ms(&self, attempt: i32) -> i64 {
        let exp = self
            .params
            .retry_base_ms
            .saturating_mul(1u64 << (attempt.max(1) - 1).min(20));
        let cap = exp.min(self.params.retry_max_ms);
        i64::try_from(rand::rng().random_range(0..=cap)).unwrap_or(i64::MAX)
    }
}

fn validate(cmd: &PaymentCommand, key: Option<&str>) -> Result<(), HandlerError> {
    let invalid = |why: String| Err(HandlerError::invalid(why));
    if key != Some(cmd.order_id.as_str()) {
        return invalid(format!(
            "payment command for order {} under key {key:?}: commands are keyed by order id",
            cmd.order_id
        ));
    }
    if cmd.payment_id.is_empty() || cmd.payment_id.contains(['/', '?', '#', ' ']) {
        return invalid(format!(
            "payment_id {:?} is not a usable key",
            cmd.payment_id
        ));
    }
    if cmd.kind == PaymentCommandKind::Authorize && cmd.amount_minor <= 0 {
        return invalid(format!("authorize of {} minor units", cmd.amount_minor));
    }
    if cmd.currency.len() != 3 || !cmd.currency.chars().all(|c| c.is_ascii_uppercase()) {
        return invalid(format!("currency {:?} is not ISO 4217", cmd.currency));
    }
    if cmd.kind == PaymentCommandKind::Unknown {
        return invalid("payment command of unknown kind".into());
    }
    Ok(())
}

impl ConcurrentProcessor for Payments {
    async fn handle(&self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let now = self.clock.now_ms();
        let (cmd, attempt, first_at) = if self.topics.retries.carries(input) {
            let retry: PaymentRetry = input.decode()?;
            let wait = retry.not_before - self.clock.now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
            }
            // A redriven dead letter starts a fresh attempt budget.
            let attempt = if input.header(headers::REDRIVEN_FROM).is_some() {
                1
            } else {
                retry.attempt.max(1)
            };
            (retry.command, attempt, retry.first_attempted_at)
        } else {
            (input.decode::<PaymentCommand>()?, 1, now)
        };
        validate(&cmd, input.key_str())?;

        let (session, row) = self
            .store
            .lock(
                &cmd.payment_id,
                &cmd.order_id,
                cmd.amount_minor,
                &cmd.currency,
            )
            .await
            .map_err(|e| HandlerError::transient("locking the payment", e))?;
        let past_deadline = cmd.deadline.is_some_and(|d| now > d);
        let outcome = if past_deadline && attempt > 1 {
            Outcome::Answer {
                kind: PaymentResultKind::Failed,
                row: row.clone(),
                error: Some((
                    PaymentErrorKind::Timeout,
                    "the saga's deadline passed before the gateway answered".into(),
                )),
            }
        } else {
            self.attempt(&cmd, attempt, &session, row).await?
        };
        // A first attempt that got its answer made only this session's calls; the history of
        // earlier attempts (and the detail a dead letter carries) is read only when needed.
        let (calls, history) = match &outcome {
            Outcome::Answer { .. } if attempt <= 1 => (session.calls(), String::new()),
            _ => session
                .history(&cmd.command_id)
                .await
                .map_err(|e| HandlerError::transient("reading the command's gateway calls", e))?,
        };
        // Only what the gateway said is recorded before anything is emitted: a crash after
        // the commit re-reads it; a crash before makes the calls again, under the same key.
        session
            .commit()
            .await
            .map_err(|e| HandlerError::transient("committing the payment", e))?;
        match outcome {
            Outcome::Answer { kind, row, error } => {
                self.emit_result(input, &cmd, kind, &row, calls, error, out)
            }
            Outcome::Retry(e) => {
                let next = attempt + 1;
                let exhausted = attempt >= i32::try_from(self.params.max_attempts).unwrap_or(1)
                    || cmd.deadline.is_some_and(|d| self.clock.now_ms() > d);
                let retry = PaymentRetry {
                    event_id: ids::derived(&[&input.coordinates(), "retry"]),
                    occurred_at: self.clock.now_ms(),
                    correlation_id: cmd.order_id.clone(),
                    causation_id: Some(cmd.event_id.clone()),
                    command: cmd.clone(),
                    attempt: next,
                    not_before: self.clock.now_ms() + self.backoff_ms(attempt),
                    first_attempted_at: first_at,
                    last_error_kind: e.kind,
                    last_error: e.detail.clone(),
                };
                let encoded = out.encode(&self.topics.retries, &retry)?;
                if !exhausted {
                    self.metrics
                        .retries_scheduled
                        .with_label_values(&[e.kind.as_str()])
                        .inc();
                    return out.send_raw(
                        self.topics.retries.name(),
                        Some(cmd.order_id.clone().into_bytes()),
                        encoded,
                        vec![(
                            headers::NOT_BEFORE.to_string(),
                            retry.not_before.to_string(),
                        )],
                    );
                }
                warn!(order = %cmd.order_id, payment = %cmd.payment_id, attempts = attempt, error = %e.detail, "payment command exhausted its attempts; dead-lettered and answered FAILED");
                self.metrics.exhausted.inc();
                let letter = DeadLetter {
                    original_key: Some(cmd.order_id.clone().into_bytes()),
                    original_value: Some(encoded),
                    source_topic: self.topics.retries.name().to_string(),
                    source_partition: input.partition,
                    source_offset: input.offset,
                    original_timestamp: input.timestamp_ms,
                    original_schema_id: None,
                    processor: self.processor.clone(),
                    consumer_group: self.group.clone(),
                    error_kind: DeadLetterErrorKind::RetriesExhausted,
                    reason: format!(
                        "{} attempts, last {}: {}. History: {history}",
                        attempt,
                        e.kind.as_str(),
                        e.detail
                    ),
                    attempts: attempt,
                    failed_at: self.clock.now_ms(),
                    headers: Vec::new(),
                };
                let letter_bytes = out.encode(&self.topics.exhausted, &letter)?;
                out.send_raw(
                    self.topics.exhausted.name(),
                    letter.original_key.clone(),
                    letter_bytes,
                    letter
                        .headers()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )?;
                let row = PaymentRow {
                    status: Status::Pending,
                    amount_minor: cmd.amount_minor,
                    currency: cmd.currency.clone(),
                    gateway_reference: None,
                    decline_code: None,
                };
                self.emit_result(
                    input,
                    &cmd,
                    PaymentResultKind::Failed,
                    &row,
                    calls,
                    Some((
                        e.kind,
                        format!("gave up after {attempt} attempts: {}", e.detail),
                    )),
                    out,
                )
            }
        }
    }
}
