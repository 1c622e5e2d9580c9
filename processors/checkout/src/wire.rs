//! The saga's records on the wire, built from its state: free of I/O (the processor sends
//! them). The saga's states and failures as their Avro enums, the request checks and the cart
//! fingerprint, one stock command per product, the transition record (which is also the
//! order's status) and the order-placed event. Unit-tested here; the processor only decides
//! when to send which.

use std::collections::BTreeMap;

use events::checkout::{
    CheckoutRequested, FailureCode as WireFailure, OrderStatusCode, SagaState as WireState,
    SagaTransition, SagaTrigger,
};
use events::inventory::{StockCommand, StockCommandKind, StockCommandLine};
use events::orders::{OrderLine, OrderPlaced, PaymentStatus};
use runtime::ids;

use crate::processor::SagaRecord;
use crate::saga::{FailureCode, SagaState};

/// The payment's id (and gateway idempotency key) of an order: one per order.
pub fn payment_id(order: &str) -> String {
    format!("pay-{order}")
}

/// What caused a record: the derived id of its event and the coordinates of its cause.
pub struct Cause<'a> {
    pub id: &'a str,
    pub cause: &'a str,
}

/// One step of the saga, as its transition record tells it.
pub struct Step {
    pub from: Option<SagaState>,
    pub to: SagaState,
    pub attempt: u32,
    pub failure: Option<FailureCode>,
    pub trigger: SagaTrigger,
}

/// The command of `kind` to `product`'s ledger for `record`'s order. A HOLD carries the
/// product's `lines`; every command of an order and product carries the same command id (one
/// hold per order and product, whatever the attempt); a RELEASE says why.
pub fn stock_command(
    record: &SagaRecord,
    product: &str,
    kind: StockCommandKind,
    lines: Vec<StockCommandLine>,
    cause: &Cause<'_>,
    now: i64,
) -> StockCommand {
    let order = &record.request.order_id;
    StockCommand {
        event_id: ids::derived(&[cause.id, product]),
        occurred_at: now,
        correlation_id: order.clone(),
        causation_id: Some(cause.cause.to_string()),
        kind,
        product_id: product.to_string(),
        order_id: Some(order.clone()),
        command_id: Some(ids::derived(&[order, "hold"])),
        lines,
        level: None,
        hold_ms: 0,
        reason: (kind == StockCommandKind::Release).then(|| format!("{:?}", record.saga.failure)),
        return_item: None,
    }
}

/// The transition record of `step` (its sequence and times already in `record`): the order's
/// status for the storefront, with the step's deadline while the saga waits on a step.
pub fn transition(
    record: &SagaRecord,
    step: Step,
    cause: &Cause<'_>,
    now: i64,
    step_timeout_ms: i64,
) -> SagaTransition {
    let Step {
        from,
        to,
        attempt,
        failure,
        trigger,
    } = step;
    let r = &record.request;
    let deadline = (!to.is_terminal() && to != SagaState::Stuck).then_some(now + step_timeout_ms);
    SagaTransition {
        event_id: cause.id.to_string(),
        occurred_at: now,
        correlation_id: r.order_id.clone(),
        causation_id: Some(cause.cause.to_string()),
        order_id: r.order_id.clone(),
        sequence: record.sequence,
        from_state: from.map(wire_state),
        to_state: wire_state(to),
        trigger,
        compensating: record.saga.failure.is_some(),
        attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
        step_deadline: deadline,
        failure_code: failure.map(wire_failure),
        reason: (to == SagaState::Stuck).then(|| {
            "refund unanswered after its attempts; check payment, then redrive".to_string()
        }),
        status: Some(status_code(to)),
        user_id: Some(r.user_id.clone()),
        currency: Some(r.currency.clone()),
        total_minor: Some(r.total_minor),
        created_at: Some(record.created_at),
        placed_at: record.placed_at,
    }
}

/// The one FAILED transition of a request that can never be a saga (`why`: [`invalid`]'s
/// reason), so the storefront's status poll ends.
pub fn refused(request: &CheckoutRequested, id: String, why: String, now: i64) -> SagaTransition {
    SagaTransition {
        event_id: id,
        occurred_at: now,
        correlation_id: request.order_id.clone(),
        causation_id: Some(request.event_id.clone()),
        order_id: request.order_id.clone(),
        sequence: 1,
        from_state: None,
        to_state: WireState::Failed,
        trigger: SagaTrigger::CheckoutRequested,
        compensating: false,
        attempt: 1,
        step_deadline: None,
        failure_code: Some(WireFailure::InvalidRequest),
        reason: Some(why),
        status: Some(OrderStatusCode::Failed),
        user_id: Some(request.user_id.clone()),
        currency: Some(request.currency.clone()),
        total_minor: Some(request.total_minor),
        created_at: Some(now),
        placed_at: None,
    }
}

