//! The stock ledger's decisions through the runtime testkit: commands in, answers and
//! availability out, the store and the forget timers; no broker.

use events::inventory::{
    ProductAvailability, StockCommand, StockCommandKind, StockCommandLine, StockLevel, StockResult,
    StockResultKind,
};
use inventory::ledger_processor::{Entry, Ledger};
use testkit::{decoded, Builder, Output, Testkit};

const COMMANDS: &str = "inventory.stock-commands.v1";
const RESULTS: &str = "inventory.stock-results.v1";
const AVAILABILITY: &str = "inventory.availability.v1";
const HOUR_MS: i64 = 60 * 60 * 1000;

fn kit() -> Testkit<Ledger> {
    let topology = testkit::fleet_topology().unwrap();
    let spec = topology.processor("inventory").unwrap().0.clone();
    Builder::processor(&topology, "inventory")
        .unwrap()
        .stateful(|clock| Ledger::from_spec(&spec).unwrap().with_clock(clock))
        .unwrap()
}

fn command(kind: StockCommandKind, product: &str, order: Option<&str>, id: &str) -> StockCommand {
    StockCommand {
        event_id: runtime::ids::derived(&[id]),
        occurred_at: 0,
        correlation_id: order.unwrap_or(product).into(),
        causation_id: None,
        kind,
        product_id: product.into(),
        order_id: order.map(Into::into),
        command_id: order.map(|o| format!("hold-{o}")),
        lines: Vec::new(),
        level: None,
        hold_ms: 0,
        reason: None,
        return_item: None,
    }
}

fn level(product: &str, center: &str, on_hand: i32) -> StockCommand {
    StockCommand {
        level: Some(StockLevel {
            fulfillment_center: center.into(),
            status: "available".into(),
            on_hand,
            source_lsn: None,
        }),
        ..command(
            StockCommandKind::SetLevel,
            product,
            None,
            &format!("level-{product}-{center}-{on_hand}"),
        )
    }
}

fn hold(product: &str, order: &str, quantity: i32) -> StockCommand {
    StockCommand {
        lines: vec![StockCommandLine {
            line_number: 1,
            quantity,
            fulfillment_center: None,
        }],
        ..command(
            StockCommandKind::Hold,
            product,
            Some(order),
            &format!("hold-{product}-{order}"),
        )
    }
}

fn end(kind: StockCommandKind, product: &str, order: &str) -> StockCommand {
    command(
        kind,
        product,
        Some(order),
        &format!("{kind:?}-{product}-{order}"),
    )
}

fn answer(out: &[Output]) -> StockResult {
    let mut results: Vec<StockResult> = decoded(out, RESULTS).unwrap();
    assert_eq!(results.len(), 1, "one answer per HOLD: {out:?}");
    results.remove(0)
}

/// Sellable and held units of `product` at every center, from the store.
fn books(kit: &Testkit<Ledger>, product: &str) -> (i64, i64) {
    match kit.state(product) {
        Some(Entry::Centers(centers)) => centers
            .values()
            .fold((0, 0), |(a, r), c| (a + c.available, r + c.reserved)),
        other => panic!("{product}: {other:?}"),
    }
}

