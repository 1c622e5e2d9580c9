//! Reads of the catalog service's database: a product by id with its image rows (behind the
//! caches), the search fallback, and the image rows of a page of search hits. A few
//! pipelined connections, each replaced when it closes.

use std::collections::HashMap;

use crate::domain::{price_to_minor, Product};
use crate::images::ImageRow;

pub struct Catalog {
    currency: String,
    db: pg::Shared,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("catalog row {0} has a price that is not a money amount")]
    BadPrice(String),
    #[error("catalog row {0} has image rows that do not line up")]
    BadImages(String),
}

/// A product's columns and its `product_images` rows as three arrays in one order (position,
/// then id), so a product and its images are one query: `FROM <products> p CROSS JOIN LATERAL
/// ({IMAGES}) i`.
const PRODUCT_COLUMNS: &str = "p.id::text, p.sku, p.title, p.description, p.category, p.brand, \
     p.price::text, p.seller, i.ids, i.urls, i.positions";
const IMAGES: &str = "SELECT coalesce(array_agg(id::text ORDER BY position, id), '{}') AS ids,
            coalesce(array_agg(url ORDER BY position, id), '{}') AS urls,
            coalesce(array_agg(position ORDER BY position, id), '{}') AS positions
     FROM product_images WHERE product_id = p.id";

impl Catalog {
    /// `connections` clients, connected on first use; their tasks run on `tasks`.
    pub fn new(url: &str, currency: &str, connections: usize, tasks: &tasks::Tasks) -> Self {
        Self {
            currency: currency.to_string(),
            db: pg::Shared::new(url, "catalog", connections, tasks),
        }
    }

    fn product(&self, row: &tokio_postgres::Row) -> Result<Product, CatalogError> {
        let id: String = row.get(0);
        let price: String = row.get(6);
        Ok(Product {
            price_minor: price_to_minor(&price)
                .ok_or_else(|| CatalogError::BadPrice(id.clone()))?,
            sku: row.get(1),
            title: row.get(2),
            description: row.get(3),
            category: row.get(4),
            brand: row.get(5),
            currency: self.currency.clone(),
            seller: row.get(7),
            image_rows: image_rows(row.get(8), row.get(9), row.get(10))
                .ok_or_else(|| CatalogError::BadImages(id.clone()))?,
            id,
        })
    }

    /// The product `id` (a validated UUID), or `None` if the catalog has no such product.
    pub async fn product_by_id(&self, id: &str) -> Result<Option<Product>, CatalogError> {
        let db = self.db.client().await?;
        let row = db
            .query_opt(
                &format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products p CROSS JOIN LATERAL ({IMAGES}) i
                     WHERE p.id = $1::text::uuid"
                ),
                &[&id],
            )
            .await?;
        row.map(|r| self.product(&r)).transpose()
    }

    /// Products whose title contains every word of `query` (case-insensitive), in title
    /// order, `limit` of them after the first `offset`: the search service's stand-in while
    /// it is down (its filters and ranking are the service's alone).
    pub async fn search(
        &self,
        query: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Product>, CatalogError> {
        let words: Vec<String> = query
            .split_whitespace()
            .take(8)
            .map(|w| {
                let escaped = w
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            })
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db.client().await?;
        let rows = db
            .query(
                &format!(
                    // The page first, so only its products' images are read.
                    "SELECT {PRODUCT_COLUMNS} FROM (
                         SELECT * FROM products WHERE title ILIKE ALL($1::text[])
                         ORDER BY title, id LIMIT $2 OFFSET $3) p
                     CROSS JOIN LATERAL ({IMAGES}) i ORDER BY p.title, p.id"
                ),
                &[&words, &limit, &offset],
            )
            .await?;
        rows.iter().map(|r| self.product(r)).collect()
    }

    /// The image rows of `products` (UUID text; others are left out), by product, each in
    /// position order: one indexed query for a page of search hits.
    pub async fn image_rows(
        &self,
        products: &[String],
    ) -> Result<HashMap<String, Vec<ImageRow>>, CatalogError> {
        let ids: Vec<String> = products
            .iter()
            .filter_map(|p| uuid::Uuid::parse_str(p).ok().map(|u| u.to_string()))
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.db.client().await?;
        let rows = db
            .query(
                "SELECT product_id::text, id::text, url, position FROM product_images
                 WHERE product_id = ANY($1::text[]::uuid[]) ORDER BY product_id, position, id",
                &[&ids],
            )
            .await?;
        let mut by_product: HashMap<String, Vec<ImageRow>> = HashMap::new();
        for r in &rows {
            by_product.entry(r.get(0)).or_default().push(ImageRow {
                id: r.get(1),
                url: r.get(2),
                position: r.get(3),
            });
        }
        Ok(by_product)
    }
}

/// The rows from the three aligned arrays; `None` if they do not line up.
fn image_rows(ids: Vec<String>, urls: Vec<String>, positions: Vec<i32>) -> Option<Vec<ImageRow>> {
    if ids.len() != urls.len() || ids.len() != positions.len() {
        return None;
    }
    Some(
        ids.into_iter()
            .zip(urls)
            .zip(positions)
            .map(|((id, url), position)| ImageRow { id, url, position })
            .collect(),
    )
}
