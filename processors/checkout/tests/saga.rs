//! The checkout saga's decisions through the runtime testkit: real schemas, real store and
//! timers, a paused clock; no broker, no registry, no database.

use std::sync::{Arc, Mutex};

use checkout::orders_db::{NewOrder, OrdersDbError, PlaceOrders};
use checkout::saga::SagaState;
use checkout::{Checkout, SagaRecord, Topics};
use events::checkout::{
    CheckoutLine, CheckoutRequested, OrderStatusCode, SagaState as WireState, SagaTransition,
};
use events::inventory::StockResultLine;
use events::inventory::{StockCommand, StockCommandKind, StockResult, StockResultKind};
use events::orders::OrderPlaced;
use events::payments::{
    PaymentCommand, PaymentCommandKind, PaymentMethod, PaymentMethodType, PaymentResult,
    PaymentResultKind,
};
use events::{Address, ShippingSpeed};
use testkit::{decoded, Builder, Output, Testkit};
use topology::{CheckoutParams, ProcessorParams, Topology};

const REQUESTS: &str = "orders.checkout-requested.v1";
const STOCK_RESULTS: &str = "inventory.stock-results.v1";
const PAYMENT_RESULTS: &str = "payments.results.v1";
const STOCK: &str = "inventory.stock-commands.v1";
const PAYMENTS: &str = "payments.commands.v1";
const PLACED: &str = "orders.order-placed.v1";
const TRANSITIONS: &str = "checkout.saga-transitions.v1";

/// The orders database as a list: every row the saga placed.
#[derive(Clone, Default)]
struct Placed(Arc<Mutex<Vec<NewOrder>>>);

impl PlaceOrders for Placed {
    fn place(
        &self,
        order: NewOrder,
    ) -> futures::future::BoxFuture<'static, Result<(), OrdersDbError>> {
        self.0.lock().unwrap().push(order);
        Box::pin(async { Ok(()) })
    }
}

fn params(topology: &Topology) -> CheckoutParams {
    match topology.processor("checkout") {
        Some((_, ProcessorParams::Checkout(p))) => p.clone(),
        other => panic!("checkout's parameters: {other:?}"),
    }
}

/// The saga as topology.yaml configures it, on the kit's clock.
fn kit(placed: &Placed) -> (Testkit<Checkout>, CheckoutParams) {
    let topology = testkit::fleet_topology().unwrap();
    let params = params(&topology);
    let topics = Topics::from_spec(&topology.processor("checkout").unwrap().0).unwrap();
    let orders = placed.clone();
    let p = params.clone();
    let kit = Builder::processor(&topology, "checkout")
        .unwrap()
        .stateful(|clock| {
            Checkout::with_orders(p, topics, orders)
                .unwrap()
                .with_clock(clock)
        })
        .unwrap();
    (kit, params)
}

fn line(n: i32, product: &str, quantity: i32, price: i64) -> CheckoutLine {
    CheckoutLine {
        line_number: n,
        product_id: product.into(),
        sku: format!("SKU-{product}"),
        quantity,
        unit_price_minor: price,
    }
}

fn request(order: &str, lines: Vec<CheckoutLine>) -> CheckoutRequested {
    let subtotal = lines
        .iter()
        .map(|l| l.unit_price_minor * i64::from(l.quantity))
        .sum();
    CheckoutRequested {
        event_id: runtime::ids::derived(&["request", order]),
        occurred_at: 0,
        correlation_id: order.into(),
        causation_id: None,
        idempotency_key: format!("idem-{order}"),
        order_id: order.into(),
        user_id: "user-1".into(),
        cart_id: None,
        lines,
        currency: "EUR".into(),
        subtotal_minor: subtotal,
        shipping_fee_minor: 0,
        tax_minor: 0,
        total_minor: subtotal,
        shipping_address: Address {
            recipient_name: "R".into(),
            line1: "Street 1".into(),
            line2: None,
            city: "Town".into(),
            region: None,
            postal_code: "0001".into(),
            country_code: "NO".into(),
            phone: None,
        },
        shipping_speed: ShippingSpeed::Standard,
        payment_method: PaymentMethod {
            kind: PaymentMethodType::Card,
            token: "tok".into(),
            last4: None,
        },
    }
}

/// A ledger's answer to the saga's hold of `product` for `order`.
fn stock_answer(order: &str, product: &str, kind: StockResultKind) -> StockResult {
    StockResult {
        event_id: runtime::ids::derived(&[order, product, &format!("{kind:?}")]),
        occurred_at: 0,
        correlation_id: order.into(),
        causation_id: None,
        kind,
        order_id: order.into(),
        command_id: None,
        product_id: product.into(),
        lines: match kind {
            StockResultKind::Held => vec![StockResultLine {
                line_number: 1,
                quantity: 1,
                fulfillment_center: "FC-1".into(),
            }],
            _ => Vec::new(),
        },
        available_quantity: (kind == StockResultKind::Refused).then_some(0),
    }
}

