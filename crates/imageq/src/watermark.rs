//! A cheap text-overlay detector: thin, high-contrast, single-colour strokes concentrated in a
//! corner or a horizontal band, compared with the rest of the image.
//!
//! What it sees: pixels that are a bright ridge or a dark valley at most 5 px wide (brighter or
//! darker than *both* pixels 2 or 3 px away, horizontally or vertically, by at least
//! [`CONTRAST`]). In 16 px cells it counts such stroke pixels and how many of them share one
//! grey level (±8): overlaid text is drawn in one flat colour, natural texture is not. A cell
//! with dense, mostly single-level strokes is "text-like". The score is the share of text-like
//! cells inside the best region (the four corners, a third wide and a quarter high; top,
//! middle and bottom bands an eighth high) minus the share outside it; a watermark is suspected when that is at least [`SCORE_THRESHOLD`] and the
//! region holds at least [`MIN_TEXT_CELLS`] text-like cells.
//!
//! What it can detect: opaque or strongly contrasting text, logos made of thin strokes and
//! "© shop" captions in a corner or a band, at a working resolution around 1024 px.
//!
//! What it cannot: faint or semi-transparent tiled watermarks over busy texture (the contrast
//! and single-level tests fail), text spread evenly over the whole image (nothing is
//! concentrated), big bold lettering with strokes over ~5 px, and it cannot tell an overlay
//! from text printed on the product itself (a label photographed in a corner scores the same).
//!
//! Measured on the 40 real photos of `scripts/fetch-photos.sh` (tests/photos.rs): 2 false
//! positives (5%: skimage brick.png, a regular brick wall, and opencv box.png, whose box
//! really carries printed text); a two-line "@SHOP.COM / SAMPLE 2020" caption with 2-3 px
//! strokes in the bottom-right corner is found in about 40% of the photos (white or black
//! text), a repeated word across the middle in about 70%, the same caption at 30% opacity
//! in none. Clean photos score up to 0.26, captioned ones from 0.0 to 0.5: the two overlap,
//! which is why `Policy::default()` leaves the check off.

use crate::Gray;

/// Minimum grey-level step on both sides of a stroke pixel.
pub const CONTRAST: i16 = 60;
/// Side of the square cells, in pixels.
const CELL: usize = 16;
/// A cell is text-like when at least this share of its pixels are strokes ...
const MIN_STROKE_DENSITY: f64 = 0.04;
/// ... and at least this share of those strokes share one grey level (±8).
const MIN_UNIFORMITY: f64 = 0.4;
/// Share of text-like cells in the region minus the share outside it.
pub const SCORE_THRESHOLD: f64 = 0.2;
/// Fewest text-like cells in the flagged region.
const MIN_TEXT_CELLS: usize = 6;

/// A named block of cells: (name, columns start..end, rows start..end).
type Region = (&'static str, (usize, usize), (usize, usize));

/// The detector's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermark {
    pub suspected: bool,
    /// Best region's text-like share minus the rest's, in [-1, 1]; higher is more suspicious.
    pub score: f64,
    /// The best region: "top-left", "top-right", "bottom-left", "bottom-right", "top",
    /// "middle", "bottom"; `None` when the image is too small to judge.
    pub region: Option<&'static str>,
}

/// Runs the heuristic on a working-resolution image (see [`crate::normalise`]).
pub fn watermark(gray: &Gray) -> Watermark {
    let (width, height) = (gray.width as usize, gray.height as usize);
    let (cols, rows) = (width / CELL, height / CELL);
    if cols < 6 || rows < 6 {
        return Watermark {
            suspected: false,
            score: 0.0,
            region: None,
        };
    }
    let text_like = text_like_cells(gray, cols, rows);
    let total = text_like.iter().filter(|&&t| t).count();
    let regions: [Region; 7] = {
        let (c3, r4, r5) = (cols.div_ceil(3), rows.div_ceil(4), rows.div_ceil(8).max(2));
        [
            ("top-left", (0, c3), (0, r4)),
            ("top-right", (cols - c3, cols), (0, r4)),
            ("bottom-left", (0, c3), (rows - r4, rows)),
            ("bottom-right", (cols - c3, cols), (rows - r4, rows)),
            ("top", (0, cols), (0, r5)),
            ("middle", (0, cols), ((rows - r5) / 2, (rows - r5) / 2 + r5)),
            ("bottom", (0, cols), (rows - r5, rows)),
        ]
    };
    let mut best = (f64::NEG_INFINITY, "top-left", 0);
    for (name, (c0, c1), (r0, r1)) in regions {
        let inside_cells = (c1 - c0) * (r1 - r0);
        let inside = (r0..r1)
            .flat_map(|r| (c0..c1).map(move |c| r * cols + c))
            .filter(|&i| text_like[i])
            .count();
        let outside_cells = cols * rows - inside_cells;
        let share_in = inside as f64 / inside_cells as f64;
        let share_out = (total - inside) as f64 / outside_cells.max(1) as f64;
        let score = share_in - share_out;
        if score > best.0 {
            best = (score, name, inside);
        }
    }
    let (score, region, inside) = best;
    Watermark {
        suspected: score >= SCORE_THRESHOLD && inside >= MIN_TEXT_CELLS,
        score,
        region: Some(region),
    }
}

/// Marks each cell (row-major, `cols × rows`) that holds dense single-level thin strokes.
fn text_like_cells(gray: &Gray, cols: usize, rows: usize) -> Vec<bool> {
    let width = gray.width as usize;
    let mut strokes = vec![0u32; cols * rows];
    // Stroke values in 32 levels of 8, per cell.
    let mut levels = vec![[0u32; 32]; cols * rows];
    let at = |x: usize, y: usize| i16::from(gray.pixels[y * width + x]);
    for y in 3..rows * CELL - 3 {
        for x in 3..cols * CELL - 3 {
            let p = at(x, y);
            let mut stroke = false;
            for d in [2, 3] {
                let pairs = [(at(x - d, y), at(x + d, y)), (at(x, y - d), at(x, y + d))];
                for (a, b) in pairs {
                    if p - a.max(b) >= CONTRAST || a.min(b) - p >= CONTRAST {
                        stroke = true;
                    }
                }
            }
            if stroke {
                let cell = (y / CELL) * cols + x / CELL;
                strokes[cell] += 1;
                levels[cell][(p / 8) as usize] += 1;
            }
        }
    }
    let area = (CELL * CELL) as f64;
    strokes
        .iter()
        .zip(&levels)
        .map(|(&count, histogram)| {
            let peak = histogram.windows(2).map(|w| w[0] + w[1]).max().unwrap_or(0);
            count as f64 / area >= MIN_STROKE_DENSITY
                && f64::from(peak) >= MIN_UNIFORMITY * f64::from(count)
        })
        .collect()
}
