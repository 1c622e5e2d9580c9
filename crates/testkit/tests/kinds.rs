//! The kit drives every kind of processor: a stateless one (shipping) and a concurrent one.

use events::orders::OrderPlaced;
use events::shipping::{ShipmentEvent, ShipmentEventKind};
use loadgen::orders::OrderGenerator;
use runtime::{ConcurrentProcessor, HandlerError, Input, Outputs, Topic};
use shipping::Shipping;
use testkit::{decoded, fleet_topology, Builder};
use topology::ProcessorParams;

const PLACED: &str = "orders.order-placed.v1";
const SHIPMENTS: &str = "shipping.shipment-events.v1";

#[tokio::test]
async fn a_stateless_processor_reads_the_kits_clock() {
    let topology = fleet_topology().unwrap();
    let (spec, params) = topology.processor("shipping").unwrap();
    let ProcessorParams::Shipping(params) = params else {
        panic!("shipping's parameters: {params:?}");
    };
    let mut kit = Builder::processor(&topology, "shipping")
        .unwrap()
        .starting_at(1_700_000_000_000)
        .stateless(|clock| {
            Shipping::from_spec(params.clone(), spec)
                .unwrap()
                .with_clock(clock)
        })
        .unwrap();
    let order = OrderGenerator::new("kit", 7, 10).next_order(0);
    let out = kit.send(PLACED, &order.order_id, &order).await.unwrap();
    let events: Vec<ShipmentEvent> = decoded(&out, SHIPMENTS).unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.order_id == order.order_id));
    assert!(events.iter().all(|e| e.occurred_at == 1_700_000_000_000));
    assert!(events
        .iter()
        .any(|e| e.kind == ShipmentEventKind::ShipmentRequested));

    // Stateless: nothing is skipped on redelivery, and the same ids come out again.
    let again = kit.redeliver(PLACED, 0, 0).await.unwrap();
    let again: Vec<ShipmentEvent> = decoded(&again, SHIPMENTS).unwrap();
    let ids = |e: &[ShipmentEvent]| e.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&events));
}

/// Sends each order on to the output with its total doubled.
struct Doubler;

impl ConcurrentProcessor for Doubler {
    async fn handle(&self, input: &Input, out: &mut Outputs<'_>) -> Result<(), HandlerError> {
        let mut order: OrderPlaced = input.decode()?;
        order.total_minor *= 2;
        out.send(&Topic::new(PLACED), &order.order_id, &order)
    }
}

#[tokio::test]
async fn a_concurrent_processor_is_handled_one_record_at_a_time() {
    let topology = fleet_topology().unwrap();
    let mut kit = Builder::topics(&topology, &[PLACED], &[PLACED])
        .unwrap()
        .concurrent(|_| Doubler)
        .unwrap();
    let mut orders = OrderGenerator::new("kit", 8, 10);
    for _ in 0..3 {
        let order = orders.next_order(kit.now_ms());
        let out = kit.send(PLACED, &order.order_id, &order).await.unwrap();
        let sent: Vec<OrderPlaced> = decoded(&out, PLACED).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].total_minor, 2 * order.total_minor);
    }
    // Not an input: refused before any handler runs.
    assert!(kit.send(SHIPMENTS, "k", &"x").await.is_err());
}
