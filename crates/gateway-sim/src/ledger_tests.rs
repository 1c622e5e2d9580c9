use proptest::prelude::*;

use super::*;

fn authorized(ledger: &mut Ledger, key: &str, amount: Cents) -> Payment {
    let payment = ledger.authorize(key, amount, "USD", 0.0).unwrap();
    assert_eq!(payment.status, Status::Authorized);
    payment
}

#[test]
fn authorize_capture_refund_moves_money_once_each() {
    let mut ledger = Ledger::default();
    let payment = authorized(&mut ledger, "k1", 1_250);
    assert_eq!((payment.captured_cents, payment.refunded_cents), (0, 0));
    assert!(payment.gateway_ref.starts_with("gw_"));

    let captured = ledger.capture("k1").unwrap();
    assert_eq!(captured.status, Status::Captured);
    assert_eq!(captured.captured_cents, 1_250);
    assert_eq!(ledger.capture("k1").unwrap().captured_cents, 1_250);

    let refunded = ledger.refund("k1").unwrap();
    assert_eq!(refunded.status, Status::Refunded);
    assert_eq!(refunded.refunded_cents, 1_250);
    let again = ledger.refund("k1").unwrap();
    assert_eq!(again.refunded_cents, 1_250);
    assert_eq!((again.capture_calls, again.refund_calls), (2, 2));

    let totals = ledger.totals();
    assert_eq!(totals.captured_cents, 1_250);
    assert_eq!(totals.refunded_cents, 1_250);
    assert_eq!(totals.net_cents, 0);
    assert_eq!(totals.payments, 1);
}

#[test]
fn repeated_authorize_returns_the_payment_as_it_is_now() {
    let mut ledger = Ledger::default();
    let first = authorized(&mut ledger, "k", 500);
    ledger.capture("k").unwrap();
    let repeat = ledger.authorize("k", 500, "USD", 0.0).unwrap();
    assert_eq!(repeat.status, Status::Captured);
    assert_eq!(repeat.gateway_ref, first.gateway_ref);
    assert_eq!(repeat.authorize_calls, 2);
    assert_eq!(ledger.totals().captured_cents, 500);
}

#[test]
fn authorize_with_another_amount_or_currency_conflicts() {
    let mut ledger = Ledger::default();
    authorized(&mut ledger, "k", 500);
    let err = ledger.authorize("k", 501, "USD", 0.0).unwrap_err();
    assert!(matches!(
        err,
        LedgerError::AmountMismatch {
            requested_amount: 501,
            ..
        }
    ));
    let err = ledger.authorize("k", 500, "EUR", 0.0).unwrap_err();
    assert!(matches!(err, LedgerError::AmountMismatch { .. }));
    let payment = ledger.get("k").unwrap();
    assert_eq!(
        (payment.amount_cents, payment.status),
        (500, Status::Authorized)
    );
    assert_eq!(payment.authorize_calls, 3);
}

#[test]
fn void_before_authorize_fences_the_key() {
    let mut ledger = Ledger::default();
    let fence = ledger.void("late").unwrap();
    assert_eq!(fence.status, Status::Voided);
    assert!(fence.fenced);
    assert_eq!(fence.amount_cents, 0);

    let late = ledger.authorize("late", 9_999, "USD", 0.0).unwrap();
    assert_eq!(late.status, Status::Voided);
    assert_eq!(late.amount_cents, 0);
    assert!(matches!(
        ledger.capture("late"),
        Err(LedgerError::InvalidTransition {
            status: Status::Voided,
            ..
        })
    ));
    assert_eq!(ledger.void("late").unwrap().void_calls, 2);
    assert_eq!(ledger.totals().captured_cents, 0);
}

#[test]
fn void_transitions() {
    let mut ledger = Ledger::default();
    authorized(&mut ledger, "a", 100);
    let voided = ledger.void("a").unwrap();
    assert_eq!(voided.status, Status::Voided);
    assert!(!voided.fenced);
    assert_eq!(ledger.void("a").unwrap().status, Status::Voided);
    // A voided authorization is not a fence: the same authorize answers it, another conflicts.
    assert_eq!(
        ledger.authorize("a", 100, "USD", 0.0).unwrap().status,
        Status::Voided
    );
    assert!(ledger.authorize("a", 200, "USD", 0.0).is_err());

    authorized(&mut ledger, "c", 100);
    ledger.capture("c").unwrap();
    assert!(matches!(
        ledger.void("c"),
        Err(LedgerError::InvalidTransition {
            status: Status::Captured,
            ..
        })
    ));
    ledger.refund("c").unwrap();
    assert!(ledger.void("c").is_err());

    ledger.authorize("d", 0, "USD", 0.0).unwrap();
    assert_eq!(ledger.void("d").unwrap().status, Status::Declined);
}

#[test]
fn capture_and_refund_refuse_what_they_cannot_do() {
    let mut ledger = Ledger::default();
    assert!(matches!(
        ledger.capture("nope"),
        Err(LedgerError::NotFound { .. })
    ));
    assert!(matches!(
        ledger.refund("nope"),
        Err(LedgerError::NotFound { .. })
    ));
    assert!(ledger.get("nope").is_none(), "a 404 creates nothing");

    authorized(&mut ledger, "auth", 100);
    assert!(matches!(
        ledger.refund("auth"),
        Err(LedgerError::InvalidTransition {
            status: Status::Authorized,
            ..
        })
    ));
    ledger.authorize("declined", -5, "USD", 0.0).unwrap();
    assert!(ledger.capture("declined").is_err());
    assert!(ledger.refund("declined").is_err());
    authorized(&mut ledger, "voided", 100);
    ledger.void("voided").unwrap();
    assert!(ledger.capture("voided").is_err());
    assert!(ledger.refund("voided").is_err());
    authorized(&mut ledger, "refunded", 100);
    ledger.capture("refunded").unwrap();
    ledger.refund("refunded").unwrap();
    assert!(ledger.capture("refunded").is_err());
    assert_eq!(ledger.totals().net_cents, 0);
}

