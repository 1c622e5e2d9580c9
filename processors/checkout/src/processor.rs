//! `checkout`: the order saga as a stateful stream join. Inputs, all keyed by order id (so
//! co-partitioned: one instance owns everything about an order): the storefront's checkout
//! requests, the stock ledgers' answers to the saga's holds and payment's results; plus one
//! durable timer per order. State: one [`SagaRecord`] per order id, whose single writer is
//! the instance owning the order's partition (the runtime hands it records one at a time and
//! restores the store from its changelog after a crash or rebalance).
//!
//! Every decision is the pure [`Saga`]'s; this module turns its effects into events (a
//! HOLD, COMMIT or RELEASE per product to that product's ledger, payment commands, the
//! order-placed event, and one transition per state change, which is also the order's
//! status for the storefront) and the order row (written by a grouped writer, awaited before
//! the record that placed the order is committed). A record handled again after a crash
//! produces the same event ids (derived from its coordinates) and the same idempotent
//! database write. An ended saga is kept `retain_ms`, so a repeated request is recognised,
//! then forgotten.

use std::collections::VecDeque;
use std::sync::OnceLock;

use events::checkout::{CheckoutRequested, SagaTransition, SagaTrigger};
use events::inventory::{StockCommand, StockCommandKind, StockResult, StockResultKind};
use events::orders::OrderPlaced;
use events::payments::{PaymentCommand, PaymentCommandKind, PaymentResult, PaymentResultKind};
use futures::TryFutureExt;
use prometheus::{IntCounter, IntCounterVec};
use runtime::state::{State, Timer};
use runtime::{ids, Clock, HandlerError, Input, Outputs, RuntimeError, StatefulProcessor, Topic};
use serde::{Deserialize, Serialize};
use topology::{CheckoutParams, ProcessorSpec};
use tracing::warn;

use crate::orders_db::{NewOrder, OrdersDb, OrdersDbError, PlaceOrders};
use crate::saga::{Effect, Event, FailureCode, Saga, SagaState, Start};
use crate::wire;

/// Support keeps this many transitions per saga (the full log is the transitions topic).
const HISTORY: usize = 64;

/// Timer payloads: the current step's timeout, and forgetting an ended saga.
const STEP: &str = "step";
const FORGET: &str = "forget";

/// One order's saga and what it needs to act: the request, where its stock is held, and the
/// support history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    pub saga: Saga,
    pub request: CheckoutRequested,
    /// Last transition number (the status projection's order).
    pub sequence: i64,
    /// Fulfillment center per line number, from the holds.
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

/// The saga's ports (topology.yaml binds each to a topic; `fleet validate` checks them).
#[derive(Debug, Clone)]
pub struct Topics {
    pub requests: Topic<CheckoutRequested>,
    pub stock_results: Topic<StockResult>,
    pub payment_results: Topic<PaymentResult>,
    /// The ledgers' commands (key product id).
    pub stock: Topic<StockCommand>,
    pub payments: Topic<PaymentCommand>,
    pub placed: Topic<OrderPlaced>,
    pub transitions: Topic<SagaTransition>,
}

impl Topics {
    pub fn from_spec(spec: &ProcessorSpec) -> Result<Self, RuntimeError> {
        Ok(Self {
            requests: Topic::input(spec, "requests")?,
            stock_results: Topic::input(spec, "stock_results")?,
            payment_results: Topic::input(spec, "payment_results")?,
            stock: Topic::output(spec, "stock_commands")?,
            payments: Topic::output(spec, "payment_commands")?,
            placed: Topic::output(spec, "placed")?,
            transitions: Topic::output(spec, "transitions")?,
        })
    }
}

pub struct Checkout {
    params: CheckoutParams,
    topics: Topics,
    orders: Box<dyn PlaceOrders>,
    clock: Clock,
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
        let register = runtime::Registrar::process();
        CheckoutMetrics {
            started: register.counter(
                "storefleet_checkout_sagas_started_total",
                "Checkout sagas started",
            ),
            ended: register.counter_vec(
                "storefleet_checkout_sagas_ended_total",
                "Sagas that reached a terminal state, by outcome (placed, or the failure code)",
                &["outcome"],
            ),
            stuck: register.counter(
                "storefleet_checkout_sagas_stuck_total",
                "Sagas whose compensation ran out of attempts (an operator must act: `fleet orders stuck`)",
            ),
            conflicts: register.counter(
                "storefleet_checkout_key_conflicts_total",
                "Checkout requests refused: same order and idempotency key, another cart",
            ),
        }
    })
}

