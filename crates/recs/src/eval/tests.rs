use super::*;
use crate::popular::Popularity;

fn at(user: u32, item: u32, timestamp: i64) -> Interaction {
    Interaction {
        user,
        item,
        weight: 1.0,
        timestamp,
    }
}

#[test]
fn metrics_match_implicit_ranking_metrics_at_k() {
    // The same case run through implicit 0.7.3's `ranking_metrics_at_k` (a stub model whose
    // `recommend` returns these lists, K=3) printed precision 0.6666666666666666,
    // map 0.3796296296296296, ndcg 0.530256965422892. By hand: hits 4 over min(K,|rel|)
    // 2+1+3; AP 1/2/2, 1/3/1, (1+2/3)/3; user 3 has no test items and is skipped.
    let recommended = RankedLists::from_lists(
        3,
        [[4, 1, 5], [0, 2, 3], [5, 4, 3], [0, 1, 2]]
            .map(|ids| ids.iter().map(|&i| (i, 0.0)).collect::<Vec<_>>()),
    );
    let test = CsrMatrix::from_triples(
        4,
        6,
        [(0, 1), (0, 2), (1, 3), (2, 0), (2, 3), (2, 5)].map(|(u, i)| (u, i, 1.0)),
    )
    .unwrap();
    let m = ranking_metrics(&recommended, &[0, 1, 2, 3], &test, 3);
    assert_eq!(m.users, 3);
    assert!((m.precision - 0.6666666666666666).abs() < 1e-12);
    assert!((m.map - 0.3796296296296296).abs() < 1e-12);
    assert!((m.ndcg - 0.530256965422892).abs() < 1e-12);
}

#[test]
fn perfect_and_empty_lists() {
    let test = CsrMatrix::from_triples(1, 5, [(0, 2, 1.0), (0, 4, 1.0)]).unwrap();
    let perfect = RankedLists::from_lists(3, [vec![(4, 1.0), (2, 0.5), (0, 0.1)]]);
    let m = ranking_metrics(&perfect, &[0], &test, 3);
    assert_eq!((m.precision, m.map, m.ndcg), (1.0, 1.0, 1.0));
    let none = RankedLists::from_lists(3, [vec![]]);
    let m = ranking_metrics(&none, &[0], &test, 3);
    assert_eq!((m.precision, m.map, m.ndcg, m.users), (0.0, 0.0, 0.0, 1));
}

#[test]
fn time_split_drops_unseen_and_repeats_and_packs_ids() {
    let log = [
        at(0, 0, 1),
        at(0, 1, 2),
        at(1, 1, 3),
        at(2, 2, 4), // user 2 only in training
        at(0, 2, 10),
        at(0, 1, 11), // repeat of a training pair: dropped
        at(1, 0, 12),
        at(3, 0, 13), // user 3 unseen in training: dropped
        at(1, 9, 14), // item 9 unseen in training: dropped
        at(1, 2, 15),
    ];
    let split = time_split(&log, 0.4).unwrap();
    assert_eq!(split.cutoff, 10);
    assert_eq!(split.user_ids, vec![0, 1, 2]);
    assert_eq!(split.item_ids, vec![0, 1, 2]);
    assert_eq!(split.train.nnz(), 4);
    assert_eq!(split.test.row_indices(0), &[2]);
    assert_eq!(split.test.row_indices(1), &[0, 2]);
    assert_eq!(split.test.row_len(2), 0);
    assert_eq!(split.train_interactions.len(), 4);
    assert!(time_split(&log, 1.0).is_err());
    assert!(time_split(&[], 0.5).is_err());
}

#[test]
fn evaluate_runs_any_recommender() {
    // Everyone buys item 0 early; later, users 0 and 1 buy item 1, which popularity ranks
    // first among what they have not bought.
    let log = [
        at(0, 0, 1),
        at(1, 0, 1),
        at(2, 0, 1),
        at(2, 1, 1),
        at(0, 2, 1),
        at(0, 1, 5),
        at(1, 1, 5),
    ];
    let split = time_split(&log, 0.8).unwrap();
    let popularity = Popularity::fit(&split.train);
    let m = evaluate(&popularity, &split, 1).unwrap();
    assert_eq!(m.users, 2);
    assert_eq!(m.precision, 1.0);
}