pub fn wire_state(s: SagaState) -> WireState {
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

pub fn wire_failure(f: FailureCode) -> WireFailure {
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

pub fn status_code(s: SagaState) -> OrderStatusCode {
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
pub fn cart_fingerprint(r: &CheckoutRequested) -> String {
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
pub fn invalid(r: &CheckoutRequested) -> Option<String> {
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

/// The request's lines grouped by product (one HOLD per product, with all its lines).
pub fn lines_by_product(r: &CheckoutRequested) -> BTreeMap<String, Vec<StockCommandLine>> {
    let mut by: BTreeMap<String, Vec<StockCommandLine>> = BTreeMap::new();
    for l in &r.lines {
        by.entry(l.product_id.clone())
            .or_default()
            .push(StockCommandLine {
                line_number: l.line_number,
                quantity: l.quantity,
                fulfillment_center: None,
            });
    }
    by
}

/// The order-placed event of a saga that placed its order (each line with the fulfillment
/// center its HELD answer named).
pub fn order_placed(record: &SagaRecord, id: String, cause: &str, now: i64) -> OrderPlaced {
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
        payment_id: payment_id(&r.order_id),
        payment_status: PaymentStatus::Captured,
        gateway_reference: record.gateway_reference.clone(),
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
    fn a_refused_request_ends_in_one_failed_transition_with_its_reason() {
        let t = refused(&request(), "e4".into(), "no lines".into(), 7);
        assert_eq!(
            (t.to_state, t.status, t.failure_code, t.sequence),
            (
                WireState::Failed,
                Some(OrderStatusCode::Failed),
                Some(WireFailure::InvalidRequest),
                1
            )
        );
        assert_eq!(t.reason.as_deref(), Some("no lines"));
        assert_eq!(t.step_deadline, None);
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

    fn record() -> SagaRecord {
        let request = request();
        let products: Vec<String> = lines_by_product(&request).into_keys().collect();
        let crate::saga::Start::Started(saga, _) = crate::saga::Saga::start(
            None,
            &request.idempotency_key,
            &cart_fingerprint(&request),
            &products,
            60_000,
            1_000,
        ) else {
            panic!("a new saga starts");
        };
        SagaRecord {
            saga,
            request,
            sequence: 3,
            reserved: vec![(1, Some("FC-EAST-1".into())), (2, None)],
            gateway_reference: Some("gw-1".into()),
            created_at: 1_000,
            placed_at: Some(2_000),
            stuck_since: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn a_hold_carries_its_products_lines_and_every_command_of_the_order_shares_one_id() {
        let r = record();
        let mut lines = lines_by_product(&r.request);
        let cause = Cause {
            id: "e1",
            cause: "t/0/1",
        };
        let hold = stock_command(
            &r,
            "p1",
            StockCommandKind::Hold,
            lines.remove("p1").unwrap(),
            &cause,
            5,
        );
        assert_eq!(hold.lines.len(), 1);
        assert_eq!(hold.lines[0].quantity, 2);
        assert_eq!(hold.order_id.as_deref(), Some("o1"));
        assert!(hold.reason.is_none());
        let release = stock_command(&r, "p1", StockCommandKind::Release, Vec::new(), &cause, 6);
        assert_eq!(release.command_id, hold.command_id);
        assert_ne!(
            release.event_id,
            stock_command(&r, "p2", StockCommandKind::Release, Vec::new(), &cause, 6).event_id
        );
        assert!(release.reason.is_some());
    }

    #[test]
    fn a_transition_has_a_deadline_only_while_a_step_waits_and_carries_the_status() {
        let r = record();
        let cause = Cause {
            id: "e2",
            cause: "c",
        };
        let waiting = transition(
            &r,
            Step {
                from: None,
                to: SagaState::ReservingInventory,
                attempt: 1,
                failure: None,
                trigger: SagaTrigger::CheckoutRequested,
            },
            &cause,
            10_000,
            60_000,
        );
        assert_eq!(waiting.step_deadline, Some(70_000));
        assert_eq!(waiting.status, Some(OrderStatusCode::Processing));
        assert_eq!((waiting.sequence, waiting.total_minor), (3, Some(1400)));
        for to in [SagaState::Placed, SagaState::Failed, SagaState::Stuck] {
            let ended = transition(
                &r,
                Step {
                    from: Some(SagaState::ReservingInventory),
                    to,
                    attempt: 1,
                    failure: None,
                    trigger: SagaTrigger::StepTimedOut,
                },
                &cause,
                10_000,
                60_000,
            );
            assert_eq!(ended.step_deadline, None, "{to:?}");
            assert_eq!(ended.reason.is_some(), to == SagaState::Stuck);
        }
    }

    #[test]
    fn the_order_placed_event_names_each_lines_fulfillment_center_and_the_payment() {
        let placed = order_placed(&record(), "e3".into(), "c", 9);
        let centers: Vec<Option<&str>> = placed
            .lines
            .iter()
            .map(|l| l.fulfillment_center.as_deref())
            .collect();
        assert_eq!(centers, [Some("FC-EAST-1"), None]);
        assert_eq!(placed.payment_id, payment_id("o1"));
        assert_eq!(placed.gateway_reference.as_deref(), Some("gw-1"));
        assert_eq!(placed.total_minor, 1400);
    }
}
