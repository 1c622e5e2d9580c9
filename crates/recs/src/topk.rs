//! The K best targets per query by dot product, for every query at once: "recommended for
//! you" (users against items) and "similar items" (items against items, cosine).
//!
//! Exact, not approximate: a block of 256 queries is multiplied against blocks of 512
//! targets with a packed SGEMM (`matrixmultiply`, AVX2+FMA when the CPU has it), so the score
//! block stays in L2, and each query's running top-K is updated from the block with a cheap
//! vectorisable "anything above the current K-th score?" test before any insertion. Blocks of
//! queries run in parallel. Globally excluded targets (out of stock) are dropped from the
//! target matrix before multiplying; per-query exclusions (already bought, the item itself)
//! are masked in the score block.
//!
//! Guarantees: lists are sorted by score descending, ties broken by the lower id; no
//! excluded id ever appears; a list is shorter than K only when fewer targets remain.

use rayon::prelude::*;
use thiserror::Error;

use crate::als::AlsModel;
use crate::dense::Factors;
use crate::matrix::CsrMatrix;

const QUERY_BLOCK: usize = 256;
const TARGET_BLOCK: usize = 512;

#[derive(Debug, Error)]
pub enum TopKError {
    #[error("queries have {queries} factors but targets have {targets}")]
    FactorMismatch { queries: usize, targets: usize },
    #[error("query row {row} out of range ({rows} rows)")]
    QueryOutOfRange { row: u32, rows: usize },
    #[error("could not start the worker threads")]
    ThreadPool(#[source] rayon::ThreadPoolBuildError),
}

/// One ranked list of up to `k` `(id, score)` per query, stored flat.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedLists {
    k: usize,
    ids: Vec<u32>,
    scores: Vec<f32>,
    lens: Vec<u32>,
}

impl RankedLists {
    /// From per-query lists already sorted best first (each truncated to `k`).
    pub fn from_lists(k: usize, lists: impl IntoIterator<Item = Vec<(u32, f32)>>) -> Self {
        let mut out = Self {
            k,
            ids: Vec::new(),
            scores: Vec::new(),
            lens: Vec::new(),
        };
        for list in lists {
            out.push(&list);
        }
        out
    }

    fn push(&mut self, list: &[(u32, f32)]) {
        let len = list.len().min(self.k);
        for slot in 0..self.k {
            let (id, score) = list.get(slot).copied().unwrap_or((u32::MAX, f32::NAN));
            self.ids.push(id);
            self.scores.push(score);
        }
        self.lens.push(len as u32);
    }

    /// Number of lists (queries).
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Ids of list `query`, best first.
    pub fn ids(&self, query: usize) -> &[u32] {
        &self.ids[query * self.k..query * self.k + self.lens[query] as usize]
    }

    /// Scores of list `query`, aligned with [`RankedLists::ids`].
    pub fn scores(&self, query: usize) -> &[f32] {
        &self.scores[query * self.k..query * self.k + self.lens[query] as usize]
    }
}

/// Which targets a query must not be offered, besides the global list.
#[derive(Debug, Clone, Copy)]
pub enum QueryExclusions<'a> {
    None,
    /// Query row `r` excludes the columns of row `r` of this matrix (e.g. items bought).
    Rows(&'a CsrMatrix),
    /// Query row `r` excludes target `r` (an item is not "similar" to itself).
    SameIndex,
}

/// Top `k` items for every user, skipping what each user bought (`bought`, users × items)
/// and items no one can buy (`unavailable`).
pub fn recommend_all(
    model: &AlsModel,
    k: usize,
    bought: Option<&CsrMatrix>,
    unavailable: &[u32],
    threads: usize,
) -> Result<RankedLists, TopKError> {
    let users: Vec<u32> = (0..model.user_factors.rows() as u32).collect();
    recommend_users(model, &users, k, bought, unavailable, threads)
}