/// Why the checkout processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("step_timeout_ms and retain_ms must be positive")]
    Timeouts,
    #[error(transparent)]
    OrdersDb(#[from] OrdersDbError),
}

impl Checkout {
    /// The saga writing placed orders to the `orders` database at `orders_url`, on the
    /// system clock. `tasks`: where the orders writer and its connection run (the caller
    /// drains them after the processor is dropped).
    pub async fn new(
        params: CheckoutParams,
        topics: Topics,
        orders_url: &str,
        tasks: &tasks::Tasks,
    ) -> Result<Self, SetupError> {
        Self::check(&params)?;
        let orders = OrdersDb::open(orders_url, tasks).await?;
        Self::with_orders(params, topics, orders)
    }

    /// The saga handing placed orders to `orders` (tests: a recorder), on the system clock.
    pub fn with_orders(
        params: CheckoutParams,
        topics: Topics,
        orders: impl PlaceOrders + 'static,
    ) -> Result<Self, SetupError> {
        Self::check(&params)?;
        Ok(Self {
            params,
            topics,
            orders: Box::new(orders),
            clock: Clock::system(),
            metrics: metrics(),
        })
    }

    /// Reads the time from `clock` (tests: a paused one) for every decision and timestamp.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn check(params: &CheckoutParams) -> Result<(), SetupError> {
        if params.step_timeout_ms <= 0 || params.retain_ms <= 0 {
            return Err(SetupError::Timeouts);
        }
        Ok(())
    }

    pub fn payment_id(order: &str) -> String {
        wire::payment_id(order)
    }

    async fn on_request(
        &self,
        input: &Input,
        request: CheckoutRequested,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        if input.key_str() != Some(request.order_id.as_str()) {
            return Err(HandlerError::invalid(format!(
                "checkout request for order {} under key {:?}: requests are keyed by order id",
                request.order_id,
                input.key_str()
            )));
        }
        let order = request.order_id.clone();
        let now = self.clock.now_ms();
        let existing = state.get(&order).cloned();
        if existing.is_none() {
            if let Some(why) = wire::invalid(&request) {
                // Never a saga: one FAILED transition, so the storefront's poll ends.
                self.metrics
                    .ended
                    .with_label_values(&["invalid_request"])
                    .inc();
                let id = ids::derived(&[&input.coordinates(), "invalid"]);
                let transition = wire::refused(&request, id, why, now);
                return out.send(&self.topics.transitions, &order, &transition);
            }
        }
        let fingerprint = wire::cart_fingerprint(&request);
        let products: Vec<String> = wire::lines_by_product(&request).into_keys().collect();
        match Saga::start(
            existing.as_ref().map(|r| &r.saga),
            &request.idempotency_key,
            &fingerprint,
            &products,
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
            }
            Start::Duplicate => Ok(()),
            Start::Conflict => {
                self.metrics.conflicts.inc();
                Err(HandlerError::invalid(format!(
                    "order {order}: idempotency key {:?} was already used with another cart (or the order id with another key); refused",
                    request.idempotency_key
                )))
            }
        }
    }

    fn on_stock(
        &self,
        input: &Input,
        result: StockResult,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let Some(mut record) = state.get(&result.order_id).cloned() else {
            // Not a saga of ours, or long forgotten: nothing to do (holds are given back by
            // the saga that asked for them).
            return Ok(());
        };
        let product = result.product_id.clone();
        let (event, trigger) = match result.kind {
            StockResultKind::Held => {
                for line in &result.lines {
                    record
                        .reserved
                        .retain(|(n, fc)| !(*n == line.line_number && fc.is_none()));
                    record
                        .reserved
                        .push((line.line_number, Some(line.fulfillment_center.clone())));
                }
                (Event::StockHeld { product }, SagaTrigger::InventoryReserved)
            }
            StockResultKind::Refused | StockResultKind::NotHeld => (
                Event::StockRefused {
                    product,
                    // A refusal names the sellable units of a product the ledger knows; an
                    // unknown product (never stocked) and an ended hold name none.
                    out_of_stock: result.available_quantity.is_some(),
                },
                SagaTrigger::InventoryRejected,
            ),
            // The ledgers answer holds only.
            StockResultKind::Released | StockResultKind::Committed => return Ok(()),
            StockResultKind::Unknown => {
                return Err(HandlerError::invalid("stock result of unknown kind"))
            }
        };
        let effects = record.saga.on(event, self.clock.now_ms());
        if effects.is_empty() {
            // Nothing moved (one of several answers, or a late one): store what was learnt.
            if state.get(&result.order_id) != Some(&record) {
                state.put(&result.order_id, record);
            }
            return Ok(());
        }
        self.apply(record, effects, trigger, &input.coordinates(), state, out)
    }

    fn on_payment(
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
                return Err(HandlerError::invalid(format!(
                    "payment result {outcome:?} for a {kind:?} command"
                )))
            }
        };
        let effects = record.saga.on(saga_event, self.clock.now_ms());
        self.apply(record, effects, trigger, &input.coordinates(), state, out)
    }

    /// Carries out `effects` in order, then stores the record.
    fn apply(
        &self,
        mut record: SagaRecord,
        effects: Vec<Effect>,
        trigger: SagaTrigger,
        cause: &str,
        state: &mut State<'_, SagaRecord>,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let order = record.request.order_id.clone();
        let mut queue: VecDeque<Effect> = effects.into();
        let mut n = 0usize;
        while let Some(effect) = queue.pop_front() {
            n += 1;
            let id = ids::derived(&[cause, &n.to_string()]);
            let now = self.clock.now_ms();
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
                Effect::Timer(Some(at)) => state.set_timer(&order, at, STEP),
                Effect::Timer(None) if record.saga.state.is_terminal() => {
                    // Kept a while so a repeated request is the same checkout, then dropped.
                    state.set_timer(&order, now + self.params.retain_ms, FORGET);
                }
                Effect::Timer(None) => {
                    state.cancel_timer(&order);
                }
                Effect::HoldStock(products) => {
                    self.stock(&record, &products, StockCommandKind::Hold, &id, cause, out)?
                }
                Effect::CommitStock(products) => self.stock(
                    &record,
                    &products,
                    StockCommandKind::Commit,
                    &id,
                    cause,
                    out,
                )?,
                Effect::ReleaseStock(products) => self.stock(
                    &record,
                    &products,
                    StockCommandKind::Release,
                    &id,
                    cause,
                    out,
                )?,
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
                        .map_err(|e| HandlerError::fatal("order lines").caused_by(e))?;
                    let placed = self.orders.place(NewOrder {
                        order_id: order.clone(),
                        idempotency_key: r.idempotency_key.clone(),
                        user_id: r.user_id.clone(),
                        currency: r.currency.clone(),
                        total_minor: r.total_minor,
                        payment_id: Self::payment_id(&order),
                        lines,
                    });
                    out.defer(Box::pin(placed.err_into()));
                }
                Effect::PublishOrderPlaced => {
                    let placed = wire::order_placed(&record, id, cause, now);
                    out.send(&self.topics.placed, &order, &placed)?;
                }
            }
        }
        state.put(&order, record);
        Ok(())
    }

    /// One command per product to its ledger (keyed by product: the ledger instance owning
    /// the product is its single writer).
    fn stock(
        &self,
        record: &SagaRecord,
        products: &[String],
        kind: StockCommandKind,
        id: &str,
        cause: &str,
        out: &mut Outputs<'_>,
    ) -> Result<(), HandlerError> {
        let mut lines = wire::lines_by_product(&record.request);
        for product in products {
            let held = if kind == StockCommandKind::Hold {
                lines.remove(product).unwrap_or_default()
            } else {
                Vec::new()
            };
            let command = wire::stock_command(
                record,
                product,
                kind,
                held,
                &wire::Cause { id, cause },
                self.clock.now_ms(),
            );
            out.send(&self.topics.stock, product, &command)?;
        }
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
        let now = self.clock.now_ms();
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
        let transition = wire::transition(
            record,
            wire::Step {
                from,
                to,
                attempt,
                failure,
                trigger,
            },
            &wire::Cause { id, cause },
            now,
            self.params.step_timeout_ms,
        );
        out.send(&self.topics.transitions, &order, &transition)
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
        if let Some(request) = self.topics.requests.decode(input) {
            self.on_request(input, request?, state, out).await
        } else if let Some(result) = self.topics.stock_results.decode(input) {
            self.on_stock(input, result?, state, out)
        } else if let Some(result) = self.topics.payment_results.decode(input) {
            self.on_payment(input, result?, state, out)
        } else {
            Err(HandlerError::fatal(format!(
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
        if timer.payload == FORGET {
            if record.saga.state.is_terminal() {
                state.delete(&timer.key);
            }
            return Ok(());
        }
        let effects = record.saga.on(Event::StepTimedOut, self.clock.now_ms());
        let cause = format!("timer:{}:{}", timer.key, timer.at_ms);
        self.apply(
            record,
            effects,
            SagaTrigger::StepTimedOut,
            &cause,
            state,
            out,
        )
    }
}
