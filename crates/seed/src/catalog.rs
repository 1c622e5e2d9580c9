//! The product catalogue and its starting stock, derived from the Superstore order lines.
//! Pure: bytes in, rows out, no I/O; the same file always gives the same rows.
//!
//! - One product per distinct `Product ID` (the SKU), in SKU order. Its id is a UUID v5 of
//!   the SKU in [`PRODUCT_NAMESPACE`], so every seed of every machine agrees on it.
//! - A few Product IDs of the data set carry two different product names (32 of 1,862; the
//!   lines of the second name have other prices). The product is the one named on the
//!   SKU's *first* line in file order: its title, category and sub-category come from that
//!   line, and its price from the lines with that same name only, so title and price
//!   describe the same article.
//! - Price: the median unit list price, `Sales / (Quantity × (1 − Discount))`, over those
//!   lines, rounded to the cent (exact arithmetic, see [`crate::price`]).
//! - Stock: one `available` row per product and fulfillment center; the data set's four
//!   regions map to the four centers, and `on_hand = 3 × units sold in the region + 5`,
//!   counting every line of the SKU (demand is the SKU's, whatever its name).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use thiserror::Error;
use uuid::Uuid;

use crate::price::{self, Cents, PriceProblem, UnitPrice};

/// Namespace of product ids: `id = UUID v5(PRODUCT_NAMESPACE, sku)`. Fixed forever: changing
/// it would give every product a new id (and the CDC topics new keys).
pub const PRODUCT_NAMESPACE: Uuid = Uuid::from_u128(0x7b1e_4c52_9d0a_4f36_b8e2_51c3_a6d9_0e47);

/// The data set's regions and the fulfillment center that serves each.
pub const FULFILLMENT_CENTERS: [(&str, &str); 4] = [
    ("West", "FC-WEST-1"),
    ("East", "FC-EAST-1"),
    ("Central", "FC-CENTRAL-1"),
    ("South", "FC-SOUTH-1"),
];

/// The stock status every seeded row has.
pub const AVAILABLE: &str = "available";

/// Where product images are served; `<host>/<sku>/<n>.jpg`.
pub const IMAGE_HOST: &str = "https://images.storefleet.test";

/// A row of `catalog.public.products` (its `updated_at` is the database's `now()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub title: String,
    pub description: String,
    /// `Category/Sub-Category`.
    pub category: String,
    pub brand: String,
    pub price: Cents,
    pub image_urls: Vec<String>,
    pub seller: String,
}

/// A row of `catalog.public.product_images`: one per URL of a product's `image_urls`, as a
/// seller's upload (image-quality checks each one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub id: Uuid,
    pub product_id: Uuid,
    pub url: String,
    pub position: i32,
    pub seller: String,
}

impl Catalog {
    /// Serves the images from `host` instead of [`IMAGE_HOST`] (the stack's image host).
    pub fn rehost_images(&mut self, host: &str) {
        let host = host.trim_end_matches('/');
        for p in &mut self.products {
            for url in &mut p.image_urls {
                if let Some(path) = url.strip_prefix(IMAGE_HOST) {
                    *url = format!("{host}{path}");
                }
            }
        }
    }

    /// The image rows of every product, in product order.
    pub fn images(&self) -> Vec<ImageRow> {
        self.products
            .iter()
            .flat_map(|p| {
                p.image_urls
                    .iter()
                    .enumerate()
                    .map(move |(n, url)| ImageRow {
                        id: Uuid::new_v5(&p.id, format!("image/{n}").as_bytes()),
                        product_id: p.id,
                        url: url.clone(),
                        position: i32::try_from(n).unwrap_or(i32::MAX),
                        seller: p.seller.clone(),
                    })
            })
            .collect()
    }
}

/// A row of `warehouse.public.stock` (its `updated_at` is the database's `now()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockRow {
    pub product_id: Uuid,
    pub fulfillment_center: &'static str,
    pub status: &'static str,
    pub on_hand: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// In SKU order.
    pub products: Vec<Product>,
    /// In product order, then in [`FULFILLMENT_CENTERS`] order.
    pub stock: Vec<StockRow>,
}

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("line {line}: unreadable CSV")]
    Csv {
        line: u64,
        #[source]
        source: csv::Error,
    },
    #[error("the header has no column {0:?}")]
    MissingColumn(&'static str),
    #[error("line {line}, column {column:?}: {problem}: {value:?}")]
    Field {
        line: u64,
        column: &'static str,
        value: String,
        problem: String,
    },
    #[error("no order lines")]
    Empty,
}

/// Columns read, by header name.
const SKU: &str = "Product ID";
const NAME: &str = "Product Name";
const CATEGORY: &str = "Category";
const SUB_CATEGORY: &str = "Sub-Category";
const REGION: &str = "Region";
const SALES: &str = "Sales";
const QUANTITY: &str = "Quantity";
const DISCOUNT: &str = "Discount";

/// What the lines of one SKU add up to.
struct Lines {
    /// From the SKU's first line.
    name: String,
    category: String,
    sub_category: String,
    /// Unit prices of the lines named like the first.
    prices: Vec<UnitPrice>,
    /// Units sold per region, in [`FULFILLMENT_CENTERS`] order.
    units: [u64; 4],
    /// Line of the first occurrence, for error messages.
    first_line: u64,
}

/// One CSV record with the header's column positions.
struct Line<'a> {
    record: &'a csv::StringRecord,
    headers: &'a csv::StringRecord,
    line: u64,
}

