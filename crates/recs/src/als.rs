//! Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren &
//! Volinsky 2008), solved with a few conjugate-gradient steps per row (Takács et al. 2011),
//! the way the `implicit` library's CPU ALS does.
//!
//! Every stored interaction of weight `r` is a preference `p = 1` with confidence
//! `c = 1 + alpha·r`; every absent pair is `p = 0` with confidence 1. Each half-iteration fixes
//! one side's factors `Y` and, for every row `u`, moves `x_u` towards the minimiser of
//! `Σ_i c_ui (p_ui − x_u·y_i)² + reg·|x_u|²`, i.e. towards the solution of
//! `(YᵀY + reg·I + Σ_{i∈u} (c_ui − 1) y_i y_iᵀ) x_u = Σ_{i∈u} c_ui y_i`.
//! `YᵀY + reg·I` is shared by all rows and computed once; the per-row terms are applied
//! without ever forming the matrix, so a CG step costs `O(nnz_u · factors + factors²)`.
//! CG starts from the previous iteration's `x_u`, which is why three steps are enough.
//!
//! Guarantees: the result depends only on the inputs and `seed`, not on the thread count
//! (rows are solved independently and every reduction has a fixed order).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use thiserror::Error;

#[cfg(target_arch = "x86_64")]
use crate::dense::Avx2Fma;
use crate::dense::{fixed_row, with_stride, Factors, FactorsError, Isa, Kernels, Portable};
use crate::matrix::CsrMatrix;

/// Hyperparameters of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct AlsParams {
    /// Number of latent factors (1..=256).
    pub factors: usize,
    /// L2 penalty on every factor vector (`reg` above).
    pub regularization: f32,
    /// Confidence slope: `c = 1 + alpha·r`.
    pub alpha: f32,
    /// Full iterations (a user half and an item half each).
    pub iterations: usize,
    /// Conjugate-gradient steps per row per half-iteration.
    pub cg_steps: usize,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Seed of the random initial factors.
    pub seed: u64,
    /// Compute the training loss after each iteration (costs about one extra half-iteration).
    pub compute_loss: bool,
}

impl Default for AlsParams {
    fn default() -> Self {
        Self {
            factors: 64,
            regularization: 0.05,
            alpha: 10.0,
            iterations: 15,
            cg_steps: 3,
            threads: 0,
            seed: 42,
            compute_loss: false,
        }
    }
}

#[derive(Debug, Error)]
pub enum AlsError {
    #[error(transparent)]
    Factors(#[from] FactorsError),
    #[error("regularization must be finite and > 0, got {0}")]
    Regularization(f32),
    #[error("alpha must be finite and >= 0, got {0}")]
    Alpha(f32),
    #[error("could not start the worker threads")]
    ThreadPool(#[source] rayon::ThreadPoolBuildError),
}

/// What one iteration cost, reported as training goes.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationStats {
    /// 0-based.
    pub iteration: usize,
    /// Wall time of the two half-iterations (loss computation excluded).
    pub elapsed: Duration,
    /// `implicit`'s normalised training loss, when `compute_loss` is set.
    pub loss: Option<f64>,
}

/// Trained user and item factors; `score(u, i) = user_factors[u] · item_factors[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlsModel {
    pub user_factors: Factors,
    pub item_factors: Factors,
}

impl AlsModel {
    pub fn score(&self, user: usize, item: usize) -> f32 {
        self.user_factors
            .row(user)
            .iter()
            .zip(self.item_factors.row(item))
            .map(|(a, b)| a * b)
            .sum()
    }
}

/// Trains on a users × items matrix of interaction weights, calling `on_iteration` after
/// each iteration.
pub fn train(
    user_items: &CsrMatrix,
    params: &AlsParams,
    mut on_iteration: impl FnMut(&IterationStats),
) -> Result<AlsModel, AlsError> {
    if !(params.regularization.is_finite() && params.regularization > 0.0) {
        return Err(AlsError::Regularization(params.regularization));
    }
    if !(params.alpha.is_finite() && params.alpha >= 0.0) {
        return Err(AlsError::Alpha(params.alpha));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.threads)
        .build()
        .map_err(AlsError::ThreadPool)?;
    let item_users = user_items.transpose();
    let mut model = AlsModel {
        user_factors: random_factors(user_items.rows(), params.factors, params.seed)?,
        item_factors: random_factors(user_items.cols(), params.factors, params.seed ^ 0x5EED)?,
    };
    let isa = Isa::detect();
    for iteration in 0..params.iterations {
        let started = Instant::now();
        pool.install(|| {
            solve_side(
                isa,
                user_items,
                &mut model.user_factors,
                &model.item_factors,
                params,
            );
            solve_side(
                isa,
                &item_users,
                &mut model.item_factors,
                &model.user_factors,
                params,
            );
        });
        let elapsed = started.elapsed();
        let loss = params
            .compute_loss
            .then(|| pool.install(|| training_loss_with(isa, user_items, &model, params)));
        on_iteration(&IterationStats {
            iteration,
            elapsed,
            loss,
        });
    }
    Ok(model)
}

