//! The 8-bit grayscale image every measure works on, and the working-resolution downscale.

use std::borrow::Cow;

/// An 8-bit grayscale image, row-major, `pixels.len() == width * height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gray {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl Gray {
    /// A row of the image; `y < height`.
    pub(crate) fn row(&self, y: usize) -> &[u8] {
        let width = self.width as usize;
        &self.pixels[y * width..(y + 1) * width]
    }
}

/// The working resolution: when the long side is over `max_side`, an integer-factor box
/// downscale by `f = ceil(long / max_side)`, after cropping the right and bottom remainders
/// (`width % f`, `height % f`). Bit-identical to cropping the same way and calling
/// `cv2.resize(..., (w // f, h // f), interpolation=cv2.INTER_AREA)` (OpenCV's fast area
/// path: `(sum + 2) >> 2` for f = 2, round-half-even of `sum * (1/f²)` in `f32` otherwise).
/// Images already small enough are borrowed unchanged.
pub fn normalise(gray: &Gray, max_side: u32) -> Cow<'_, Gray> {
    let long = gray.width.max(gray.height);
    let max_side = max_side.max(1);
    if long <= max_side {
        return Cow::Borrowed(gray);
    }
    let factor = long.div_ceil(max_side) as usize;
    let (out_w, out_h) = (gray.width as usize / factor, gray.height as usize / factor);
    let mut out = vec![0u8; out_w * out_h];
    let mut sums = vec![0u32; out_w];
    let inverse_area = 1.0f32 / (factor * factor) as f32;
    for (oy, out_row) in out.chunks_exact_mut(out_w.max(1)).enumerate().take(out_h) {
        sums.fill(0);
        for dy in 0..factor {
            let row = &gray.row(oy * factor + dy)[..out_w * factor];
            for (sum, block) in sums.iter_mut().zip(row.chunks_exact(factor)) {
                *sum += block.iter().map(|&p| u32::from(p)).sum::<u32>();
            }
        }
        if factor == 2 {
            for (o, &s) in out_row.iter_mut().zip(&sums) {
                *o = ((s + 2) >> 2) as u8;
            }
        } else {
            for (o, &s) in out_row.iter_mut().zip(&sums) {
                *o = (s as f32 * inverse_area).round_ties_even().min(255.0) as u8;
            }
        }
    }
    Cow::Owned(Gray {
        width: out_w as u32,
        height: out_h as u32,
        pixels: out,
    })
}

/// The image as displayed for an EXIF orientation (1..=8); other values leave it as is.
pub(crate) fn orient(gray: &Gray, orientation: u8) -> Cow<'_, Gray> {
    if !(2..=8).contains(&orientation) {
        return Cow::Borrowed(gray);
    }
    let (w, h) = (gray.width as usize, gray.height as usize);
    let transposed = orientation >= 5;
    let (out_w, out_h) = if transposed { (h, w) } else { (w, h) };
    let mut pixels = vec![0u8; w * h];
    for oy in 0..out_h {
        for ox in 0..out_w {
            // Where the displayed pixel (ox, oy) is stored.
            let (sx, sy) = match orientation {
                2 => (w - 1 - ox, oy),
                3 => (w - 1 - ox, h - 1 - oy),
                4 => (ox, h - 1 - oy),
                5 => (oy, ox),
                6 => (oy, h - 1 - ox),
                7 => (w - 1 - oy, h - 1 - ox),
                _ => (w - 1 - oy, ox),
            };
            pixels[oy * out_w + ox] = gray.pixels[sy * w + sx];
        }
    }
    Cow::Owned(Gray {
        width: out_w as u32,
        height: out_h as u32,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, f: impl Fn(u32, u32) -> u8) -> Gray {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Gray {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn small_images_are_borrowed() {
        let g = image(100, 50, |x, y| (x + y) as u8);
        assert!(matches!(normalise(&g, 100), Cow::Borrowed(_)));
    }

    #[test]
    fn factor_two_rounds_half_up_and_crops_the_remainder() {
        // 5x3 with max side 2: f = 3, the 3x3 block is kept, the rest cropped.
        let g = image(5, 3, |x, _| [3u8, 3, 3, 200, 200][x as usize]);
        let n = normalise(&g, 2);
        assert_eq!((n.width, n.height, n.pixels[0]), (1, 1, 3));
        let g = image(4, 2, |x, _| [0u8, 1, 1, 1][x as usize]);
        let n = normalise(&g, 2);
        assert_eq!((n.width, n.height), (2, 1));
        // Sums 2 and 4: (2+2)>>2 = 1 (half rounds up), (4+2)>>2 = 1.
        assert_eq!(n.pixels, vec![1, 1]);
    }

    #[test]
    fn factor_four_rounds_half_to_even() {
        // A 4x4 block summing to 8 + 16k: 8/16 = 0.5 → 0, 24/16 = 1.5 → 2.
        let half = image(4, 4, |x, y| u8::from(x + y * 4 < 8));
        assert_eq!(normalise(&half, 1).pixels, vec![0]);
        let one_and_half = image(4, 4, |x, y| if x + y * 4 < 8 { 2 } else { 1 });
        assert_eq!(normalise(&one_and_half, 1).pixels, vec![2]);
    }

    #[test]
    fn orientation_six_rotates_clockwise() {
        // Stored 3x2: a b c / d e f. Orientation 6 displays it rotated 90° clockwise:
        // d a / e b / f c.
        let g = Gray {
            width: 3,
            height: 2,
            pixels: vec![1, 2, 3, 4, 5, 6],
        };
        let o = orient(&g, 6);
        assert_eq!((o.width, o.height), (2, 3));
        assert_eq!(o.pixels, vec![4, 1, 5, 2, 6, 3]);
        assert_eq!(orient(&g, 3).pixels, vec![6, 5, 4, 3, 2, 1]);
        assert_eq!(orient(&g, 8).pixels, vec![3, 6, 2, 5, 1, 4]);
    }
}
