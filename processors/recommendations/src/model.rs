//! The model step of a run: the dataset's matrix through `recs` (implicit-feedback ALS, then
//! every user's top K with purchases and unshowable items excluded). CPU-bound: the caller
//! runs it on a blocking thread, and `recs` uses a thread pool of its own (`model.threads`).

use std::time::{Duration, Instant};

use recs::matrix::CsrMatrix;
use recs::topk::RankedLists;

use crate::lists::Dataset;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("building the interaction matrix: {0}")]
    Matrix(String),
    #[error("training: {0}")]
    Train(String),
    #[error("ranking: {0}")]
    Rank(String),
}

pub struct Ranked {
    /// One list per user of the dataset, best first.
    pub lists: RankedLists,
    pub iterations: Vec<Duration>,
    pub train: Duration,
    pub rank: Duration,
}

pub fn fit_and_rank(d: &Dataset, p: &topology::AlsParams, k: usize) -> Result<Ranked, ModelError> {
    let (users, items) = (d.users.len(), d.items.len());
    let matrix = CsrMatrix::from_triples(users, items, d.triples.iter().copied())
        .map_err(|e| ModelError::Matrix(e.to_string()))?;
    let bought = CsrMatrix::from_triples(
        users,
        items,
        d.bought
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i, 1.0))),
    )
    .map_err(|e| ModelError::Matrix(e.to_string()))?;
    let unavailable: Vec<u32> = (0..items as u32)
        .filter(|&i| d.hidden[i as usize])
        .collect();
    let params = recs::als::AlsParams {
        factors: p.factors,
        regularization: p.regularization,
        alpha: p.alpha,
        iterations: p.iterations,
        cg_steps: 3,
        threads: p.threads,
        seed: 42,
        compute_loss: false,
    };
    let started = Instant::now();
    let mut iterations = Vec::with_capacity(p.iterations);
    let model = recs::als::train(&matrix, &params, |s| iterations.push(s.elapsed))
        .map_err(|e| ModelError::Train(e.to_string()))?;
    let train = started.elapsed();
    let started = Instant::now();
    let lists = recs::topk::recommend_all(&model, k, Some(&bought), &unavailable, p.threads)
        .map_err(|e| ModelError::Rank(e.to_string()))?;
    Ok(Ranked {
        lists,
        iterations,
        train,
        rank: started.elapsed(),
    })
}
