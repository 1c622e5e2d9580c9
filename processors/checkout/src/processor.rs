//! `checkout`: the order saga as a stateful stream join. Inputs, all keyed by order id (so
//! co-partitioned: one instance owns everything about an order): the storefront's checkout
//! requests, inventory's reservation events and payment's results; plus one durable step
//! timer per order. State: one [`SagaRecord`] per order id, whose single writer is the
//! instance owning the order's partition (the runtime hands it records one at a time and
//! restores the store from its changelog after a crash or rebalance).
//!
//! Every decision is the pure [`Saga`]'s; this module turns its effects into events
//! (inventory and payment commands, order placed, transitions, status) and the two order-
//! database writes. A record handled again after a crash produces the same event ids
//! (derived from its coordinates) and the same idempotent database writes.

use std::collections::VecDeque;
use std::sync::OnceLock;

use events::checkout::{
    CheckoutRequested, FailureCode as WireFailure, OrderFailure, OrderStatus, OrderStatusCode,
    SagaState as WireState, SagaTransition, SagaTrigger,
};
use events::inventory::{
    InventoryCommand, InventoryCommandKind, InventoryLine, RejectReason, ReservationEvent,
    ReservationEventKind,
};
use events::orders::{OrderLine, OrderPlaced, PaymentStatus};
use events::payments::{PaymentCommand, PaymentCommandKind, PaymentResult, PaymentResultKind};
use prometheus::{IntCounter, IntCounterVec, Opts};
use runtime::state::{State, Timer};
use runtime::{ids, now_ms, HandlerError, Input, Outputs, StatefulProcessor};
use serde::{Deserialize, Serialize};
use topology::CheckoutParams;
use tracing::warn;

use crate::orders_db::{NewOrder, OrdersDb};
use crate::saga::{Effect, Event, FailureCode, Saga, SagaState, Start};

/// Support keeps this many transitions per saga (the full log is the transitions topic).
const HISTORY: usize = 64;

/// One order's saga and what it needs to act: the request, where its stock is held, and the
/// support history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    pub saga: Saga,
    pub request: CheckoutRequested,
    /// Last transition number (the status projection's `saga_sequence`).
    pub sequence: i64,
    /// Fulfillment center per line number, from the reservation.
    pub reserved: Vec<(i32, Option<String>)>,
    pub gateway_reference: Option<String>,
    pub created_at: i64,
    pub placed_at: Option<i64>,
    pub stuck_since: Option<i64>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub from: Option<SagaState>,
    pub to: SagaState,
    pub trigger: SagaTrigger,
    pub attempt: u32,
    pub failure: Option<FailureCode>,
}

#[derive(Debug, Clone)]
pub struct Topics {
    pub inventory: String,
    pub payments: String,
    pub placed: String,
    pub status: String,
    pub transitions: String,
}

pub struct Checkout {
    params: CheckoutParams,
    topics: Topics,
    db: OrdersDb,
    metrics: &'static CheckoutMetrics,
}

struct CheckoutMetrics {
    started: IntCounter,
    ended: IntCounterVec,
    stuck: IntCounter,
    conflicts: IntCounter,
}

fn metrics() -> &'static CheckoutMetrics {
    static METRICS: OnceLock<CheckoutMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = prometheus::default_registry();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let ended = IntCounterVec::new(
            Opts::new(
                "storefleet_checkout_sagas_ended_total",
                "Sagas that reached a terminal state, by outcome (placed, or the failure code)",
            ),
            &["outcome"],
        )
        .expect("static metric");
        let _ = registry.register(Box::new(ended.clone()));
        CheckoutMetrics {
            started: counter(
                "storefleet_checkout_sagas_started_total",
                "Checkout sagas started",
            ),
            ended,
            stuck: counter(
                "storefleet_checkout_sagas_stuck_total",
                "Sagas whose compensation ran out of attempts (an operator must act: `fleet orders stuck`)",
            ),
            conflicts: counter(
                "storefleet_checkout_key_conflicts_total",
                "Checkout requests refused: same order and idempotency key, another cart",
            ),
        }
    })
}

fn wire_state(s: SagaState) -> WireState {
    match s {
        SagaState::ReservingInventory => WireState::ReservingInventory,
        SagaState::ChargingPayment => WireState::AuthorizingPayment,
        SagaState::CreatingOrder => WireState::CreatingOrder,
        SagaState::CommittingInventory => WireState::CommittingInventory,
        SagaState::Placed => WireState::Placed,
        SagaState::RefundingPayment => WireState::RefundingPayment,
        SagaState::ReleasingInventory => WireState::ReleasingInventory,
        SagaState::Failed => WireState::Failed,
        SagaState::Stuck => WireState::Stuck,
    }
}

