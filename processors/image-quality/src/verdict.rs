//! The check's decisions, free of I/O: what a record asks to check, whether a failed download
//! is tried again and when, and the verdict record for each outcome.

use events::images::{
    Dimensions, ImageCheckRequested, ImageCheckResult, ImageCheckStatus, ImageErrorKind,
    ImageRejectReason, ProductImageChange, TierVerdict,
};
use imageq::{Assessment, Reason};

use crate::fetch::FetchError;

/// One check to make: the request, which attempt this is, and whether a verdict already on
/// file for the same URL and checker settles it.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub request: ImageCheckRequested,
    pub attempt: i32,
    pub first_attempted_at: i64,
    /// A catalog row re-read (a snapshot, a redelivery, an update of another column) is
    /// answered by the verdict on file for its URL; a seller's re-check request is not.
    pub reuse_verdict: bool,
}

/// What a catalog change asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogChange {
    Check(Check),
    /// The image was deleted: forget its verdict.
    Forget {
        image_id: String,
    },
}

/// The check a catalog row's change asks for; `event_id` is derived from the change's
/// coordinates (the same change always gives the same id); `now` is when attempt 1 starts.
pub fn from_catalog(
    change: ProductImageChange,
    event_id: String,
    now: i64,
) -> Result<CatalogChange, String> {
    match (change.op.as_str(), change.after, change.before) {
        ("d", _, Some(before)) => Ok(CatalogChange::Forget {
            image_id: before.id,
        }),
        ("d", _, None) => Err("product image delete without the deleted row's key".into()),
        (_, Some(row), _) => {
            let product_id = row
                .product_id
                .filter(|p| !p.is_empty())
                .ok_or_else(|| format!("product image {} without a product", row.id))?;
            let url = row
                .url
                .ok_or_else(|| format!("product image {} without a url", row.id))?;
            let occurred_at = change.ts_ms;
            Ok(CatalogChange::Check(Check {
                request: ImageCheckRequested {
                    event_id,
                    occurred_at,
                    correlation_id: row.id.clone(),
                    causation_id: None,
                    image_id: row.id,
                    product_id,
                    url,
                    seller_id: row.seller,
                },
                attempt: 1,
                first_attempted_at: now,
                reuse_verdict: true,
            }))
        }
        (op, None, _) => Err(format!("product image change `{op}` without a row")),
    }
}

/// A request's own checks: keyed by its image, with an image, a product and a URL.
pub fn validate_request(r: &ImageCheckRequested, key: Option<&str>) -> Result<(), String> {
    if r.image_id.is_empty() || r.product_id.is_empty() {
        return Err("check request without an image id or a product id".into());
    }
    if key != Some(r.image_id.as_str()) {
        return Err(format!(
            "check request for image {} under key {key:?}: requests are keyed by image id",
            r.image_id
        ));
    }
    Ok(())
}

/// After a failed attempt: try again (as attempt `next`) or answer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    Retry { next: i32 },
    Answer,
}

/// Attempt 1 plus `max_retries` retries, and only for what a later attempt can fix.
pub fn after_failure(error: &FetchError, attempt: i32, max_retries: u32) -> AfterFailure {
    let last = 1 + i32::try_from(max_retries).unwrap_or(i32::MAX);
    if error.retryable() && attempt < last {
        AfterFailure::Retry { next: attempt + 1 }
    } else {
        AfterFailure::Answer
    }
}

/// The longest wait before attempt `attempt + 1`: `min(max, base * 2^(attempt-1))`; the
/// caller draws the wait uniformly below it (full jitter), so retries of many images that
/// failed together (one host down) do not return together.
pub fn backoff_cap_ms(attempt: i32, base_ms: u64, max_ms: u64) -> u64 {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    base_ms.saturating_mul(1u64 << doublings).min(max_ms)
}

/// What a verdict record carries besides the outcome.
pub struct Stamp<'a> {
    pub event_id: String,
    pub occurred_at: i64,
    pub checker_version: &'a str,
}

fn base(check: &Check, stamp: Stamp<'_>, status: ImageCheckStatus) -> ImageCheckResult {
    let r = &check.request;
    ImageCheckResult {
        event_id: stamp.event_id,
        occurred_at: stamp.occurred_at,
        correlation_id: r.correlation_id.clone(),
        causation_id: Some(r.event_id.clone()),
        image_id: r.image_id.clone(),
        product_id: r.product_id.clone(),
        url: r.url.clone(),
        status,
        dimensions: None,
        content_type: None,
        size_bytes: None,
        blur_score: None,
        tiers: None,
        rejection_reasons: Vec::new(),
        attempts: check.attempt,
        error_kind: None,
        error: None,
        checker_version: Some(stamp.checker_version.to_string()),
        requested_at: Some(r.occurred_at),
    }
}

/// The verdict on downloaded bytes: OK when the checker found nothing wrong, REJECTED with
/// every reason otherwise.
pub fn scored(check: &Check, stamp: Stamp<'_>, a: &Assessment) -> ImageCheckResult {
    let status = if a.ok() {
        ImageCheckStatus::Ok
    } else {
        ImageCheckStatus::Rejected
    };
    let mut out = base(check, stamp, status);
    out.dimensions = match (a.width, a.height) {
        (Some(w), Some(h)) => Some(Dimensions {
            width_px: i32::try_from(w).unwrap_or(i32::MAX),
            height_px: i32::try_from(h).unwrap_or(i32::MAX),
        }),
        _ => None,
    };
    out.content_type = a.format.map(|f| f.mime().to_string());
    out.size_bytes = Some(i64::try_from(a.size_bytes).unwrap_or(i64::MAX));
    out.blur_score = a.blur_score;
    out.tiers = a.tiers.as_ref().map(|t| TierVerdict {
        thumbnail: t.thumbnail,
        zoom: t.zoom,
        print: t.print,
    });
    out.rejection_reasons = a.reasons.iter().map(|r| reason(*r)).collect();
    if let Some(detail) = &a.detail {
        out.error_kind = Some(ImageErrorKind::Decode);
        out.error = Some(detail.clone());
    }
    out
}

