//! Pure shipment planning: no I/O, no clock (the caller passes `now`).

use std::collections::BTreeMap;
use std::fmt;

use events::orders::OrderPlaced;
use events::shipping::{ShipmentEvent, ShipmentEventKind, ShipmentLine};
use runtime::ids;
use topology::ShippingParams;

/// Why an order cannot be shipped as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NoLines,
    MissingOrderId,
    BadQuantity { line_number: i32, quantity: i32 },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoLines => write!(f, "order has no lines to ship"),
            Rejection::MissingOrderId => write!(f, "order id is empty"),
            Rejection::BadQuantity {
                line_number,
                quantity,
            } => {
                write!(
                    f,
                    "line {line_number} has quantity {quantity}; must be positive"
                )
            }
        }
    }
}

/// One shipment per fulfillment center (the one holding each line's reservation, else the
/// default), each announced as requested and then labelled.
pub fn plan_shipments(
    order: &OrderPlaced,
    params: &ShippingParams,
    now_ms: i64,
) -> Result<Vec<ShipmentEvent>, Rejection> {
    if order.order_id.trim().is_empty() {
        return Err(Rejection::MissingOrderId);
    }
    if order.lines.is_empty() {
        return Err(Rejection::NoLines);
    }
    if let Some(line) = order.lines.iter().find(|l| l.quantity <= 0) {
        return Err(Rejection::BadQuantity {
            line_number: line.line_number,
            quantity: line.quantity,
        });
    }
    let mut by_center: BTreeMap<&str, Vec<ShipmentLine>> = BTreeMap::new();
    for line in &order.lines {
        let center = line
            .fulfillment_center
            .as_deref()
            .filter(|c| !c.is_empty())
            .unwrap_or(&params.default_fulfillment_center);
        by_center.entry(center).or_default().push(ShipmentLine {
            line_number: line.line_number,
            product_id: line.product_id.clone(),
            sku: line.sku.clone(),
            quantity: line.quantity,
        });
    }
    let mut events = Vec::with_capacity(by_center.len() * 2);
    for (center, lines) in by_center {
        let shipment_id = format!(
            "shp-{}",
            ids::derived(&["shipment", &order.order_id, center])
        );
        let event = |kind: ShipmentEventKind, label: &str| ShipmentEvent {
            event_id: ids::derived(&[&order.event_id, &shipment_id, label]),
            occurred_at: now_ms,
            correlation_id: order.order_id.clone(),
            causation_id: Some(order.event_id.clone()),
            kind,
            shipment_id: shipment_id.clone(),
            order_id: order.order_id.clone(),
            fulfillment_center: center.to_string(),
            lines: lines.clone(),
            ship_to: Some(order.shipping_address.clone()),
            shipping_speed: order.shipping_speed,
            carrier: None,
            tracking_number: None,
            label_url: None,
        };
        events.push(event(ShipmentEventKind::ShipmentRequested, "requested"));
        let tracking = tracking_number(&shipment_id);
        events.push(ShipmentEvent {
            carrier: Some(params.carrier.clone()),
            label_url: Some(format!(
                "https://labels.invalid/{}/{tracking}.pdf",
                params.carrier
            )),
            tracking_number: Some(tracking),
            ..event(ShipmentEventKind::LabelCreated, "label")
        });
    }
    Ok(events)
}

/// A carrier-style tracking number, stable for a shipment.
fn tracking_number(shipment_id: &str) -> String {
    let digest = ids::derived(&["tracking", shipment_id]).replace('-', "");
    format!("SF{}", &digest[..16].to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::orders::{OrderLine, PaymentStatus};
    use events::{Address, ShippingSpeed};

    fn params() -> ShippingParams {
        ShippingParams {
            carrier: "acme".into(),
            default_fulfillment_center: "FC-DEFAULT".into(),
        }
    }

    fn line(n: i32, fc: Option<&str>, quantity: i32) -> OrderLine {
        OrderLine {
            line_number: n,
            product_id: format!("p-{n}"),
            sku: format!("SKU-{n}"),
            quantity,
            unit_price_minor: 100,
            fulfillment_center: fc.map(str::to_string),
        }
    }

    fn order(lines: Vec<OrderLine>) -> OrderPlaced {
        OrderPlaced {
            event_id: "0b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1,
            correlation_id: "ord-1".into(),
            causation_id: None,
            order_id: "ord-1".into(),
            user_id: "u".into(),
            lines,
            currency: "USD".into(),
            subtotal_minor: 100,
            shipping_fee_minor: 0,
            tax_minor: 0,
            total_minor: 100,
            shipping_address: Address {
                recipient_name: "A".into(),
                line1: "1".into(),
                line2: None,
                city: "C".into(),
                region: None,
                postal_code: "1".into(),
                country_code: "US".into(),
                phone: None,
            },
            shipping_speed: ShippingSpeed::Expedited,
            payment_id: "pay".into(),
            payment_status: PaymentStatus::Captured,
            gateway_reference: None,
        }
    }

    #[test]
    fn one_shipment_per_center_requested_then_labelled() {
        let o = order(vec![
            line(1, Some("FC-A"), 1),
            line(2, None, 2),
            line(3, Some("FC-A"), 3),
        ]);
        let events = plan_shipments(&o, &params(), 42).unwrap();
        assert_eq!(events.len(), 4);
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.fulfillment_center.as_str(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("FC-A", ShipmentEventKind::ShipmentRequested),
                ("FC-A", ShipmentEventKind::LabelCreated),
                ("FC-DEFAULT", ShipmentEventKind::ShipmentRequested),
                ("FC-DEFAULT", ShipmentEventKind::LabelCreated),
            ]
        );
        assert_eq!(events[0].lines.len(), 2);
        assert_eq!(events[1].carrier.as_deref(), Some("acme"));
        assert!(events[1]
            .tracking_number
            .as_deref()
            .unwrap()
            .starts_with("SF"));
        assert!(events
            .iter()
            .all(|e| e.order_id == "ord-1" && e.occurred_at == 42));
        assert_ne!(events[0].shipment_id, events[2].shipment_id);
    }

    #[test]
    fn replanning_the_same_order_gives_the_same_ids() {
        let o = order(vec![line(1, Some("FC-A"), 1)]);
        let a = plan_shipments(&o, &params(), 1).unwrap();
        let b = plan_shipments(&o, &params(), 2).unwrap();
        let ids = |v: &[ShipmentEvent]| {
            v.iter()
                .map(|e| {
                    (
                        e.event_id.clone(),
                        e.shipment_id.clone(),
                        e.tracking_number.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        let distinct: std::collections::HashSet<_> = a.iter().map(|e| &e.event_id).collect();
        assert_eq!(distinct.len(), a.len());
    }

    #[test]
    fn unshippable_orders_are_rejected_with_a_reason() {
        assert_eq!(
            plan_shipments(&order(vec![]), &params(), 0),
            Err(Rejection::NoLines)
        );
        let bad = order(vec![line(1, None, 1), line(2, None, 0)]);
        assert_eq!(
            plan_shipments(&bad, &params(), 0),
            Err(Rejection::BadQuantity {
                line_number: 2,
                quantity: 0
            })
        );
        let mut no_id = order(vec![line(1, None, 1)]);
        no_id.order_id = " ".into();
        assert_eq!(
            plan_shipments(&no_id, &params(), 0),
            Err(Rejection::MissingOrderId)
        );
    }
}
