//! "Bought together": for each item, the items that most often share a basket with it.
//!
//! Pure counting, no model: it needs no training, explains itself ("bought together 12
//! times") and is right for accessories that a factor model smooths away. Cost is
//! `Σ_basket |basket|²`; items are processed in parallel, each thread reusing one dense
//! counter array and the list of counters it touched.

use rayon::prelude::*;

use crate::matrix::CsrMatrix;
use crate::topk::RankedLists;

/// For every item (column of `baskets`, whose rows are orders or sessions), the up to `k`
/// other items found in the most baskets with it, at least `min_count` times; scores are
/// the basket counts. Ties go to the lower item id.
pub fn co_purchase(baskets: &CsrMatrix, k: usize, min_count: u32) -> RankedLists {
    let item_baskets = baskets.transpose();
    let items = baskets.cols();
    let lists: Vec<Vec<(u32, f32)>> = (0..items)
        .into_par_iter()
        .map_init(
            || (vec![0u32; items], Vec::<u32>::new()),
            |(counts, touched), item| {
                for &basket in item_baskets.row_indices(item) {
                    for &other in baskets.row_indices(basket as usize) {
                        if other as usize != item {
                            if counts[other as usize] == 0 {
                                touched.push(other);
                            }
                            counts[other as usize] += 1;
                        }
                    }
                }
                let mut list: Vec<(u32, u32)> = touched
                    .iter()
                    .map(|&other| (other, counts[other as usize]))
                    .filter(|&(_, count)| count >= min_count.max(1))
                    .collect();
                for &other in touched.iter() {
                    counts[other as usize] = 0;
                }
                touched.clear();
                let by_rank = |a: &(u32, u32), b: &(u32, u32)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
                if list.len() > k && k > 0 {
                    list.select_nth_unstable_by(k - 1, by_rank);
                }
                list.truncate(k);
                list.sort_unstable_by(by_rank);
                list.into_iter()
                    .map(|(other, count)| (other, count as f32))
                    .collect()
            },
        )
        .collect();
    RankedLists::from_lists(k, lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_shared_baskets_and_ranks_them() {
        // Baskets: {0,1,2}, {0,1}, {0,3}, {1,2}, {4}
        let baskets = CsrMatrix::from_triples(
            5,
            5,
            [
                (0, 0, 1.0),
                (0, 1, 1.0),
                (0, 2, 1.0),
                (1, 0, 1.0),
                (1, 1, 1.0),
                (2, 0, 1.0),
                (2, 3, 1.0),
                (3, 1, 1.0),
                (3, 2, 1.0),
                (4, 4, 1.0),
            ],
        )
        .unwrap();
        let lists = co_purchase(&baskets, 2, 1);
        assert_eq!(lists.ids(0), &[1, 2]); // 1 twice, then 2 and 3 once: the lower id wins
        assert_eq!(lists.scores(0), &[2.0, 1.0]);
        assert_eq!(lists.ids(1), &[0, 2]);
        assert_eq!(lists.scores(1), &[2.0, 2.0]);
        assert_eq!(lists.ids(4), &[] as &[u32]);
        let strict = co_purchase(&baskets, 5, 2);
        assert_eq!(strict.ids(0), &[1]);
        assert_eq!(strict.ids(3), &[] as &[u32]);
    }
}
