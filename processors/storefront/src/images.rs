//! Which product images a shopper sees, free of I/O. Sellers' images are rows of the
//! catalog's `product_images`; image-quality's verdicts on them reach Redis through the
//! projection consumer ([`crate::projections`]), one compact [`Verdict`] per image. An image
//! is shown only when its newest verdict passed it **and** was about the URL the row holds
//! now: a row whose URL changed waits for the verdict on the new URL, so no URL is served
//! before image-quality has passed it. Shown images keep the rows' order (position, then id).

use std::collections::HashMap;

use events::images::{ImageCheckResult, ImageCheckStatus, TierVerdict};
use serde::{Deserialize, Serialize};

/// A row of the catalog's `product_images`, cached with its product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRow {
    /// The row's UUID (lower-case text): the verdicts' image id.
    pub id: String,
    pub url: String,
    pub position: i32,
}

/// The newest verdict on one image as the projection keeps it: a hash field's value
/// `{occurred_at}:{passed 1|0}:{tiers}:{url}`, where tiers is `-` (the verdict has none) or
/// three `1|0` for thumbnail, zoom and print. The URL comes last, so it may hold `:`; the
/// projection's Lua script reads only the leading `occurred_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub occurred_at: i64,
    /// Status OK; every other status (REJECTED, NEEDS_MANUAL_REVIEW, UNKNOWN) hides it.
    pub passed: bool,
    pub tiers: Option<TierVerdict>,
    /// The URL that was checked.
    pub url: String,
}

fn flag(b: bool) -> char {
    if b {
        '1'
    } else {
        '0'
    }
}

fn parse_flag(b: u8) -> Option<bool> {
    match b {
        b'1' => Some(true),
        b'0' => Some(false),
        _ => None,
    }
}

impl Verdict {
    pub fn from_result(r: &ImageCheckResult) -> Self {
        Self {
            // The answered request's time when the verdict carries it: the newest request's
            // verdict wins, as in image-quality's own table, whichever was written last.
            occurred_at: r.requested_at.unwrap_or(r.occurred_at),
            passed: r.status == ImageCheckStatus::Ok,
            tiers: r.tiers,
            url: r.url.clone(),
        }
    }

    pub fn encode(&self) -> String {
        let tiers = match self.tiers {
            None => "-".to_string(),
            Some(t) => [t.thumbnail, t.zoom, t.print].map(flag).iter().collect(),
        };
        format!(
            "{}:{}:{tiers}:{}",
            self.occurred_at,
            flag(self.passed),
            self.url
        )
    }

    /// `None` for anything [`Verdict::encode`] does not make (such an image stays hidden).
    pub fn parse(stored: &str) -> Option<Self> {
        let mut parts = stored.splitn(4, ':');
        let occurred_at = parts.next()?.parse().ok()?;
        let passed = match parts.next()?.as_bytes() {
            [b] => parse_flag(*b)?,
            _ => return None,
        };
        let tiers = match parts.next()?.as_bytes() {
            b"-" => None,
            [t, z, p] => Some(TierVerdict {
                thumbnail: parse_flag(*t)?,
                zoom: parse_flag(*z)?,
                print: parse_flag(*p)?,
            }),
            _ => return None,
        };
        let url = parts.next()?.to_string();
        Some(Self {
            occurred_at,
            passed,
            tiers,
            url,
        })
    }
}

/// Where a verdict goes: `img:{product_id}`, field `image_id`, both lower-case UUID text (as
/// the catalog's `id::text` prints them). `Ok(None)`: an image that is not a catalog row (its
/// id is not a UUID), so no page can show it. `Err`: a malformed verdict (dead-lettered).
pub fn verdict_place(r: &ImageCheckResult) -> Result<Option<(String, String)>, String> {
    let product = uuid::Uuid::parse_str(&r.product_id)
        .map_err(|_| format!("product_id {:?} is not a UUID", r.product_id))?;
    if r.url.trim().is_empty() {
        return Err("the verdict names no URL".into());
    }
    Ok(uuid::Uuid::parse_str(&r.image_id)
        .ok()
        .map(|image| (product.to_string(), image.to_string())))
}

