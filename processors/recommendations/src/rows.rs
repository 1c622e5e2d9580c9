//! What each input record writes to the interaction store: pure mapping, no I/O.
//!
//! - A view or add-to-cart is one weighted interaction, keyed by its event id.
//! - A checkout the storefront started (its `PURCHASE` interaction) is intent, weighted like an
//!   add-to-cart: the order may still fail. It is kept apart (`checkout`) from what was bought.
//! - A line of a placed order (`orders.order-placed.v1`) is a purchase, keyed by order id and
//!   line, so the same order placed twice writes the same rows. Purchases are what "already
//!   bought" excludes and what "bought together" counts.
//! - Searches carry no product: nothing for the item matrix (they stay on the topic).
//! - Catalog rows give each product's category and whether it is listed (versioned by the
//!   commit's LSN); availability gives whether it can be bought (versioned by the ledger's
//!   sequence). Older versions never overwrite newer ones (the store's upserts check them).

use events::orders::OrderPlaced;
use events::recommendations::{InteractionKind, UserInteraction};
use serde::Deserialize;
use topology::InteractionWeights;

/// A record the domain refuses (dead-lettered with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// One weighted interaction row.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionRow {
    pub event_id: String,
    pub user_id: String,
    pub product_id: String,
    pub kind: &'static str,
    pub weight: f32,
    pub order_id: Option<String>,
    pub occurred_at_ms: i64,
}

/// One write to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Interaction(InteractionRow),
    /// A catalog row: its category, listed or deleted, at commit LSN `lsn`.
    Catalog {
        product_id: String,
        category: Option<String>,
        listed: bool,
        lsn: i64,
    },
    /// The ledger's availability at `sequence`.
    Stock {
        product_id: String,
        in_stock: bool,
        sequence: i64,
    },
}

impl Write {
    pub fn product_id(&self) -> &str {
        match self {
            Write::Interaction(r) => &r.product_id,
            Write::Catalog { product_id, .. } | Write::Stock { product_id, .. } => product_id,
        }
    }
}

pub const PURCHASE: &str = "purchase";

/// The rows of a storefront interaction (none for a search, or a zero weight).
pub fn interaction(
    i: &UserInteraction,
    weights: &InteractionWeights,
) -> Result<Option<InteractionRow>, Invalid> {
    let (kind, weight) = match i.kind {
        InteractionKind::View => ("view", weights.view),
        InteractionKind::AddToCart => ("add_to_cart", weights.add_to_cart),
        InteractionKind::Purchase => ("checkout", weights.add_to_cart),
        InteractionKind::Search | InteractionKind::Unknown => return Ok(None),
    };
    if i.user_id.trim().is_empty() {
        return Err(Invalid(format!("{kind} interaction without a user id")));
    }
    let product = match i.product_id.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => return Err(Invalid(format!("{kind} interaction without a product id"))),
    };
    if weight <= 0.0 {
        return Ok(None);
    }
    Ok(Some(InteractionRow {
        event_id: i.event_id.clone(),
        user_id: i.user_id.clone(),
        product_id: product,
        kind,
        weight,
        order_id: i.order_id.clone(),
        occurred_at_ms: i.occurred_at,
    }))
}

/// One purchase row per line of a placed order.
pub fn purchases(
    order: &OrderPlaced,
    weights: &InteractionWeights,
) -> Result<Vec<InteractionRow>, Invalid> {
    if order.user_id.trim().is_empty() {
        return Err(Invalid(format!(
            "order {} without a user id",
            order.order_id
        )));
    }
    if order.lines.is_empty() {
        return Err(Invalid(format!("order {} without lines", order.order_id)));
    }
    Ok(order
        .lines
        .iter()
        .map(|line| InteractionRow {
            event_id: format!("purchase/{}/{}", order.order_id, line.line_number),
            user_id: order.user_id.clone(),
            product_id: line.product_id.clone(),
            kind: PURCHASE,
            weight: weights.purchase,
            order_id: Some(order.order_id.clone()),
            occurred_at_ms: order.occurred_at,
        })
        .collect())
}

