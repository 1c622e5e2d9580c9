//! Synthetic purchase logs with the shape of a real shop, for benchmarks and tests.
//!
//! - Item popularity is Zipf-like (`weight ∝ 1 / rank^s`) with ranks shuffled, so a few
//!   items sell a lot and the long tail rarely.
//! - User activity is log-normal (σ = 1) around a chosen mean: most shoppers buy a little,
//!   a few buy a lot; at least one interaction each, at most a quarter of the catalogue.
//! - Latent structure so a factor model has something to find: every item belongs to one
//!   of `topics`; every user prefers up to three topics (weights 0.6 / 0.3 / 0.1). Each
//!   event comes from the user's topics with probability `topic_affinity` (item drawn by
//!   popularity within the topic), otherwise from global popularity.
//! - Timestamps are uniform over `span_seconds`, so a time split tests on the same tastes.
//!
//! Deterministic: the same config (seed included) gives the same log.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::dataset::Interaction;
use crate::matrix::{CsrMatrix, MatrixError};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub users: usize,
    pub items: usize,
    /// Mean events per user before duplicates merge.
    pub mean_interactions: f64,
    /// Zipf exponent `s` of item popularity.
    pub zipf_exponent: f64,
    pub topics: usize,
    /// Probability an event follows the user's topics rather than global popularity.
    pub topic_affinity: f64,
    pub span_seconds: i64,
    pub seed: u64,
}

impl Default for SynthConfig {
    /// The benchmark size: 100,000 users × 20,000 items, 40 events per user on average
    /// (about 4 million events, ~3.9 million distinct pairs, density 0.2%).
    fn default() -> Self {
        Self {
            users: 100_000,
            items: 20_000,
            mean_interactions: 40.0,
            zipf_exponent: 0.9,
            topics: 50,
            topic_affinity: 0.8,
            span_seconds: 180 * 24 * 3600,
            seed: 7,
        }
    }
}

/// Cumulative weights to sample an index from by binary search.
struct Sampler {
    ids: Vec<u32>,
    cumulative: Vec<f64>,
}

impl Sampler {
    fn new(ids: Vec<u32>, weights: &[f64]) -> Self {
        let mut total = 0.0;
        let cumulative = ids
            .iter()
            .map(|&id| {
                total += weights[id as usize];
                total
            })
            .collect();
        Self { ids, cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> Option<u32> {
        let total = *self.cumulative.last()?;
        let target = rng.random::<f64>() * total;
        let at = self.cumulative.partition_point(|&c| c <= target);
        self.ids.get(at.min(self.ids.len() - 1)).copied()
    }
}

/// Generates the event log (users and items are `0..users`, `0..items`).
pub fn generate(config: &SynthConfig) -> Vec<Interaction> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let items = config.items.max(1);
    let topics = config.topics.clamp(1, items);

    let mut ranks: Vec<u32> = (0..items as u32).collect();
    ranks.shuffle(&mut rng);
    let weights: Vec<f64> = ranks
        .iter()
        .map(|&rank| 1.0 / (f64::from(rank) + 1.0).powf(config.zipf_exponent))
        .collect();
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); topics];
    for item in 0..items as u32 {
        // Item `t` of the first `topics` seeds topic `t`, so no topic is empty.
        let topic = if (item as usize) < topics {
            item as usize
        } else {
            rng.random_range(0..topics)
        };
        members[topic].push(item);
    }
    let global = Sampler::new((0..items as u32).collect(), &weights);
    let by_topic: Vec<Sampler> = members
        .into_iter()
        .map(|ids| Sampler::new(ids, &weights))
        .collect();

    let sigma = 1.0f64;
    let mu = config.mean_interactions.max(1.0).ln() - sigma * sigma / 2.0;
    let cap = (items / 4).max(1) as f64;
    let mut log = Vec::with_capacity((config.users as f64 * config.mean_interactions) as usize);
    for user in 0..config.users as u32 {
        let count = (mu + sigma * standard_normal(&mut rng))
            .exp()
            .round()
            .clamp(1.0, cap) as usize;
        let liked = [
            rng.random_range(0..topics),
            rng.random_range(0..topics),
            rng.random_range(0..topics),
        ];
        for _ in 0..count {
            let sampler = if rng.random::<f64>() < config.topic_affinity {
                let pick = rng.random::<f64>();
                let topic = if pick < 0.6 {
                    liked[0]
                } else if pick < 0.9 {
                    liked[1]
                } else {
                    liked[2]
                };
                &by_topic[topic]
            } else {
                &global
            };
            let Some(item) = sampler.sample(&mut rng) else {
                continue;
            };
            log.push(Interaction {
                user,
                item,
                weight: 1.0,
                timestamp: rng.random_range(0..config.span_seconds.max(1)),
            });
        }
    }
    log
}

/// Box–Muller; `rand` alone has no normal distribution.
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The users × items matrix of a log (repeat purchases summed).
pub fn to_matrix(
    log: &[Interaction],
    users: usize,
    items: usize,
) -> Result<CsrMatrix, MatrixError> {
    CsrMatrix::from_triples(users, items, log.iter().map(|i| (i.user, i.item, i.weight)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthConfig {
        SynthConfig {
            users: 2_000,
            items: 500,
            mean_interactions: 20.0,
            topics: 10,
            seed: 3,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn deterministic_by_seed() {
        assert_eq!(generate(&small()), generate(&small()));
        let other = SynthConfig { seed: 4, ..small() };
        assert_ne!(generate(&small()), generate(&other));
    }

    #[test]
    fn has_the_requested_size_and_a_skewed_popularity() {
        let config = small();
        let log = generate(&config);
        let mean = log.len() as f64 / config.users as f64;
        assert!((15.0..25.0).contains(&mean), "mean events per user {mean}");
        let matrix = to_matrix(&log, config.users, config.items).unwrap();
        let mut buyers: Vec<usize> = (0..config.items).map(|_| 0).collect();
        matrix
            .indices()
            .iter()
            .for_each(|&i| buyers[i as usize] += 1);
        buyers.sort_unstable_by(|a, b| b.cmp(a));
        let top_decile: usize = buyers[..config.items / 10].iter().sum();
        let total: usize = buyers.iter().sum();
        // Uniform popularity would give 10%; Zipf gives far more.
        assert!(
            top_decile * 100 / total > 30,
            "top decile share {top_decile}/{total}"
        );
    }
}
