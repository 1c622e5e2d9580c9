//! The checkout use case's decisions, free of I/O: what `POST /v1/checkout` does between its
//! reads and writes. The handler (`api.rs`) does the I/O in this order, calling these:
//!
//! 1. the remembered request under [`remembered_key`] (Redis): a retry with the same
//!    Idempotency-Key replays it;
//! 2. otherwise the cart and each line's product (Redis, the catalog) → [`price`] → the request
//!    (`domain::checkout_request`) → remembered only if no other attempt got there first
//!    ([`is_replay`] tells whose request is stored);
//! 3. [`check_owner`] on the stored request, publish it, record [`accepted_view`] as the
//!    order's status, and answer [`answer`].
//!
//! Each step is a plain function, so its rules are tested here without Redis, a catalog or a
//! broker; the handler's I/O is covered by the stack test `tests/storefront.rs`.

use std::collections::HashMap;

use events::checkout::CheckoutRequested;
use serde_json::{json, Value};

use crate::domain::{CartLine, PricedLine, Product, Rejection};
use crate::projections::OrderView;

/// Where the request made for (`client`, `idempotency_key`) is remembered.
pub fn remembered_key(client: &str, idempotency_key: &str) -> String {
    format!("checkout:{client}:{idempotency_key}")
}

/// The cart's lines at the catalog's current prices. `products` holds what the catalog knows
/// of the cart's products; a line whose product it does not know is refused, naming it.
pub fn price(
    cart: &[CartLine],
    products: &HashMap<String, Product>,
) -> Result<Vec<PricedLine>, Rejection> {
    cart.iter()
        .map(|line| {
            let product = products.get(&line.product_id).ok_or_else(|| {
                Rejection::new(
                    "unknown_product",
                    format!(
                        "product {} is no longer sold; remove it from the cart",
                        line.product_id
                    ),
                )
            })?;
            Ok(PricedLine {
                product_id: line.product_id.clone(),
                sku: product.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: product.price_minor,
            })
        })
        .collect()
}

/// True when the request stored under the key is not the one this attempt made: another
/// attempt with the same key got there first, and this one replays it (its cart is left
/// alone and no purchase is counted twice).
pub fn is_replay(stored: &str, made: &str) -> bool {
    stored != made
}

/// An Idempotency-Key belongs to the user whose checkout first used it.
pub fn check_owner(request: &CheckoutRequested, user_id: &str) -> Result<(), Rejection> {
    if request.user_id == user_id {
        Ok(())
    } else {
        Err(Rejection::new(
            "idempotency_key_reused",
            "this Idempotency-Key was used for another user's checkout",
        ))
    }
}

/// The order's status from the moment its request is queued, until the saga's first
/// transition replaces it.
pub fn accepted_view(request: &CheckoutRequested) -> OrderView {
    OrderView {
        order_id: request.order_id.clone(),
        user_id: request.user_id.clone(),
        status: "ACCEPTED".into(),
        saga_state: None,
        failure: None,
        currency: request.currency.clone(),
        total_minor: request.total_minor,
        created_at: request.occurred_at,
        placed_at: None,
        updated_at: request.occurred_at,
    }
}

/// The answer's body (the handler answers 202 for a new checkout, 200 for a replay).
pub fn answer(request: &CheckoutRequested, replayed: bool) -> Value {
    json!({
        "order_id": request.order_id,
        "status_url": format!("/v1/orders/{}", request.order_id),
        "total_minor": request.total_minor,
        "currency": request.currency,
        "replayed": replayed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product: &str, quantity: u32) -> CartLine {
        CartLine {
            product_id: product.into(),
            quantity,
            version: 1,
            updated_at_ms: 0,
        }
    }

    fn product(id: &str, price_minor: i64) -> Product {
        Product {
            id: id.into(),
            sku: format!("SKU-{id}"),
            title: "a product".into(),
            description: None,
            category: None,
            brand: None,
            price_minor,
            currency: "USD".into(),
            seller: "storefleet".into(),
            image_rows: Vec::new(),
        }
    }

    /// A real request, made the way the handler makes it.
    fn request(user: &str) -> CheckoutRequested {
        let body: crate::domain::CheckoutBody = serde_json::from_value(json!({
            "user_id": user,
            "shipping_address": {"recipient_name": "Ada", "line1": "1 Loop Rd",
                                 "city": "Springfield", "postal_code": "62701",
                                 "country_code": "US"},
            "payment": {"token": "tok_visa_4242", "last4": "4242"}
        }))
        .expect("a checkout body");
        let (address, payment, speed) = body.validate().expect("a valid body");
        let products: HashMap<String, Product> = [("p1".to_string(), product("p1", 250))]
            .into_iter()
            .collect();
        let ctx = crate::domain::CheckoutContext {
            client: "web",
            idempotency_key: "k1",
            request_id: "r1",
            user_id: user,
            currency: "USD",
            shipping_fee_minor: 0,
            now_ms: 1_000,
        };
        let priced = price(&[line("p1", 2)], &products).expect("priced");
        crate::domain::checkout_request(&ctx, priced, address, payment, speed).expect("a request")
    }

    #[test]
    fn lines_take_the_catalogs_current_price_and_an_unknown_product_is_refused_by_name() {
        let products: HashMap<String, Product> = [
            ("p1".to_string(), product("p1", 1_250)),
            ("p2".to_string(), product("p2", 99)),
        ]
        .into_iter()
        .collect();
        let priced = price(&[line("p1", 2), line("p2", 1)], &products).unwrap();
        assert_eq!(
            priced
                .iter()
                .map(|l| (l.product_id.as_str(), l.quantity, l.unit_price_minor))
                .collect::<Vec<_>>(),
            [("p1", 2, 1_250), ("p2", 1, 99)]
        );
        assert_eq!(priced[0].sku, "SKU-p1");
        let refused = price(&[line("p1", 1), line("gone", 1)], &products).unwrap_err();
        assert_eq!(refused.code, "unknown_product");
        assert!(refused.message.contains("gone"), "{}", refused.message);
    }

    #[test]
    fn a_key_replays_only_for_its_own_user_and_whoever_stored_first_wins() {
        let stored = request("alice");
        assert!(check_owner(&stored, "alice").is_ok());
        assert_eq!(
            check_owner(&stored, "mallory").unwrap_err().code,
            "idempotency_key_reused"
        );
        assert!(!is_replay("{\"a\":1}", "{\"a\":1}"));
        assert!(is_replay("{\"a\":1}", "{\"a\":2}"));
        assert_ne!(remembered_key("web", "k1"), remembered_key("app", "k1"));
    }

    #[test]
    fn the_accepted_status_and_the_answer_carry_the_requests_order_and_total() {
        let r = request("alice");
        let view = accepted_view(&r);
        assert_eq!(
            (view.status.as_str(), view.total_minor, view.created_at),
            ("ACCEPTED", 500, 1_000)
        );
        assert_eq!(view.order_id, r.order_id);
        assert!(view.placed_at.is_none() && view.saga_state.is_none());
        let body = answer(&r, true);
        assert_eq!(body["status_url"], format!("/v1/orders/{}", r.order_id));
        assert_eq!(body["replayed"], true);
    }
}