#[test]
fn non_positive_amounts_are_declined_as_invalid() {
    let mut ledger = Ledger::default();
    for (key, amount) in [("zero", 0), ("negative", -1)] {
        let payment = ledger.authorize(key, amount, "USD", 0.0).unwrap();
        assert_eq!(payment.status, Status::Declined);
        assert_eq!(payment.decline_reason, Some(DeclineReason::InvalidAmount));
    }
    let json = serde_json::to_value(ledger.get("zero").unwrap()).unwrap();
    assert_eq!(json["decline_reason"], "invalid_amount");
    assert_eq!(json["status"], "declined");
}

#[test]
fn declines_are_deterministic_per_key_and_follow_the_rate() {
    let keys: Vec<String> = (0..10_000).map(|i| format!("order-{i}")).collect();
    assert!(keys.iter().all(|k| !issuer_declines(k, 0.0)));
    assert!(keys.iter().all(|k| issuer_declines(k, 1.0)));
    let declined = keys.iter().filter(|k| issuer_declines(k, 0.2)).count();
    assert!((1_700..=2_300).contains(&declined), "{declined} of 10000");

    let mut ledger = Ledger::default();
    let key = keys.iter().find(|k| issuer_declines(k, 0.2)).unwrap();
    let payment = ledger.authorize(key, 100, "USD", 0.2).unwrap();
    assert_eq!(payment.decline_reason, Some(DeclineReason::CardDeclined));
    // Same verdict on a fresh gateway: a retry after a restart is declined again.
    let mut fresh = Ledger::default();
    assert_eq!(
        fresh.authorize(key, 100, "USD", 0.2).unwrap().status,
        Status::Declined
    );
}

#[test]
fn totals_sum_over_payments_and_audit_is_sorted() {
    let mut ledger = Ledger::default();
    for (key, amount) in [("b", 300), ("a", 200), ("c", 100)] {
        authorized(&mut ledger, key, amount);
        ledger.capture(key).unwrap();
    }
    ledger.refund("c").unwrap();
    ledger.void("fence").unwrap();
    let audit = ledger.audit();
    let keys: Vec<&str> = audit.payments.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c", "fence"]);
    assert_eq!(
        audit.totals,
        Totals {
            captured_cents: 600,
            refunded_cents: 100,
            net_cents: 500,
            payments: 4
        }
    );
    let refs: std::collections::HashSet<&str> = audit
        .payments
        .iter()
        .map(|p| p.gateway_ref.as_str())
        .collect();
    assert_eq!(refs.len(), 4, "gateway refs are unique");
}

fn command() -> impl Strategy<Value = (u8, Command)> {
    let command = prop_oneof![
        (prop_oneof![Just(100i64), Just(250), Just(0)], any::<bool>()).prop_map(
            |(amount_cents, capture)| Command::Authorize {
                amount_cents,
                currency: "USD".to_string(),
                capture,
            }
        ),
        Just(Command::Capture),
        Just(Command::Void),
        Just(Command::Refund),
    ];
    (0u8..4, command)
}

proptest! {
    /// No sequence of calls charges a key twice, refunds more than was captured, or lets a
    /// fenced key capture.
    #[test]
    fn money_moves_at_most_once_per_key(commands in prop::collection::vec(command(), 1..60)) {
        let mut ledger = Ledger::default();
        let mut fenced_at_birth = std::collections::HashSet::new();
        for (key, command) in &commands {
            let key = format!("k{key}");
            if ledger.get(&key).is_none() && *command == Command::Void {
                fenced_at_birth.insert(key.clone());
            }
            let before = ledger.get(&key).cloned();
            let _ = ledger.apply(&key, command, 0.3);
            let after = ledger.get(&key).cloned();
            if let (Some(before), Some(after)) = (&before, &after) {
                if before.captured_cents != 0 {
                    prop_assert_eq!(before.captured_cents, after.captured_cents);
                }
                if before.refunded_cents != 0 {
                    prop_assert_eq!(before.refunded_cents, after.refunded_cents);
                }
                prop_assert_eq!(&before.gateway_ref, &after.gateway_ref);
            }
        }
        let totals = ledger.totals();
        prop_assert!(totals.refunded_cents <= totals.captured_cents);
        for payment in ledger.audit().payments {
            prop_assert!(payment.captured_cents == 0 || payment.captured_cents == payment.amount_cents);
            prop_assert!(payment.refunded_cents == 0 || payment.refunded_cents == payment.captured_cents);
            prop_assert_eq!(payment.fenced, fenced_at_birth.contains(&payment.key));
            if payment.fenced {
                prop_assert_eq!(payment.captured_cents, 0);
                prop_assert_eq!(payment.status, Status::Voided);
            }
        }
    }
}

#[test]
fn a_sale_authorizes_and_captures_in_one_call_and_its_repeat_changes_nothing() {
    let mut ledger = Ledger::default();
    let sale = Command::Authorize {
        amount_cents: 500,
        currency: "USD".into(),
        capture: true,
    };
    let first = ledger.apply("k", &sale, 0.0).unwrap();
    assert_eq!(first.status, Status::Captured);
    let again = ledger.apply("k", &sale, 0.0).unwrap();
    assert_eq!(again.status, Status::Captured);
    assert_eq!(ledger.audit().totals.captured_cents, 500, "captured once");
}
