//! Bulk upserts that write only what changed. The CDC connectors capture every write to
//! `products` and `stock`, so a re-seed that finds a row as it is must not touch it: each
//! `ON CONFLICT … DO UPDATE` carries a `WHERE (old columns) IS DISTINCT FROM (new columns)`
//! guard, and `updated_at` moves only with a real change.
//!
//! Rows go in multi-row `INSERT`s of [`BATCH_ROWS`], all batches of a table in one
//! transaction: a seed of a table is applied completely or not at all.

use std::fmt;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

use crate::catalog::{Product, StockRow};
use crate::SeedError;

/// Rows per `INSERT` (products bind 9 parameters per row: 4,500 per statement).
pub const BATCH_ROWS: usize = 500;

/// What an upsert did to the rows it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl UpsertCounts {
    /// Rows written (each one a change event for CDC).
    pub fn written(&self) -> u64 {
        self.inserted + self.updated
    }

    fn add(&mut self, other: UpsertCounts) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
}

impl fmt::Display for UpsertCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} inserted, {} updated, {} unchanged",
            self.inserted, self.updated, self.unchanged
        )
    }
}

const PRODUCT_COLUMNS: &str =
    "id, sku, title, description, category, brand, price, image_urls, seller, updated_at";
/// Every column but the key and `updated_at`: what makes a product different.
const PRODUCT_VALUES: [&str; 8] = [
    "sku",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "image_urls",
    "seller",
];

/// Upserts `products` into `catalog.public.products` in one transaction.
pub async fn products(
    client: &mut Client,
    products: &[Product],
) -> Result<UpsertCounts, SeedError> {
    let prices: Vec<String> = products.iter().map(|p| p.price.to_string()).collect();
    let transaction = begin(client).await?;
    let mut counts = UpsertCounts::default();
    for (batch, prices) in products.chunks(BATCH_ROWS).zip(prices.chunks(BATCH_ROWS)) {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * 9);
        for (p, price) in batch.iter().zip(prices) {
            params.extend([
                &p.id as &(dyn ToSql + Sync),
                &p.sku,
                &p.title,
                &p.description,
                &p.category,
                &p.brand,
                price,
                &p.image_urls,
                &p.seller,
            ]);
        }
        // Prices travel as exact decimal text (no float on the way into numeric(12, 2)).
        let rows = values(batch.len(), 9, |n| match n {
            6 => "$?::text::numeric".into(),
            _ => "$?".into(),
        });
        let sql = format!(
            "INSERT INTO products ({PRODUCT_COLUMNS}) VALUES {rows} \
             ON CONFLICT (id) DO UPDATE SET {}, updated_at = EXCLUDED.updated_at \
             WHERE {} \
             RETURNING (products.xmax = 0) AS inserted",
            assignments(&PRODUCT_VALUES),
            distinct("products", &PRODUCT_VALUES),
        );
        counts.add(run(&transaction, &sql, &params, batch.len(), "products").await?);
    }
    commit(transaction, "products").await?;
    Ok(counts)
}

/// Upserts `images` into `catalog.public.product_images` in one transaction (after the
/// products they belong to).
pub async fn product_images(
    client: &mut Client,
    images: &[crate::catalog::ImageRow],
) -> Result<UpsertCounts, SeedError> {
    let transaction = begin(client).await?;
    let mut counts = UpsertCounts::default();
    for batch in images.chunks(BATCH_ROWS) {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * 5);
        for i in batch {
            params.extend([
                &i.id as &(dyn ToSql + Sync),
                &i.product_id,
                &i.url,
                &i.position,
                &i.seller,
            ]);
        }
        let rows = values(batch.len(), 5, |_| "$?".into());
        let columns = ["product_id", "url", "position", "seller"];
        let sql = format!(
            "INSERT INTO product_images (id, product_id, url, position, seller, updated_at) \
             VALUES {rows} \
             ON CONFLICT (id) DO UPDATE SET {}, updated_at = EXCLUDED.updated_at \
             WHERE {} \
             RETURNING (product_images.xmax = 0) AS inserted",
            assignments(&columns),
            distinct("product_images", &columns),
        );
        counts.add(run(&transaction, &sql, &params, batch.len(), "product_images").await?);
    }
    commit(transaction, "product_images").await?;
    Ok(counts)
}