/// The catalog row fields read from a `cdc.catalog.products.v1` envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductChange {
    pub before: Option<ProductRow>,
    pub after: Option<ProductRow>,
    pub source: ChangeSource,
    pub op: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductRow {
    pub id: String,
    pub category: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChangeSource {
    pub lsn: Option<i64>,
}

/// The catalog write of a change: a delete unlists, anything else (re)lists.
pub fn catalog(change: ProductChange) -> Result<Write, Invalid> {
    let lsn = change.source.lsn.unwrap_or(-1);
    match (change.op.as_str(), change.after, change.before) {
        ("d", _, Some(before)) => Ok(Write::Catalog {
            product_id: before.id,
            category: before.category,
            listed: false,
            lsn,
        }),
        ("d", _, None) => Err(Invalid("catalog delete without the deleted row".into())),
        (_, Some(after), _) => Ok(Write::Catalog {
            product_id: after.id,
            category: after.category,
            listed: true,
            lsn,
        }),
        (op, None, _) => Err(Invalid(format!("catalog change `{op}` without a row"))),
    }
}

/// The fields of `inventory.availability.v1` read here.
#[derive(Debug, Clone, Deserialize)]
pub struct Availability {
    pub product_id: String,
    pub in_stock: bool,
    pub sequence: i64,
}

pub fn stock(a: Availability) -> Write {
    Write::Stock {
        product_id: a.product_id,
        in_stock: a.in_stock,
        sequence: a.sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::orders::{OrderLine, PaymentStatus};
    use events::{Address, ShippingSpeed};

    fn weights() -> InteractionWeights {
        InteractionWeights {
            view: 1.0,
            add_to_cart: 3.0,
            purchase: 5.0,
        }
    }

    fn seen(kind: InteractionKind, product: Option<&str>) -> UserInteraction {
        UserInteraction {
            event_id: "e-1".into(),
            occurred_at: 1_000,
            correlation_id: "s".into(),
            causation_id: None,
            user_id: "u-1".into(),
            session_id: None,
            kind,
            product_id: product.map(str::to_string),
            quantity: None,
            order_id: Some("o-9".into()),
            query: None,
            surface: None,
        }
    }

    #[test]
    fn interactions_take_their_kind_weight_and_searches_write_nothing() {
        let w = weights();
        let view = interaction(&seen(InteractionKind::View, Some("p")), &w)
            .unwrap()
            .unwrap();
        assert_eq!((view.kind, view.weight), ("view", 1.0));
        let cart = interaction(&seen(InteractionKind::AddToCart, Some("p")), &w)
            .unwrap()
            .unwrap();
        assert_eq!((cart.kind, cart.weight), ("add_to_cart", 3.0));
        let checkout = interaction(&seen(InteractionKind::Purchase, Some("p")), &w)
            .unwrap()
            .unwrap();
        assert_eq!((checkout.kind, checkout.weight), ("checkout", 3.0));
        assert_eq!(
            interaction(&seen(InteractionKind::Search, None), &w),
            Ok(None)
        );
        let err = interaction(&seen(InteractionKind::View, None), &w).unwrap_err();
        assert!(err.0.contains("without a product id"), "{err}");
        let zero = InteractionWeights { view: 0.0, ..w };
        assert_eq!(
            interaction(&seen(InteractionKind::View, Some("p")), &zero),
            Ok(None)
        );
    }

    fn order(lines: usize) -> OrderPlaced {
        OrderPlaced {
            event_id: "ev".into(),
            occurred_at: 5,
            correlation_id: "o-1".into(),
            causation_id: None,
            order_id: "o-1".into(),
            user_id: "u-1".into(),
            lines: (1..=lines as i32)
                .map(|n| OrderLine {
                    line_number: n,
                    product_id: format!("p-{n}"),
                    sku: "s".into(),
                    quantity: 1,
                    unit_price_minor: 100,
                    fulfillment_center: None,
                })
                .collect(),
            currency: "USD".into(),
            subtotal_minor: 0,
            shipping_fee_minor: 0,
            tax_minor: 0,
            total_minor: 0,
            shipping_address: Address {
                recipient_name: "n".into(),
                line1: "l".into(),
                line2: None,
                city: "c".into(),
                region: None,
                postal_code: "p".into(),
                country_code: "US".into(),
                phone: None,
            },
            shipping_speed: ShippingSpeed::Standard,
            payment_id: "pay".into(),
            payment_status: PaymentStatus::Captured,
            gateway_reference: None,
        }
    }

    #[test]
    fn an_order_is_one_purchase_per_line_with_ids_stable_across_redelivery() {
        let rows = purchases(&order(2), &weights()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].event_id, "purchase/o-1/1");
        assert_eq!(rows[1].product_id, "p-2");
        assert!(rows.iter().all(|r| r.kind == PURCHASE && r.weight == 5.0));
        assert_eq!(rows, purchases(&order(2), &weights()).unwrap());
        assert!(purchases(&order(0), &weights()).is_err());
    }

    #[test]
    fn a_catalog_delete_unlists_and_an_update_lists() {
        let row = |id: &str| ProductRow {
            id: id.into(),
            category: Some("Technology/Phones".into()),
        };
        let del = catalog(ProductChange {
            before: Some(row("p")),
            after: None,
            source: ChangeSource { lsn: Some(7) },
            op: "d".into(),
        })
        .unwrap();
        assert!(matches!(
            del,
            Write::Catalog {
                listed: false,
                lsn: 7,
                ..
            }
        ));
        let up = catalog(ProductChange {
            before: None,
            after: Some(row("p")),
            source: ChangeSource { lsn: None },
            op: "u".into(),
        })
        .unwrap();
        assert!(matches!(
            up,
            Write::Catalog {
                listed: true,
                lsn: -1,
                ..
            }
        ));
        assert!(catalog(ProductChange {
            before: None,
            after: None,
            source: ChangeSource { lsn: None },
            op: "u".into(),
        })
        .is_err());
    }
}