/// `implicit`'s initialisation: uniform in [0, 0.01).
fn random_factors(rows: usize, factors: usize, seed: u64) -> Result<Factors, FactorsError> {
    let mut out = Factors::zeros(rows, factors)?;
    let stride = out.stride();
    let mut rng = StdRng::seed_from_u64(seed);
    for row in out.padded_data_mut().chunks_exact_mut(stride) {
        for v in &mut row[..factors] {
            *v = rng.random::<f32>() * 0.01;
        }
    }
    Ok(out)
}

/// Rows per parallel task: small enough to balance skewed row lengths, large enough to
/// amortise scheduling.
const ROWS_PER_TASK: usize = 64;

/// Everything one half-iteration reads.
struct HalfStep<'a> {
    rows: &'a CsrMatrix,
    other: &'a [f32],
    /// `YᵀY + reg·I`, `stride × stride`.
    gram: &'a [f32],
    alpha: f32,
    cg_steps: usize,
}

/// Re-solves every row of `x` against the fixed factors `y`.
fn solve_side(isa: Isa, rows: &CsrMatrix, x: &mut Factors, y: &Factors, params: &AlsParams) {
    let stride = x.stride();
    let mut gram = y.gram();
    for f in 0..x.factors() {
        gram[f * stride + f] += params.regularization;
    }
    let step = HalfStep {
        rows,
        other: y.padded_data(),
        gram: &gram,
        alpha: params.alpha,
        cg_steps: params.cg_steps,
    };
    x.padded_data_mut()
        .par_chunks_mut(ROWS_PER_TASK * stride)
        .enumerate()
        .for_each(|(task, chunk)| {
            let first_row = task * ROWS_PER_TASK;
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: an `Avx2Fma` token exists only on CPUs with AVX2 and FMA.
                Isa::Avx2Fma(k) => unsafe { solve_rows_avx2(k, stride, &step, first_row, chunk) },
                Isa::Portable => with_stride!(
                    stride,
                    solve_rows::<Portable>(Portable, &step, first_row, chunk)
                ),
            }
        });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn solve_rows_avx2(
    k: Avx2Fma,
    stride: usize,
    step: &HalfStep,
    first_row: usize,
    chunk: &mut [f32],
) {
    with_stride!(stride, solve_rows::<Avx2Fma>(k, step, first_row, chunk))
}

#[inline(always)]
fn solve_rows<K: Kernels, const S: usize>(
    k: K,
    step: &HalfStep,
    first_row: usize,
    chunk: &mut [f32],
) {
    for (offset, x) in chunk.chunks_exact_mut(S).enumerate() {
        let x: &mut [f32; S] = x.try_into().expect("row of length S");
        let (columns, values) = step.rows.row(first_row + offset);
        solve_row::<K, S>(k, step, columns, values, x);
    }
}

/// Confidence and preference of a stored weight (non-positive weights count as "seen but
/// not wanted", as in `implicit`).
#[inline(always)]
fn confidence(alpha: f32, weight: f32) -> (f32, f32) {
    let c = 1.0 + alpha * weight.abs();
    (c, if weight > 0.0 { 1.0 } else { 0.0 })
}

/// How many interactions ahead the first pass over a row prefetches factor rows: those
/// rows are scattered in memory and this pass is where they are first touched.
const PREFETCH_AHEAD: usize = 4;

