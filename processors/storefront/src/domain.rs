//! The storefront's rules, free of I/O: what a valid id, cart line and checkout look like,
//! how a cart becomes a checkout request, and which products are hot.

use std::collections::HashMap;

use events::checkout::{CheckoutLine, CheckoutRequested};
use events::payments::{PaymentMethod, PaymentMethodType};
use events::{Address, ShippingSpeed};
use serde::{Deserialize, Serialize};

use crate::images::{Gallery, ImageRow, ShownImage};

/// A 4xx answer's reason: a stable code for programs and a message for people. Never carries
/// internal details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// User ids, idempotency keys: 1..=64 characters of `[A-Za-z0-9._:-]`.
pub fn check_token(what: &'static str, value: &str) -> Result<(), Rejection> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            "invalid_id",
            format!("{what} must be 1 to 64 characters of letters, digits and . _ : -"),
        ))
    }
}

/// Product ids are the catalog's UUIDs (lower-case text).
pub fn parse_product_id(value: &str) -> Result<String, Rejection> {
    uuid::Uuid::parse_str(value)
        .map(|u| u.to_string())
        .map_err(|_| Rejection::new("invalid_id", "product id must be a UUID"))
}

/// One cart line as kept in Redis: the field is the product id, the value
/// `quantity:version:updated_at_ms`. The version grows by one per change of the line, so a
/// client that read version v can say "only if still v" and learn of a conflicting update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub product_id: String,
    pub quantity: u32,
    pub version: u64,
    pub updated_at_ms: i64,
}

impl CartLine {
    pub fn parse(product_id: &str, stored: &str) -> Option<Self> {
        let mut parts = stored.split(':');
        let line = CartLine {
            product_id: product_id.to_string(),
            quantity: parts.next()?.parse().ok()?,
            version: parts.next()?.parse().ok()?,
            updated_at_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(line)
    }
}

/// What a `PUT` of a cart line asks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLine {
    pub quantity: u32,
    /// Change the line only if its version is still this (0: only if absent). Without it the
    /// last writer wins.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

pub fn check_quantity(quantity: u32, max: u32) -> Result<(), Rejection> {
    if quantity > max {
        return Err(Rejection::new(
            "invalid_quantity",
            format!("quantity must be between 0 and {max}"),
        ));
    }
    Ok(())
}

/// A catalog price (`numeric(12,2)` as text, e.g. `12.5`, `3`, `0.99`) in minor units.
pub fn price_to_minor(text: &str) -> Option<i64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(cents)
}

/// The product page's catalog part, as cached. Never served as is: its image rows are
/// unchecked, so answers show a [`ProductView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub title: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub price_minor: i64,
    pub currency: String,
    pub seller: String,
    /// The catalog's `product_images` rows, in position order, checked or not.
    pub image_rows: Vec<ImageRow>,
}

/// A product as answers show it: the catalog's fields and only the images shown
/// ([`crate::images::gallery`]). `image_urls` are those images' URLs (the field pages had
/// before `images`), so no unchecked URL is ever served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductView<'a> {
    pub id: &'a str,
    pub sku: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub category: Option<&'a str>,
    pub brand: Option<&'a str>,
    pub price_minor: i64,
    pub currency: &'a str,
    pub seller: &'a str,
    pub image_urls: Vec<String>,
    pub images: Vec<ShownImage>,
    pub images_pending_review: bool,
}

impl<'a> ProductView<'a> {
    pub fn new(p: &'a Product, gallery: Gallery) -> Self {
        Self {
            id: &p.id,
            sku: &p.sku,
            title: &p.title,
            description: p.description.as_deref(),
            category: p.category.as_deref(),
            brand: p.brand.as_deref(),
            price_minor: p.price_minor,
            currency: &p.currency,
            seller: &p.seller,
            image_urls: gallery.images.iter().map(|i| i.url.clone()).collect(),
            images: gallery.images,
            images_pending_review: gallery.pending_review,
        }
    }
}

/// The checkout body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub user_id: String,
    pub shipping_address: AddressBody,
    pub payment: PaymentBody,
    #[serde(default)]
    pub shipping_speed: Option<ShippingSpeed>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    pub recipient_name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default)]
    pub region: Option<String>,
    pub postal_code: String,
    pub country_code: String,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    /// The gateway's token for the instrument; never card numbers.
    pub token: String,
    #[serde(default)]
    pub kind: Option<PaymentMethodType>,
    #[serde(default)]
    pub last4: Option<String>,
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, Rejection> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Rejection::new(
            "invalid_field",
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(value.to_string())
}