impl Line<'_> {
    /// The non-empty value of `column`.
    fn get(&self, column: &'static str) -> Result<&str, CatalogError> {
        let at = self
            .headers
            .iter()
            .position(|h| h == column)
            .ok_or(CatalogError::MissingColumn(column))?;
        match self.record.get(at) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(problem(self.line, column, "", "empty")),
        }
    }
}

/// Parses the Superstore CSV (header line first) into products and stock rows.
pub fn parse(csv_bytes: &[u8]) -> Result<Catalog, CatalogError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_bytes);
    let headers = reader
        .headers()
        .map_err(|source| CatalogError::Csv { line: 1, source })?
        .clone();
    let columns = [
        SKU,
        NAME,
        CATEGORY,
        SUB_CATEGORY,
        REGION,
        SALES,
        QUANTITY,
        DISCOUNT,
    ];
    if let Some(missing) = columns
        .into_iter()
        .find(|c| !headers.iter().any(|h| h == *c))
    {
        return Err(CatalogError::MissingColumn(missing));
    }
    let mut by_sku: BTreeMap<String, Lines> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|source| CatalogError::Csv {
            line: source.position().map_or(0, |p| p.line()),
            source,
        })?;
        let line = Line {
            line: record.position().map_or(0, |p| p.line()),
            record: &record,
            headers: &headers,
        };
        let (sku, name) = (line.get(SKU)?, line.get(NAME)?);
        let region = line.get(REGION)?;
        let region_at = FULFILLMENT_CENTERS
            .iter()
            .position(|(r, _)| *r == region)
            .ok_or_else(|| {
                problem(
                    line.line,
                    REGION,
                    region,
                    "not West, East, Central or South",
                )
            })?;
        let quantity = line.get(QUANTITY)?;
        let quantity: u32 = quantity
            .parse()
            .map_err(|_| problem(line.line, QUANTITY, quantity, "not a whole number"))?;
        let (sales, discount) = (line.get(SALES)?, line.get(DISCOUNT)?);
        let unit_price = price::unit_price(sales, quantity, discount).map_err(|p| {
            let (column, value) = match p {
                PriceProblem::DiscountOutOfRange => (DISCOUNT, discount.to_string()),
                PriceProblem::QuantityOutOfRange => (QUANTITY, quantity.to_string()),
                _ if price::parse_decimal(discount).is_err() => (DISCOUNT, discount.to_string()),
                _ => (SALES, sales.to_string()),
            };
            problem(line.line, column, &value, &p.to_string())
        })?;
        let entry = match by_sku.entry(sku.to_string()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(Lines {
                name: name.to_string(),
                category: line.get(CATEGORY)?.to_string(),
                sub_category: line.get(SUB_CATEGORY)?.to_string(),
                prices: Vec::new(),
                units: [0; 4],
                first_line: line.line,
            }),
        };
        if entry.name == name {
            entry.prices.push(unit_price);
        }
        entry.units[region_at] += u64::from(quantity);
    }
    if by_sku.is_empty() {
        return Err(CatalogError::Empty);
    }
    let mut products = Vec::with_capacity(by_sku.len());
    let mut stock = Vec::with_capacity(by_sku.len() * FULFILLMENT_CENTERS.len());
    for (sku, mut lines) in by_sku {
        let price = match price::median(&mut lines.prices) {
            Some(Ok(price)) => price,
            Some(Err(p)) => return Err(problem(lines.first_line, SALES, &sku, &p.to_string())),
            // Unreachable: the first line always adds its price.
            None => return Err(problem(lines.first_line, SALES, &sku, "no price")),
        };
        let product = product(&sku, &lines, price);
        for ((_, center), units) in FULFILLMENT_CENTERS.iter().zip(lines.units) {
            let on_hand = units
                .checked_mul(3)
                .and_then(|u| u.checked_add(5))
                .and_then(|u| i32::try_from(u).ok())
                .ok_or_else(|| problem(lines.first_line, QUANTITY, &sku, "demand too large"))?;
            stock.push(StockRow {
                product_id: product.id,
                fulfillment_center: center,
                status: AVAILABLE,
                on_hand,
            });
        }
        products.push(product);
    }
    Ok(Catalog { products, stock })
}

fn product(sku: &str, lines: &Lines, price: Cents) -> Product {
    let title = lines.name.clone();
    Product {
        id: product_id(sku),
        sku: sku.to_string(),
        description: format!(
            "{title}: {} from the {} range.",
            lines.sub_category.to_lowercase(),
            lines.category
        ),
        category: format!("{}/{}", lines.category, lines.sub_category),
        brand: title
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        price,
        image_urls: (1..=2)
            .map(|n| format!("{IMAGE_HOST}/{sku}/{n}.jpg"))
            .collect(),
        seller: seller(&lines.sub_category),
        title,
    }
}

/// The product id of a SKU.
pub fn product_id(sku: &str) -> Uuid {
    Uuid::new_v5(&PRODUCT_NAMESPACE, sku.as_bytes())
}

/// One seller per sub-category: `seller-<sub-category, lower-case, non-alphanumerics as ->`.
pub fn seller(sub_category: &str) -> String {
    let slug: String = sub_category
        .chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("seller-{slug}")
}

fn problem(line: u64, column: &'static str, value: &str, problem: &str) -> CatalogError {
    CatalogError::Field {
        line,
        column,
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

#[cfg(test)]
mod tests;
