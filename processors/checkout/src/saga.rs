//! The checkout saga of one order as a pure state machine: hold every product at its stock
//! ledger (all or nothing) → charge the payment (the order's idempotency key) → placed (the
//! order row, the commit of every hold and the order-placed event go out together). A
//! failure after a successful step runs the compensations in reverse order: refund the
//! charge (answered, retried on its step timer), then release the holds (commands the
//! ledgers cannot refuse: the saga is the only one that ends its holds, so a release needs
//! no answer). A refund that cannot complete within its attempts leaves the saga STUCK for an
//! operator. No I/O, no clock: the caller passes the time and carries out the [`Effect`]s.
//!
//! Single writer: the checkout instance owning the order's partition (every input is keyed by
//! order id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Attempts per forward step before it is compensated, and per compensation before STUCK.
pub const STEP_ATTEMPTS: u32 = 3;
pub const COMPENSATION_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaState {
    ReservingInventory,
    ChargingPayment,
    /// Only in sagas stored by the first version (its order row and inventory commit were
    /// separate steps); such a saga is placed when its timer fires.
    CreatingOrder,
    CommittingInventory,
    Placed,
    RefundingPayment,
    /// Passed through on the way to FAILED, with the release commands.
    ReleasingInventory,
    Failed,
    Stuck,
}

impl SagaState {
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaState::Placed | SagaState::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCode {
    OutOfStock,
    InvalidRequest,
    ReservationExpired,
    PaymentDeclined,
    PaymentFailed,
    OrderCreationFailed,
    StepTimedOut,
}

/// What a product's ledger said about the saga's hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stock {
    /// HOLD sent, no answer yet.
    Asked,
    Held,
    /// Not held (out of stock, unknown product or an earlier hold already ended).
    Refused,
    /// RELEASE sent.
    Released,
    /// COMMIT sent.
    Committed,
}

/// What happened to the saga (an answer from a participant, or its step timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    StockHeld {
        product: String,
    },
    StockRefused {
        product: String,
        out_of_stock: bool,
    },
    PaymentCharged,
    PaymentDeclined,
    /// The payment processor gave up (its retries ran out): the charge may or may not exist.
    PaymentFailed,
    PaymentRefunded,
    /// The current step's timer fired.
    StepTimedOut,
}

/// What the saga asks of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send HOLD to each product's ledger (again: a ledger answers a repeat the same way).
    HoldStock(Vec<String>),
    /// Send RELEASE / COMMIT to each product's ledger.
    ReleaseStock(Vec<String>),
    CommitStock(Vec<String>),
    /// Charge the order total under its idempotency key (a repeat never charges twice).
    ChargePayment,
    /// Refund the charge under the idempotency key (nothing to refund is a success).
    RefundPayment,
    /// Write the placed order to the order history (idempotent).
    CreateOrder,
    PublishOrderPlaced,
    /// (Re)arm the step timer at this time; `None` cancels it.
    Timer(Option<i64>),
    /// For the audit log and status (`checkout.saga-transitions.v1`).
    Transition {
        from: Option<SagaState>,
        to: SagaState,
        attempt: u32,
        failure: Option<FailureCode>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub idempotency_key: String,
    /// Fingerprint of the cart the key was first used with.
    pub cart: String,
    pub state: SagaState,
    pub attempt: u32,
    pub step_timeout_ms: i64,
    pub failure: Option<FailureCode>,
    /// Each product's hold.
    #[serde(default)]
    pub stock: BTreeMap<String, Stock>,
    pub payment_maybe_charged: bool,
    pub history: Vec<(SagaState, SagaState)>,
    /// STUCK only: the compensation that ran out of attempts. Its answer, however late,
    /// still resumes the saga.
    #[serde(default)]
    pub stuck_in: Option<SagaState>,
}

/// How a checkout request relates to an existing saga with the same order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Started(Saga, Vec<Effect>),
    /// The same request again: nothing new happens.
    Duplicate,
    /// The same idempotency key with another cart: refused.
    Conflict,
}

