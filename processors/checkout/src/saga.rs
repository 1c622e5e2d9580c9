//! The checkout saga of one order as a pure state machine: reserve inventory → charge payment
//! (the order's idempotency key) → create the order → commit the inventory decrement →
//! placed. A failure after a successful step runs the compensations in reverse order (refund
//! the charge, release the reservation), each retried on its step timer; a compensation that
//! cannot complete within its attempts leaves the saga STUCK for an operator. No I/O, no
//! clock: the caller passes the time and carries out the [`Effect`]s.
//!
//! Single writer: the checkout instance owning the order's partition (every input is keyed by
//! order id).

use serde::{Deserialize, Serialize};

/// Attempts per forward step before it is compensated, and per compensation before STUCK.
pub const STEP_ATTEMPTS: u32 = 3;
pub const COMPENSATION_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaState {
    ReservingInventory,
    ChargingPayment,
    CreatingOrder,
    CommittingInventory,
    Placed,
    RefundingPayment,
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

/// What happened to the saga (an answer from a participant, or its step timer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    InventoryReserved,
    InventoryRejected {
        out_of_stock: bool,
    },
    InventoryCommitted,
    InventoryCommitRejected,
    InventoryReleased,
    PaymentCharged,
    PaymentDeclined,
    /// The payment processor gave up (its retries ran out): the charge may or may not exist.
    PaymentFailed,
    PaymentRefunded,
    OrderCreated,
    OrderCreationFailed,
    /// The current step's timer fired.
    StepTimedOut,
}

