//! The verdicts table (database `images`, migrations/images/): the latest verdict per image,
//! queryable by image and by product, and `products_for_review` (products whose every
//! checked image failed: flagged for a person, never hidden from the shop).
//!
//! Single writer per row, in effect: an image's records reach image-quality on three topics
//! (catalog rows, re-check requests, retries), so two checks of one image can run at once in
//! two instances. The upsert settles it in the row: a verdict replaces the one on file only
//! if it answers a request at least as recent (`requested_at`), so whichever finishes last,
//! the newest request's verdict stays. A redelivered record answers the same request and
//! writes the same row again.

use std::time::{Duration, UNIX_EPOCH};

use events::images::ImageCheckResult;
use pg::Shared;
use serde::Serialize;
use tasks::Tasks;

#[derive(Debug, thiserror::Error)]
#[error("verdicts store: {context}")]
pub struct StoreError {
    context: String,
    #[source]
    source: tokio_postgres::Error,
}

fn pg(context: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |source| StoreError {
        context: context.to_string(),
        source,
    }
}

/// A verdict as stored (what `fleet images show` prints).
#[derive(Debug, Clone, Serialize)]
pub struct StoredVerdict {
    pub image_id: String,
    pub product_id: String,
    pub url: String,
    pub status: String,
    pub reasons: Vec<String>,
    pub width_px: Option<i32>,
    pub height_px: Option<i32>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub blur_score: Option<f64>,
    pub tiers: Option<[bool; 3]>,
    pub attempts: i32,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub checker_version: String,
    pub requested_at_ms: i64,
    pub checked_at_ms: i64,
}

const COLUMNS: &str = "image_id, product_id, url, status, reasons, width_px, height_px, \
     content_type, size_bytes, blur_score, tier_thumbnail, tier_zoom, tier_print, attempts, \
     error_kind, error, checker_version, \
     (extract(epoch from requested_at) * 1000)::bigint, \
     (extract(epoch from checked_at) * 1000)::bigint";

fn row_to_verdict(row: &tokio_postgres::Row) -> StoredVerdict {
    let tiers = match (
        row.get::<_, Option<bool>>(10),
        row.get::<_, Option<bool>>(11),
        row.get::<_, Option<bool>>(12),
    ) {
        (Some(a), Some(b), Some(c)) => Some([a, b, c]),
        _ => None,
    };
    StoredVerdict {
        image_id: row.get(0),
        product_id: row.get(1),
        url: row.get(2),
        status: row.get(3),
        reasons: row.get(4),
        width_px: row.get(5),
        height_px: row.get(6),
        content_type: row.get(7),
        size_bytes: row.get(8),
        blur_score: row.get(9),
        tiers,
        attempts: row.get(13),
        error_kind: row.get(14),
        error: row.get(15),
        checker_version: row.get(16),
        requested_at_ms: row.get(17),
        checked_at_ms: row.get(18),
    }
}

/// A product flagged for review.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    pub product_id: String,
    pub images: i64,
    pub image_ids: Vec<String>,
}

pub struct Store {
    clients: Shared,
}

