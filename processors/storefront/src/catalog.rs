//! Reads of the catalog service's database: a product by id (behind the caches) and the
//! search fallback. A few pipelined connections, each replaced when it closes.

use crate::domain::{price_to_minor, Product};

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
}

const PRODUCT_COLUMNS: &str =
    "id::text, sku, title, description, category, brand, price::text, image_urls, seller";

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
            id,
            sku: row.get(1),
            title: row.get(2),
            description: row.get(3),
            category: row.get(4),
            brand: row.get(5),
            currency: self.currency.clone(),
            image_urls: row.get(7),
            seller: row.get(8),
        })
    }

    /// The product `id` (a validated UUID), or `None` if the catalog has no such product.
    pub async fn product_by_id(&self, id: &str) -> Result<Option<Product>, CatalogError> {
        let db = self.db.client().await?;
        let row = db
            .query_opt(
                &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1::text::uuid"),
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
                    "SELECT {PRODUCT_COLUMNS} FROM products
                     WHERE title ILIKE ALL($1::text[]) ORDER BY title, id LIMIT $2 OFFSET $3"
                ),
                &[&words, &limit, &offset],
            )
            .await?;
        rows.iter().map(|r| self.product(r)).collect()
    }
}
