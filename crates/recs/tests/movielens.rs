//! ALS against popularity on MovieLens-100K's time split (train on the first 80% of the
//! ratings by time, test on the rest). Needs the CSV `scripts/fetch-movielens.sh` prints:
//!
//! ```text
//! STOREFLEET_MOVIELENS="$(scripts/fetch-movielens.sh)" cargo test -p recs --release --test movielens
//! ```
//! Without STOREFLEET_MOVIELENS it prints that it skipped and passes.

use std::io::BufReader;

use recs::dataset::{read_ratings_csv, Interaction};
use recs::eval::{evaluate, time_split, AlsRecommender};
use recs::{train, AlsParams, Popularity};

/// Chosen on a validation split cut from the training period only (the last 20% of it):
/// 32 factors, strong regularisation and low confidence did best there.
fn params() -> AlsParams {
    AlsParams {
        factors: 32,
        regularization: 1.0,
        alpha: 1.0,
        iterations: 15,
        threads: 2,
        ..AlsParams::default()
    }
}

#[test]
fn als_beats_popularity_on_the_time_split() {
    let Some(path) = std::env::var_os("STOREFLEET_MOVIELENS") else {
        println!("skipped: set STOREFLEET_MOVIELENS to the CSV scripts/fetch-movielens.sh prints");
        return;
    };
    let file = std::fs::File::open(&path).expect("open STOREFLEET_MOVIELENS");
    let log = read_ratings_csv(BufReader::new(file)).expect("parse the ratings CSV");
    assert_eq!(log.interactions.len(), 100_000);
    // Implicit feedback: having rated a movie is the signal, whatever the rating.
    let interactions: Vec<Interaction> = log
        .interactions
        .into_iter()
        .map(|i| Interaction { weight: 1.0, ..i })
        .collect();
    let split = time_split(&interactions, 0.8).expect("split");
    let model = train(&split.train, &params(), |_| {}).expect("train");
    let als = evaluate(
        &AlsRecommender {
            model: &model,
            threads: 2,
        },
        &split,
        10,
    )
    .expect("als");
    let popular = evaluate(&Popularity::fit(&split.train), &split, 10).expect("popularity");
    println!("als {als:?}\npopularity {popular:?}");
    assert!(als.users > 50, "{als:?}");
    assert!(als.precision > popular.precision, "{als:?} vs {popular:?}");
    assert!(als.map > popular.map, "{als:?} vs {popular:?}");
    assert!(als.ndcg > popular.ndcg, "{als:?} vs {popular:?}");
}
