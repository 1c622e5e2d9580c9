//! `storefleet.images`: product-image quality checks: the requests (from the seller portal,
//! or a catalog row turned into one), image-quality's own retry records, and the verdicts.

use serde::{Deserialize, Serialize};

/// schemas/images/ImageCheckRequested.avsc — please check this image (key image id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCheckRequested {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub image_id: String,
    pub product_id: String,
    pub url: String,
    pub seller_id: Option<String>,
}

/// schemas/images/ImageCheckRetry.avsc — a check to attempt again after `not_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCheckRetry {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub request: ImageCheckRequested,
    /// The attempt this record is for (2 = the first retry).
    pub attempt: i32,
    pub not_before: i64,
    pub first_attempted_at: i64,
    pub last_error_kind: ImageErrorKind,
    pub last_error: String,
}

/// schemas/images/ImageCheckResult.avsc — the verdict on one image (key image id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageCheckResult {
    pub event_id: String,
    pub occurred_at: i64,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub image_id: String,
    pub product_id: String,
    pub url: String,
    pub status: ImageCheckStatus,
    pub dimensions: Option<Dimensions>,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub blur_score: Option<f64>,
    pub tiers: Option<TierVerdict>,
    pub rejection_reasons: Vec<ImageRejectReason>,
    pub attempts: i32,
    pub error_kind: Option<ImageErrorKind>,
    pub error: Option<String>,
    pub checker_version: Option<String>,
    /// The answered request's time: the newer request's verdict is current.
    pub requested_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageCheckStatus {
    Unknown,
    Ok,
    Rejected,
    NeedsManualReview,
}

impl ImageCheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageCheckStatus::Unknown => "UNKNOWN",
            ImageCheckStatus::Ok => "OK",
            ImageCheckStatus::Rejected => "REJECTED",
            ImageCheckStatus::NeedsManualReview => "NEEDS_MANUAL_REVIEW",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimensions {
    pub width_px: i32,
    pub height_px: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierVerdict {
    pub thumbnail: bool,
    pub zoom: bool,
    pub print: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageRejectReason {
    Unknown,
    TooSmall,
    TooBlurry,
    UnsupportedFormat,
    Corrupt,
    TooLarge,
    Watermark,
}

impl ImageRejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageRejectReason::Unknown => "UNKNOWN",
            ImageRejectReason::TooSmall => "TOO_SMALL",
            ImageRejectReason::TooBlurry => "TOO_BLURRY",
            ImageRejectReason::UnsupportedFormat => "UNSUPPORTED_FORMAT",
            ImageRejectReason::Corrupt => "CORRUPT",
            ImageRejectReason::TooLarge => "TOO_LARGE",
            ImageRejectReason::Watermark => "WATERMARK",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImageErrorKind {
    Unknown,
    Timeout,
    HttpStatus,
    Connection,
    InvalidUrl,
    Decode,
}

impl ImageErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageErrorKind::Unknown => "UNKNOWN",
            ImageErrorKind::Timeout => "TIMEOUT",
            ImageErrorKind::HttpStatus => "HTTP_STATUS",
            ImageErrorKind::Connection => "CONNECTION",
            ImageErrorKind::InvalidUrl => "INVALID_URL",
            ImageErrorKind::Decode => "DECODE",
        }
    }
}

/// The fields of a `cdc.catalog.product-images.v1` envelope read by image-quality.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductImageChange {
    pub before: Option<ProductImageRow>,
    pub after: Option<ProductImageRow>,
    pub op: String,
    /// When the connector wrote the change (ms).
    pub ts_ms: i64,
}

/// A row of catalog.public.product_images (key columns only in `before`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProductImageRow {
    pub id: String,
    pub product_id: Option<String>,
    pub url: Option<String>,
    pub seller: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ImageCheckRequested {
        ImageCheckRequested {
            event_id: "6f0b1d7e-8a52-4e7b-9d0e-2f9c2d1b7a11".into(),
            occurred_at: 1_700_000_000_000,
            correlation_id: "img-1".into(),
            causation_id: None,
            image_id: "img-1".into(),
            product_id: "2b8f7c1e-3d4a-4f5b-8c6d-7e8f9a0b1c2d".into(),
            url: "http://127.0.0.1:8000/a.jpg".into(),
            seller_id: Some("seller-chairs".into()),
        }
    }

    #[test]
    fn requests_retries_and_results_round_trip_through_their_schemas() {
        crate::schema_check::round_trip("images/ImageCheckRequested.avsc", &request());
        crate::schema_check::round_trip(
            "images/ImageCheckRetry.avsc",
            &ImageCheckRetry {
                event_id: "0c4f3a8e-9b1d-4e2f-a3b4-c5d6e7f8a9b0".into(),
                occurred_at: 1_700_000_000_500,
                correlation_id: "img-1".into(),
                causation_id: Some(request().event_id),
                request: request(),
                attempt: 2,
                not_before: 1_700_000_001_500,
                first_attempted_at: 1_700_000_000_100,
                last_error_kind: ImageErrorKind::HttpStatus,
                last_error: "HTTP 503".into(),
            },
        );
        crate::schema_check::round_trip(
            "images/ImageCheckResult.avsc",
            &ImageCheckResult {
                event_id: "1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a".into(),
                occurred_at: 1_700_000_002_000,
                correlation_id: "img-1".into(),
                causation_id: Some(request().event_id),
                image_id: "img-1".into(),
                product_id: request().product_id,
                url: request().url,
                status: ImageCheckStatus::Rejected,
                dimensions: Some(Dimensions {
                    width_px: 640,
                    height_px: 480,
                }),
                content_type: Some("image/jpeg".into()),
                size_bytes: Some(81_234),
                blur_score: Some(12.5),
                tiers: Some(TierVerdict {
                    thumbnail: false,
                    zoom: false,
                    print: false,
                }),
                rejection_reasons: vec![ImageRejectReason::TooBlurry],
                attempts: 1,
                error_kind: None,
                error: None,
                checker_version: Some("imageq-1".into()),
                requested_at: Some(1_700_000_000_000),
            },
        );
    }
}
