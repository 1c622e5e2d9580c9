//! The verdict: thresholds ([`Policy`]), per-use tiers and the reasons an image is rejected.

use crate::format::{describe_unknown, parse_content_type, Declared};
use crate::gray::orient;
use crate::{blur_score, decode_gray, normalise, read_header, sniff, watermark};
use crate::{Format, Header, ImageError, Limits, Watermark};

/// Every threshold of the check. `version` goes out with each verdict so results can be
/// re-checked after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub limits: Limits,
    /// Long side of the working resolution the blur score and watermark run at.
    pub working_side: u32,
    /// Below this Laplacian variance (at the working resolution) an image is too blurry.
    pub blur_threshold: f64,
    /// Long display side needed for thumbnails (and below which an image is too small).
    pub thumbnail_min_side: u32,
    /// Long display side needed for the zoom view.
    pub zoom_min_side: u32,
    /// Long display side needed for print.
    pub print_min_side: u32,
    /// Blur score needed for print.
    pub print_min_blur: f64,
    /// Whether the watermark heuristic runs and can reject.
    pub watermark: bool,
    pub version: &'static str,
}

impl Default for Policy {
    /// `blur_threshold` 35 is calibrated on 40 real photos from scikit-image and opencv-doc
    /// (`scripts/fetch-photos.sh`) against their Gaussian sigma 3 copies and 4 photos blurred
    /// as taken: the blurred ones score at most 32.7 (text_motion.jpg; clock_motion.png 24.3,
    /// the Gaussian copies at most 14.7), the sharp ones at least 36.4 (ela_original.jpg, a dark,
    /// low-contrast scene). The gap is thin because the Laplacian variance also grows with
    /// contrast: sharp but flat-lit photos sit near the line. `print_min_blur` is not
    /// calibrated (no print-size photos in the set): 100, the usual rule of thumb.
    fn default() -> Self {
        Policy {
            limits: Limits::default(),
            working_side: 1024,
            blur_threshold: 35.0,
            thumbnail_min_side: 500,
            zoom_min_side: 1000,
            print_min_side: 2400,
            print_min_blur: 100.0,
            watermark: false,
            version: "imageq-1",
        }
    }
}

impl Policy {
    /// Checks the thresholds make sense together; every problem is listed.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let limits = &self.limits;
        if limits.max_bytes == 0 || limits.max_pixels == 0 || limits.max_side == 0 {
            problems.push("limits must all be positive".to_owned());
        }
        if !(64..=8192).contains(&self.working_side) {
            problems.push(format!(
                "working_side {} is outside 64..=8192",
                self.working_side
            ));
        }
        for (name, value) in [
            ("blur_threshold", self.blur_threshold),
            ("print_min_blur", self.print_min_blur),
        ] {
            if !value.is_finite() || value < 0.0 {
                problems.push(format!("{name} {value} must be a finite number >= 0"));
            }
        }
        if self.print_min_blur < self.blur_threshold {
            problems.push("print_min_blur must be at least blur_threshold".to_owned());
        }
        if !(self.thumbnail_min_side <= self.zoom_min_side
            && self.zoom_min_side <= self.print_min_side)
        {
            problems.push("tiers must grow: thumbnail <= zoom <= print min side".to_owned());
        }
        if self.thumbnail_min_side > limits.max_side {
            problems
                .push("thumbnail_min_side is over limits.max_side: nothing could pass".to_owned());
        }
        if self.version.is_empty() {
            problems.push("version must not be empty".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// What the image is good enough for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    pub thumbnail: bool,
    pub zoom: bool,
    pub print: bool,
}

/// Why an image is rejected; 1:1 with the Avro enum `ImageRejectReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TooSmall,
    TooBlurry,
    UnsupportedFormat,
    Corrupt,
    TooLarge,
    Watermark,
}

impl Reason {
    /// The Avro symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Reason::TooSmall => "TOO_SMALL",
            Reason::TooBlurry => "TOO_BLURRY",
            Reason::UnsupportedFormat => "UNSUPPORTED_FORMAT",
            Reason::Corrupt => "CORRUPT",
            Reason::TooLarge => "TOO_LARGE",
            Reason::Watermark => "WATERMARK",
        }
    }
}

