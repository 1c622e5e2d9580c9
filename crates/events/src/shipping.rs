//! `storefleet.shipping`: shipment progress.

use serde::{Deserialize, Serialize};

use crate::{Address, ShippingSpeed};

/// schemas/shipping/ShipmentEvent.avsc
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentEvent {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub kind: ShipmentEventKind,
    pub shipment_id: String,
    pub order_id: String,
    pub fulfillment_center: String,
    pub lines: Vec<ShipmentLine>,
    pub ship_to: Option<Address>,
    pub shipping_speed: ShippingSpeed,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub label_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentEventKind {
    Unknown,
    ShipmentRequested,
    LabelCreated,
    Shipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentLine {
    pub line_number: i32,
    pub product_id: String,
    pub sku: String,
    pub quantity: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipment_event_matches_its_schema() {
        let order = crate::orders::samples::order_placed();
        let event = ShipmentEvent {
            event_id: "1b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_001,
            correlation_id: order.order_id.clone(),
            causation_id: Some(order.event_id.clone()),
            kind: ShipmentEventKind::LabelCreated,
            shipment_id: "shp-1".into(),
            order_id: order.order_id.clone(),
            fulfillment_center: "FC-WEST-2".into(),
            lines: vec![ShipmentLine {
                line_number: 1,
                product_id: "p-1".into(),
                sku: "SKU-1".into(),
                quantity: 2,
            }],
            ship_to: Some(order.shipping_address.clone()),
            shipping_speed: ShippingSpeed::Standard,
            carrier: Some("acme".into()),
            tracking_number: Some("TRK1".into()),
            label_url: None,
        };
        crate::schema_check::round_trip("shipping/ShipmentEvent.avsc", &event);
        crate::schema_check::round_trip(
            "shipping/ShipmentEvent.avsc",
            &ShipmentEvent {
                ship_to: None,
                ..event
            },
        );
    }
}
