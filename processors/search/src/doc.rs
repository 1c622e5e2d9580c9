//! The indexed product and how input records change it. Pure: no tantivy, no Kafka.
//!
//! A product's document joins two streams: the catalog row (CDC, versioned by the commit LSN)
//! and its availability (the ledger's projection, versioned by `sequence`). [`Catalog`] keeps
//! the newest of each per product and says what the index must do ([`Change`]): every
//! decision is here, the index only executes it. Older versions are ignored, so a record
//! applied twice changes nothing.

use std::collections::HashMap;

use serde::Deserialize;

/// One product as the index holds it: what a result page shows, plus the versions that
/// order its updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    /// False for a product known only from its availability (its catalog row has not
    /// arrived, or was deleted): kept so the stock state is not lost, never searched.
    pub listed: bool,
    pub sku: String,
    pub title: String,
    pub description: String,
    /// `Category/Sub-Category`.
    pub category: String,
    pub brand: String,
    pub price_minor: u64,
    pub image_url: Option<String>,
    /// Catalog `updated_at`, ms since the epoch ("newest" sort).
    pub updated_at_ms: i64,
    /// Commit LSN of the catalog row indexed (0: none yet).
    pub catalog_lsn: i64,
    /// None until the product's first availability record.
    pub in_stock: Option<bool>,
    pub available_quantity: Option<i32>,
    /// Ledger sequence of the availability indexed (-1: none yet).
    pub availability_seq: i64,
}

impl Product {
    fn unlisted(id: &str) -> Self {
        Self {
            id: id.to_string(),
            listed: false,
            sku: String::new(),
            title: String::new(),
            description: String::new(),
            category: String::new(),
            brand: String::new(),
            price_minor: 0,
            image_url: None,
            updated_at_ms: 0,
            catalog_lsn: 0,
            in_stock: None,
            available_quantity: None,
            availability_seq: -1,
        }
    }

    /// The top-level category (`Furniture` of `Furniture/Chairs`): the shard key.
    pub fn top_category(&self) -> &str {
        top_category(&self.category)
    }
}

pub fn top_category(category: &str) -> &str {
    category.split('/').next().unwrap_or_default().trim()
}

/// The catalog row fields the index reads from a `cdc.catalog.products.v1` envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductChange {
    pub before: Option<ProductRow>,
    pub after: Option<ProductRow>,
    pub source: Source,
    pub op: String,
    #[serde(default)]
    pub unchanged_toast: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductRow {
    pub id: String,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    /// Avro decimal(12,2): big-endian two's complement of the unscaled value.
    #[serde(default, with = "apache_avro::serde::bytes_opt")]
    pub price: Option<Vec<u8>>,
    pub image_urls: Option<Vec<Option<String>>>,
    /// Microseconds since the epoch.
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    pub ts_ms: i64,
    pub lsn: Option<i64>,
}

/// The fields of `inventory.availability.v1` the index reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Availability {
    pub product_id: String,
    pub in_stock: bool,
    pub available_quantity: i32,
    pub sequence: i64,
}

/// What the index must do for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing (an older or repeated version).
    None,
    /// Write this document (replacing any with its id, in whatever shard).
    Upsert(Product),
    /// Remove the product's document.
    Delete(String),
}

/// Why a record cannot be indexed (dead-lettered with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("change `{0}` carries no row")]
    NoRow(String),
    #[error("price is not a decimal(12,2) of at most 16 bytes")]
    Price,
    #[error("negative price")]
    NegativePrice,
    #[error("unknown operation `{0}`")]
    Op(String),
    #[error("product id is empty")]
    EmptyId,
}