fn optional(
    field: &'static str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, Rejection> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

impl CheckoutBody {
    /// The address and payment method, checked; the user id is checked separately.
    pub fn validate(&self) -> Result<(Address, PaymentMethod, ShippingSpeed), Rejection> {
        check_token("user_id", &self.user_id)?;
        let a = &self.shipping_address;
        let country = a.country_code.trim();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Rejection::new(
                "invalid_field",
                "shipping_address.country_code must be an ISO 3166-1 alpha-2 code, e.g. US",
            ));
        }
        let address = Address {
            recipient_name: text("shipping_address.recipient_name", &a.recipient_name, 200)?,
            line1: text("shipping_address.line1", &a.line1, 200)?,
            line2: optional("shipping_address.line2", &a.line2, 200)?,
            city: text("shipping_address.city", &a.city, 100)?,
            region: optional("shipping_address.region", &a.region, 100)?,
            postal_code: text("shipping_address.postal_code", &a.postal_code, 20)?,
            country_code: country.to_string(),
            phone: optional("shipping_address.phone", &a.phone, 32)?,
        };
        let token = text("payment.token", &self.payment.token, 128)?;
        // A token never looks like a card number: refuse 13-19 digit strings outright, so
        // raw card data cannot reach a topic by mistake.
        let digits = token.chars().filter(char::is_ascii_digit).count();
        if (13..=19).contains(&digits)
            && token
                .chars()
                .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            return Err(Rejection::new(
                "invalid_field",
                "payment.token must be a gateway token, not a card number",
            ));
        }
        let last4 = optional("payment.last4", &self.payment.last4, 4)?;
        if let Some(l) = &last4 {
            if l.len() != 4 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Rejection::new(
                    "invalid_field",
                    "payment.last4 must be 4 digits",
                ));
            }
        }
        let kind = match self.payment.kind.unwrap_or(PaymentMethodType::Card) {
            PaymentMethodType::Unknown => {
                return Err(Rejection::new("invalid_field", "payment.kind is unknown"))
            }
            k => k,
        };
        let speed = match self.shipping_speed.unwrap_or(ShippingSpeed::Standard) {
            ShippingSpeed::Unknown => {
                return Err(Rejection::new("invalid_field", "shipping_speed is unknown"))
            }
            s => s,
        };
        Ok((address, PaymentMethod { kind, token, last4 }, speed))
    }
}

/// The order id a client's idempotency key stands for: the same key is the same order,
/// whichever storefront instance answers and however often it is retried.
pub fn order_id(client: &str, idempotency_key: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5f1e_7a0c_2b4d_4c8e_9a61_0d3b_7e2f_9c41);
    uuid::Uuid::new_v5(
        &NAMESPACE,
        format!("{client}\n{idempotency_key}").as_bytes(),
    )
    .to_string()
}

/// A cart line with its price from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedLine {
    pub product_id: String,
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
}

/// Everything a checkout request needs besides the cart.
pub struct CheckoutContext<'a> {
    pub client: &'a str,
    pub idempotency_key: &'a str,
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub currency: &'a str,
    pub shipping_fee_minor: i64,
    pub now_ms: i64,
}

