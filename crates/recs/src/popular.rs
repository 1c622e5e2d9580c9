//! Popularity: the most-bought items overall and per category.
//!
//! It is the cold-start answer (a new shopper has no factors yet; a category page needs a
//! list before anyone browsed it) and the baseline every model must beat offline: if ALS
//! does not rank held-out purchases above "what everybody buys", it is not worth serving.
//! Popularity counts distinct buyers, not purchase weight, so one bulk buyer cannot make
//! an item "popular".

use crate::matrix::CsrMatrix;
use crate::topk::RankedLists;

/// Items ranked by number of distinct users, ties to the lower id.
#[derive(Debug, Clone, PartialEq)]
pub struct Popularity {
    buyers: Vec<u32>,
    order: Vec<u32>,
}

impl Popularity {
    /// Counts, for each item (column), the users (rows) that interacted with it.
    pub fn fit(user_items: &CsrMatrix) -> Self {
        let mut buyers = vec![0u32; user_items.cols()];
        for &item in user_items.indices() {
            buyers[item as usize] += 1;
        }
        let mut order: Vec<u32> = (0..buyers.len() as u32).collect();
        order.sort_by(|&a, &b| buyers[b as usize].cmp(&buyers[a as usize]).then(a.cmp(&b)));
        Self { buyers, order }
    }

    /// Distinct users of `item` (0 when out of range).
    pub fn buyers(&self, item: u32) -> u32 {
        self.buyers.get(item as usize).copied().unwrap_or(0)
    }

    /// All items, most popular first.
    pub fn ranked(&self) -> &[u32] {
        &self.order
    }

    /// The `k` most popular items for which `keep` holds.
    pub fn top(&self, k: usize, mut keep: impl FnMut(u32) -> bool) -> Vec<u32> {
        self.order
            .iter()
            .copied()
            .filter(|&item| keep(item))
            .take(k)
            .collect()
    }

    /// The same list for every listed user minus what that user bought (row of `bought`)
    /// and the `unavailable` items; scores are buyer counts. List `n` belongs to `users[n]`.
    pub fn recommend_users(
        &self,
        users: &[u32],
        k: usize,
        bought: Option<&CsrMatrix>,
        unavailable: &[u32],
    ) -> RankedLists {
        let mut blocked = vec![false; self.buyers.len()];
        for &item in unavailable {
            if let Some(flag) = blocked.get_mut(item as usize) {
                *flag = true;
            }
        }
        RankedLists::from_lists(
            k,
            users.iter().map(|&user| {
                let own: &[u32] = match bought {
                    Some(m) if (user as usize) < m.rows() => m.row_indices(user as usize),
                    _ => &[],
                };
                self.top(k, |item| {
                    !blocked[item as usize] && own.binary_search(&item).is_err()
                })
                .into_iter()
                .map(|item| (item, self.buyers[item as usize] as f32))
                .collect()
            }),
        )
    }

    /// The `k` most popular available items of each category: list `c` is category `c`,
    /// for categories `0..=max(item_category)`. Items beyond `item_category` have none.
    pub fn by_category(
        &self,
        item_category: &[u32],
        k: usize,
        unavailable: &[u32],
    ) -> Vec<Vec<u32>> {
        let categories = item_category
            .iter()
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(0);
        let mut blocked = vec![false; self.buyers.len()];
        for &item in unavailable {
            if let Some(flag) = blocked.get_mut(item as usize) {
                *flag = true;
            }
        }
        let mut lists = vec![Vec::new(); categories];
        for &item in &self.order {
            let Some(&category) = item_category.get(item as usize) else {
                continue;
            };
            let list = &mut lists[category as usize];
            if list.len() < k && !blocked[item as usize] {
                list.push(item);
            }
        }
        lists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchases() -> CsrMatrix {
        // item 2: 3 buyers; item 0: 2 (one of them twice); item 1 and 3: 1; item 4: none.
        CsrMatrix::from_triples(
            4,
            5,
            [
                (0, 2, 1.0),
                (1, 2, 1.0),
                (2, 2, 1.0),
                (0, 0, 5.0),
                (0, 0, 5.0),
                (3, 0, 1.0),
                (1, 1, 1.0),
                (2, 3, 1.0),
            ],
        )
        .unwrap()
    }

    #[test]
    fn ranks_by_distinct_buyers_then_id() {
        let p = Popularity::fit(&purchases());
        assert_eq!(p.ranked(), &[2, 0, 1, 3, 4]);
        assert_eq!(p.buyers(0), 2);
        assert_eq!(p.top(2, |item| item != 2), vec![0, 1]);
    }

    #[test]
    fn per_user_lists_skip_bought_and_unavailable() {
        let bought = purchases();
        let p = Popularity::fit(&bought);
        let lists = p.recommend_users(&[0, 3], 2, Some(&bought), &[1]);
        assert_eq!(lists.ids(0), &[3, 4]); // bought 0 and 2; 1 is out of stock
        assert_eq!(lists.ids(1), &[2, 3]);
        assert_eq!(lists.scores(1), &[3.0, 1.0]);
    }

    #[test]
    fn per_category_lists() {
        let p = Popularity::fit(&purchases());
        let lists = p.by_category(&[0, 1, 0, 1, 0], 2, &[3]);
        assert_eq!(lists, vec![vec![2, 0], vec![1]]);
    }
}
