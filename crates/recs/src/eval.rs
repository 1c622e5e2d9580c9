//! Offline evaluation: a time-based train/test split and ranking metrics at K.
//!
//! The split mimics production: train on the past, predict the future. Everything before
//! the cutoff (the `train_fraction` quantile of timestamps) trains; what comes after tests,
//! minus what cannot be scored fairly: users or items never seen in training (cold start is
//! popularity's job) and pairs already in training (a re-purchase is excluded from the
//! ranked list, so it could never count as a hit). Ids are re-packed to the users and items
//! seen in training, so no model is asked about rows it never saw.
//!
//! Metrics are exactly `implicit.evaluation.ranking_metrics_at_k`: precision is total hits
//! over `Σ_u min(K, |relevant_u|)` (micro-averaged), MAP averages per user
//! `Σ_hits (hits so far / rank) / min(K, |relevant_u|)`, NDCG averages
//! `Σ_hits 1/log2(rank + 1)` over the ideal DCG of `min(K, |relevant_u|)` hits; only users with
//! at least one test item count.

use thiserror::Error;

use crate::dataset::Interaction;
use crate::matrix::{CsrMatrix, MatrixError};
use crate::topk::{RankedLists, TopKError};

#[derive(Debug, Error)]
pub enum SplitError {
    #[error("train fraction must be in (0, 1), got {0}")]
    Fraction(f64),
    #[error("no interactions to split")]
    Empty,
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}

/// Train and test matrices over the same packed users × items.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: CsrMatrix,
    pub test: CsrMatrix,
    /// Packed user index → user id of the input interactions.
    pub user_ids: Vec<u32>,
    /// Packed item index → item id of the input interactions.
    pub item_ids: Vec<u32>,
    /// First timestamp of the test period.
    pub cutoff: i64,
    /// The training interactions with their original ids, to split again for validation.
    pub train_interactions: Vec<Interaction>,
}

/// Splits by time at the `train_fraction` quantile of timestamps (ties at the cutoff test).
pub fn time_split(interactions: &[Interaction], train_fraction: f64) -> Result<Split, SplitError> {
    if !(train_fraction > 0.0 && train_fraction < 1.0) {
        return Err(SplitError::Fraction(train_fraction));
    }
    if interactions.is_empty() {
        return Err(SplitError::Empty);
    }
    let mut stamps: Vec<i64> = interactions.iter().map(|i| i.timestamp).collect();
    let at = ((stamps.len() as f64 * train_fraction) as usize).min(stamps.len() - 1);
    let (_, &mut cutoff, _) = stamps.select_nth_unstable(at);
    let (train_part, test_part): (Vec<Interaction>, Vec<Interaction>) =
        interactions.iter().partition(|i| i.timestamp < cutoff);

    let max_user = interactions.iter().map(|i| i.user).max().unwrap_or(0) as usize;
    let max_item = interactions.iter().map(|i| i.item).max().unwrap_or(0) as usize;
    let pack = |ids: &mut dyn Iterator<Item = u32>, len: usize| {
        let mut packed = vec![u32::MAX; len + 1];
        ids.for_each(|id| packed[id as usize] = 0);
        let mut original = Vec::new();
        for (id, slot) in packed.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = original.len() as u32;
                original.push(id as u32);
            }
        }
        (packed, original)
    };
    let (user_packed, user_ids) = pack(&mut train_part.iter().map(|i| i.user), max_user);
    let (item_packed, item_ids) = pack(&mut train_part.iter().map(|i| i.item), max_item);
    let train = CsrMatrix::from_triples(
        user_ids.len(),
        item_ids.len(),
        train_part.iter().map(|i| {
            (
                user_packed[i.user as usize],
                item_packed[i.item as usize],
                i.weight,
            )
        }),
    )?;
    let test = CsrMatrix::from_triples(
        user_ids.len(),
        item_ids.len(),
        test_part.iter().filter_map(|i| {
            let user = user_packed[i.user as usize];
            let item = item_packed[i.item as usize];
            let fresh =
                user != u32::MAX && item != u32::MAX && !train.contains(user as usize, item);
            fresh.then_some((user, item, 1.0))
        }),
    )?;
    Ok(Split {
        train,
        test,
        user_ids,
        item_ids,
        cutoff,
        train_interactions: train_part,
    })
}