/// The full verdict on one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Sniffed format.
    pub format: Option<Format>,
    /// Display width (after EXIF orientation).
    pub width: Option<u32>,
    /// Display height (after EXIF orientation).
    pub height: Option<u32>,
    pub orientation: u8,
    pub size_bytes: u64,
    /// Laplacian variance at the working resolution.
    pub blur_score: Option<f64>,
    pub tiers: Option<Tiers>,
    pub watermark: Option<Watermark>,
    /// Empty when the image is accepted.
    pub reasons: Vec<Reason>,
    /// Why, for a person: set for CORRUPT, UNSUPPORTED_FORMAT and TOO_LARGE.
    pub detail: Option<String>,
}

impl Assessment {
    pub fn ok(&self) -> bool {
        self.reasons.is_empty()
    }

    fn reject(&mut self, reason: Reason, detail: String) {
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
        self.detail = Some(match self.detail.take() {
            Some(earlier) => format!("{earlier}; {detail}"),
            None => detail,
        });
    }

    fn fail(&mut self, error: &ImageError) {
        self.reject(error.reason(), error.detail());
    }
}

/// Checks one downloaded image. Never panics on any input (a decoder panic is caught and
/// reported as CORRUPT); CPU-bound (a few ms per megapixel), so async callers run it on a
/// blocking pool.
pub fn assess(bytes: &[u8], declared_content_type: Option<&str>, policy: &Policy) -> Assessment {
    let mut verdict = Assessment {
        format: sniff(bytes),
        width: None,
        height: None,
        orientation: 1,
        size_bytes: bytes.len() as u64,
        blur_score: None,
        tiers: None,
        watermark: None,
        reasons: Vec::new(),
        detail: None,
    };
    check_declared_type(bytes, declared_content_type, &mut verdict);
    let header = match read_header(bytes, &policy.limits) {
        Ok(header) => header,
        Err(error) => {
            // An unrecognised body already has its detail from the declared-type check.
            if !(matches!(error, ImageError::Unsupported(_)) && verdict.detail.is_some()) {
                verdict.fail(&error);
            }
            return verdict;
        }
    };
    let (width, height) = header.display_size();
    verdict.width = Some(width);
    verdict.height = Some(height);
    verdict.orientation = header.orientation;
    if width.max(height) < policy.thumbnail_min_side {
        verdict.reasons.push(crate::Reason::TooSmall);
    }
    let decoded = std::panic::catch_unwind(|| decode_gray(bytes, &policy.limits));
    let gray = match decoded {
        Ok(Ok((_, gray))) => gray,
        Ok(Err(error)) => {
            verdict.fail(&error);
            return verdict;
        }
        Err(_) => {
            verdict.reject(
                Reason::Corrupt,
                format!("the {} decoder failed on this file", header.format.name()),
            );
            return verdict;
        }
    };
    score(&header, &gray, policy, &mut verdict);
    verdict
}

fn score(header: &Header, gray: &crate::Gray, policy: &Policy, verdict: &mut Assessment) {
    let working = normalise(gray, policy.working_side);
    let blur = blur_score(&working);
    let (width, height) = header.display_size();
    let long = width.max(height);
    let sharp = blur >= policy.blur_threshold;
    verdict.blur_score = Some(blur);
    verdict.tiers = Some(Tiers {
        thumbnail: sharp && long >= policy.thumbnail_min_side,
        zoom: sharp && long >= policy.zoom_min_side,
        print: blur >= policy.print_min_blur && long >= policy.print_min_side,
    });
    if !sharp {
        verdict.reasons.push(Reason::TooBlurry);
    }
    if policy.watermark {
        // Upright, so the region names mean what a viewer sees.
        let found = watermark(&orient(&working, header.orientation));
        if found.suspected {
            verdict.reasons.push(Reason::Watermark);
        }
        verdict.watermark = Some(found);
    }
}

fn check_declared_type(bytes: &[u8], declared: Option<&str>, verdict: &mut Assessment) {
    let sniffed = verdict.format;
    let seen = || match sniffed {
        Some(format) => format!("the bytes are {}", format.mime()),
        None if bytes.is_empty() => "the body is empty".to_owned(),
        None => describe_unknown(bytes),
    };
    let problem = match declared.map(parse_content_type) {
        None | Some(Declared::Generic) => None,
        Some(Declared::Image(format)) if Some(format) == sniffed => None,
        Some(Declared::Image(format)) => Some(format!("declared {} but {}", format.mime(), seen())),
        Some(Declared::OtherImage(kind)) => Some(format!(
            "declared {kind}, which is not accepted, and {}",
            seen()
        )),
        Some(Declared::NotImage(kind)) => {
            Some(format!("declared {kind}, not an image, and {}", seen()))
        }
    };
    if let Some(detail) = problem {
        verdict.reject(Reason::UnsupportedFormat, detail);
    }
}
