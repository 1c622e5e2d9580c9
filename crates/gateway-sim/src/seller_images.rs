//! The sellers' image host: `GET /seller-images/{*path}` answers with real photo bytes, and
//! sometimes with what real hosts send instead, so image-quality meets them in the main job.
//! The photos come from a folder (`scripts/fetch-photos.sh`'s: `bench/` ~1 MP JPEGs,
//! `blurred/` blurred copies, `sharp/` the originals); the answer for a path is decided by a
//! hash of the path, so the same URL always gets the same kind of answer:
//!
//! | share | answer |
//! |---|---|
//! | 75% | a ~1 MP sharp JPEG (passes, good for zoom) |
//! | 10% | a blurred copy (rejected TOO_BLURRY) |
//! | 5%  | an original photo (mostly 512 px: thumbnail only) |
//! | 3%  | 404 (needs manual review at once) |
//! | 3%  | 503 twice, then the photo (passes on the third attempt) |
//! | 2%  | the first half of a JPEG (rejected CORRUPT) |
//! | 2%  | an HTML error page with status 200 (rejected UNSUPPORTED_FORMAT) |
//!
//! Without a folder every path answers 503 (the checks end in manual review, honestly).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(Default)]
struct Photos {
    sharp_1mp: Vec<PathBuf>,
    blurred: Vec<PathBuf>,
    originals: Vec<PathBuf>,
}

struct Host {
    photos: Photos,
    /// Requests so far per flaky path (the 503-twice share).
    flaky: Mutex<HashMap<String, u32>>,
}

/// What the host answers for one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    Sharp,
    Blurred,
    Original,
    NotFound,
    FlakyThenSharp,
    Truncated,
    Html,
}

/// The answer for `path`: a hash of it into the shares of the module docs.
pub fn answer_for(path: &str) -> Answer {
    // FNV-1a: stable across runs and builds (std's hasher is not).
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    match h % 100 {
        0..=74 => Answer::Sharp,
        75..=84 => Answer::Blurred,
        85..=89 => Answer::Original,
        90..=92 => Answer::NotFound,
        93..=95 => Answer::FlakyThenSharp,
        96..=97 => Answer::Truncated,
        _ => Answer::Html,
    }
}

fn listed(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    files
}

/// The host's routes, serving photos from `dir` (None: every path answers 503).
pub fn router(dir: Option<&Path>) -> Router {
    let photos = dir
        .map(|d| Photos {
            sharp_1mp: listed(&d.join("bench")),
            blurred: listed(&d.join("blurred")),
            originals: listed(&d.join("sharp")),
        })
        .unwrap_or_default();
    tracing::info!(
        sharp = photos.sharp_1mp.len(),
        blurred = photos.blurred.len(),
        originals = photos.originals.len(),
        "seller image host"
    );
    Router::new()
        .route("/seller-images/{*path}", get(serve))
        .with_state(Arc::new(Host {
            photos,
            flaky: Mutex::new(HashMap::new()),
        }))
}

fn pick<'a>(files: &'a [PathBuf], path: &str) -> Option<&'a PathBuf> {
    let h = path
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (!files.is_empty()).then(|| &files[(h % files.len() as u64) as usize])
}

async fn file(path: Option<&PathBuf>, half: bool) -> Response {
    let Some(path) = path else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no photos configured").into_response();
    };
    match tokio::fs::read(path).await {
        Ok(mut bytes) => {
            if half {
                bytes.truncate(bytes.len() / 2);
            }
            let mime = match path.extension().and_then(|e| e.to_str()) {
                Some("png") => "image/png",
                _ => "image/jpeg",
            };
            ([(header::CONTENT_TYPE, mime)], bytes).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn serve(State(host): State<Arc<Host>>, UrlPath(path): UrlPath<String>) -> Response {
    let p = &host.photos;
    match answer_for(&path) {
        Answer::Sharp => file(pick(&p.sharp_1mp, &path), false).await,
        Answer::Blurred => file(pick(&p.blurred, &path), false).await,
        Answer::Original => file(pick(&p.originals, &path), false).await,
        Answer::NotFound => (StatusCode::NOT_FOUND, "no such image").into_response(),
        Answer::Truncated => file(pick(&p.sharp_1mp, &path), true).await,
        Answer::Html => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>Image temporarily unavailable</h1></body></html>",
        )
            .into_response(),
        Answer::FlakyThenSharp => {
            let seen = {
                let mut flaky = host.flaky.lock().unwrap_or_else(PoisonError::into_inner);
                let n = flaky.entry(path.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if seen <= 2 {
                (StatusCode::SERVICE_UNAVAILABLE, "try again later").into_response()
            } else {
                file(pick(&p.sharp_1mp, &path), false).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_stable_and_spread_as_documented() {
        let mut counts: HashMap<Answer, u32> = HashMap::new();
        for n in 0..10_000 {
            *counts
                .entry(answer_for(&format!("SKU-{n}/1.jpg")))
                .or_default() += 1;
        }
        assert_eq!(answer_for("a/1.jpg"), answer_for("a/1.jpg"));
        let share = |a| f64::from(counts.get(&a).copied().unwrap_or(0)) / 10_000.0;
        assert!((share(Answer::Sharp) - 0.75).abs() < 0.03, "{counts:?}");
        assert!((share(Answer::Blurred) - 0.10).abs() < 0.02, "{counts:?}");
        assert!(
            share(Answer::NotFound) > 0.01 && share(Answer::Html) > 0.005,
            "{counts:?}"
        );
    }
}
