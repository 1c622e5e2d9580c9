//! Dense factor matrices and the small vector kernels ALS and top-K are built from.
//!
//! Rows are padded to a `stride` of 16, 32, 48, 64, 96, 128, 192 or 256 floats (the padding
//! is zero and stays zero), so every kernel is compiled for a length known at compile time:
//! loops unroll fully, accumulators live in registers, and bounds checks disappear. Each
//! kernel is also compiled twice, for AVX2+FMA (picked at run time when the CPU has it) and
//! for the portable baseline, without needing `-C target-cpu=native`.
//!
//! Dot products accumulate in 16 fixed lanes summed in a fixed order, so results do not
//! depend on the number of threads.

use thiserror::Error;

/// Strides the kernels are compiled for; a factor count is padded up to the next one.
pub const STRIDES: [usize; 8] = [16, 32, 48, 64, 96, 128, 192, 256];

/// Width of the lane accumulators in dot products.
pub(crate) const LANES: usize = 16;

#[derive(Debug, Error, PartialEq)]
pub enum FactorsError {
    #[error("{factors} factors is unsupported: use 1 to {max}", max = STRIDES[STRIDES.len() - 1])]
    UnsupportedFactorCount { factors: usize },
    #[error("data holds {len} floats, expected {rows} rows × {factors} factors")]
    WrongLength {
        len: usize,
        rows: usize,
        factors: usize,
    },
}

/// The padded stride used for `factors` latent factors.
pub fn stride_for(factors: usize) -> Result<usize, FactorsError> {
    STRIDES
        .iter()
        .copied()
        .find(|&s| s >= factors && factors > 0)
        .ok_or(FactorsError::UnsupportedFactorCount { factors })
}

