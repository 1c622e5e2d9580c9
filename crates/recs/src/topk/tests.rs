use super::*;

/// Scores are easy to predict: query q · target t = q_scale × t_scale on one factor.
fn one_factor(values: &[f32]) -> Factors {
    Factors::from_rows(values.len(), 1, values).unwrap()
}

#[test]
fn sorted_and_excludes_bought_and_unavailable() {
    let users = one_factor(&[1.0, -1.0, 2.0]);
    // 3,000 items so several target blocks are crossed.
    let items: Vec<f32> = (0..3000).map(|i| ((i * 37) % 3000) as f32).collect();
    let items = one_factor(&items);
    let model = AlsModel {
        user_factors: users,
        item_factors: items,
    };
    let best_item = |rank: u32| {
        (0..3000u32)
            .find(|&i| (i * 37) % 3000 == 2999 - rank)
            .unwrap()
    };
    let bought = CsrMatrix::from_triples(3, 3000, [(0, best_item(0), 1.0)]).unwrap();
    let unavailable = [best_item(1), 7];
    let lists = recommend_all(&model, 5, Some(&bought), &unavailable, 2).unwrap();
    assert_eq!(lists.len(), 3);
    // user 0 bought the best and the second is out of stock
    assert_eq!(
        lists.ids(0),
        &[
            best_item(2),
            best_item(3),
            best_item(4),
            best_item(5),
            best_item(6)
        ]
    );
    // user 2 did not buy the best one
    assert_eq!(lists.ids(2)[0], best_item(0));
    // user 1 likes low values: item 0 scores 0, the highest possible for them
    assert_eq!(lists.ids(1)[0], 0);
    for q in 0..3 {
        let scores = lists.scores(q);
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        assert!(!lists.ids(q).iter().any(|i| unavailable.contains(i)));
    }
}

#[test]
fn matches_brute_force_on_random_factors() {
    let (users, items, factors) = (150, 2100, 20);
    let mut seed = 17u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let u: Vec<f32> = (0..users * factors).map(|_| next()).collect();
    let i: Vec<f32> = (0..items * factors).map(|_| next()).collect();
    let model = AlsModel {
        user_factors: Factors::from_rows(users, factors, &u).unwrap(),
        item_factors: Factors::from_rows(items, factors, &i).unwrap(),
    };
    let bought =
        CsrMatrix::from_triples(users, items, (0..users as u32).map(|q| (q, q * 3, 1.0))).unwrap();
    let lists = recommend_all(&model, 10, Some(&bought), &[5, 6], 2).unwrap();
    for q in 0..users {
        let mut all: Vec<(u32, f32)> = (0..items as u32)
            .filter(|&t| t != q as u32 * 3 && t != 5 && t != 6)
            .map(|t| (t, model.score(q, t as usize)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let expected: Vec<u32> = all[..10].iter().map(|p| p.0).collect();
        assert_eq!(lists.ids(q), expected.as_slice(), "user {q}");
    }
    // Same answer single-threaded and for a subset.
    let again = recommend_users(&model, &[7, 3], 10, Some(&bought), &[5, 6], 1).unwrap();
    assert_eq!(again.ids(0), lists.ids(7));
    assert_eq!(again.ids(1), lists.ids(3));
}

#[test]
fn short_lists_when_few_targets_remain() {
    let model = AlsModel {
        user_factors: one_factor(&[1.0]),
        item_factors: one_factor(&[1.0, 2.0, 3.0]),
    };
    let bought = CsrMatrix::from_triples(1, 3, [(0, 2, 1.0)]).unwrap();
    let lists = recommend_all(&model, 5, Some(&bought), &[0], 1).unwrap();
    assert_eq!(lists.ids(0), &[1]);
    assert_eq!(lists.scores(0), &[2.0]);
    assert!(recommend_all(&model, 0, None, &[], 1)
        .unwrap()
        .ids(0)
        .is_empty());
    let err = recommend_users(&model, &[1], 2, None, &[], 1).unwrap_err();
    assert!(matches!(err, TopKError::QueryOutOfRange { row: 1, .. }));
}

#[test]
fn similar_items_by_cosine_never_self() {
    // Items 0 and 2 point the same way at different lengths; 1 is orthogonal; 3 opposite.
    let f = Factors::from_rows(4, 2, &[1.0, 0.0, 0.0, 1.0, 5.0, 0.1, -1.0, 0.0]).unwrap();
    let lists = similar_items(&f, &[0, 1, 2, 3], 3, &[], 1).unwrap();
    assert_eq!(lists.ids(0), &[2, 1, 3]);
    assert!((lists.scores(0)[0] - 0.9998).abs() < 1e-3);
    assert_eq!(lists.ids(1)[0], 2);
    assert_eq!(lists.ids(3), &[1, 2, 0]);
    let without = similar_items(&f, &[0], 3, &[2], 1).unwrap();
    assert_eq!(without.ids(0), &[1, 3]);
}