/// Cents of an Avro decimal(12,2) (big-endian two's complement unscaled value).
pub fn price_minor(bytes: &[u8]) -> Result<u64, Invalid> {
    if bytes.is_empty() {
        return Ok(0);
    }
    if bytes.len() > 16 {
        return Err(Invalid::Price);
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut value: i128 = if negative { -1 } else { 0 };
    for b in bytes {
        value = (value << 8) | i128::from(*b);
    }
    if value < 0 {
        return Err(Invalid::NegativePrice);
    }
    u64::try_from(value).map_err(|_| Invalid::Price)
}

/// `12.34` for 1234.
pub fn format_minor(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// The newest catalog row and availability of every product, and the decisions that keep
/// the index equal to them. Its single writer is the indexer loop (one per instance).
#[derive(Debug, Default)]
pub struct Catalog {
    products: HashMap<String, Product>,
}

impl Catalog {
    /// The catalog an index holds (rebuilt from the stored documents at start).
    pub fn from_products(products: impl IntoIterator<Item = Product>) -> Self {
        Self {
            products: products.into_iter().map(|p| (p.id.clone(), p)).collect(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Listed products (what a search can find).
    pub fn listed(&self) -> impl Iterator<Item = &Product> {
        self.products.values().filter(|p| p.listed)
    }

    /// A tombstone (the record after a delete) for key `id`.
    pub fn tombstone(&mut self, id: &str) -> Change {
        self.remove_listing(id)
    }

    /// A catalog change event.
    pub fn catalog(&mut self, change: ProductChange) -> Result<Change, Invalid> {
        let lsn = change.source.lsn.unwrap_or(0);
        match change.op.as_str() {
            "d" => {
                let row = change
                    .before
                    .ok_or_else(|| Invalid::NoRow(change.op.clone()))?;
                if self
                    .products
                    .get(&row.id)
                    .is_some_and(|p| p.catalog_lsn > lsn)
                {
                    return Ok(Change::None);
                }
                Ok(self.remove_listing(&row.id))
            }
            "c" | "u" | "r" => {
                let row = change
                    .after
                    .ok_or_else(|| Invalid::NoRow(change.op.clone()))?;
                if row.id.is_empty() {
                    return Err(Invalid::EmptyId);
                }
                let price = row.price.as_deref().map(price_minor).transpose()?;
                let current = self
                    .products
                    .get(&row.id)
                    .cloned()
                    .unwrap_or_else(|| Product::unlisted(&row.id));
                if current.listed && current.catalog_lsn > lsn {
                    return Ok(Change::None);
                }
                // A TOASTed column that did not change arrives as a placeholder: keep ours.
                let keep = |column: &str| change.unchanged_toast.iter().any(|c| c == column);
                let pick = |column: &str, new: Option<String>, old: &str| -> String {
                    if keep(column) {
                        old.to_string()
                    } else {
                        new.unwrap_or_default()
                    }
                };
                let next = Product {
                    id: row.id.clone(),
                    listed: true,
                    sku: pick("sku", row.sku, &current.sku),
                    title: pick("title", row.title, &current.title),
                    description: pick("description", row.description, &current.description),
                    category: pick("category", row.category, &current.category),
                    brand: pick("brand", row.brand, &current.brand),
                    price_minor: price.unwrap_or(current.price_minor),
                    image_url: if keep("image_urls") {
                        current.image_url.clone()
                    } else {
                        row.image_urls
                            .unwrap_or_default()
                            .into_iter()
                            .flatten()
                            .next()
                    },
                    updated_at_ms: row
                        .updated_at
                        .map(|us| us / 1000)
                        .unwrap_or(change.source.ts_ms),
                    catalog_lsn: lsn,
                    ..current.clone()
                };
                if next == current {
                    return Ok(Change::None);
                }
                self.products.insert(next.id.clone(), next.clone());
                Ok(Change::Upsert(next))
            }
            "t" => Ok(Change::None),
            other => Err(Invalid::Op(other.to_string())),
        }
    }

    /// An availability update: older sequences are ignored.
    pub fn availability(&mut self, update: Availability) -> Result<Change, Invalid> {
        if update.product_id.is_empty() {
            return Err(Invalid::EmptyId);
        }
        let mut product = self
            .products
            .get(&update.product_id)
            .cloned()
            .unwrap_or_else(|| Product::unlisted(&update.product_id));
        if product.availability_seq >= update.sequence {
            return Ok(Change::None);
        }
        product.in_stock = Some(update.in_stock);
        product.available_quantity = Some(update.available_quantity);
        product.availability_seq = update.sequence;
        self.products.insert(product.id.clone(), product.clone());
        Ok(Change::Upsert(product))
    }

    /// A catalog delete keeps the stock state (an unlisted document) so a product that
    /// comes back is still known to be in or out of stock.
    fn remove_listing(&mut self, id: &str) -> Change {
        match self.products.get(id) {
            None => Change::None,
            Some(p) if !p.listed => Change::None,
            Some(p) if p.availability_seq < 0 => {
                self.products.remove(id);
                Change::Delete(id.to_string())
            }
            Some(p) => {
                let mut kept = Product::unlisted(id);
                kept.in_stock = p.in_stock;
                kept.available_quantity = p.available_quantity;
                kept.availability_seq = p.availability_seq;
                self.products.insert(id.to_string(), kept.clone());
                Change::Upsert(kept)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, title: &str, price: u64) -> ProductRow {
        ProductRow {
            id: id.into(),
            sku: Some(format!("SKU-{id}")),
            title: Some(title.into()),
            description: Some(format!("{title}: chairs from the Furniture range.")),
            category: Some("Furniture/Chairs".into()),
            brand: Some(title.split(' ').next().unwrap().into()),
            price: Some(price.to_be_bytes().to_vec()),
            image_urls: Some(vec![Some("https://img/1.jpg".into())]),
            updated_at: Some(1_700_000_000_000_000),
        }
    }

    fn change(
        op: &str,
        lsn: i64,
        before: Option<ProductRow>,
        after: Option<ProductRow>,
    ) -> ProductChange {
        ProductChange {
            before,
            after,
            source: Source {
                ts_ms: 1,
                lsn: Some(lsn),
            },
            op: op.into(),
            unchanged_toast: vec![],
        }
    }

    fn avail(id: &str, seq: i64, qty: i32) -> Availability {
        Availability {
            product_id: id.into(),
            in_stock: qty > 0,
            available_quantity: qty,
            sequence: seq,
        }
    }

    #[test]
    fn prices_decode_from_avro_decimals() {
        assert_eq!(price_minor(&[0x04, 0xD2]), Ok(1234));
        assert_eq!(price_minor(&[0x00, 0x80]), Ok(128));
        assert_eq!(price_minor(&[]), Ok(0));
        assert_eq!(price_minor(&[0xFF]), Err(Invalid::NegativePrice));
        assert_eq!(price_minor(&[1; 17]), Err(Invalid::Price));
        assert_eq!(format_minor(1234), "12.34");
        assert_eq!(format_minor(5), "0.05");
    }

    #[test]
    fn a_row_then_its_availability_make_one_document() {
        let mut c = Catalog::default();
        let Change::Upsert(p) = c
            .catalog(change("r", 10, None, Some(row("p1", "Hon Chair", 1999))))
            .unwrap()
        else {
            panic!()
        };
        assert!(p.listed);
        assert_eq!((p.price_minor, p.in_stock), (1999, None));
        let Change::Upsert(p) = c.availability(avail("p1", 3, 7)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.title.as_str(), p.in_stock, p.available_quantity),
            ("Hon Chair", Some(true), Some(7))
        );
        assert_eq!(p.updated_at_ms, 1_700_000_000_000);
    }

    #[test]
    fn older_and_repeated_versions_change_nothing() {
        let mut c = Catalog::default();
        c.catalog(change("u", 20, None, Some(row("p1", "New", 100))))
            .unwrap();
        assert_eq!(
            c.catalog(change("u", 10, None, Some(row("p1", "Old", 90))))
                .unwrap(),
            Change::None
        );
        assert_eq!(
            c.catalog(change("u", 20, None, Some(row("p1", "New", 100))))
                .unwrap(),
            Change::None
        );
        c.availability(avail("p1", 5, 1)).unwrap();
        assert_eq!(c.availability(avail("p1", 5, 9)).unwrap(), Change::None);
        assert_eq!(c.availability(avail("p1", 4, 0)).unwrap(), Change::None);
        assert_eq!(c.get("p1").unwrap().available_quantity, Some(1));
    }

    #[test]
    fn availability_before_the_row_is_kept_unlisted() {
        let mut c = Catalog::default();
        let Change::Upsert(p) = c.availability(avail("p1", 1, 0)).unwrap() else {
            panic!()
        };
        assert!(!p.listed);
        let Change::Upsert(p) = c
            .catalog(change("c", 5, None, Some(row("p1", "Desk", 5000))))
            .unwrap()
        else {
            panic!()
        };
        assert!(p.listed);
        assert_eq!(p.in_stock, Some(false));
    }

    #[test]
    fn a_delete_unlists_and_keeps_stock_state() {
        let mut c = Catalog::default();
        c.catalog(change("c", 5, None, Some(row("p1", "Desk", 5000))))
            .unwrap();
        c.availability(avail("p1", 1, 4)).unwrap();
        let Change::Upsert(p) = c
            .catalog(change("d", 6, Some(row("p1", "", 0)), None))
            .unwrap()
        else {
            panic!()
        };
        assert!(!p.listed);
        assert_eq!(p.available_quantity, Some(4));
        assert_eq!(c.tombstone("p1"), Change::None);
        assert_eq!(c.listed().count(), 0);
        // Without stock state a delete removes the document.
        c.catalog(change("c", 7, None, Some(row("p2", "Lamp", 100))))
            .unwrap();
        assert_eq!(c.tombstone("p2"), Change::Delete("p2".into()));
        assert!(c.get("p2").is_none());
    }

    #[test]
    fn unchanged_toast_columns_keep_the_indexed_value() {
        let mut c = Catalog::default();
        c.catalog(change("c", 5, None, Some(row("p1", "Desk", 5000))))
            .unwrap();
        let mut r = row("p1", "Desk", 6000);
        r.description = Some("__toast__".into());
        let mut ch = change("u", 6, None, Some(r));
        ch.unchanged_toast = vec!["description".into()];
        let Change::Upsert(p) = c.catalog(ch).unwrap() else {
            panic!()
        };
        assert_eq!(p.description, "Desk: chairs from the Furniture range.");
        assert_eq!(p.price_minor, 6000);
    }

    #[test]
    fn bad_changes_are_refused_with_a_reason() {
        let mut c = Catalog::default();
        assert_eq!(
            c.catalog(change("u", 1, None, None)),
            Err(Invalid::NoRow("u".into()))
        );
        assert_eq!(
            c.catalog(change("x", 1, None, Some(row("p", "a", 1)))),
            Err(Invalid::Op("x".into()))
        );
        let mut r = row("p", "a", 1);
        r.price = Some(vec![0xFF, 0x00]);
        assert_eq!(
            c.catalog(change("c", 1, None, Some(r))),
            Err(Invalid::NegativePrice)
        );
    }
}