#[tokio::test]
async fn holds_take_units_once_and_a_refusal_is_remembered() {
    let mut kit = kit();
    let out = kit
        .send(COMMANDS, "p1", &level("p1", "FC-1", 5))
        .await
        .unwrap();
    let published: Vec<ProductAvailability> = decoded(&out, AVAILABILITY).unwrap();
    assert_eq!(published.last().map(|a| a.available_quantity), Some(5));

    let held = answer(&kit.send(COMMANDS, "p1", &hold("p1", "a", 3)).await.unwrap());
    assert_eq!(held.kind, StockResultKind::Held);
    assert_eq!(held.lines[0].fulfillment_center, "FC-1");
    assert_eq!(books(&kit, "p1"), (2, 3));

    // Three more than the two left: refused with what is left, nothing taken.
    let refused = answer(&kit.send(COMMANDS, "p1", &hold("p1", "b", 3)).await.unwrap());
    assert_eq!(refused.kind, StockResultKind::Refused);
    assert_eq!(refused.available_quantity, Some(2));
    assert_eq!(books(&kit, "p1"), (2, 3));

    // The saga re-sends b's HOLD after a's units come back: still refused (the ledger
    // remembers), so a saga that already failed never gets a hold nobody releases.
    kit.send(COMMANDS, "p1", &end(StockCommandKind::Release, "p1", "a"))
        .await
        .unwrap();
    assert_eq!(books(&kit, "p1"), (5, 0));
    let again = answer(&kit.send(COMMANDS, "p1", &hold("p1", "b", 3)).await.unwrap());
    assert_eq!(again.kind, StockResultKind::Refused);
    assert_eq!(books(&kit, "p1"), (5, 0));

    // A HOLD sent again after it was answered HELD answers the same and takes nothing more.
    let c = hold("p1", "c", 4);
    let first = answer(&kit.send(COMMANDS, "p1", &c).await.unwrap());
    let copy = answer(&kit.send(COMMANDS, "p1", &c).await.unwrap());
    assert_eq!(
        (first.kind, copy.kind),
        (StockResultKind::Held, StockResultKind::Held)
    );
    assert_eq!(books(&kit, "p1"), (1, 4));

    // Commit: the units are sold, not held.
    kit.send(COMMANDS, "p1", &end(StockCommandKind::Commit, "p1", "c"))
        .await
        .unwrap();
    assert_eq!(books(&kit, "p1"), (1, 0));
}

#[tokio::test]
async fn many_orders_for_scarce_stock_never_oversell() {
    let mut kit = kit();
    let stock = 7;
    kit.send(COMMANDS, "p9", &level("p9", "FC-1", stock))
        .await
        .unwrap();
    let mut held = 0;
    let mut open = Vec::new();
    for i in 0..40 {
        let order = format!("o{i}");
        let quantity = 1 + i % 3;
        let result = answer(
            &kit.send(COMMANDS, "p9", &hold("p9", &order, quantity))
                .await
                .unwrap(),
        );
        if result.kind == StockResultKind::Held {
            held += i64::from(quantity);
            open.push((order, quantity));
        }
        // Every fifth order's saga fails and releases its hold.
        if i % 5 == 4 {
            if let Some((order, quantity)) = open.pop() {
                kit.send(
                    COMMANDS,
                    "p9",
                    &end(StockCommandKind::Release, "p9", &order),
                )
                .await
                .unwrap();
                held -= i64::from(quantity);
            }
        }
        let (available, reserved) = books(&kit, "p9");
        assert_eq!(reserved, held, "after order {i}");
        assert_eq!(available + reserved, i64::from(stock), "after order {i}");
        assert!(available >= 0);
    }
    assert!(held > 0 && held <= i64::from(stock));
}

#[tokio::test]
async fn an_ended_hold_is_forgotten_an_hour_later_and_a_redelivery_changes_nothing() {
    let mut kit = kit();
    kit.send(COMMANDS, "p2", &level("p2", "FC-1", 3))
        .await
        .unwrap();
    kit.send(COMMANDS, "p2", &hold("p2", "x", 1)).await.unwrap();
    kit.send(COMMANDS, "p2", &end(StockCommandKind::Commit, "p2", "x"))
        .await
        .unwrap();
    assert_eq!(books(&kit, "p2"), (2, 0));
    let key = "p2/h/x";
    assert!(matches!(kit.state(key), Some(Entry::Ended(_))));
    assert_eq!(
        kit.timer(key).map(|t| t.at_ms),
        Some(kit.now_ms() + HOUR_MS)
    );

    // The HOLD redelivered (offset 1, before its commit was acknowledged): skipped.
    assert!(kit.redeliver(COMMANDS, 0, 1).await.unwrap().is_empty());
    assert_eq!(books(&kit, "p2"), (2, 0));

    assert!(kit.advance(HOUR_MS - 1).await.unwrap().is_empty());
    assert!(kit.state(key).is_some());
    kit.advance(1).await.unwrap();
    assert!(kit.state(key).is_none(), "forgotten");
    assert!(kit.timer(key).is_none());
}