/// Like [`recommend_all`] for the listed users only; list `n` belongs to `users[n]`.
pub fn recommend_users(
    model: &AlsModel,
    users: &[u32],
    k: usize,
    bought: Option<&CsrMatrix>,
    unavailable: &[u32],
    threads: usize,
) -> Result<RankedLists, TopKError> {
    let exclusions = bought.map_or(QueryExclusions::None, QueryExclusions::Rows);
    top_k(
        &model.user_factors,
        users,
        &model.item_factors,
        k,
        exclusions,
        unavailable,
        threads,
    )
}

/// The `k` items most similar to each listed item by cosine of their factors, never the
/// item itself nor an `unavailable` one; list `n` belongs to `items[n]`.
pub fn similar_items(
    item_factors: &Factors,
    items: &[u32],
    k: usize,
    unavailable: &[u32],
    threads: usize,
) -> Result<RankedLists, TopKError> {
    let normalized = item_factors.normalized();
    top_k(
        &normalized,
        items,
        &normalized,
        k,
        QueryExclusions::SameIndex,
        unavailable,
        threads,
    )
}

/// The general engine: for each `query_rows[n]`, the `k` targets with the highest
/// `queries[row] · targets[t]`, minus exclusions. `threads` 0 means one per core.
pub fn top_k(
    queries: &Factors,
    query_rows: &[u32],
    targets: &Factors,
    k: usize,
    per_query: QueryExclusions,
    global: &[u32],
    threads: usize,
) -> Result<RankedLists, TopKError> {
    if queries.stride() != targets.stride() || queries.factors() != targets.factors() {
        return Err(TopKError::FactorMismatch {
            queries: queries.factors(),
            targets: targets.factors(),
        });
    }
    if let Some(&row) = query_rows.iter().find(|&&r| r as usize >= queries.rows()) {
        return Err(TopKError::QueryOutOfRange {
            row,
            rows: queries.rows(),
        });
    }
    let eligible = Eligible::new(targets, global);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(TopKError::ThreadPool)?;
    let lists: Vec<Vec<Vec<(u32, f32)>>> = pool.install(|| {
        query_rows
            .par_chunks(QUERY_BLOCK)
            .map(|block| rank_block(queries, block, &eligible, k, per_query))
            .collect()
    });
    Ok(RankedLists::from_lists(k, lists.into_iter().flatten()))
}

/// Targets left after the global exclusions, packed contiguously.
struct Eligible {
    factors: Vec<f32>,
    stride: usize,
    /// Packed index → original id.
    original: Vec<u32>,
    /// Original id → packed index, `u32::MAX` when excluded.
    packed: Vec<u32>,
}

impl Eligible {
    fn new(targets: &Factors, global: &[u32]) -> Self {
        let mut excluded = vec![false; targets.rows()];
        for &t in global {
            if let Some(flag) = excluded.get_mut(t as usize) {
                *flag = true;
            }
        }
        let stride = targets.stride();
        let mut factors = Vec::with_capacity(targets.padded_data().len());
        let mut original = Vec::with_capacity(targets.rows());
        let mut packed = vec![u32::MAX; targets.rows()];
        for (t, &skip) in excluded.iter().enumerate() {
            if !skip {
                packed[t] = original.len() as u32;
                original.push(t as u32);
                factors.extend_from_slice(targets.padded_row(t));
            }
        }
        Self {
            factors,
            stride,
            original,
            packed,
        }
    }

    fn len(&self) -> usize {
        self.original.len()
    }
}