/// A row-major `rows × factors` matrix of `f32`, each row padded with zeros to `stride`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    rows: usize,
    factors: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Factors {
    /// All zeros.
    pub fn zeros(rows: usize, factors: usize) -> Result<Self, FactorsError> {
        let stride = stride_for(factors)?;
        Ok(Self {
            rows,
            factors,
            stride,
            data: vec![0.0; rows * stride],
        })
    }

    /// From unpadded row-major data (`rows × factors` floats), e.g. factors trained elsewhere.
    pub fn from_rows(rows: usize, factors: usize, data: &[f32]) -> Result<Self, FactorsError> {
        if data.len() != rows * factors {
            return Err(FactorsError::WrongLength {
                len: data.len(),
                rows,
                factors,
            });
        }
        let mut out = Self::zeros(rows, factors)?;
        if factors > 0 {
            for (dst, src) in out
                .data
                .chunks_exact_mut(out.stride)
                .zip(data.chunks_exact(factors))
            {
                dst[..factors].copy_from_slice(src);
            }
        }
        Ok(out)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn factors(&self) -> usize {
        self.factors
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// One row without its padding.
    pub fn row(&self, row: usize) -> &[f32] {
        &self.data[row * self.stride..row * self.stride + self.factors]
    }

    /// One row including its zero padding (`stride` floats).
    pub fn padded_row(&self, row: usize) -> &[f32] {
        &self.data[row * self.stride..(row + 1) * self.stride]
    }

    /// All rows, padded, row-major.
    pub fn padded_data(&self) -> &[f32] {
        &self.data
    }

    pub(crate) fn padded_data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Each row scaled to unit length (zero rows stay zero), for cosine similarity.
    pub fn normalized(&self) -> Self {
        let mut out = self.clone();
        for row in out.data.chunks_exact_mut(self.stride.max(1)) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        out
    }

    /// `selfᵀ · self` as a dense `stride × stride` row-major matrix (the Gram matrix ALS
    /// needs every half-iteration). Summed over fixed chunks of rows in a fixed order, so
    /// the result does not depend on the thread count.
    pub(crate) fn gram(&self) -> Vec<f32> {
        use rayon::prelude::*;
        const CHUNK_ROWS: usize = 8192;
        let s = self.stride;
        let partials: Vec<Vec<f32>> = self
            .data
            .par_chunks(CHUNK_ROWS * s)
            .map(|chunk| {
                let rows = chunk.len() / s;
                let mut c = vec![0f32; s * s];
                // SAFETY: A = chunkᵀ (s × rows, strides 1 and s), B = chunk (rows × s,
                // strides s and 1), C = s × s row-major; all within the slices' bounds.
                unsafe {
                    matrixmultiply::sgemm(
                        s,
                        rows,
                        s,
                        1.0,
                        chunk.as_ptr(),
                        1,
                        s as isize,
                        chunk.as_ptr(),
                        s as isize,
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        s as isize,
                        1,
                    );
                }
                c
            })
            .collect();
        let mut total = vec![0f32; s * s];
        for partial in partials {
            total.iter_mut().zip(partial).for_each(|(t, p)| *t += p);
        }
        total
    }
}

/// The vector kernels, for one instruction set. Implementations are zero-sized tokens;
/// the AVX2 one can only be obtained after the CPU was checked, which is what makes its
/// safe methods sound.
pub(crate) trait Kernels: Copy + Send + Sync {
    /// `a · b`, summed in a fixed order.
    fn dot<const S: usize>(self, a: &[f32; S], b: &[f32; S]) -> f32;
    /// `y += alpha · x`.
    fn axpy<const S: usize>(self, alpha: f32, x: &[f32; S], y: &mut [f32; S]);
    /// `y = x + beta · y`.
    fn xpby<const S: usize>(self, x: &[f32; S], beta: f32, y: &mut [f32; S]);
    /// Hint that `row` will be read soon.
    fn prefetch<const S: usize>(self, row: &[f32; S]);

    /// `out = matrix · x` for a symmetric `S × S` row-major matrix (rows are columns).
    #[inline(always)]
    fn symv<const S: usize>(self, matrix: &[f32], x: &[f32; S], out: &mut [f32; S]) {
        *out = [0.0; S];
        for (c, row) in matrix.chunks_exact(S).take(S).enumerate() {
            let row: &[f32; S] = row.try_into().expect("row of length S");
            self.axpy(x[c], row, out);
        }
    }
}

/// Plain Rust the compiler vectorises for the baseline target (SSE2 on x86-64).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

// Indexed loops over fixed-length arrays are what the vectoriser turns into lane-wise code.
#[allow(clippy::needless_range_loop)]
impl Kernels for Portable {
    #[inline(always)]
    fn dot<const S: usize>(self, a: &[f32; S], b: &[f32; S]) -> f32 {
        let mut acc = [0f32; LANES];
        for chunk in 0..S / LANES {
            for k in 0..LANES {
                let i = chunk * LANES + k;
                acc[k] += a[i] * b[i];
            }
        }
        sum_lanes(acc)
    }

    #[inline(always)]
    fn axpy<const S: usize>(self, alpha: f32, x: &[f32; S], y: &mut [f32; S]) {
        for i in 0..S {
            y[i] += alpha * x[i];
        }
    }

    #[inline(always)]
    fn xpby<const S: usize>(self, x: &[f32; S], beta: f32, y: &mut [f32; S]) {
        for i in 0..S {
            y[i] = x[i] + beta * y[i];
        }
    }

    #[inline(always)]
    fn prefetch<const S: usize>(self, _row: &[f32; S]) {}
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn sum_lanes(acc: [f32; LANES]) -> f32 {
    let mut half = [0f32; LANES / 2];
    for k in 0..LANES / 2 {
        half[k] = acc[k] + acc[k + LANES / 2];
    }
    let mut quarter = [0f32; LANES / 4];
    for k in 0..LANES / 4 {
        quarter[k] = half[k] + half[k + LANES / 4];
    }
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2Fma;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Kernels;

    /// Proof that the CPU has AVX2 and FMA: only [`Avx2Fma::detect`] makes one.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx2Fma(());

    impl Avx2Fma {
        pub(crate) fn detect() -> Option<Self> {
            (std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
                .then_some(Self(()))
        }
    }

    // The methods are meant to be inlined into `#[target_feature(enable = "avx2,fma")]`
    // functions (see `als::solve_rows_avx2`), where the intrinsics become single
    // instructions. SAFETY (all blocks below): a value of `Avx2Fma` exists only if the CPU
    // has AVX2 and FMA; every load and store is of 8 floats at an offset `i` with
    // `i + 8 <= S`, inside arrays of length `S` (S is a multiple of 16).
    impl Kernels for Avx2Fma {
        #[inline(always)]
        fn dot<const S: usize>(self, a: &[f32; S], b: &[f32; S]) -> f32 {
            unsafe {
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let mut acc0 = _mm256_setzero_ps();
                let mut acc1 = _mm256_setzero_ps();
                let mut i = 0;
                while i < S {
                    acc0 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(i)),
                        _mm256_loadu_ps(pb.add(i)),
                        acc0,
                    );
                    acc1 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(i + 8)),
                        _mm256_loadu_ps(pb.add(i + 8)),
                        acc1,
                    );
                    i += 16;
                }
                let v = _mm256_add_ps(acc0, acc1);
                let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
                let v = _mm_add_ss(v, _mm_movehdup_ps(v));
                _mm_cvtss_f32(v)
            }
        }

        #[inline(always)]
        fn axpy<const S: usize>(self, alpha: f32, x: &[f32; S], y: &mut [f32; S]) {
            unsafe {
                let a = _mm256_set1_ps(alpha);
                let (px, py) = (x.as_ptr(), y.as_mut_ptr());
                let mut i = 0;
                while i < S {
                    let v =
                        _mm256_fmadd_ps(a, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
                    _mm256_storeu_ps(py.add(i), v);
                    i += 8;
                }
            }
        }

        #[inline(always)]
        fn xpby<const S: usize>(self, x: &[f32; S], beta: f32, y: &mut [f32; S]) {
            unsafe {
                let b = _mm256_set1_ps(beta);
                let (px, py) = (x.as_ptr(), y.as_mut_ptr());
                let mut i = 0;
                while i < S {
                    let v =
                        _mm256_fmadd_ps(b, _mm256_loadu_ps(py.add(i)), _mm256_loadu_ps(px.add(i)));
                    _mm256_storeu_ps(py.add(i), v);
                    i += 8;
                }
            }
        }

        #[inline(always)]
        fn prefetch<const S: usize>(self, row: &[f32; S]) {
            let p = row.as_ptr() as *const i8;
            let mut offset = 0;
            while offset < S * 4 {
                // SAFETY: a prefetch never faults; the address is inside `row`.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(offset)) };
                offset += 64;
            }
        }
    }
}

/// The kernels this CPU runs best.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma(Avx2Fma),
    Portable,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(kernels) = Avx2Fma::detect() {
            return Isa::Avx2Fma(kernels);
        }
        Isa::Portable
    }
}

