//! Checkout requests as the storefront would publish them, for tests and benchmarks that
//! drive the saga without the storefront.

use events::checkout::{CheckoutLine, CheckoutRequested};
use events::payments::{PaymentMethod, PaymentMethodType};
use events::{Address, ShippingSpeed};

/// The checkout request of `order` for `lines`: idempotency key `key-<order>`, a flat 4.99
/// shipping fee and 10% tax, one fixed buyer and card token. The event id derives from the
/// order, so building it twice gives the same record.
pub fn request(
    order: &str,
    user_id: &str,
    lines: Vec<CheckoutLine>,
    occurred_at: i64,
) -> CheckoutRequested {
    let subtotal: i64 = lines
        .iter()
        .map(|l| l.unit_price_minor * i64::from(l.quantity))
        .sum();
    CheckoutRequested {
        event_id: runtime::ids::derived(&[order, "request"]),
        occurred_at,
        correlation_id: order.into(),
        causation_id: None,
        idempotency_key: format!("key-{order}"),
        order_id: order.into(),
        user_id: user_id.into(),
        cart_id: None,
        lines,
        currency: "USD".into(),
        subtotal_minor: subtotal,
        shipping_fee_minor: 499,
        tax_minor: subtotal / 10,
        total_minor: subtotal + 499 + subtotal / 10,
        shipping_address: Address {
            recipient_name: "Test Buyer".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Springfield".into(),
            region: None,
            postal_code: "12345".into(),
            country_code: "US".into(),
            phone: None,
        },
        shipping_speed: ShippingSpeed::Standard,
        payment_method: PaymentMethod {
            kind: PaymentMethodType::Card,
            token: "tok_test".into(),
            last4: Some("4242".into()),
        },
    }
}