fn rank_block(
    queries: &Factors,
    block: &[u32],
    eligible: &Eligible,
    k: usize,
    per_query: QueryExclusions,
) -> Vec<Vec<(u32, f32)>> {
    let s = eligible.stride;
    let mut a = Vec::with_capacity(block.len() * s);
    for &row in block {
        a.extend_from_slice(queries.padded_row(row as usize));
    }
    let mut best: Vec<Best> = block.iter().map(|_| Best::new(k)).collect();
    let mut scores = vec![0f32; block.len() * TARGET_BLOCK];
    let n = eligible.len();
    for start in (0..n).step_by(TARGET_BLOCK) {
        let width = TARGET_BLOCK.min(n - start);
        let b = &eligible.factors[start * s..(start + width) * s];
        // SAFETY: A is block.len() × s row-major; B is s × width read from `width` packed
        // target rows (row stride 1, column stride s); C is block.len() × width with row
        // stride TARGET_BLOCK inside `scores`. All within the slices' bounds.
        unsafe {
            matrixmultiply::sgemm(
                block.len(),
                s,
                width,
                1.0,
                a.as_ptr(),
                s as isize,
                1,
                b.as_ptr(),
                1,
                s as isize,
                0.0,
                scores.as_mut_ptr(),
                TARGET_BLOCK as isize,
                1,
            );
        }
        for (q, &row) in block.iter().enumerate() {
            let row_scores = &mut scores[q * TARGET_BLOCK..q * TARGET_BLOCK + width];
            let mut mask = |id: u32| {
                let p = eligible
                    .packed
                    .get(id as usize)
                    .copied()
                    .unwrap_or(u32::MAX) as usize;
                if p != u32::MAX as usize && p >= start && p < start + width {
                    row_scores[p - start] = f32::NEG_INFINITY;
                }
            };
            match per_query {
                QueryExclusions::None => {}
                QueryExclusions::Rows(matrix) => {
                    if (row as usize) < matrix.rows() {
                        // Packing keeps id order, so only this id range can fall in the block.
                        let ids = matrix.row_indices(row as usize);
                        let (low, high) = (
                            eligible.original[start],
                            eligible.original[start + width - 1],
                        );
                        let from = ids.partition_point(|&id| id < low);
                        let to = ids.partition_point(|&id| id <= high);
                        ids[from..to].iter().for_each(|&id| mask(id));
                    }
                }
                QueryExclusions::SameIndex => mask(row),
            }
            best[q].scan(row_scores, start as u32);
        }
    }
    best.into_iter()
        .map(|b| {
            b.items
                .into_iter()
                .map(|(score, p)| (eligible.original[p as usize], score))
                .collect()
        })
        .collect()
}

/// A query's running top-K, best first.
struct Best {
    k: usize,
    items: Vec<(f32, u32)>,
    /// Scores must beat this to enter: −∞ until the list is full, then the K-th score.
    threshold: f32,
}

impl Best {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
            threshold: if k == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            },
        }
    }

    /// Offers `scores[j]` as packed target `offset + j`, in increasing order (so an equal
    /// score never displaces a lower id).
    fn scan(&mut self, scores: &[f32], offset: u32) {
        const CHUNK: usize = 16;
        let mut chunks = scores.chunks_exact(CHUNK);
        let mut base = offset;
        for chunk in &mut chunks {
            let threshold = self.threshold;
            let any = chunk.iter().fold(false, |acc, &v| acc | (v > threshold));
            if any {
                self.offer_all(chunk, base);
            }
            base += CHUNK as u32;
        }
        self.offer_all(chunks.remainder(), base);
    }

    fn offer_all(&mut self, scores: &[f32], offset: u32) {
        for (j, &score) in scores.iter().enumerate() {
            if score > self.threshold {
                self.insert(score, offset + j as u32);
            }
        }
    }

    fn insert(&mut self, score: f32, id: u32) {
        // After the last item with score >= this one: earlier (lower) ids win ties.
        let at = self.items.partition_point(|&(s, _)| s >= score);
        self.items.insert(at, (score, id));
        if self.items.len() > self.k {
            self.items.pop();
        }
        if self.items.len() == self.k {
            self.threshold = self.items[self.k - 1].0;
        }
    }
}

#[cfg(test)]
mod tests;