/// A few CG steps on `A x = b` for one row, starting from the current `x`.
#[inline(always)]
fn solve_row<K: Kernels, const S: usize>(
    k: K,
    step: &HalfStep,
    columns: &[u32],
    values: &[f32],
    x: &mut [f32; S],
) {
    if columns.is_empty() {
        *x = [0.0; S];
        return;
    }
    let y = step.other;
    for &column in columns.iter().take(PREFETCH_AHEAD) {
        k.prefetch(fixed_row::<S>(y, column as usize));
    }
    // r = b − A·x
    let mut r = [0f32; S];
    k.symv(step.gram, x, &mut r);
    r.iter_mut().for_each(|v| *v = -*v);
    for (j, (&column, &weight)) in columns.iter().zip(values).enumerate() {
        if let Some(&ahead) = columns.get(j + PREFETCH_AHEAD) {
            k.prefetch(fixed_row::<S>(y, ahead as usize));
        }
        let (c, p) = confidence(step.alpha, weight);
        let yi = fixed_row::<S>(y, column as usize);
        let t = c * p - (c - 1.0) * k.dot(yi, x);
        k.axpy(t, yi, &mut r);
    }
    let mut p = r;
    let mut rs_old = k.dot(&r, &r);
    if rs_old < 1e-20 {
        return;
    }
    let mut ap = [0f32; S];
    for _ in 0..step.cg_steps {
        k.symv(step.gram, &p, &mut ap);
        for (&column, &weight) in columns.iter().zip(values) {
            let (c, _) = confidence(step.alpha, weight);
            let yi = fixed_row::<S>(y, column as usize);
            k.axpy((c - 1.0) * k.dot(yi, &p), yi, &mut ap);
        }
        let step_size = rs_old / k.dot(&p, &ap);
        k.axpy(step_size, &p, x);
        k.axpy(-step_size, &ap, &mut r);
        let rs_new = k.dot(&r, &r);
        if rs_new < 1e-20 {
            break;
        }
        k.xpby(&r, rs_new / rs_old, &mut p);
        rs_old = rs_new;
    }
}

/// `implicit`'s training loss: `Σ_ui c_ui (p_ui − x_u·y_i)² + reg (Σ|x_u|² + Σ|y_i|²)`
/// divided by the total confidence `Σ c_ui` over all user × item pairs.
pub fn training_loss(user_items: &CsrMatrix, model: &AlsModel, params: &AlsParams) -> f64 {
    training_loss_with(Isa::detect(), user_items, model, params)
}

fn training_loss_with(
    isa: Isa,
    user_items: &CsrMatrix,
    model: &AlsModel,
    params: &AlsParams,
) -> f64 {
    let x = &model.user_factors;
    let y = &model.item_factors;
    let stride = x.stride();
    let gram = y.gram();
    let step = HalfStep {
        rows: user_items,
        other: y.padded_data(),
        gram: &gram,
        alpha: params.alpha,
        cg_steps: 0,
    };
    let partials: Vec<(f64, f64)> = x
        .padded_data()
        .par_chunks(ROWS_PER_TASK * stride)
        .enumerate()
        .map(|(task, chunk)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `solve_side`.
            Isa::Avx2Fma(k) => unsafe {
                loss_rows_avx2(k, stride, &step, task * ROWS_PER_TASK, chunk)
            },
            Isa::Portable => with_stride!(
                stride,
                loss_rows::<Portable>(Portable, &step, task * ROWS_PER_TASK, chunk)
            ),
        })
        .collect();
    let (mut loss, mut total_confidence) = (0f64, 0f64);
    for (l, c) in partials {
        loss += l;
        total_confidence += c;
    }
    let norms = |f: &Factors| -> f64 {
        f.padded_data()
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum()
    };
    loss += f64::from(params.regularization) * (norms(x) + norms(y));
    let unobserved = (user_items.rows() * user_items.cols() - user_items.nnz()) as f64;
    loss / (total_confidence + unobserved)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn loss_rows_avx2(
    k: Avx2Fma,
    stride: usize,
    step: &HalfStep,
    first_row: usize,
    chunk: &[f32],
) -> (f64, f64) {
    with_stride!(stride, loss_rows::<Avx2Fma>(k, step, first_row, chunk))
}

/// Per row: `x·YᵀY·x + Σ_{i∈u} [(c−1)(x·y_i)² − 2 c p (x·y_i) + c p²]`, and `Σ c`.
#[inline(always)]
fn loss_rows<K: Kernels, const S: usize>(
    k: K,
    step: &HalfStep,
    first_row: usize,
    chunk: &[f32],
) -> (f64, f64) {
    let (mut loss, mut total_confidence) = (0f64, 0f64);
    let mut r = [0f32; S];
    for (offset, x) in chunk.chunks_exact(S).enumerate() {
        let x: &[f32; S] = x.try_into().expect("row of length S");
        k.symv(step.gram, x, &mut r);
        loss += f64::from(k.dot(&r, x));
        let (columns, values) = step.rows.row(first_row + offset);
        for (&column, &weight) in columns.iter().zip(values) {
            let (c, p) = confidence(step.alpha, weight);
            let score = k.dot(fixed_row::<S>(step.other, column as usize), x);
            loss += f64::from((c - 1.0) * score * score - 2.0 * c * p * score + c * p * p);
            total_confidence += f64::from(c);
        }
    }
    (loss, total_confidence)
}

#[cfg(test)]
mod tests;
