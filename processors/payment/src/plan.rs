//! What to do about one payment command, given the payment's state as last seen: answer from
//! the record, or call the gateway. Pure: the handler carries the plan out, feeds the
//! gateway's answer back as the new state, and plans again until there is an answer, so the
//! gateway's truth (not a guess) decides every next step.
//!
//! The undo commands (REFUND, VOID) mean "leave nothing charged": a captured payment is
//! refunded, an authorized one voided, and one whose authorization may still be in flight is
//! voided too, which at the gateway fences the key so a late authorization charges nothing.

use events::payments::{PaymentCommandKind, PaymentResultKind};
use serde::{Deserialize, Serialize};

/// A payment's state, as the gateway last told us (or `Pending`: asked, answer unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Authorized,
    Captured,
    Declined,
    Voided,
    Refunded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Authorized => "authorized",
            Status::Captured => "captured",
            Status::Declined => "declined",
            Status::Voided => "voided",
            Status::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "pending" => Status::Pending,
            "authorized" => Status::Authorized,
            "captured" => Status::Captured,
            "declined" => Status::Declined,
            "voided" => Status::Voided,
            "refunded" => Status::Refunded,
            _ => return None,
        })
    }
}

/// A gateway operation on the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Authorize,
    Capture,
    Void,
    Refund,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Authorize => "authorize",
            Op::Capture => "capture",
            Op::Void => "void",
            Op::Refund => "refund",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Call(Op),
    Answer(PaymentResultKind),
    /// The command cannot apply to this payment (not retryable).
    Invalid(String),
}

/// The next step for `kind` when the payment is in `status` (`None`: never seen).
pub fn plan(kind: PaymentCommandKind, capture_immediately: bool, status: Option<Status>) -> Plan {
    use PaymentCommandKind as K;
    use Status as S;
    match (kind, status) {
        (K::Authorize, None | Some(S::Pending)) => Plan::Call(Op::Authorize),
        (K::Authorize, Some(S::Authorized)) if capture_immediately => Plan::Call(Op::Capture),
        (K::Authorize, Some(S::Authorized)) => Plan::Answer(PaymentResultKind::Authorized),
        (K::Authorize | K::Capture, Some(S::Captured)) => Plan::Answer(PaymentResultKind::Captured),
        (K::Authorize, Some(S::Declined)) => Plan::Answer(PaymentResultKind::Declined),
        (K::Authorize | K::Capture, Some(S::Voided | S::Refunded)) => Plan::Invalid(format!(
            "the payment was already {} (compensated); it is not charged again",
            status.map(Status::as_str).unwrap_or_default()
        )),
        (K::Capture, Some(S::Authorized | S::Pending)) => Plan::Call(Op::Capture),
        (K::Capture, None) => Plan::Invalid("capture of a payment never authorized".into()),
        (K::Capture, Some(S::Declined)) => Plan::Invalid("capture of a declined payment".into()),
        (K::Refund | K::Void, None | Some(S::Pending | S::Authorized)) => Plan::Call(Op::Void),
        (K::Refund | K::Void, Some(S::Captured)) => Plan::Call(Op::Refund),
        (K::Refund | K::Void, Some(S::Refunded)) => Plan::Answer(PaymentResultKind::Refunded),
        // A declined payment charged nothing: undoing it is done.
        (K::Refund | K::Void, Some(S::Voided | S::Declined)) => {
            Plan::Answer(PaymentResultKind::Voided)
        }
        (K::Unknown, _) => Plan::Invalid("payment command of unknown kind".into()),
    }
}

/// How many plan steps one command may take (authorize → capture → answer is three); more
/// means the gateway keeps contradicting the plan.
pub const MAX_STEPS: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentCommandKind as K;

    /// Walks a command to its answer against a gateway that does exactly what it is asked.
    fn run(kind: K, capture: bool, mut status: Option<Status>) -> (Vec<Op>, Plan) {
        let mut ops = Vec::new();
        for _ in 0..MAX_STEPS {
            match plan(kind, capture, status) {
                Plan::Call(op) => {
                    ops.push(op);
                    status = Some(match op {
                        Op::Authorize => Status::Authorized,
                        Op::Capture => Status::Captured,
                        Op::Void => Status::Voided,
                        Op::Refund => Status::Refunded,
                    });
                }
                answer => return (ops, answer),
            }
        }
        panic!("no answer within {MAX_STEPS} steps");
    }

    #[test]
    fn a_charge_authorizes_then_captures_then_answers_captured() {
        let (ops, answer) = run(K::Authorize, true, None);
        assert_eq!(ops, vec![Op::Authorize, Op::Capture]);
        assert_eq!(answer, Plan::Answer(PaymentResultKind::Captured));
    }

    #[test]
    fn an_authorization_alone_stops_at_authorized() {
        let (ops, answer) = run(K::Authorize, false, None);
        assert_eq!(ops, vec![Op::Authorize]);
        assert_eq!(answer, Plan::Answer(PaymentResultKind::Authorized));
    }

    #[test]
    fn a_repeated_charge_calls_nothing() {
        let (ops, answer) = run(K::Authorize, true, Some(Status::Captured));
        assert!(ops.is_empty());
        assert_eq!(answer, Plan::Answer(PaymentResultKind::Captured));
        let (ops, answer) = run(K::Authorize, true, Some(Status::Declined));
        assert!(ops.is_empty());
        assert_eq!(answer, Plan::Answer(PaymentResultKind::Declined));
    }

    #[test]
    fn a_charge_after_compensation_is_refused() {
        for s in [Status::Voided, Status::Refunded] {
            assert!(matches!(
                plan(K::Authorize, true, Some(s)),
                Plan::Invalid(_)
            ));
        }
    }

    #[test]
    fn undo_refunds_a_capture_voids_an_authorization_and_fences_the_unknown() {
        assert_eq!(
            run(K::Refund, false, Some(Status::Captured)),
            (vec![Op::Refund], Plan::Answer(PaymentResultKind::Refunded))
        );
        assert_eq!(
            run(K::Refund, false, Some(Status::Authorized)),
            (vec![Op::Void], Plan::Answer(PaymentResultKind::Voided))
        );
        assert_eq!(
            run(K::Refund, false, None),
            (vec![Op::Void], Plan::Answer(PaymentResultKind::Voided))
        );
        assert_eq!(
            run(K::Void, false, Some(Status::Pending)),
            (vec![Op::Void], Plan::Answer(PaymentResultKind::Voided))
        );
        assert_eq!(
            run(K::Refund, false, Some(Status::Declined)),
            (vec![], Plan::Answer(PaymentResultKind::Voided))
        );
    }

    #[test]
    fn when_the_gateway_says_captured_the_void_becomes_a_refund() {
        // Planned a void (status unknown); the gateway answered 409 and a lookup said
        // captured: the next plan refunds.
        assert_eq!(
            plan(K::Refund, false, Some(Status::Pending)),
            Plan::Call(Op::Void)
        );
        assert_eq!(
            plan(K::Refund, false, Some(Status::Captured)),
            Plan::Call(Op::Refund)
        );
    }

    #[test]
    fn status_text_round_trips() {
        for s in [
            Status::Pending,
            Status::Authorized,
            Status::Captured,
            Status::Declined,
            Status::Voided,
            Status::Refunded,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("charged"), None);
    }
}