/// The checkout request for a priced cart. Lines are ordered by product id, so the same cart
/// always gives the same request (the saga compares fingerprints of retried requests).
pub fn checkout_request(
    ctx: &CheckoutContext<'_>,
    mut lines: Vec<PricedLine>,
    address: Address,
    payment_method: PaymentMethod,
    shipping_speed: ShippingSpeed,
) -> Result<CheckoutRequested, Rejection> {
    if lines.is_empty() {
        return Err(Rejection::new("cart_empty", "the cart is empty"));
    }
    lines.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    let mut subtotal: i64 = 0;
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let total = line
            .unit_price_minor
            .checked_mul(i64::from(line.quantity))
            .and_then(|t| subtotal.checked_add(t))
            .ok_or_else(|| Rejection::new("invalid_quantity", "order total out of range"))?;
        subtotal = total;
        out.push(CheckoutLine {
            line_number: i as i32 + 1,
            product_id: line.product_id,
            sku: line.sku,
            quantity: line.quantity as i32,
            unit_price_minor: line.unit_price_minor,
        });
    }
    let order_id = order_id(ctx.client, ctx.idempotency_key);
    let event_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("checkout-requested/{order_id}").as_bytes(),
    );
    Ok(CheckoutRequested {
        event_id: event_id.to_string(),
        occurred_at: ctx.now_ms,
        correlation_id: order_id.clone(),
        causation_id: Some(ctx.request_id.to_string()),
        idempotency_key: format!("{}/{}", ctx.client, ctx.idempotency_key),
        order_id,
        user_id: ctx.user_id.to_string(),
        cart_id: Some(format!("cart:{}", ctx.user_id)),
        lines: out,
        currency: ctx.currency.to_string(),
        subtotal_minor: subtotal,
        shipping_fee_minor: ctx.shipping_fee_minor,
        tax_minor: 0,
        total_minor: subtotal + ctx.shipping_fee_minor,
        shipping_address: address,
        shipping_speed,
        payment_method,
    })
}

/// Counts product views per second and says which products are hot: viewed at least
/// `threshold` times within the current one-second window. Hot products are served from the
/// instance's own memory for a moment, so a flash sale's few products do not all queue on one
/// Redis key.
#[derive(Debug)]
pub struct HotTracker {
    threshold: u32,
    window_start_ms: i64,
    counts: HashMap<String, u32>,
}