fn payment_answer(command: &PaymentCommand, kind: PaymentResultKind) -> PaymentResult {
    PaymentResult {
        event_id: runtime::ids::derived(&[&command.event_id, &format!("{kind:?}")]),
        occurred_at: 0,
        correlation_id: command.order_id.clone(),
        causation_id: Some(command.event_id.clone()),
        kind,
        command_id: command.command_id.clone(),
        command_kind: command.kind,
        idempotency_key: command.idempotency_key.clone(),
        order_id: command.order_id.clone(),
        payment_id: command.payment_id.clone(),
        amount_minor: command.amount_minor,
        currency: command.currency.clone(),
        gateway_reference: Some("gw-1".into()),
        attempts: 1,
        decline_code: None,
        error_kind: None,
        error: None,
    }
}

/// The ledger of `product` answers HELD; what the saga sent.
async fn held(kit: &mut Testkit<Checkout>, order: &str, product: &str) -> Vec<Output> {
    kit.send(
        STOCK_RESULTS,
        order,
        &stock_answer(order, product, StockResultKind::Held),
    )
    .await
    .unwrap()
}

fn stock_commands(out: &[Output]) -> Vec<(StockCommandKind, String)> {
    decoded::<StockCommand>(out, STOCK)
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.product_id))
        .collect()
}

fn states(out: &[Output]) -> Vec<WireState> {
    decoded::<SagaTransition>(out, TRANSITIONS)
        .unwrap()
        .into_iter()
        .map(|t| t.to_state)
        .collect()
}

fn saga(kit: &Testkit<Checkout>, order: &str) -> SagaRecord {
    kit.state(order).cloned().expect("a saga for the order")
}

#[tokio::test]
async fn a_request_holds_each_product_then_charges_once_every_hold_is_answered() {
    let placed = Placed::default();
    let (mut kit, params) = kit(&placed);
    let order = "o-1";
    let r = request(
        order,
        vec![
            line(1, "p1", 2, 500),
            line(2, "p2", 1, 250),
            line(3, "p1", 1, 500),
        ],
    );

    let out = kit.send(REQUESTS, order, &r).await.unwrap();
    assert_eq!(
        stock_commands(&out),
        [
            (StockCommandKind::Hold, "p1".to_string()),
            (StockCommandKind::Hold, "p2".to_string())
        ],
        "one HOLD per product, keyed by the product"
    );
    let holds: Vec<StockCommand> = decoded(&out, STOCK).unwrap();
    assert_eq!(holds[0].lines.len(), 2, "p1's hold carries both its lines");
    assert!(out
        .iter()
        .filter(|o| o.topic == STOCK)
        .all(|o| o.key_str().is_some_and(|k| k.starts_with('p'))));
    assert_eq!(states(&out), [WireState::ReservingInventory]);
    assert_eq!(saga(&kit, order).saga.state, SagaState::ReservingInventory);
    let timer = kit.timer(order).expect("a step timer");
    assert_eq!(timer.at_ms, kit.now_ms() + params.step_timeout_ms);

    // The same record again (a redelivery after a crash): already applied, skipped.
    assert!(kit.redeliver(REQUESTS, 0, 0).await.unwrap().is_empty());

    let out = held(&mut kit, order, "p1").await;
    assert!(out.is_empty(), "p2 has not answered: {out:?}");

    let out = held(&mut kit, order, "p2").await;
    assert_eq!(states(&out), [WireState::AuthorizingPayment]);
    let charges: Vec<PaymentCommand> = decoded(&out, PAYMENTS).unwrap();
    assert_eq!(charges.len(), 1);
    let charge = &charges[0];
    assert_eq!(charge.kind, PaymentCommandKind::Authorize);
    assert_eq!(charge.amount_minor, r.total_minor);
    assert_eq!(
        charge.idempotency_key,
        format!("{}:charge", r.idempotency_key)
    );
    assert!(charge.capture_immediately);

    // Captured: the order row is written, every hold committed, the order placed.
    let out = kit
        .send(
            PAYMENT_RESULTS,
            order,
            &payment_answer(charge, PaymentResultKind::Captured),
        )
        .await
        .unwrap();
    assert_eq!(states(&out), [WireState::Placed]);
    assert_eq!(
        stock_commands(&out),
        [
            (StockCommandKind::Commit, "p1".to_string()),
            (StockCommandKind::Commit, "p2".to_string())
        ]
    );
    let placed_events: Vec<OrderPlaced> = decoded(&out, PLACED).unwrap();
    assert_eq!(placed_events.len(), 1);
    assert_eq!(placed_events[0].total_minor, r.total_minor);
    let rows = placed.0.lock().unwrap().clone();
    assert_eq!(rows.len(), 1, "one order row");
    assert_eq!(rows[0].order_id, order);
    assert_eq!(saga(&kit, order).saga.state, SagaState::Placed);
}