impl Saga {
    /// A checkout request for `products`: a new saga, or what an existing one says about a
    /// repeat.
    pub fn start(
        existing: Option<&Saga>,
        idempotency_key: &str,
        cart: &str,
        products: &[String],
        step_timeout_ms: i64,
        now: i64,
    ) -> Start {
        if let Some(saga) = existing {
            return if saga.idempotency_key == idempotency_key && saga.cart == cart {
                Start::Duplicate
            } else {
                Start::Conflict
            };
        }
        let stock: BTreeMap<String, Stock> =
            products.iter().map(|p| (p.clone(), Stock::Asked)).collect();
        let saga = Saga {
            idempotency_key: idempotency_key.to_string(),
            cart: cart.to_string(),
            state: SagaState::ReservingInventory,
            attempt: 1,
            step_timeout_ms,
            failure: None,
            stock: stock.clone(),
            payment_maybe_charged: false,
            history: Vec::new(),
            stuck_in: None,
        };
        let effects = vec![
            Effect::Transition {
                from: None,
                to: SagaState::ReservingInventory,
                attempt: 1,
                failure: None,
            },
            Effect::HoldStock(stock.into_keys().collect()),
            Effect::Timer(Some(now + step_timeout_ms)),
        ];
        Start::Started(saga, effects)
    }