/// Upserts `stock` into `warehouse.public.stock` in one transaction.
pub async fn stock(client: &mut Client, stock: &[StockRow]) -> Result<UpsertCounts, SeedError> {
    let transaction = begin(client).await?;
    let mut counts = UpsertCounts::default();
    for batch in stock.chunks(BATCH_ROWS) {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * 4);
        for s in batch {
            params.extend([
                &s.product_id as &(dyn ToSql + Sync),
                &s.fulfillment_center,
                &s.status,
                &s.on_hand,
            ]);
        }
        let rows = values(batch.len(), 4, |_| "$?".into());
        let sql = format!(
            "INSERT INTO stock (product_id, fulfillment_center, status, on_hand, updated_at) \
             VALUES {rows} \
             ON CONFLICT (product_id, fulfillment_center, status) DO UPDATE SET \
             on_hand = EXCLUDED.on_hand, updated_at = EXCLUDED.updated_at \
             WHERE {} \
             RETURNING (stock.xmax = 0) AS inserted",
            distinct("stock", &["on_hand"]),
        );
        counts.add(run(&transaction, &sql, &params, batch.len(), "stock").await?);
    }
    commit(transaction, "stock").await?;
    Ok(counts)
}

/// `($1, $2, now()), ($3, $4, now())`: `rows` tuples of `columns` parameters and `now()`;
/// `param(i)` gives the i-th parameter's expression with `$?` for its number.
fn values(rows: usize, columns: usize, param: impl Fn(usize) -> String) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            let number = row * columns + column + 1;
            sql.push_str(&param(column).replace("$?", &format!("${number}")));
            sql.push_str(", ");
        }
        sql.push_str("now())");
    }
    sql
}

fn assignments(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(table.a, table.b) IS DISTINCT FROM (EXCLUDED.a, EXCLUDED.b)`.
fn distinct(table: &str, columns: &[&str]) -> String {
    let list = |prefix: &str| {
        columns
            .iter()
            .map(|c| format!("{prefix}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) IS DISTINCT FROM ({})", list(table), list("EXCLUDED"))
}

/// Runs one batch; a row comes back only if it was inserted or changed, and `xmax = 0` tells
/// an insert (no previous version) from an update.
async fn run(
    transaction: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    rows: usize,
    table: &str,
) -> Result<UpsertCounts, SeedError> {
    let returned = transaction
        .query(sql, params)
        .await
        .map_err(crate::pg(format!("upsert into {table}")))?;
    let inserted = returned.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
    let written = returned.len() as u64;
    Ok(UpsertCounts {
        inserted,
        updated: written - inserted,
        unchanged: rows as u64 - written,
    })
}

async fn begin(client: &mut Client) -> Result<Transaction<'_>, SeedError> {
    client
        .transaction()
        .await
        .map_err(crate::pg("begin a transaction"))
}

async fn commit(transaction: Transaction<'_>, table: &str) -> Result<(), SeedError> {
    transaction
        .commit()
        .await
        .map_err(crate::pg(format!("commit {table}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_number_parameters_row_by_row() {
        assert_eq!(
            values(2, 2, |c| if c == 1 {
                "$?::text".into()
            } else {
                "$?".into()
            }),
            "($1, $2::text, now()), ($3, $4::text, now())"
        );
    }

    #[test]
    fn the_guard_compares_every_value_column() {
        assert_eq!(
            distinct("stock", &["on_hand", "x"]),
            "(stock.on_hand, stock.x) IS DISTINCT FROM (EXCLUDED.on_hand, EXCLUDED.x)"
        );
        assert_eq!(assignments(&["a", "b"]), "a = EXCLUDED.a, b = EXCLUDED.b");
    }
}