/// What the saga asks of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    ReserveInventory,
    CommitInventory,
    ReleaseInventory,
    /// Charge the order total under its idempotency key (a repeat never charges twice).
    ChargePayment,
    /// Refund the charge under the idempotency key (nothing to refund is a success).
    RefundPayment,
    CreateOrder,
    MarkOrderFailed,
    PublishOrderPlaced,
    /// (Re)arm the step timer at this time; `None` cancels it.
    Timer(Option<i64>),
    /// For the audit log (`checkout.saga-transitions.v1`) and the status projection.
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
    /// What must be undone if a later step fails.
    pub inventory_held: bool,
    pub payment_maybe_charged: bool,
    pub order_created: bool,
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
    /// A checkout request: a new saga, or what an existing one says about a repeat.
    pub fn start(
        existing: Option<&Saga>,
        idempotency_key: &str,
        cart: &str,
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
        let saga = Saga {
            idempotency_key: idempotency_key.to_string(),
            cart: cart.to_string(),
            state: SagaState::ReservingInventory,
            attempt: 1,
            step_timeout_ms,
            failure: None,
            inventory_held: false,
            payment_maybe_charged: false,
            order_created: false,
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
            Effect::ReserveInventory,
            Effect::Timer(Some(now + step_timeout_ms)),
        ];
        Start::Started(saga, effects)
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

    /// Starts (or continues) compensating after `failure`: refund first, then release.
    fn compensate(&mut self, failure: FailureCode, now: i64) -> Vec<Effect> {
        self.failure.get_or_insert(failure);
        if self.payment_maybe_charged {
            return self.go(
                SagaState::RefundingPayment,
                now,
                Some(Effect::RefundPayment),
            );
        }
        if self.inventory_held {
            return self.go(
                SagaState::ReleasingInventory,
                now,
                Some(Effect::ReleaseInventory),
            );
        }
        let mut effects = self.go(SagaState::Failed, now, None);
        if self.order_created {
            effects.insert(1, Effect::MarkOrderFailed);
        }
        effects
    }

    /// The effect that (re)does the current step.
    fn step_effect(&self) -> Option<Effect> {
        match self.state {
            SagaState::ReservingInventory => Some(Effect::ReserveInventory),
            SagaState::ChargingPayment => Some(Effect::ChargePayment),
            SagaState::CreatingOrder => Some(Effect::CreateOrder),
            SagaState::CommittingInventory => Some(Effect::CommitInventory),
            SagaState::RefundingPayment => Some(Effect::RefundPayment),
            SagaState::ReleasingInventory => Some(Effect::ReleaseInventory),
            SagaState::Placed | SagaState::Failed | SagaState::Stuck => None,
        }
    }

    /// When the current attempt times out: the step timeout doubled per attempt (at most
    /// eight times), so a backlog that slows every answer is not met with ever more retries.
    fn deadline(&self, now: i64) -> i64 {
        let factor = 1i64 << self.attempt.saturating_sub(1).min(3);
        now + self.step_timeout_ms.saturating_mul(factor)
    }

    /// Whether `event` answers the compensation a STUCK saga was waiting for.
    fn answers_stuck(&self, event: &Event) -> bool {
        matches!(
            (self.stuck_in, event),
            (Some(SagaState::RefundingPayment), Event::PaymentRefunded)
                | (
                    Some(SagaState::ReleasingInventory),
                    Event::InventoryReleased | Event::InventoryCommitRejected
                )
        )
    }

    pub fn on(&mut self, event: Event, now: i64) -> Vec<Effect> {
        use SagaState as S;
        if self.state == S::Stuck && self.answers_stuck(&event) {
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
            (S::ReservingInventory, Event::InventoryReserved) => {
                self.inventory_held = true;
                // Charging may happen from here on, whatever answer arrives.
                self.payment_maybe_charged = true;
                self.go(S::ChargingPayment, now, Some(Effect::ChargePayment))
            }
            (S::ReservingInventory, Event::InventoryRejected { out_of_stock }) => {
                let code = if out_of_stock {
                    FailureCode::OutOfStock
                } else {
                    FailureCode::InvalidRequest
                };
                self.failure = Some(code);
                self.go(S::Failed, now, None)
            }
            (S::ChargingPayment, Event::PaymentCharged) => {
                self.go(S::CreatingOrder, now, Some(Effect::CreateOrder))
            }
            (S::ChargingPayment, Event::PaymentDeclined) => {
                // A decline is final and charged nothing.
                self.payment_maybe_charged = false;
                self.compensate(FailureCode::PaymentDeclined, now)
            }
            (S::ChargingPayment, Event::PaymentFailed) => {
                self.compensate(FailureCode::PaymentFailed, now)
            }
            (S::CreatingOrder, Event::OrderCreated) => {
                self.order_created = true;
                self.go(S::CommittingInventory, now, Some(Effect::CommitInventory))
            }
            (S::CreatingOrder, Event::OrderCreationFailed) => {
                self.compensate(FailureCode::OrderCreationFailed, now)
            }
            (S::CommittingInventory, Event::InventoryCommitted) => {
                self.inventory_held = false;
                let mut effects = self.go(S::Placed, now, None);
                effects.insert(1, Effect::PublishOrderPlaced);
                effects
            }
            (S::CommittingInventory, Event::InventoryCommitRejected) => {
                // The hold expired: inventory already gave the units back.
                self.inventory_held = false;
                self.compensate(FailureCode::ReservationExpired, now)
            }
            (S::RefundingPayment, Event::PaymentRefunded) => {
                self.payment_maybe_charged = false;
                let failure = self.failure.unwrap_or(FailureCode::PaymentFailed);
                self.compensate(failure, now)
            }
            (S::ReleasingInventory, Event::InventoryReleased | Event::InventoryCommitRejected) => {
                self.inventory_held = false;
                let failure = self.failure.unwrap_or(FailureCode::StepTimedOut);
                self.compensate(failure, now)
            }
            (state, Event::StepTimedOut) if !state.is_terminal() && state != S::Stuck => {
                self.timed_out(now)
            }
            // Anything else is a duplicate or a late answer for a step already passed.
            _ => Vec::new(),
        }
    }

    fn timed_out(&mut self, now: i64) -> Vec<Effect> {
        let compensating = matches!(
            self.state,
            SagaState::RefundingPayment | SagaState::ReleasingInventory
        );
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
        if self.state == SagaState::ReservingInventory {
            // No answer: the reservation may exist, so release it.
            self.inventory_held = true;
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
        // Compensation starts again from the top with fresh attempts.
        self.compensate(failure, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: i64 = 10_000;

    fn started() -> (Saga, Vec<Effect>) {
        match Saga::start(None, "key-1", "cart-a", TIMEOUT, 0) {
            Start::Started(s, e) => (s, e),
            other => panic!("{other:?}"),
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

    #[test]
    fn success_reserves_charges_creates_commits_and_places() {
        let (mut s, first) = started();
        assert_eq!(steps(&first), vec![&Effect::ReserveInventory]);
        let effects = drive(
            &mut s,
            &[
                Event::InventoryReserved,
                Event::PaymentCharged,
                Event::OrderCreated,
                Event::InventoryCommitted,
            ],
        );
        assert_eq!(
            effects,
            vec![
                Effect::ChargePayment,
                Effect::CreateOrder,
                Effect::CommitInventory,
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
    fn out_of_stock_fails_with_nothing_to_compensate() {
        let (mut s, _) = started();
        assert!(drive(&mut s, &[Event::InventoryRejected { out_of_stock: true }]).is_empty());
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::OutOfStock))
        );
    }

    #[test]
    fn a_declined_payment_releases_the_reservation_only() {
        let (mut s, _) = started();
        let effects = drive(
            &mut s,
            &[
                Event::InventoryReserved,
                Event::PaymentDeclined,
                Event::InventoryReleased,
            ],
        );
        assert_eq!(
            effects,
            vec![Effect::ChargePayment, Effect::ReleaseInventory]
        );
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::PaymentDeclined))
        );
    }

    #[test]
    fn a_payment_timeout_then_success_on_retry_charges_once() {
        let (mut s, _) = started();
        s.on(Event::InventoryReserved, 0);
        let retry = s.on(Event::StepTimedOut, TIMEOUT);
        assert_eq!(
            steps(&retry),
            vec![&Effect::ChargePayment],
            "same key: the gateway charges once"
        );
        let effects = drive(
            &mut s,
            &[
                Event::PaymentCharged,
                Event::OrderCreated,
                Event::InventoryCommitted,
            ],
        );
        assert_eq!(
            effects,
            vec![
                Effect::CreateOrder,
                Effect::CommitInventory,
                Effect::PublishOrderPlaced
            ]
        );
        assert_eq!(s.state, SagaState::Placed);
    }

    #[test]
    fn payment_timeouts_then_failure_refund_then_release() {
        let (mut s, _) = started();
        s.on(Event::InventoryReserved, 0);
        for _ in 1..STEP_ATTEMPTS {
            s.on(Event::StepTimedOut, 0);
        }
        let last = s.on(Event::StepTimedOut, 0);
        assert_eq!(
            steps(&last),
            vec![&Effect::RefundPayment],
            "maybe charged: refund first"
        );
        let effects = drive(&mut s, &[Event::PaymentRefunded, Event::InventoryReleased]);
        assert_eq!(effects, vec![Effect::ReleaseInventory]);
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::StepTimedOut))
        );
    }

    #[test]
    fn an_order_write_failure_refunds_and_releases_in_reverse_order() {
        let (mut s, _) = started();
        let effects = drive(
            &mut s,
            &[
                Event::InventoryReserved,
                Event::PaymentCharged,
                Event::OrderCreationFailed,
                Event::PaymentRefunded,
                Event::InventoryReleased,
            ],
        );
        assert_eq!(
            effects,
            vec![
                Effect::ChargePayment,
                Effect::CreateOrder,
                Effect::RefundPayment,
                Effect::ReleaseInventory
            ]
        );
        assert_eq!(s.failure, Some(FailureCode::OrderCreationFailed));
    }

    #[test]
    fn an_expired_reservation_at_commit_refunds_and_marks_the_order_failed() {
        let (mut s, _) = started();
        let effects = drive(
            &mut s,
            &[
                Event::InventoryReserved,
                Event::PaymentCharged,
                Event::OrderCreated,
                Event::InventoryCommitRejected,
                Event::PaymentRefunded,
            ],
        );
        assert_eq!(
            effects,
            vec![
                Effect::ChargePayment,
                Effect::CreateOrder,
                Effect::CommitInventory,
                Effect::RefundPayment,
                Effect::MarkOrderFailed
            ]
        );
        assert_eq!(
            (s.state, s.failure),
            (SagaState::Failed, Some(FailureCode::ReservationExpired))
        );
    }

    #[test]
    fn a_late_answer_resumes_a_stuck_compensation() {
        let (mut s, _) = started();
        drive(&mut s, &[Event::InventoryReserved, Event::PaymentFailed]);
        assert_eq!(s.state, SagaState::RefundingPayment);
        for _ in 0..COMPENSATION_ATTEMPTS {
            s.on(Event::StepTimedOut, 0);
        }
        assert_eq!(s.state, SagaState::Stuck);
        // Not its answer: still stuck.
        assert!(s.on(Event::InventoryReleased, 0).is_empty());
        let effects = s.on(Event::PaymentRefunded, 0);
        assert!(matches!(
            effects[0],
            Effect::Transition {
                from: Some(SagaState::Stuck),
                to: SagaState::RefundingPayment,
                ..
            }
        ));
        assert_eq!(steps(&effects), vec![&Effect::ReleaseInventory]);
        assert_eq!(s.state, SagaState::ReleasingInventory);
        s.on(Event::InventoryReleased, 0);
        assert_eq!(s.state, SagaState::Failed);
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
    fn a_compensation_that_never_completes_is_stuck_until_redriven() {
        let (mut s, _) = started();
        drive(&mut s, &[Event::InventoryReserved, Event::PaymentDeclined]);
        assert_eq!(s.state, SagaState::ReleasingInventory);
        for _ in 0..COMPENSATION_ATTEMPTS {
            s.on(Event::StepTimedOut, 0);
        }
        assert_eq!(s.state, SagaState::Stuck);
        assert!(
            s.on(Event::StepTimedOut, 0).is_empty(),
            "stuck waits for an operator"
        );
        assert_eq!(steps(&s.redrive(0)), vec![&Effect::ReleaseInventory]);
        s.on(Event::InventoryReleased, 0);
        assert_eq!(s.state, SagaState::Failed);
    }

    #[test]
    fn the_same_request_twice_is_one_saga_and_another_cart_under_the_key_is_refused() {
        let (s, _) = started();
        assert_eq!(
            Saga::start(Some(&s), "key-1", "cart-a", TIMEOUT, 5),
            Start::Duplicate
        );
        assert_eq!(
            Saga::start(Some(&s), "key-1", "cart-b", TIMEOUT, 5),
            Start::Conflict
        );
    }

    /// A crash between any two steps: the restarted processor has the saga's last stored
    /// state and sees the pending answer again (or its timer fires); every path still ends
    /// in exactly one terminal outcome with balanced compensations.
    #[test]
    fn redelivery_after_a_crash_at_any_point_reaches_one_outcome() {
        let path = [
            Event::InventoryReserved,
            Event::PaymentCharged,
            Event::OrderCreated,
            Event::InventoryCommitted,
        ];
        for crash_after in 0..path.len() {
            let (mut s, _) = started();
            let mut charges = 0;
            for (i, e) in path.iter().enumerate() {
                let effects = s.on(e.clone(), i as i64);
                charges += effects
                    .iter()
                    .filter(|x| **x == Effect::ChargePayment)
                    .count();
                if i == crash_after {
                    // The stored state survives; the same answer is redelivered.
                    let again = s.on(e.clone(), i as i64);
                    assert!(
                        steps(&again).is_empty(),
                        "a redelivered answer does nothing"
                    );
                }
            }
            assert_eq!(s.state, SagaState::Placed);
            assert_eq!(charges, 1);
        }
    }
}
