//! `storefleet.orders`: what the checkout saga publishes about orders.

use serde::{Deserialize, Serialize};

use crate::{Address, ShippingSpeed};

/// schemas/orders/OrderPlaced.avsc — the saga completed; shipping takes over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub currency: String,
    pub subtotal_minor: i64,
    pub shipping_fee_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub shipping_address: Address,
    pub shipping_speed: ShippingSpeed,
    pub payment_id: String,
    pub payment_status: PaymentStatus,
    pub gateway_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_number: i32,
    pub product_id: String,
    pub sku: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    /// The fulfillment center holding the reservation, when inventory chose one.
    pub fulfillment_center: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Unknown,
    Authorized,
    Captured,
}

#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    pub fn order_placed() -> OrderPlaced {
        OrderPlaced {
            event_id: "0b9f6a52-3c1d-4e8f-9a7b-1c2d3e4f5a6b".into(),
            occurred_at: 1_764_300_000_000,
            correlation_id: "ord-1".into(),
            causation_id: None,
            order_id: "ord-1".into(),
            user_id: "user-7".into(),
            lines: vec![OrderLine {
                line_number: 1,
                product_id: "p-1".into(),
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price_minor: 1999,
                fulfillment_center: Some("FC-WEST-2".into()),
            }],
            currency: "USD".into(),
            subtotal_minor: 3998,
            shipping_fee_minor: 0,
            tax_minor: 0,
            total_minor: 3998,
            shipping_address: Address {
                recipient_name: "Ada".into(),
                line1: "1 Loop Rd".into(),
                line2: None,
                city: "Springfield".into(),
                region: Some("IL".into()),
                postal_code: "62701".into(),
                country_code: "US".into(),
                phone: None,
            },
            shipping_speed: ShippingSpeed::Standard,
            payment_id: "pay-1".into(),
            payment_status: PaymentStatus::Captured,
            gateway_reference: Some("gw-1".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_placed_matches_its_schema() {
        crate::schema_check::round_trip("orders/OrderPlaced.avsc", &super::samples::order_placed());
    }
}
