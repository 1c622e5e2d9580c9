//! Reads of the catalog service's database: a product by id (behind the caches) and the
//! search fallback. A few pipelined connections, each replaced when it closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_postgres::{Client, NoTls};
use tracing::warn;

use crate::domain::{price_to_minor, Product};

pub struct Catalog {
    url: String,
    currency: String,
    slots: Vec<Mutex<Option<Arc<Client>>>>,
    next: AtomicUsize,
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
    pub fn new(url: &str, currency: &str, connections: usize) -> Self {
        Self {
            url: url.to_string(),
            currency: currency.to_string(),
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    async fn client(&self) -> Result<Arc<Client>, CatalogError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(c) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "catalog connection ended");
            }
        });
        let client = Arc::new(client);
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        Ok(client)
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
        let db = self.client().await?;
        let row = db
            .query_opt(
                &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1::text::uuid"),
                &[&id],
            )
            .await?;
        row.map(|r| self.product(&r)).transpose()
    }

    /// Products whose title contains every word of `query` (case-insensitive): the search
    /// service's stand-in while it is down.
    pub async fn search(&self, query: &str, limit: i64) -> Result<Vec<Product>, CatalogError> {
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
        let db = self.client().await?;
        let rows = db
            .query(
                &format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products
                     WHERE title ILIKE ALL($1::text[]) ORDER BY title LIMIT $2"
                ),
                &[&words, &limit],
            )
            .await?;
        rows.iter().map(|r| self.product(r)).collect()
    }
}