#[tokio::test]
async fn an_unanswered_hold_is_retried_on_its_step_timer_then_every_hold_is_released() {
    let placed = Placed::default();
    let (mut kit, params) = kit(&placed);
    let order = "o-2";
    let r = request(order, vec![line(1, "p1", 1, 900), line(2, "p2", 1, 100)]);
    kit.send(REQUESTS, order, &r).await.unwrap();
    held(&mut kit, order, "p1").await;

    // Just before the step timeout nothing happens.
    let step = params.step_timeout_ms;
    assert!(kit.advance(step - 1).await.unwrap().is_empty());

    // Attempt 2 re-sends the unanswered HOLD only; attempt 3 waits twice as long.
    let out = kit.advance(1).await.unwrap();
    assert_eq!(
        stock_commands(&out),
        [(StockCommandKind::Hold, "p2".to_string())]
    );
    assert_eq!(saga(&kit, order).saga.attempt, 2);
    let out = kit.advance(2 * step).await.unwrap();
    assert_eq!(
        stock_commands(&out),
        [(StockCommandKind::Hold, "p2".to_string())]
    );
    assert_eq!(saga(&kit, order).saga.attempt, 3);

    // The third timeout gives up: RELEASE of every hold that may exist, then FAILED.
    let out = kit.advance(4 * step).await.unwrap();
    assert_eq!(
        stock_commands(&out),
        [
            (StockCommandKind::Release, "p1".to_string()),
            (StockCommandKind::Release, "p2".to_string())
        ]
    );
    let transitions: Vec<SagaTransition> = decoded(&out, TRANSITIONS).unwrap();
    let last = transitions.last().unwrap();
    assert_eq!(last.to_state, WireState::Failed);
    assert_eq!(last.status, Some(OrderStatusCode::Failed));
    assert!(last.compensating);
    assert!(decoded::<PaymentCommand>(&out, PAYMENTS)
        .unwrap()
        .is_empty());
    assert!(placed.0.lock().unwrap().is_empty(), "no order row");

    // The ended saga is kept `retain_ms`, then forgotten.
    assert!(kit.state(order).is_some());
    assert!(kit.advance(params.retain_ms).await.unwrap().is_empty());
    assert!(kit.state(order).is_none());
    assert!(kit.timer(order).is_none());
}

#[tokio::test]
async fn a_refund_that_never_answers_leaves_the_saga_stuck_until_its_late_answer() {
    // Ported from the stack test `a_saga_whose_compensation_cannot_complete_is_stuck_and_listed`
    // (which still checks the operator's listing and the metric): the decisions, in paused
    // time.
    let placed = Placed::default();
    let (mut kit, _) = kit(&placed);
    let order = "o-3";
    kit.send(
        REQUESTS,
        order,
        &request(order, vec![line(1, "p1", 2, 700)]),
    )
    .await
    .unwrap();
    let out = held(&mut kit, order, "p1").await;
    let charge = decoded::<PaymentCommand>(&out, PAYMENTS).unwrap().remove(0);

    // Payment never answers: the charge is re-sent on each timeout, then refunded (it may
    // have gone through), the refund re-sent on each timeout, then STUCK.
    let out = kit.advance(24 * 60 * 60 * 1000).await.unwrap();
    let commands: Vec<PaymentCommandKind> = decoded::<PaymentCommand>(&out, PAYMENTS)
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    let charges = commands
        .iter()
        .filter(|k| **k == PaymentCommandKind::Authorize)
        .count();
    let refunds = commands
        .iter()
        .filter(|k| **k == PaymentCommandKind::Refund)
        .count();
    assert_eq!(
        (charges, refunds),
        (
            checkout::saga::STEP_ATTEMPTS as usize - 1,
            checkout::saga::COMPENSATION_ATTEMPTS as usize
        )
    );
    let stuck: Vec<SagaTransition> = decoded(&out, TRANSITIONS).unwrap();
    let stuck = stuck.last().unwrap();
    assert_eq!(stuck.status, Some(OrderStatusCode::Stuck));
    assert!(stuck.reason.is_some(), "a stuck saga says what to do");
    assert_eq!(saga(&kit, order).saga.state, SagaState::Stuck);
    assert!(
        stock_commands(&out).is_empty(),
        "the hold is kept while stuck"
    );

    // The late refund resumes the compensation: the stock is released and the saga FAILED.
    let refund = PaymentCommand {
        kind: PaymentCommandKind::Refund,
        ..charge
    };
    let out = kit
        .send(
            PAYMENT_RESULTS,
            order,
            &payment_answer(&refund, PaymentResultKind::Refunded),
        )
        .await
        .unwrap();
    assert_eq!(
        stock_commands(&out),
        [(StockCommandKind::Release, "p1".to_string())]
    );
    assert_eq!(states(&out).last(), Some(&WireState::Failed));
    assert!(placed.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_handler_changes_nothing() {
    let placed = Placed::default();
    let (mut kit, _) = kit(&placed);
    // Keyed by another order than it names: invalid, and no saga is started.
    let error = kit
        .send(
            REQUESTS,
            "not-o-4",
            &request("o-4", vec![line(1, "p1", 1, 100)]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, testkit::TestkitError::Handler(_)),
        "{error}"
    );
    assert!(kit.state("o-4").is_none());
    assert!(kit.store(0).is_some_and(|s| s.is_empty()));
}