    fn products(&self, of: impl Fn(Stock) -> bool) -> Vec<String> {
        self.stock
            .iter()
            .filter(|(_, s)| of(**s))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn go(&mut self, to: SagaState, now: i64, step: Option<Effect>) -> Vec<Effect> {
        let from = self.state;
        self.state = to;
        self.attempt = 1;
        self.history.push((from, to));
        let mut effects = vec![Effect::Transition {
            from: Some(from),
            to,
            attempt: 1,
            failure: self.failure,
        }];
        effects.extend(step);
        effects.push(Effect::Timer(if to.is_terminal() {
            None
        } else {
            Some(self.deadline(now))
        }));
        effects
    }

    /// Starts (or continues) compensating after `failure`: refund first (answered), then
    /// release every hold that may exist and fail.
    fn compensate(&mut self, failure: FailureCode, now: i64) -> Vec<Effect> {
        self.failure.get_or_insert(failure);
        if self.payment_maybe_charged {
            return self.go(
                SagaState::RefundingPayment,
                now,
                Some(Effect::RefundPayment),
            );
        }
        let held = self.products(|s| matches!(s, Stock::Asked | Stock::Held));
        if held.is_empty() {
            return self.go(SagaState::Failed, now, None);
        }
        for product in &held {
            self.stock.insert(product.clone(), Stock::Released);
        }
        let mut effects = self.go(
            SagaState::ReleasingInventory,
            now,
            Some(Effect::ReleaseStock(held)),
        );
        effects.retain(|e| !matches!(e, Effect::Timer(_)));
        effects.extend(self.go(SagaState::Failed, now, None));
        effects
    }

    /// Payment secured: the order is written, every hold committed, the order placed.
    fn place(&mut self, now: i64) -> Vec<Effect> {
        let held = self.products(|s| s == Stock::Held);
        for product in &held {
            self.stock.insert(product.clone(), Stock::Committed);
        }
        let mut effects = self.go(SagaState::Placed, now, None);
        effects.splice(
            1..1,
            [
                Effect::CreateOrder,
                Effect::CommitStock(held),
                Effect::PublishOrderPlaced,
            ],
        );
        effects
    }

    /// The effect that (re)does the current step.
    fn step_effect(&self) -> Option<Effect> {
        match self.state {
            SagaState::ReservingInventory => {
                Some(Effect::HoldStock(self.products(|s| s == Stock::Asked)))
            }
            SagaState::ChargingPayment => Some(Effect::ChargePayment),
            SagaState::RefundingPayment => Some(Effect::RefundPayment),
            _ => None,
        }
    }

    /// When the current attempt times out: the step timeout doubled per attempt (at most
    /// eight times), so a backlog that slows every answer is not met with ever more retries.
    fn deadline(&self, now: i64) -> i64 {
        let factor = 1i64 << self.attempt.saturating_sub(1).min(3);
        now + self.step_timeout_ms.saturating_mul(factor)
    }

    pub fn on(&mut self, event: Event, now: i64) -> Vec<Effect> {
        use SagaState as S;
        if self.state == S::Stuck && event == Event::PaymentRefunded {
            // The late answer arrived: resume the compensation where it stopped.
            let resumed = self.stuck_in.take().unwrap_or(S::RefundingPayment);
            self.state = resumed;
            self.history.push((S::Stuck, resumed));
            let mut effects = vec![Effect::Transition {
                from: Some(S::Stuck),
                to: resumed,
                attempt: self.attempt,
                failure: self.failure,
            }];
            effects.extend(self.on(event, now));
            return effects;
        }
        match (self.state, event) {
            (S::ReservingInventory, Event::StockHeld { product }) => {
                if self.stock.get(&product) != Some(&Stock::Asked) {
                    return Vec::new();
                }
                self.stock.insert(product, Stock::Held);
                if self.stock.values().any(|s| *s != Stock::Held) {
                    return Vec::new();
                }
                // Charging may happen from here on, whatever answer arrives.
                self.payment_maybe_charged = true;
                self.go(S::ChargingPayment, now, Some(Effect::ChargePayment))
            }
            (
                S::ReservingInventory,
                Event::StockRefused {
                    product,
                    out_of_stock,
                },
            ) => {
                if self.stock.get(&product) != Some(&Stock::Asked) {
                    return Vec::new();
                }
                self.stock.insert(product, Stock::Refused);
                let code = if out_of_stock {
                    FailureCode::OutOfStock
                } else {
                    FailureCode::InvalidRequest
                };
                self.compensate(code, now)
            }
            (S::ChargingPayment, Event::PaymentCharged) => self.place(now),
            (S::ChargingPayment, Event::PaymentDeclined) => {
                // A decline is final and charged nothing.
                self.payment_maybe_charged = false;
                self.compensate(FailureCode::PaymentDeclined, now)
            }
            (S::ChargingPayment, Event::PaymentFailed) => {
                self.compensate(FailureCode::PaymentFailed, now)
            }
            (S::RefundingPayment, Event::PaymentRefunded) => {
                self.payment_maybe_charged = false;
                let failure = self.failure.unwrap_or(FailureCode::PaymentFailed);
                self.compensate(failure, now)
            }
            (S::Failed, Event::StockHeld { product })
                if self.stock.get(&product) == Some(&Stock::Refused) =>
            {
                // A copy of the HOLD (re-sent by the step timer before the refusal was read)
                // was answered HELD after all. The ledger remembers its refusals, so it
                // answers every copy as the first; this is for a copy it no longer
                // remembers (an hour later) or a ledger without that memory. Nothing else
                // ends this order's hold, so the saga releases it; a product it released
                // already needs nothing more (see below).
                self.stock.insert(product.clone(), Stock::Released);
                vec![Effect::ReleaseStock(vec![product])]
            }
            (S::CreatingOrder | S::CommittingInventory, Event::StepTimedOut) => {
                // A saga of the first version, paid and waiting for a step that no longer
                // exists: place it (the order write and the commits are idempotent).
                self.stock = self
                    .stock
                    .keys()
                    .map(|p| (p.clone(), Stock::Held))
                    .collect();
                self.place(now)
            }
            (state, Event::StepTimedOut) if !state.is_terminal() && state != S::Stuck => {
                self.timed_out(now)
            }
            // Anything else is a duplicate or a late answer for a step already passed (a
            // hold answered after the saga released it is given back by that release, which
            // the ledger sees after every copy of the hold: the saga sends them all before
            // its release, in order, to the product's partition).
            _ => Vec::new(),
        }
    }

    fn timed_out(&mut self, now: i64) -> Vec<Effect> {
        let compensating = self.state == SagaState::RefundingPayment;
        let limit = if compensating {
            COMPENSATION_ATTEMPTS
        } else {
            STEP_ATTEMPTS
        };
        if self.attempt < limit {
            // Retry the step: every participant deduplicates it (same command, same key).
            self.attempt += 1;
            let mut effects = vec![Effect::Transition {
                from: Some(self.state),
                to: self.state,
                attempt: self.attempt,
                failure: self.failure,
            }];
            effects.extend(self.step_effect());
            effects.push(Effect::Timer(Some(self.deadline(now))));
            return effects;
        }
        if compensating {
            let from = self.state;
            self.stuck_in = Some(from);
            self.state = SagaState::Stuck;
            self.history.push((from, SagaState::Stuck));
            return vec![
                Effect::Transition {
                    from: Some(from),
                    to: SagaState::Stuck,
                    attempt: self.attempt,
                    failure: self.failure,
                },
                Effect::Timer(None),
            ];
        }
        self.compensate(FailureCode::StepTimedOut, now)
    }

    /// An operator re-drives a STUCK saga: its compensation starts again with fresh attempts.
    pub fn redrive(&mut self, now: i64) -> Vec<Effect> {
        if self.state != SagaState::Stuck {
            return Vec::new();
        }
        let failure = self.failure.unwrap_or(FailureCode::StepTimedOut);
        self.stuck_in = None;
        self.state = SagaState::RefundingPayment;
        self.compensate(failure, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: i64 = 10_000;

    fn products() -> Vec<String> {
        vec!["p1".into(), "p2".into()]
    }

    fn started() -> (Saga, Vec<Effect>) {
        match Saga::start(None, "key-1", "cart-a", &products(), TIMEOUT, 0) {
            Start::Started(s, e) => (s, e),
            other => panic!("{other:?}"),
        }
    }

    fn held(p: &str) -> Event {
        Event::StockHeld { product: p.into() }
    }

    fn refused(p: &str) -> Event {
        Event::StockRefused {
            product: p.into(),
            out_of_stock: true,
        }
    }

    fn steps(effects: &[Effect]) -> Vec<&Effect> {
        effects
            .iter()
            .filter(|e| !matches!(e, Effect::Transition { .. } | Effect::Timer(_)))
            .collect()
    }

    /// Drives a saga with events and returns every non-bookkeeping effect in order.
    fn drive(saga: &mut Saga, events: &[Event]) -> Vec<Effect> {
        let mut all = Vec::new();
        for (i, e) in events.iter().enumerate() {
            all.extend(steps(&saga.on(e.clone(), i as i64)).into_iter().cloned());
        }
        all
    }

    fn both() -> Vec<String> {
        products()
    }

    #[test]
    fn success_holds_every_product_charges_and_places_in_one_step() {
        let (mut s, first) = started();
        assert_eq!(steps(&first), vec![&Effect::HoldStock(both())]);
        let effects = drive(&mut s, &[held("p1"), held("p2"), Event::PaymentCharged]);
        assert_eq!(
            effects,
            vec![
                Effect::ChargePayment,
                Effect::CreateOrder,
                Effect::CommitStock(both()),
                Effect::PublishOrderPlaced
            ]
        );
        assert_eq!(s.state, SagaState::Placed);
        assert!(
            s.on(Event::PaymentCharged, 9).is_empty(),
            "a late duplicate changes nothing"
        );
    }

    #[test]
    fn a_refused_product_releases_the_others_including_unanswered_ones() {
        let (mut s, _) = started();
        let effects = drive(&mut s, &[refused("p1")]);
        assert_eq!(effects, vec![Effect::ReleaseStock(vec!["p2".into()])]);
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::OutOfStock))
        );
        assert!(
            drive(&mut s, &[held("p2")]).is_empty(),
            "a hold answered after the release: the release already gives it back"
        );
    }