fn wire_failure(f: FailureCode) -> WireFailure {
    match f {
        FailureCode::OutOfStock => WireFailure::OutOfStock,
        FailureCode::InvalidRequest => WireFailure::InvalidRequest,
        FailureCode::ReservationExpired => WireFailure::ReservationExpired,
        FailureCode::PaymentDeclined => WireFailure::PaymentDeclined,
        FailureCode::PaymentFailed => WireFailure::PaymentFailed,
        FailureCode::OrderCreationFailed => WireFailure::OrderCreationFailed,
        FailureCode::StepTimedOut => WireFailure::StepTimedOut,
    }
}

fn status_code(s: SagaState) -> OrderStatusCode {
    match s {
        SagaState::ReservingInventory
        | SagaState::ChargingPayment
        | SagaState::CreatingOrder
        | SagaState::CommittingInventory => OrderStatusCode::Processing,
        SagaState::Placed => OrderStatusCode::Placed,
        SagaState::RefundingPayment | SagaState::ReleasingInventory => {
            OrderStatusCode::Compensating
        }
        SagaState::Failed => OrderStatusCode::Failed,
        SagaState::Stuck => OrderStatusCode::Stuck,
    }
}

/// What must be the same for a repeated request to be the same checkout.
fn cart_fingerprint(r: &CheckoutRequested) -> String {
    let mut lines: Vec<String> = r
        .lines
        .iter()
        .map(|l| {
            format!(
                "{}:{}:{}:{}",
                l.line_number, l.product_id, l.quantity, l.unit_price_minor
            )
        })
        .collect();
    lines.sort();
    format!("{}|{}|{}", r.currency, r.total_minor, lines.join(","))
}