/// Ranking quality at K, averaged as `implicit` does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub precision: f64,
    pub map: f64,
    pub ndcg: f64,
    /// Users with at least one test item (the ones averaged over).
    pub users: usize,
}

/// Scores lists `recommended` (list `n` for `users[n]`) against the rows of `test`, cut at
/// `k`. Users whose test row is empty are skipped.
pub fn ranking_metrics(
    recommended: &RankedLists,
    users: &[u32],
    test: &CsrMatrix,
    k: usize,
) -> Metrics {
    let gains: Vec<f64> = (0..k).map(|i| 1.0 / ((i + 2) as f64).log2()).collect();
    let (mut hits_total, mut precision_denominator) = (0f64, 0f64);
    let (mut map_sum, mut ndcg_sum, mut counted) = (0f64, 0f64, 0usize);
    for (n, &user) in users.iter().enumerate() {
        let relevant = test.row_indices(user as usize);
        if relevant.is_empty() || k == 0 {
            continue;
        }
        let cut = k.min(relevant.len());
        let ideal: f64 = gains[..cut].iter().sum();
        let (mut hits, mut ap, mut dcg) = (0f64, 0f64, 0f64);
        for (rank, item) in recommended.ids(n).iter().take(k).enumerate() {
            if relevant.binary_search(item).is_ok() {
                hits += 1.0;
                ap += hits / (rank + 1) as f64;
                dcg += gains[rank];
            }
        }
        hits_total += hits;
        precision_denominator += cut as f64;
        map_sum += ap / cut as f64;
        ndcg_sum += dcg / ideal;
        counted += 1;
    }
    let mean = |sum: f64| {
        if counted == 0 {
            0.0
        } else {
            sum / counted as f64
        }
    };
    Metrics {
        precision: if precision_denominator == 0.0 {
            0.0
        } else {
            hits_total / precision_denominator
        },
        map: mean(map_sum),
        ndcg: mean(ndcg_sum),
        users: counted,
    }
}

/// Anything that ranks items for users, given what they did in training.
pub trait Recommender {
    /// Up to `k` items per listed user, best first, excluding the user's row of `train`.
    fn recommend_users(
        &self,
        users: &[u32],
        k: usize,
        train: &CsrMatrix,
    ) -> Result<RankedLists, TopKError>;
}

impl Recommender for crate::popular::Popularity {
    fn recommend_users(
        &self,
        users: &[u32],
        k: usize,
        train: &CsrMatrix,
    ) -> Result<RankedLists, TopKError> {
        Ok(crate::popular::Popularity::recommend_users(
            self,
            users,
            k,
            Some(train),
            &[],
        ))
    }
}

/// An ALS model scored on `threads` threads (0: one per core).
pub struct AlsRecommender<'a> {
    pub model: &'a crate::als::AlsModel,
    pub threads: usize,
}

impl Recommender for AlsRecommender<'_> {
    fn recommend_users(
        &self,
        users: &[u32],
        k: usize,
        train: &CsrMatrix,
    ) -> Result<RankedLists, TopKError> {
        crate::topk::recommend_users(self.model, users, k, Some(train), &[], self.threads)
    }
}

/// Ranks for every test user of `split` and scores the lists at `k`.
pub fn evaluate(
    recommender: &dyn Recommender,
    split: &Split,
    k: usize,
) -> Result<Metrics, TopKError> {
    let users: Vec<u32> = (0..split.test.rows() as u32)
        .filter(|&u| split.test.row_len(u as usize) > 0)
        .collect();
    let lists = recommender.recommend_users(&users, k, &split.train)?;
    Ok(ranking_metrics(&lists, &users, &split.test, k))
}

#[cfg(test)]
mod tests;