    /// A late HELD for a product the saga saw refused (a re-sent HOLD the ledger answered
    /// differently) is a hold nobody else will end: the failed saga releases it.
    #[test]
    fn a_hold_answered_after_its_refusal_ended_the_saga_is_released() {
        let mut s = match Saga::start(None, "k", "c", &["p1".into()], TIMEOUT, 0) {
            Start::Started(s, _) => s,
            other => panic!("{other:?}"),
        };
        let retry = s.on(Event::StepTimedOut, TIMEOUT);
        assert_eq!(steps(&retry), vec![&Effect::HoldStock(vec!["p1".into()])]);
        assert!(drive(&mut s, &[refused("p1")]).is_empty());
        assert_eq!(s.state, SagaState::Failed);
        assert_eq!(
            drive(&mut s, &[held("p1")]),
            vec![Effect::ReleaseStock(vec!["p1".into()])]
        );
        assert_eq!(s.state, SagaState::Failed);
        assert!(
            drive(&mut s, &[held("p1")]).is_empty(),
            "released once: the release follows every copy of the hold"
        );
    }

    #[test]
    fn a_single_product_out_of_stock_fails_with_nothing_to_compensate() {
        let mut s = match Saga::start(None, "k", "c", &["p1".into()], TIMEOUT, 0) {
            Start::Started(s, _) => s,
            other => panic!("{other:?}"),
        };
        assert!(drive(&mut s, &[refused("p1")]).is_empty());
        assert_eq!(s.state, SagaState::Failed);
    }

