//! Sharpness: the variance of the Laplacian, bit-for-bit OpenCV's
//! `cv2.Laplacian(gray, cv2.CV_64F).var()` (ksize 1, kernel `[0 1 0; 1 -4 1; 0 1 0]`,
//! `BORDER_REFLECT_101`), computed with exact integer sums.

use crate::Gray;

/// Pixels per accumulation block: `1024 · 1020²` still fits an `i32` sum of squares, which
/// lets the compiler keep the inner loop in 32-bit vector lanes.
const BLOCK: usize = 1024;

/// Variance of the Laplacian over every pixel; higher is sharper. 0 for an empty image.
pub fn blur_score(gray: &Gray) -> f64 {
    let (width, height) = (gray.width as usize, gray.height as usize);
    if width == 0 || height == 0 || gray.pixels.len() != width * height {
        return 0.0;
    }
    let (sum, sum_of_squares) = laplacian_sums(gray);
    let n = (width * height) as i128;
    // n·Σl² − (Σl)² is exact in i128; one rounding when it becomes f64.
    let numerator = n * i128::from(sum_of_squares) - i128::from(sum) * i128::from(sum);
    numerator as f64 / (n * n) as f64
}

fn laplacian_sums(gray: &Gray) -> (i64, i64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { laplacian_sums_avx2(gray) };
    }
    laplacian_sums_portable(gray)
}

/// The same code compiled for AVX2 (the baseline x86-64 build only has SSE2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn laplacian_sums_avx2(gray: &Gray) -> (i64, i64) {
    laplacian_sums_portable(gray)
}

/// `BORDER_REFLECT_101`: -1 → 1, n → n − 2 (and 0 for a single row or column).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        0
    } else if i < 0 {
        i.unsigned_abs()
    } else if i as usize >= n {
        2 * n - 2 - i as usize
    } else {
        i as usize
    }
}

#[inline(always)]
fn laplacian_sums_portable(gray: &Gray) -> (i64, i64) {
    let (width, height) = (gray.width as usize, gray.height as usize);
    let (mut sum, mut sum_of_squares) = (0i64, 0i64);
    for y in 0..height {
        let up = gray.row(reflect(y as isize - 1, height));
        let row = gray.row(y);
        let down = gray.row(reflect(y as isize + 1, height));
        let at = |x: usize| i32::from(row[x]);
        let vertical = |x: usize| i32::from(up[x]) + i32::from(down[x]);
        // The two border columns, reflected.
        let left = reflect(-1, width);
        let right = reflect(width as isize, width);
        let mut borders = [vertical(0) + at(left) + at(1.min(width - 1)) - 4 * at(0), 0];
        if width > 1 {
            let last = width - 1;
            borders[1] = vertical(last) + at(last - 1) + at(right) - 4 * at(last);
        }
        for l in borders {
            sum += i64::from(l);
            sum_of_squares += i64::from(l * l);
        }
        if width > 2 {
            let (s, q) = interior_sums(up, row, down);
            sum += s;
            sum_of_squares += q;
        }
    }
    (sum, sum_of_squares)
}

/// Σl and Σl² over columns 1..width−1 of one row, in blocks the compiler vectorises.
#[inline(always)]
fn interior_sums(up: &[u8], row: &[u8], down: &[u8]) -> (i64, i64) {
    let n = row.len() - 2;
    let (up, down, centre) = (&up[1..=n], &down[1..=n], &row[1..=n]);
    let (left, right) = (&row[..n], &row[2..]);
    let (mut sum, mut sum_of_squares) = (0i64, 0i64);
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let (mut s, mut q) = (0i32, 0i32);
        for ((((&u, &d), &l), &r), &c) in up[start..end]
            .iter()
            .zip(&down[start..end])
            .zip(&left[start..end])
            .zip(&right[start..end])
            .zip(&centre[start..end])
        {
            let lap = i32::from(u) + i32::from(d) + i32::from(l) + i32::from(r) - 4 * i32::from(c);
            s += lap;
            q += lap * lap;
        }
        sum += i64::from(s);
        sum_of_squares += i64::from(q);
    }
    (sum, sum_of_squares)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, written plainly with f64 as numpy would compute it.
    fn reference(gray: &Gray) -> f64 {
        let (w, h) = (gray.width as usize, gray.height as usize);
        let p = |x: isize, y: isize| f64::from(gray.pixels[reflect(y, h) * w + reflect(x, w)]);
        let mut values = Vec::new();
        for y in 0..h as isize {
            for x in 0..w as isize {
                values.push(p(x - 1, y) + p(x + 1, y) + p(x, y - 1) + p(x, y + 1) - 4.0 * p(x, y));
            }
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64
    }

    fn noise(width: u32, height: u32, seed: u64) -> Gray {
        let mut state = seed;
        let pixels = (0..width * height)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        Gray {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn matches_the_definition_on_every_shape() {
        for (w, h) in [
            (1, 1),
            (1, 5),
            (5, 1),
            (2, 2),
            (3, 7),
            (64, 3),
            (1500, 4),
            (2100, 9),
        ] {
            let g = noise(w, h, u64::from(w * 31 + h));
            let (ours, theirs) = (blur_score(&g), reference(&g));
            assert!(
                (ours - theirs).abs() <= 1e-9 * theirs.max(1.0),
                "{w}x{h}: {ours} vs {theirs}"
            );
        }
    }

    #[test]
    fn flat_images_score_zero_and_noise_scores_high() {
        let flat = Gray {
            width: 10,
            height: 10,
            pixels: vec![77; 100],
        };
        assert_eq!(blur_score(&flat), 0.0);
        assert!(blur_score(&noise(100, 100, 1)) > 10_000.0);
        let empty = Gray {
            width: 0,
            height: 0,
            pixels: vec![],
        };
        assert_eq!(blur_score(&empty), 0.0);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        // A checkerboard of 0/255 gives |l| = 1020 everywhere inside: the largest l².
        let (w, h) = (3000u32, 3);
        let pixels = (0..w * h)
            .map(|i| if (i % w + i / w) % 2 == 0 { 255 } else { 0 })
            .collect();
        let g = Gray {
            width: w,
            height: h,
            pixels,
        };
        let (ours, theirs) = (blur_score(&g), reference(&g));
        assert!((ours - theirs).abs() <= 1e-9 * theirs, "{ours} vs {theirs}");
    }
}