/// Row `index` of a padded matrix as a fixed-size array.
#[inline(always)]
pub(crate) fn fixed_row<const S: usize>(data: &[f32], index: usize) -> &[f32; S] {
    data[index * S..index * S + S]
        .try_into()
        .expect("slice of length S")
}

/// Calls `$func::<..., S>(args)` with the const stride matching a runtime stride.
macro_rules! with_stride {
    ($stride:expr, $func:ident :: < $($generic:ty),* > ( $($arg:expr),* $(,)? )) => {
        match $stride {
            16 => $func::<$($generic,)* 16>($($arg),*),
            32 => $func::<$($generic,)* 32>($($arg),*),
            48 => $func::<$($generic,)* 48>($($arg),*),
            64 => $func::<$($generic,)* 64>($($arg),*),
            96 => $func::<$($generic,)* 96>($($arg),*),
            128 => $func::<$($generic,)* 128>($($arg),*),
            192 => $func::<$($generic,)* 192>($($arg),*),
            256 => $func::<$($generic,)* 256>($($arg),*),
            other => unreachable!("stride {other} is not one of dense::STRIDES"),
        }
    };
}
pub(crate) use with_stride;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_rows_and_keeps_values() {
        let f = Factors::from_rows(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(f.stride(), 16);
        assert_eq!(f.row(1), &[4.0, 5.0, 6.0]);
        assert!(f.padded_row(1)[3..].iter().all(|&v| v == 0.0));
        assert_eq!(stride_for(64), Ok(64));
        assert_eq!(stride_for(65), Ok(96));
        assert!(stride_for(0).is_err());
        assert!(stride_for(257).is_err());
    }

    #[test]
    fn gram_matches_naive_product() {
        let rows = 20_000; // spans several chunks
        let data: Vec<f32> = (0..rows * 5)
            .map(|i| ((i * 7919) % 13) as f32 - 6.0)
            .collect();
        let f = Factors::from_rows(rows, 5, &data).unwrap();
        let g = f.gram();
        for a in 0..5 {
            for b in 0..5 {
                let naive: f64 = (0..rows)
                    .map(|r| data[r * 5 + a] as f64 * data[r * 5 + b] as f64)
                    .sum();
                assert!((g[a * 16 + b] as f64 - naive).abs() < 1e-3 * naive.abs().max(1.0));
            }
        }
        assert_eq!(g[5 * 16 + 5], 0.0);
    }

    fn check_kernels(k: impl Kernels) {
        let a: [f32; 32] = std::array::from_fn(|i| i as f32 * 0.5 - 3.0);
        let b: [f32; 32] = std::array::from_fn(|i| 1.0 - i as f32 * 0.25);
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((k.dot(&a, &b) - expected).abs() < 1e-3);
        let mut y = b;
        k.axpy(2.0, &a, &mut y);
        assert_eq!(y[3], b[3] + 2.0 * a[3]);
        let mut y = b;
        k.xpby(&a, 0.5, &mut y);
        assert_eq!(y[5], a[5] + 0.5 * b[5]);
        let identity: Vec<f32> = (0..32 * 32)
            .map(|i| if i % 33 == 0 { 2.0 } else { 0.0 })
            .collect();
        let mut out = [0f32; 32];
        k.symv(&identity, &a, &mut out);
        assert_eq!(out[7], 2.0 * a[7]);
    }

    #[test]
    fn kernels_agree_with_scalar_code() {
        check_kernels(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = Avx2Fma::detect() {
            check_kernels(k);
        }
    }
}