impl HotTracker {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            window_start_ms: 0,
            counts: HashMap::new(),
        }
    }

    /// Records one view; true when this view makes (or keeps) the product hot.
    pub fn view(&mut self, product_id: &str, now_ms: i64) -> bool {
        if now_ms - self.window_start_ms >= 1_000 {
            self.window_start_ms = now_ms;
            self.counts.clear();
        }
        let count = self.counts.entry(product_id.to_string()).or_default();
        *count += 1;
        *count >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> CheckoutBody {
        serde_json::from_value(serde_json::json!({
            "user_id": "u-1",
            "shipping_address": {"recipient_name": "Ada", "line1": "1 Loop Rd", "city": "Springfield",
                                 "postal_code": "62701", "country_code": "US"},
            "payment": {"token": "tok_visa_4242", "last4": "4242"}
        }))
        .unwrap()
    }

    #[test]
    fn tokens_and_product_ids_are_checked() {
        assert!(check_token("user_id", "user-7:a.b_c").is_ok());
        assert!(check_token("user_id", "").is_err());
        assert!(check_token("user_id", "a b").is_err());
        assert!(check_token("user_id", &"x".repeat(65)).is_err());
        assert_eq!(
            parse_product_id("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap(),
            "6f9619ff-8b86-d011-b42d-00c04fc964ff"
        );
        assert_eq!(parse_product_id("42").unwrap_err().code, "invalid_id");
    }

    #[test]
    fn cart_lines_round_trip_and_reject_garbage() {
        let line = CartLine::parse("p", "3:7:1700").unwrap();
        assert_eq!(
            (line.quantity, line.version, line.updated_at_ms),
            (3, 7, 1700)
        );
        assert!(CartLine::parse("p", "3:7").is_none());
        assert!(CartLine::parse("p", "3:7:1:9").is_none());
        assert!(CartLine::parse("p", "x:7:1").is_none());
    }

    #[test]
    fn prices_convert_exactly() {
        assert_eq!(price_to_minor("12.34"), Some(1234));
        assert_eq!(price_to_minor("12.3"), Some(1230));
        assert_eq!(price_to_minor("12"), Some(1200));
        assert_eq!(price_to_minor("0.99"), Some(99));
        assert_eq!(price_to_minor("1.234"), None);
        assert_eq!(price_to_minor("-1.00"), None);
        assert_eq!(price_to_minor(".5"), None);
    }

    #[test]
    fn checkout_bodies_are_validated() {
        assert!(body().validate().is_ok());
        let mut b = body();
        b.shipping_address.country_code = "usa".into();
        assert_eq!(b.validate().unwrap_err().code, "invalid_field");
        let mut b = body();
        b.payment.token = "4242 4242 4242 4242".into();
        assert!(b
            .validate()
            .unwrap_err()
            .message
            .contains("not a card number"));
        let mut b = body();
        b.shipping_address.city = "  ".into();
        assert!(b.validate().is_err());
        let mut b = body();
        b.user_id = "bad id".into();
        assert!(b.validate().is_err());
        let unknown_field = serde_json::from_value::<CheckoutBody>(serde_json::json!({
            "user_id": "u", "shipping_address": {}, "payment": {}, "coupon": "x"}));
        assert!(unknown_field.is_err());
    }

    fn ctx(key: &str) -> CheckoutContext<'_> {
        CheckoutContext {
            client: "web",
            idempotency_key: key,
            request_id: "req-1",
            user_id: "u-1",
            currency: "USD",
            shipping_fee_minor: 500,
            now_ms: 1_000,
        }
    }

    fn priced(id: &str, qty: u32, price: i64) -> PricedLine {
        PricedLine {
            product_id: id.into(),
            sku: format!("SKU-{id}"),
            quantity: qty,
            unit_price_minor: price,
        }
    }

    #[test]
    fn a_cart_becomes_one_stable_request() {
        let (address, payment, speed) = body().validate().unwrap();
        let a = checkout_request(
            &ctx("k1"),
            vec![priced("b", 2, 1000), priced("a", 1, 250)],
            address.clone(),
            payment.clone(),
            speed,
        )
        .unwrap();
        assert_eq!(a.lines[0].product_id, "a");
        assert_eq!(a.lines[1].line_number, 2);
        assert_eq!(a.subtotal_minor, 2250);
        assert_eq!(a.total_minor, 2750);
        assert_eq!(a.order_id, order_id("web", "k1"));
        let b = checkout_request(
            &ctx("k1"),
            vec![priced("a", 1, 250), priced("b", 2, 1000)],
            address.clone(),
            payment.clone(),
            speed,
        )
        .unwrap();
        assert_eq!(a, b, "the same cart and key give the same request");
        assert_ne!(order_id("web", "k1"), order_id("web", "k2"));
        assert_ne!(order_id("web", "k1"), order_id("app", "k1"));
        let empty = checkout_request(&ctx("k1"), vec![], address, payment, speed);
        assert_eq!(empty.unwrap_err().code, "cart_empty");
    }

    #[test]
    fn a_product_is_shown_with_only_its_shown_images() {
        use crate::images::{gallery, Verdict};
        let product = Product {
            id: "p".into(),
            sku: "SKU-p".into(),
            title: "Chair".into(),
            description: None,
            category: None,
            brand: Some("Acme".into()),
            price_minor: 100,
            currency: "USD".into(),
            seller: "acme".into(),
            image_rows: vec![
                ImageRow {
                    id: "i1".into(),
                    url: "unchecked.jpg".into(),
                    position: 0,
                },
                ImageRow {
                    id: "i2".into(),
                    url: "passed.jpg".into(),
                    position: 1,
                },
            ],
        };
        let passed = Verdict {
            occurred_at: 1,
            passed: true,
            tiers: None,
            url: "passed.jpg".into(),
        };
        let verdicts = HashMap::from([("i2".to_string(), passed.encode())]);
        let view = serde_json::to_value(ProductView::new(
            &product,
            gallery(&product.image_rows, &verdicts),
        ))
        .unwrap();
        assert_eq!(view["image_urls"], serde_json::json!(["passed.jpg"]));
        assert_eq!(
            view["images"],
            serde_json::json!([{"image_id": "i2", "url": "passed.jpg", "zoom": false}])
        );
        assert_eq!(view["images_pending_review"], false);
        assert_eq!(
            (&view["brand"], &view["price_minor"]),
            (&"Acme".into(), &100.into())
        );
        assert!(
            !view.to_string().contains("unchecked.jpg") && view.get("image_rows").is_none(),
            "{view}"
        );
    }

    #[test]
    fn products_become_hot_past_the_threshold_within_a_second() {
        let mut hot = HotTracker::new(3);
        assert!(!hot.view("p", 10_000));
        assert!(!hot.view("p", 10_100));
        assert!(hot.view("p", 10_200));
        assert!(!hot.view("q", 10_300));
        assert!(!hot.view("p", 11_100), "a new window starts cold");
    }
}