    #[test]
    fn a_declined_payment_releases_the_holds_only() {
        let (mut s, _) = started();
        let effects = drive(&mut s, &[held("p1"), held("p2"), Event::PaymentDeclined]);
        assert_eq!(
            effects,
            vec![Effect::ChargePayment, Effect::ReleaseStock(both())]
        );
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::PaymentDeclined))
        );
    }

    #[test]
    fn a_hold_timeout_asks_again_only_the_unanswered_products() {
        let (mut s, _) = started();
        s.on(held("p1"), 0);
        let retry = s.on(Event::StepTimedOut, TIMEOUT);
        assert_eq!(steps(&retry), vec![&Effect::HoldStock(vec!["p2".into()])]);
    }

    #[test]
    fn a_payment_timeout_then_success_on_retry_charges_once() {
        let (mut s, _) = started();
        drive(&mut s, &[held("p1"), held("p2")]);
        let retry = s.on(Event::StepTimedOut, TIMEOUT);
        assert_eq!(
            steps(&retry),
            vec![&Effect::ChargePayment],
            "same key: the gateway charges once"
        );
        s.on(Event::PaymentCharged, 0);
        assert_eq!(s.state, SagaState::Placed);
    }

    #[test]
    fn payment_timeouts_then_failure_refund_then_release() {
        let (mut s, _) = started();
        drive(&mut s, &[held("p1"), held("p2")]);
        for _ in 1..STEP_ATTEMPTS {
            s.on(Event::StepTimedOut, 0);
        }
        let last = s.on(Event::StepTimedOut, 0);
        assert_eq!(
            steps(&last),
            vec![&Effect::RefundPayment],
            "maybe charged: refund first"
        );
        let effects = drive(&mut s, &[Event::PaymentRefunded]);
        assert_eq!(effects, vec![Effect::ReleaseStock(both())]);
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::StepTimedOut))
        );
    }

    #[test]
    fn a_late_refund_resumes_a_stuck_saga_and_an_operator_can_redrive_it() {
        let (mut s, _) = started();
        drive(&mut s, &[held("p1"), held("p2"), Event::PaymentFailed]);
        assert_eq!(s.state, SagaState::RefundingPayment);
        for _ in 0..COMPENSATION_ATTEMPTS {
            s.on(Event::StepTimedOut, 0);
        }
        assert_eq!(s.state, SagaState::Stuck);
        assert!(
            s.on(Event::StepTimedOut, 0).is_empty(),
            "stuck waits for an operator"
        );
        let mut redriven = s.clone();
        assert_eq!(steps(&redriven.redrive(0)), vec![&Effect::RefundPayment]);
        assert_eq!(redriven.state, SagaState::RefundingPayment);
        let effects = s.on(Event::PaymentRefunded, 0);
        assert!(matches!(
            effects[0],
            Effect::Transition {
                from: Some(SagaState::Stuck),
                to: SagaState::RefundingPayment,
                ..
            }
        ));
        assert_eq!(steps(&effects), vec![&Effect::ReleaseStock(both())]);
        assert_eq!(s.state, SagaState::Failed);
    }

    #[test]
    fn a_hold_timeout_after_the_last_attempt_releases_everything_asked() {
        let (mut s, _) = started();
        s.on(held("p1"), 0);
        for _ in 1..STEP_ATTEMPTS {
            s.on(Event::StepTimedOut, 0);
        }
        let last = s.on(Event::StepTimedOut, 0);
        assert_eq!(steps(&last), vec![&Effect::ReleaseStock(both())]);
        assert_eq!(s.failure, Some(FailureCode::StepTimedOut));
    }

    #[test]
    fn each_retry_waits_twice_as_long_up_to_eight_times() {
        let (mut s, effects) = started();
        assert!(effects.contains(&Effect::Timer(Some(TIMEOUT))));
        let timers: Vec<i64> = (0..STEP_ATTEMPTS - 1)
            .map(|_| {
                s.on(Event::StepTimedOut, 0)
                    .into_iter()
                    .find_map(|e| match e {
                        Effect::Timer(Some(at)) => Some(at),
                        _ => None,
                    })
                    .unwrap()
            })
            .collect();
        assert_eq!(timers, vec![2 * TIMEOUT, 4 * TIMEOUT]);
    }

    #[test]
    fn the_same_request_twice_is_one_saga_and_another_cart_under_the_key_is_refused() {
        let (s, _) = started();
        assert_eq!(
            Saga::start(Some(&s), "key-1", "cart-a", &products(), TIMEOUT, 5),
            Start::Duplicate
        );
        assert_eq!(
            Saga::start(Some(&s), "key-1", "cart-b", &products(), TIMEOUT, 5),
            Start::Conflict
        );
    }

    /// Any answer delivered twice (a crash between steps redelivers it): every path still
    /// ends placed with exactly one charge and one commit per product.
    #[test]
    fn redelivery_after_a_crash_at_any_point_reaches_one_outcome() {
        let path = [held("p1"), held("p2"), Event::PaymentCharged];
        for crash_after in 0..path.len() {
            let (mut s, _) = started();
            let mut charges = 0;
            let mut commits = 0;
            for (i, e) in path.iter().enumerate() {
                let mut effects = s.on(e.clone(), i as i64);
                if i == crash_after {
                    effects.extend(s.on(e.clone(), i as i64));
                }
                charges += effects
                    .iter()
                    .filter(|x| **x == Effect::ChargePayment)
                    .count();
                commits += effects
                    .iter()
                    .filter(|x| matches!(x, Effect::CommitStock(_)))
                    .count();
            }
            assert_eq!(s.state, SagaState::Placed);
            assert_eq!((charges, commits), (1, 1));
        }
    }

    /// Whatever the ledgers and the payment answer, in any order, the saga never places an
    /// order without every hold, never leaves a hold unreleased when it fails, and releases
    /// nothing it committed.
    #[test]
    fn every_hold_ends_committed_or_released() {
        use proptest::prelude::*;
        let events = prop::collection::vec(
            prop_oneof![
                Just(held("p1")),
                Just(held("p2")),
                Just(refused("p1")),
                Just(refused("p2")),
                Just(Event::PaymentCharged),
                Just(Event::PaymentDeclined),
                Just(Event::PaymentFailed),
                Just(Event::PaymentRefunded),
                Just(Event::StepTimedOut),
            ],
            0..30,
        );
        proptest!(|(events in events)| {
            let (mut s, _) = started();
            for (i, e) in events.into_iter().enumerate() {
                s.on(e, i as i64);
            }
            match s.state {
                SagaState::Placed => {
                    prop_assert!(s.stock.values().all(|x| *x == Stock::Committed));
                }
                SagaState::Failed => {
                    prop_assert!(s.stock.values().all(|x| matches!(x, Stock::Released | Stock::Refused)));
                    prop_assert!(!s.payment_maybe_charged);
                }
                _ => {}
            }
        });
    }
}