/// Business checks on a request; the reason if it cannot be a saga.
fn invalid(r: &CheckoutRequested) -> Option<String> {
    if r.lines.is_empty() {
        return Some("no lines".into());
    }
    if let Some(l) = r.lines.iter().find(|l| l.quantity <= 0) {
        return Some(format!(
            "line {} has quantity {}",
            l.line_number, l.quantity
        ));
    }
    let mut numbers: Vec<i32> = r.lines.iter().map(|l| l.line_number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.len() != r.lines.len() {
        return Some("duplicate line numbers".into());
    }
    let subtotal: i64 = r
        .lines
        .iter()
        .map(|l| l.unit_price_minor.saturating_mul(i64::from(l.quantity)))
        .sum();
    if subtotal != r.subtotal_minor
        || r.subtotal_minor + r.shipping_fee_minor + r.tax_minor != r.total_minor
    {
        return Some(format!(
            "amounts do not add up: lines {subtotal}, subtotal {}, total {}",
            r.subtotal_minor, r.total_minor
        ));
    }
    if r.total_minor <= 0 {
        return Some(format!("total {} is not positive", r.total_minor));
    }
    None
}

impl Checkout {
    pub async fn new(
        params: CheckoutParams,
        topics: Topics,
        orders_url: &str,
    ) -> Result<Self, String> {
        if params.step_timeout_ms <= 0 || params.hold_ms <= 0 {
            return Err("step_timeout_ms and hold_ms must be positive".into());
        }
        Ok(Self {
            params,
            topics,
            db: OrdersDb::open(orders_url).await?,
            metrics: metrics(),
        })
    }

    fn payment_id(order: &str) -> String {
        format!("pay-{order}")
    }

    async fn on_request(
        &self,
        input: &Input,
        request: CheckoutRequested,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        if input.key_str() != Some(request.order_id.as_str()) {
            return Err(HandlerError::Invalid(format!(
                "checkout request for order {} under key {:?}: requests are keyed by order id",
                request.order_id,
                input.key_str()
            )));
        }
        let order = request.order_id.clone();
        let now = now_ms();
        let existing = state.get(&order).cloned();
        if existing.is_none() {
            if let Some(why) = invalid(&request) {
                // Never a saga: answer FAILED so the storefront's poll ends.
                let status = OrderStatus {
                    event_id: ids::derived(&[&input.coordinates(), "invalid"]),
                    occurred_at: now,
                    correlation_id: order.clone(),
                    causation_id: Some(request.event_id.clone()),
                    order_id: order.clone(),
                    user_id: request.user_id.clone(),
                    status: OrderStatusCode::Failed,
                    saga_state: WireState::Failed,
                    saga_sequence: 1,
                    failure: Some(OrderFailure {
                        code: WireFailure::InvalidRequest,
                        message: why,
                        failed_state: WireState::Started,
                    }),
                    stuck_since: None,
                    stuck_reason: None,
                    currency: request.currency.clone(),
                    total_minor: request.total_minor,
                    created_at: now,
                    placed_at: None,
                };
                self.metrics
                    .ended
                    .with_label_values(&["invalid_request"])
                    .inc();
                return out.send(&self.topics.status, &order, &status);
            }
        }
        let fingerprint = cart_fingerprint(&request);
        match Saga::start(
            existing.as_ref().map(|r| &r.saga),
            &request.idempotency_key,
            &fingerprint,
            self.params.step_timeout_ms,
            now,
        ) {
            Start::Started(saga, effects) => {
                self.metrics.started.inc();
                let record = SagaRecord {
                    saga,
                    request,
                    sequence: 0,
                    reserved: Vec::new(),
                    gateway_reference: None,
                    created_at: now,
                    placed_at: None,
                    stuck_since: None,
                    history: Vec::new(),
                };
                let cause = input.coordinates();
                self.apply(
                    record,
                    effects,
                    SagaTrigger::CheckoutRequested,
                    &cause,
                    state,
                    out,
                )
                .await
            }
            Start::Duplicate => Ok(()),
            Start::Conflict => {
                self.metrics.conflicts.inc();
                Err(HandlerError::Invalid(format!(
                    "order {order}: idempotency key {:?} was already used with another cart (or the order id with another key); refused",
                    request.idempotency_key
                )))
            }
        }
    }

    async fn on_reservation(
        &self,
        input: &Input,
        event: ReservationEvent,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut record) = state.get(&event.order_id).cloned() else {
            // Not a saga of ours (or long gone): inventory's own hold expiry cleans up.
            return Ok(());
        };
        let (saga_event, trigger) = match event.kind {
            ReservationEventKind::Reserved => {
                record.reserved = event
                    .lines
                    .iter()
                    .map(|l| (l.line_number, Some(l.fulfillment_center.clone())))
                    .collect();
                (Event::InventoryReserved, SagaTrigger::InventoryReserved)
            }
            ReservationEventKind::Rejected => {
                let out_of_stock = event
                    .rejection
                    .as_ref()
                    .is_some_and(|r| r.reason == RejectReason::OutOfStock);
                (
                    Event::InventoryRejected { out_of_stock },
                    SagaTrigger::InventoryRejected,
                )
            }
            ReservationEventKind::Committed => {
                (Event::InventoryCommitted, SagaTrigger::InventoryCommitted)
            }
            ReservationEventKind::CommitRejected => (
                Event::InventoryCommitRejected,
                SagaTrigger::InventoryCommitRejected,
            ),
            ReservationEventKind::Released => {
                (Event::InventoryReleased, SagaTrigger::InventoryReleased)
            }
            ReservationEventKind::Unknown => {
                return Err(HandlerError::Invalid(
                    "reservation event of unknown kind".into(),
                ))
            }
        };
        let effects = record.saga.on(saga_event, now_ms());
        self.apply(record, effects, trigger, &input.coordinates(), state, out)
            .await
    }

    async fn on_payment(
        &self,
        input: &Input,
        result: PaymentResult,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut record) = state.get(&result.order_id).cloned() else {
            return Ok(());
        };
        use PaymentCommandKind as C;
        use PaymentResultKind as R;
        let (saga_event, trigger) = match (result.command_kind, result.kind) {
            (C::Authorize | C::Capture, R::Captured) => {
                record.gateway_reference = result.gateway_reference.clone();
                (Event::PaymentCharged, SagaTrigger::PaymentCaptured)
            }
            (C::Authorize, R::Authorized) => {
                record.gateway_reference = result.gateway_reference.clone();
                (Event::PaymentCharged, SagaTrigger::PaymentAuthorized)
            }
            (C::Authorize | C::Capture, R::Declined) => {
                (Event::PaymentDeclined, SagaTrigger::PaymentDeclined)
            }
            (C::Authorize | C::Capture, R::Failed) => {
                (Event::PaymentFailed, SagaTrigger::PaymentFailed)
            }
            (C::Refund | C::Void, R::Refunded) => {
                (Event::PaymentRefunded, SagaTrigger::PaymentRefunded)
            }
            (C::Refund | C::Void, R::Voided) => {
                (Event::PaymentRefunded, SagaTrigger::PaymentVoided)
            }
            // A refund that failed is retried on the step timer, then leaves the saga STUCK.
            (C::Refund | C::Void, R::Failed) => return Ok(()),
            (kind, outcome) => {
                return Err(HandlerError::Invalid(format!(
                    "payment result {outcome:?} for a {kind:?} command"
                )))
            }
        };
        let effects = record.saga.on(saga_event, now_ms());
        self.apply(record, effects, trigger, &input.coordinates(), state, out)
            .await
    }

    /// Carries out `effects` in order (an order write feeds its outcome back into the saga,
    /// whose effects follow), then stores the record.
    async fn apply(
        &self,
        mut record: SagaRecord,
        effects: Vec<Effect>,
        trigger: SagaTrigger,
        cause: &str,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let order = record.request.order_id.clone();
        let mut queue: VecDeque<(Effect, SagaTrigger)> =
            effects.into_iter().map(|e| (e, trigger)).collect();
        let mut n = 0usize;
        while let Some((effect, trigger)) = queue.pop_front() {
            n += 1;
            let id = ids::derived(&[cause, &n.to_string()]);
            let now = now_ms();
            match effect {
                Effect::Transition {
                    from,
                    to,
                    attempt,
                    failure,
                } => self.transition(
                    &mut record,
                    from,
                    to,
                    attempt,
                    failure,
                    trigger,
                    &id,
                    cause,
                    out,
                )?,
                Effect::Timer(Some(at)) => state.set_timer(&order, at, "step"),
                Effect::Timer(None) => {
                    state.cancel_timer(&order);
                }
                Effect::ReserveInventory | Effect::CommitInventory | Effect::ReleaseInventory => {
                    let (kind, step) = match effect {
                        Effect::ReserveInventory => (InventoryCommandKind::Reserve, "reserve"),
                        Effect::CommitInventory => (InventoryCommandKind::Commit, "commit"),
                        _ => (InventoryCommandKind::Release, "release"),
                    };
                    let r = &record.request;
                    let command = InventoryCommand {
                        event_id: id,
                        occurred_at: now,
                        correlation_id: order.clone(),
                        causation_id: Some(cause.to_string()),
                        command_id: ids::derived(&[&order, step]),
                        kind,
                        order_id: order.clone(),
                        lines: if kind == InventoryCommandKind::Reserve {
                            r.lines
                                .iter()
                                .map(|l| InventoryLine {
                                    line_number: l.line_number,
                                    product_id: l.product_id.clone(),
                                    quantity: l.quantity,
                                    fulfillment_center: None,
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                        hold_ms: self.params.hold_ms,
                        destination_country: Some(r.shipping_address.country_code.clone()),
                        reason: (kind == InventoryCommandKind::Release)
                            .then(|| format!("{:?}", record.saga.failure)),
                        return_item: None,
                    };
                    out.send(&self.topics.inventory, &order, &command)?;
                }
                Effect::ChargePayment | Effect::RefundPayment => {
                    let charge = matches!(effect, Effect::ChargePayment);
                    let step = if charge { "charge" } else { "refund" };
                    let r = &record.request;
                    let command = PaymentCommand {
                        event_id: id,
                        occurred_at: now,
                        correlation_id: order.clone(),
                        causation_id: Some(cause.to_string()),
                        command_id: ids::derived(&[&order, step]),
                        idempotency_key: format!("{}:{step}", r.idempotency_key),
                        kind: if charge {
                            PaymentCommandKind::Authorize
                        } else {
                            PaymentCommandKind::Refund
                        },
                        order_id: order.clone(),
                        payment_id: Self::payment_id(&order),
                        amount_minor: r.total_minor,
                        currency: r.currency.clone(),
                        payment_method: charge.then(|| r.payment_method.clone()),
                        capture_immediately: charge,
                        gateway_reference: record.gateway_reference.clone(),
                        reason: (!charge).then(|| format!("{:?}", record.saga.failure)),
                        deadline: None,
                    };
                    out.send(&self.topics.payments, &order, &command)?;
                }
                Effect::CreateOrder => {
                    let r = &record.request;
                    let lines = serde_json::to_value(&r.lines)
                        .map_err(|e| HandlerError::Fatal(format!("order lines: {e}")))?;
                    let payment_id = Self::payment_id(&order);
                    let written = self
                        .db
                        .create(&NewOrder {
                            order_id: &order,
                            idempotency_key: &r.idempotency_key,
                            user_id: &r.user_id,
                            currency: &r.currency,
                            total_minor: r.total_minor,
                            payment_id: &payment_id,
                            lines,
                        })
                        .await;
                    // An unreachable database is retried (the runtime redelivers this
                    // record); the step timer covers a database that stays down.
                    written.map_err(HandlerError::Transient)?;
                    let more = record.saga.on(Event::OrderCreated, now);
                    queue.extend(more.into_iter().map(|e| (e, SagaTrigger::OrderCreated)));
                }
                Effect::MarkOrderFailed => {
                    let why = format!("{:?}", record.saga.failure);
                    self.db
                        .finish(&order, "failed", Some(&why))
                        .await
                        .map_err(HandlerError::Transient)?;
                }
                Effect::PublishOrderPlaced => {
                    self.db
                        .finish(&order, "placed", None)
                        .await
                        .map_err(HandlerError::Transient)?;
                    let placed = self.order_placed(&record, id, cause, now);
                    out.send(&self.topics.placed, &order, &placed)?;
                }
            }
        }
        state.put(&order, record);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        record: &mut SagaRecord,
        from: Option<SagaState>,
        to: SagaState,
        attempt: u32,
        failure: Option<FailureCode>,
        trigger: SagaTrigger,
        id: &str,
        cause: &str,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let order = record.request.order_id.clone();
        let now = now_ms();
        record.sequence += 1;
        match to {
            SagaState::Placed => {
                record.placed_at = Some(now);
                self.metrics.ended.with_label_values(&["placed"]).inc();
            }
            SagaState::Failed => {
                let code = failure.map(|f| format!("{f:?}")).unwrap_or_default();
                self.metrics.ended.with_label_values(&[&code]).inc();
            }
            SagaState::Stuck => {
                record.stuck_since = Some(now);
                self.metrics.stuck.inc();
                warn!(%order, ?failure, "saga STUCK: its compensation ran out of attempts");
            }
            _ => record.stuck_since = None,
        }
        record.history.push(HistoryEntry {
            at: now,
            from,
            to,
            trigger,
            attempt,
            failure,
        });
        if record.history.len() > HISTORY {
            record.history.remove(0);
        }
        let deadline = (!to.is_terminal() && to != SagaState::Stuck)
            .then_some(now + self.params.step_timeout_ms);
        let transition = SagaTransition {
            event_id: id.to_string(),
            occurred_at: now,
            correlation_id: order.clone(),
            causation_id: Some(cause.to_string()),
            order_id: order.clone(),
            sequence: record.sequence,
            from_state: from.map(wire_state),
            to_state: wire_state(to),
            trigger,
            compensating: record.saga.failure.is_some(),
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
            step_deadline: deadline,
            failure_code: failure.map(wire_failure),
            reason: None,
        };
        out.send(&self.topics.transitions, &order, &transition)?;
        let r = &record.request;
        let status = OrderStatus {
            event_id: ids::derived(&[id, "status"]),
            occurred_at: now,
            correlation_id: order.clone(),
            causation_id: Some(id.to_string()),
            order_id: order.clone(),
            user_id: r.user_id.clone(),
            status: status_code(to),
            saga_state: wire_state(to),
            saga_sequence: record.sequence,
            failure: failure.map(|f| OrderFailure {
                code: wire_failure(f),
                message: format!("{f:?}"),
                failed_state: from.map(wire_state).unwrap_or(WireState::Started),
            }),
            stuck_since: record.stuck_since,
            stuck_reason: (to == SagaState::Stuck).then(|| {
                "compensation (refund or release) unanswered after its attempts; check payment and inventory, then redrive".to_string()
            }),
            currency: r.currency.clone(),
            total_minor: r.total_minor,
            created_at: record.created_at,
            placed_at: record.placed_at,
        };
        out.send(&self.topics.status, &order, &status)
    }

    fn order_placed(&self, record: &SagaRecord, id: String, cause: &str, now: i64) -> OrderPlaced {
        let r = &record.request;
        OrderPlaced {
            event_id: id,
            occurred_at: now,
            correlation_id: r.order_id.clone(),
            causation_id: Some(cause.to_string()),
            order_id: r.order_id.clone(),
            user_id: r.user_id.clone(),
            lines: r
                .lines
                .iter()
                .map(|l| OrderLine {
                    line_number: l.line_number,
                    product_id: l.product_id.clone(),
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                    fulfillment_center: record
                        .reserved
                        .iter()
                        .find(|(n, _)| *n == l.line_number)
                        .and_then(|(_, fc)| fc.clone()),
                })
                .collect(),
            currency: r.currency.clone(),
            subtotal_minor: r.subtotal_minor,
            shipping_fee_minor: r.shipping_fee_minor,
            tax_minor: r.tax_minor,
            total_minor: r.total_minor,
            shipping_address: r.shipping_address.clone(),
            shipping_speed: r.shipping_speed,
            payment_id: Self::payment_id(&r.order_id),
            payment_status: PaymentStatus::Captured,
            gateway_reference: record.gateway_reference.clone(),
        }
    }
}

impl StatefulProcessor for Checkout {
    type Value = SagaRecord;
    const STORE: &'static str = "sagas";

    async fn handle(
        &mut self,
        input: &Input,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        if input.topic.starts_with("orders.checkout-requested") {
            let request: CheckoutRequested = input.decode()?;
            self.on_request(input, request, state, out).await
        } else if input.topic.starts_with("inventory.reservation-events") {
            let event: ReservationEvent = input.decode()?;
            self.on_reservation(input, event, state, out).await
        } else if input.topic.starts_with("payments.results") {
            let result: PaymentResult = input.decode()?;
            self.on_payment(input, result, state, out).await
        } else {
            Err(HandlerError::Fatal(format!(
                "checkout does not read `{}`",
                input.topic
            )))
        }
    }

    async fn on_timer(
        &mut self,
        timer: &Timer,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut record) = state.get(&timer.key).cloned() else {
            return Ok(());
        };
        let effects = record.saga.on(Event::StepTimedOut, now_ms());
        let cause = format!("timer:{}:{}", timer.key, timer.at_ms);
        self.apply(
            record,
            effects,
            SagaTrigger::StepTimedOut,
            &cause,
            state,
            out,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CheckoutRequested {
        serde_json::from_value(serde_json::json!({
            "event_id": "e", "occurred_at": 0, "correlation_id": "o1", "causation_id": null,
            "idempotency_key": "k1", "order_id": "o1", "user_id": "u1", "cart_id": null,
            "lines": [
                {"line_number": 1, "product_id": "p1", "sku": "s1", "quantity": 2, "unit_price_minor": 500},
                {"line_number": 2, "product_id": "p2", "sku": "s2", "quantity": 1, "unit_price_minor": 250}
            ],
            "currency": "USD", "subtotal_minor": 1250, "shipping_fee_minor": 100, "tax_minor": 50,
            "total_minor": 1400,
            "shipping_address": {"recipient_name": "A", "line1": "1 St", "line2": null, "city": "C",
                "region": null, "postal_code": "1", "country_code": "US", "phone": null},
            "shipping_speed": "STANDARD",
            "payment_method": {"kind": "CARD", "token": "tok", "last4": null}
        }))
        .unwrap()
    }

    #[test]
    fn a_well_formed_request_is_valid() {
        assert_eq!(invalid(&request()), None);
    }

    #[test]
    fn requests_that_cannot_be_sagas_say_why() {
        let mut r = request();
        r.total_minor = 1;
        assert!(invalid(&r).unwrap().contains("do not add up"));
        let mut r = request();
        r.lines[1].line_number = 1;
        assert!(invalid(&r).unwrap().contains("duplicate"));
        let mut r = request();
        r.lines[0].quantity = 0;
        assert!(invalid(&r).unwrap().contains("quantity"));
        let mut r = request();
        r.lines.clear();
        assert!(invalid(&r).is_some());
    }

    #[test]
    fn the_cart_fingerprint_ignores_line_order_but_not_content() {
        let a = request();
        let mut b = request();
        b.lines.reverse();
        assert_eq!(cart_fingerprint(&a), cart_fingerprint(&b));
        b.lines[0].quantity += 1;
        assert_ne!(cart_fingerprint(&a), cart_fingerprint(&b));
    }

    #[test]
    fn every_saga_state_maps_to_a_status() {
        for s in [
            SagaState::ReservingInventory,
            SagaState::ChargingPayment,
            SagaState::CreatingOrder,
            SagaState::CommittingInventory,
            SagaState::Placed,
            SagaState::RefundingPayment,
            SagaState::ReleasingInventory,
            SagaState::Failed,
            SagaState::Stuck,
        ] {
            let code = status_code(s);
            assert_ne!(code, OrderStatusCode::Unknown);
            assert_eq!(
                s.is_terminal(),
                matches!(code, OrderStatusCode::Placed | OrderStatusCode::Failed)
            );
        }
    }
}