/// The verdict after a download that gave no bytes to score: TOO_LARGE is the image's fault
/// (REJECTED); anything else means a person must look (NEEDS_MANUAL_REVIEW), never a
/// blocked listing.
pub fn unfetched(check: &Check, stamp: Stamp<'_>, error: &FetchError) -> ImageCheckResult {
    let mut out = match error {
        FetchError::TooLarge { .. } => {
            let mut out = base(check, stamp, ImageCheckStatus::Rejected);
            out.rejection_reasons = vec![ImageRejectReason::TooLarge];
            out
        }
        _ => base(check, stamp, ImageCheckStatus::NeedsManualReview),
    };
    out.error_kind = Some(error.kind());
    out.error = Some(match error {
        FetchError::Retryable { .. } => format!(
            "download failed on all {} attempts; last: {}",
            check.attempt,
            error.detail()
        ),
        _ => error.detail().to_string(),
    });
    out
}

pub fn reason(r: Reason) -> ImageRejectReason {
    match r {
        Reason::TooSmall => ImageRejectReason::TooSmall,
        Reason::TooBlurry => ImageRejectReason::TooBlurry,
        Reason::UnsupportedFormat => ImageRejectReason::UnsupportedFormat,
        Reason::Corrupt => ImageRejectReason::Corrupt,
        Reason::TooLarge => ImageRejectReason::TooLarge,
        Reason::Watermark => ImageRejectReason::Watermark,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::images::ProductImageRow;

    fn check(attempt: i32) -> Check {
        Check {
            request: ImageCheckRequested {
                event_id: "e1".into(),
                occurred_at: 10,
                correlation_id: "img".into(),
                causation_id: None,
                image_id: "img".into(),
                product_id: "p".into(),
                url: "http://h/a.jpg".into(),
                seller_id: None,
            },
            attempt,
            first_attempted_at: 10,
            reuse_verdict: false,
        }
    }

    fn stamp() -> Stamp<'static> {
        Stamp {
            event_id: "out".into(),
            occurred_at: 20,
            checker_version: "v",
        }
    }

    #[test]
    fn retryable_failures_get_three_retries_then_an_answer() {
        let down = FetchError::Retryable {
            kind: ImageErrorKind::HttpStatus,
            detail: "HTTP 503".into(),
        };
        assert_eq!(after_failure(&down, 1, 3), AfterFailure::Retry { next: 2 });
        assert_eq!(after_failure(&down, 3, 3), AfterFailure::Retry { next: 4 });
        assert_eq!(after_failure(&down, 4, 3), AfterFailure::Answer);
        let gone = FetchError::Permanent {
            kind: ImageErrorKind::HttpStatus,
            detail: "HTTP 404".into(),
        };
        assert_eq!(after_failure(&gone, 1, 3), AfterFailure::Answer);
        let big = FetchError::TooLarge {
            detail: "huge".into(),
        };
        assert_eq!(after_failure(&big, 1, 3), AfterFailure::Answer);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff_cap_ms(1, 1000, 60_000), 1000);
        assert_eq!(backoff_cap_ms(3, 1000, 60_000), 4000);
        assert_eq!(backoff_cap_ms(40, 1000, 60_000), 60_000);
    }

    #[test]
    fn failed_downloads_need_review_but_oversized_images_are_rejected() {
        let down = FetchError::Retryable {
            kind: ImageErrorKind::Timeout,
            detail: "slow".into(),
        };
        let v = unfetched(&check(4), stamp(), &down);
        assert_eq!(v.status, ImageCheckStatus::NeedsManualReview);
        assert_eq!(v.error_kind, Some(ImageErrorKind::Timeout));
        assert!(v.error.unwrap().contains("all 4 attempts"));
        let v = unfetched(
            &check(1),
            stamp(),
            &FetchError::TooLarge {
                detail: "huge".into(),
            },
        );
        assert_eq!(v.status, ImageCheckStatus::Rejected);
        assert_eq!(v.rejection_reasons, vec![ImageRejectReason::TooLarge]);
    }

    #[test]
    fn catalog_rows_become_checks_and_deletes_forget() {
        let row = |url: Option<&str>| ProductImageRow {
            id: "img".into(),
            product_id: Some("p".into()),
            url: url.map(str::to_string),
            seller: None,
        };
        let made = from_catalog(
            ProductImageChange {
                before: None,
                after: Some(row(Some("http://h/a.jpg"))),
                op: "c".into(),
                ts_ms: 5,
            },
            "e".into(),
            99,
        )
        .unwrap();
        let CatalogChange::Check(c) = made else {
            panic!("expected a check")
        };
        assert_eq!(
            (c.request.occurred_at, c.attempt, c.reuse_verdict),
            (5, 1, true)
        );
        assert_eq!(
            from_catalog(
                ProductImageChange {
                    before: Some(row(None)),
                    after: None,
                    op: "d".into(),
                    ts_ms: 1
                },
                "e".into(),
                1
            ),
            Ok(CatalogChange::Forget {
                image_id: "img".into()
            })
        );
        assert!(from_catalog(
            ProductImageChange {
                before: None,
                after: Some(row(None)),
                op: "u".into(),
                ts_ms: 1
            },
            "e".into(),
            1
        )
        .is_err());
    }
}