fn at(ms: i64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Store {
    /// `size` clients (a tokio-postgres client pipelines concurrent statements).
    pub fn open(database_url: &str, size: usize, tasks: &Tasks) -> Self {
        Self {
            clients: Shared::new(database_url, "images", size, tasks),
        }
    }

    /// The verdict on file for `image_id`, if any.
    pub async fn get(&self, image_id: &str) -> Result<Option<StoredVerdict>, StoreError> {
        let client = self.clients.client().await.map_err(pg("connecting"))?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM image_verdicts WHERE image_id = $1"),
                &[&image_id],
            )
            .await
            .map_err(pg("reading a verdict"))?;
        Ok(row.as_ref().map(row_to_verdict))
    }

    /// Every verdict of `product_id`'s images.
    pub async fn by_product(&self, product_id: &str) -> Result<Vec<StoredVerdict>, StoreError> {
        let client = self.clients.client().await.map_err(pg("connecting"))?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM image_verdicts WHERE product_id = $1 ORDER BY image_id"
                ),
                &[&product_id],
            )
            .await
            .map_err(pg("reading a product's verdicts"))?;
        Ok(rows.iter().map(row_to_verdict).collect())
    }

    /// Products whose every checked image failed.
    pub async fn flagged(&self, limit: i64) -> Result<Vec<Flagged>, StoreError> {
        let client = self.clients.client().await.map_err(pg("connecting"))?;
        let rows = client
            .query(
                "SELECT product_id, images, image_ids FROM products_for_review \
                 ORDER BY product_id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(pg("reading products for review"))?;
        Ok(rows
            .iter()
            .map(|r| Flagged {
                product_id: r.get(0),
                images: r.get(1),
                image_ids: r.get(2),
            })
            .collect())
    }

    /// Counts of verdicts by status.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.clients.client().await.map_err(pg("connecting"))?;
        let rows = client
            .query(
                "SELECT status, count(*) FROM image_verdicts GROUP BY status ORDER BY status",
                &[],
            )
            .await
            .map_err(pg("counting verdicts"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Writes `v` (answering a request made at `requested_at` ms) unless the row already
    /// answers a newer request. True when written.
    pub async fn record(
        &self,
        v: &ImageCheckResult,
        requested_at: i64,
    ) -> Result<bool, StoreError> {
        let client = self.clients.client().await.map_err(pg("connecting"))?;
        let reasons: Vec<&str> = v.rejection_reasons.iter().map(|r| r.as_str()).collect();
        let tiers = v.tiers.map(|t| (t.thumbnail, t.zoom, t.print));
        let written = client
            .execute(
                "INSERT INTO image_verdicts (image_id, product_id, url, status, reasons, \
                   width_px, height_px, content_type, size_bytes, blur_score, tier_thumbnail, \
                   tier_zoom, tier_print, attempts, error_kind, error, checker_version, \
                   requested_at, checked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                   $17, $18, $19) \
                 ON CONFLICT (image_id) DO UPDATE SET product_id = EXCLUDED.product_id, \
                   url = EXCLUDED.url, status = EXCLUDED.status, reasons = EXCLUDED.reasons, \
                   width_px = EXCLUDED.width_px, height_px = EXCLUDED.height_px, \
                   content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes, \
                   blur_score = EXCLUDED.blur_score, tier_thumbnail = EXCLUDED.tier_thumbnail, \
                   tier_zoom = EXCLUDED.tier_zoom, tier_print = EXCLUDED.tier_print, \
                   attempts = EXCLUDED.attempts, error_kind = EXCLUDED.error_kind, \
                   error = EXCLUDED.error, checker_version = EXCLUDED.checker_version, \
                   requested_at = EXCLUDED.requested_at, checked_at = EXCLUDED.checked_at \
                 WHERE image_verdicts.requested_at <= EXCLUDED.requested_at",
                &[
                    &v.image_id,
                    &v.product_id,
                    &v.url,
                    &v.status.as_str(),
                    &reasons,
                    &v.dimensions.map(|d| d.width_px),
                    &v.dimensions.map(|d| d.height_px),
                    &v.content_type,
                    &v.size_bytes,
                    &v.blur_score,
                    &tiers.map(|t| t.0),
                    &tiers.map(|t| t.1),
                    &tiers.map(|t| t.2),
                    &v.attempts,
                    &v.error_kind.map(|k| k.as_str()),
                    &v.error,
                    &v.checker_version.clone().unwrap_or_default(),
                    &at(requested_at),
                    &at(v.occurred_at),
                ],
            )
            .await
            .map_err(pg("writing a verdict"))?;
        Ok(written == 1)
    }

    /// Forgets a deleted image's verdict (idempotent).
    pub async fn forget(&self, image_id: &str) -> Result<(), StoreError> {
        let client = self.clients.client().await.map_err(pg("connecting"))?;
        client
            .execute(
                "DELETE FROM image_verdicts WHERE image_id = $1",
                &[&image_id],
            )
            .await
            .map_err(pg("deleting a verdict"))?;
        Ok(())
    }
}