/// One image as pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownImage {
    pub image_id: String,
    pub url: String,
    /// Good enough for the zoom view (the verdict's zoom tier).
    pub zoom: bool,
}

/// A product's images as shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gallery {
    /// Passed images with their current URL, in position order.
    pub images: Vec<ShownImage>,
    /// The product has image rows but none is shown (none checked yet, none passed, or the
    /// verdicts could not be read): the page says so instead of hiding the product.
    pub pending_review: bool,
}

/// The images of `rows` that `verdicts` (image id → stored [`Verdict`]) passed at the row's
/// current URL, in position order (then id, so equal positions have one order).
pub fn gallery(rows: &[ImageRow], verdicts: &HashMap<String, String>) -> Gallery {
    let mut ordered: Vec<&ImageRow> = rows.iter().collect();
    ordered.sort_by(|a, b| (a.position, &a.id).cmp(&(b.position, &b.id)));
    let images: Vec<ShownImage> = ordered
        .into_iter()
        .filter_map(|row| {
            let verdict = Verdict::parse(verdicts.get(&row.id)?)?;
            (verdict.passed && verdict.url == row.url).then(|| ShownImage {
                image_id: row.id.clone(),
                url: row.url.clone(),
                zoom: verdict.tiers.is_some_and(|t| t.zoom),
            })
        })
        .collect();
    Gallery {
        pending_review: !rows.is_empty() && images.is_empty(),
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(id: &str, url: &str, position: i32) -> ImageRow {
        ImageRow {
            id: id.into(),
            url: url.into(),
            position,
        }
    }

    fn stored(passed: bool, url: &str, zoom: bool) -> String {
        Verdict {
            occurred_at: 10,
            passed,
            tiers: Some(TierVerdict {
                thumbnail: true,
                zoom,
                print: false,
            }),
            url: url.into(),
        }
        .encode()
    }

    fn verdicts(entries: &[(&str, String)]) -> HashMap<String, String> {
        entries
            .iter()
            .map(|(id, v)| (id.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn a_verdict_is_a_compact_string_whose_url_may_hold_colons() {
        let v = Verdict {
            occurred_at: 1_700_000_002_000,
            passed: true,
            tiers: Some(TierVerdict {
                thumbnail: true,
                zoom: false,
                print: true,
            }),
            url: "https://img.example:8443/a:b.jpg".into(),
        };
        assert_eq!(
            v.encode(),
            "1700000002000:1:101:https://img.example:8443/a:b.jpg"
        );
        assert_eq!(Verdict::parse(&v.encode()), Some(v));
        let untiered = Verdict {
            occurred_at: -5,
            passed: false,
            tiers: None,
            url: "u".into(),
        };
        assert_eq!(untiered.encode(), "-5:0:-:u");
        assert_eq!(Verdict::parse("-5:0:-:u"), Some(untiered));
        for garbage in [
            "",
            "x:1:-:u",
            "1:2:-:u",
            "1:1:10:u",
            "1:1:1x0:u",
            "1:1:-",
            "1:yes:-:u",
        ] {
            assert_eq!(Verdict::parse(garbage), None, "{garbage:?}");
        }
    }

    proptest! {
        #[test]
        fn verdicts_round_trip(
            occurred_at in any::<i64>(),
            passed in any::<bool>(),
            tiers in proptest::option::of(any::<(bool, bool, bool)>()),
            url in ".*",
        ) {
            let v = Verdict {
                occurred_at,
                passed,
                tiers: tiers.map(|(thumbnail, zoom, print)| TierVerdict { thumbnail, zoom, print }),
                url,
            };
            prop_assert_eq!(Verdict::parse(&v.encode()), Some(v));
        }
    }

    #[test]
    fn only_images_passed_at_their_current_url_are_shown_in_position_order() {
        let rows = [
            row("c", "https://img/c.jpg", 2),
            row("a", "https://img/a.jpg", 0),
            row("b", "https://img/b2.jpg", 1),
            row("d", "https://img/d.jpg", 3),
            row("e", "https://img/e.jpg", 4),
            row("f", "https://img/f.jpg", 1),
        ];
        let v = verdicts(&[
            ("a", stored(true, "https://img/a.jpg", true)),
            // Passed, but at the URL the row had before: waits for its own verdict.
            ("b", stored(true, "https://img/b1.jpg", true)),
            ("c", stored(true, "https://img/c.jpg", false)),
            ("d", stored(false, "https://img/d.jpg", true)),
            // e: no verdict yet. f: a value that is not a verdict.
            ("f", "garbage".into()),
            ("not-a-row", stored(true, "https://img/x.jpg", true)),
        ]);
        let g = gallery(&rows, &v);
        assert_eq!(
            g.images,
            [
                ShownImage {
                    image_id: "a".into(),
                    url: "https://img/a.jpg".into(),
                    zoom: true
                },
                ShownImage {
                    image_id: "c".into(),
                    url: "https://img/c.jpg".into(),
                    zoom: false
                },
            ]
        );
        assert!(!g.pending_review);
    }

    #[test]
    fn equal_positions_order_by_id_and_untiered_images_do_not_zoom() {
        let rows = [row("b", "ub", 0), row("a", "ua", 0)];
        let untiered = |url: &str| {
            Verdict {
                occurred_at: 1,
                passed: true,
                tiers: None,
                url: url.into(),
            }
            .encode()
        };
        let v = verdicts(&[("a", untiered("ua")), ("b", untiered("ub"))]);
        let g = gallery(&rows, &v);
        let ids: Vec<&str> = g.images.iter().map(|i| i.image_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(g.images.iter().all(|i| !i.zoom));
    }

    #[test]
    fn a_product_with_images_but_none_passed_is_pending_review() {
        let rows = [row("a", "ua", 0)];
        let rejected = gallery(&rows, &verdicts(&[("a", stored(false, "ua", true))]));
        assert_eq!(
            rejected,
            Gallery {
                images: vec![],
                pending_review: true
            }
        );
        assert!(gallery(&rows, &HashMap::new()).pending_review);
        assert_eq!(gallery(&[], &HashMap::new()), Gallery::default());
    }

    fn result(product_id: &str, image_id: &str, url: &str) -> ImageCheckResult {
        ImageCheckResult {
            event_id: "e".into(),
            occurred_at: 7,
            correlation_id: image_id.into(),
            causation_id: None,
            image_id: image_id.into(),
            product_id: product_id.into(),
            url: url.into(),
            status: ImageCheckStatus::NeedsManualReview,
            dimensions: None,
            content_type: None,
            size_bytes: None,
            blur_score: None,
            tiers: None,
            rejection_reasons: vec![],
            attempts: 3,
            error_kind: None,
            error: None,
            checker_version: None,
            requested_at: None,
        }
    }

    #[test]
    fn verdicts_are_placed_by_lower_case_uuids_and_malformed_ones_refused() {
        let p = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        let i = "2B8F7C1E-3D4A-4F5B-8C6D-7E8F9A0B1C2D";
        assert_eq!(
            verdict_place(&result(p, i, "u")),
            Ok(Some((p.to_lowercase(), i.to_lowercase())))
        );
        assert_eq!(verdict_place(&result(p, "img-1", "u")), Ok(None));
        assert!(verdict_place(&result("p-1", i, "u")).is_err());
        assert!(verdict_place(&result(p, i, " ")).is_err());
        let v = Verdict::from_result(&result(p, i, "u"));
        assert_eq!((v.occurred_at, v.passed, v.tiers), (7, false, None));
    }
}
