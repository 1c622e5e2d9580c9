//! From the store's snapshot to the lists a training run publishes: pure, no I/O.
//!
//! - [`Dataset`] numbers users and items and builds the weighted user × item triples.
//! - Items that cannot be shown (unlisted or out of stock) are excluded from every list;
//!   what a user bought is excluded from that user's list.
//! - A user's list is the model's top K; when the model has fewer than K items to give (a
//!   thin history, a small catalogue), popular items of the user's favourite category and
//!   then overall fill it (cold start), marked as such.
//! - Popular lists (overall and per top-level category) serve users without history.
//! - "Bought together" lists for product pages count co-purchases in placed orders.

use std::collections::{HashMap, HashSet};

use crate::store::Snapshot;

/// One recommended product.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Item {
    pub product_id: String,
    pub score: f32,
    /// `cf` (the model), `popular`, `popular_in_category`, `bought_together`.
    pub reason: &'static str,
}

#[derive(Debug, Default)]
pub struct Dataset {
    pub users: Vec<String>,
    pub items: Vec<String>,
    /// (user index, item index, weight).
    pub triples: Vec<(u32, u32, f32)>,
    /// Items each user bought (user index → item indices).
    pub bought: Vec<Vec<u32>>,
    /// Items no list may show (unlisted or out of stock).
    pub hidden: Vec<bool>,
    /// Top-level category of each item, if known.
    pub category: Vec<Option<String>>,
    pub baskets: Vec<Vec<String>>,
}

/// The top-level part of a category path (`Technology/Phones` → `Technology`).
pub fn top_category(category: &str) -> &str {
    category.split('/').next().unwrap_or_default().trim()
}

impl Dataset {
    pub fn from_snapshot(s: Snapshot) -> Self {
        let mut d = Dataset::default();
        let mut users: HashMap<String, u32> = HashMap::new();
        let mut items: HashMap<String, u32> = HashMap::new();
        for (user, product, weight, bought) in s.pairs {
            if !(weight.is_finite() && weight > 0.0) {
                continue;
            }
            let u = *users.entry(user.clone()).or_insert_with(|| {
                d.users.push(user);
                d.bought.push(Vec::new());
                (d.users.len() - 1) as u32
            });
            let i = *items.entry(product.clone()).or_insert_with(|| {
                let known = s.products.get(&product);
                d.hidden
                    .push(known.is_some_and(|(_, listed, in_stock)| !listed || !in_stock));
                d.category.push(
                    known
                        .and_then(|(c, _, _)| c.as_deref())
                        .map(|c| top_category(c).to_string()),
                );
                d.items.push(product);
                (d.items.len() - 1) as u32
            });
            d.triples.push((u, i, weight));
            if bought {
                d.bought[u as usize].push(i);
            }
        }
        d.baskets = s.baskets;
        d
    }

    /// Product id → item index.
    pub fn index(&self) -> HashMap<&str, u32> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i as u32))
            .collect()
    }

    /// Whether `item` may appear in `user`'s list.
    pub fn allowed(&self, user: usize, item: u32) -> bool {
        !self.hidden[item as usize] && !self.bought[user].contains(&item)
    }
}

/// Popularity: the summed weight of every interaction with the item.
pub fn popularity(d: &Dataset) -> Vec<f32> {
    let mut p = vec![0f32; d.items.len()];
    for &(_, i, w) in &d.triples {
        p[i as usize] += w;
    }
    p
}

/// The `k` most popular showable items overall and per top-level category, best first.
pub fn popular_lists(d: &Dataset, k: usize) -> (Vec<Item>, Vec<(String, Vec<Item>)>) {
    let pop = popularity(d);
    let mut order: Vec<u32> = (0..d.items.len() as u32)
        .filter(|&i| !d.hidden[i as usize])
        .collect();
    order.sort_by(|a, b| {
        pop[*b as usize]
            .total_cmp(&pop[*a as usize])
            .then(d.items[*a as usize].cmp(&d.items[*b as usize]))
    });
    let item = |i: u32, reason| Item {
        product_id: d.items[i as usize].clone(),
        score: pop[i as usize],
        reason,
    };
    let overall = order.iter().take(k).map(|&i| item(i, "popular")).collect();
    let mut by_category: HashMap<&str, Vec<Item>> = HashMap::new();
    for &i in &order {
        if let Some(c) = &d.category[i as usize] {
            let list = by_category.entry(c.as_str()).or_default();
            if list.len() < k {
                list.push(item(i, "popular_in_category"));
            }
        }
    }
    let mut by_category: Vec<(String, Vec<Item>)> = by_category
        .into_iter()
        .map(|(c, l)| (c.to_string(), l))
        .collect();
    by_category.sort_by(|a, b| a.0.cmp(&b.0));
    (overall, by_category)
}

/// A user's list: the model's ranked items (already filtered by [`Dataset::allowed`]), then
/// popular items of the user's most-weighted category, then popular overall, up to `k`,
/// never showing an item twice or one the user may not see.
pub fn user_list(
    d: &Dataset,
    user: usize,
    ranked: &[(u32, f32)],
    favourite: Option<&str>,
    popular: &(Vec<Item>, Vec<(String, Vec<Item>)>),
    index: &HashMap<&str, u32>,
    k: usize,
) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(k);
    let mut shown: HashSet<u32> = HashSet::new();
    for &(i, score) in ranked {
        if out.len() == k {
            return out;
        }
        if d.allowed(user, i) && shown.insert(i) {
            out.push(Item {
                product_id: d.items[i as usize].clone(),
                score,
                reason: "cf",
            });
        }
    }
    let in_category = favourite
        .and_then(|c| popular.1.iter().find(|(name, _)| name == c))
        .map(|(_, l)| l.as_slice())
        .unwrap_or_default();
    for candidate in in_category.iter().chain(popular.0.iter()) {
        if out.len() == k {
            break;
        }
        let Some(&i) = index.get(candidate.product_id.as_str()) else {
            continue;
        };
        if d.allowed(user, i) && shown.insert(i) {
            out.push(Item {
                score: 0.0,
                ..candidate.clone()
            });
        }
    }
    out
}

/// Each user's most-weighted top-level category.
pub fn favourite_categories(d: &Dataset) -> Vec<Option<String>> {
    let mut weights: Vec<HashMap<&str, f32>> = vec![HashMap::new(); d.users.len()];
    for &(u, i, w) in &d.triples {
        if let Some(c) = &d.category[i as usize] {
            *weights[u as usize].entry(c.as_str()).or_default() += w;
        }
    }
    weights
        .into_iter()
        .map(|m| {
            m.into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(a.0)))
                .map(|(c, _)| c.to_string())
        })
        .collect()
}

/// "Bought together": for each product, the showable products most often in the same
/// placed order, best first (ties by id), at most `k`.
pub fn bought_together(d: &Dataset, k: usize) -> Vec<(String, Vec<Item>)> {
    let hidden: HashSet<&str> = d
        .items
        .iter()
        .zip(&d.hidden)
        .filter(|(_, h)| **h)
        .map(|(p, _)| p.as_str())
        .collect();
    let mut counts: HashMap<&str, HashMap<&str, u32>> = HashMap::new();
    for basket in &d.baskets {
        for a in basket {
            for b in basket {
                if a != b && !hidden.contains(b.as_str()) {
                    *counts.entry(a).or_default().entry(b).or_default() += 1;
                }
            }
        }
    }
    let mut out: Vec<(String, Vec<Item>)> = counts
        .into_iter()
        .map(|(a, with)| {
            let mut with: Vec<(&str, u32)> = with.into_iter().collect();
            with.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
            let list = with
                .into_iter()
                .take(k)
                .map(|(b, n)| Item {
                    product_id: b.to_string(),
                    score: n as f32,
                    reason: "bought_together",
                })
                .collect();
            (a.to_string(), list)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (u, p, w, bought) in [
            ("u1", "a", 5.0, true),
            ("u1", "b", 1.0, false),
            ("u2", "b", 3.0, false),
            ("u2", "c", 1.0, false),
            ("u3", "c", 1.0, false),
            ("u3", "d", 9.0, false),
        ] {
            s.pairs.push((u.into(), p.into(), w, bought));
        }
        for (p, c, listed, in_stock) in [
            ("a", "Tech/Phones", true, true),
            ("b", "Tech/Laptops", true, true),
            ("c", "Office/Paper", true, false),
            ("d", "Office/Pens", false, true),
        ] {
            s.products
                .insert(p.into(), (Some(c.into()), listed, in_stock));
        }
        s.baskets = vec![
            vec!["a".into(), "b".into()],
            vec!["a".into(), "b".into(), "c".into()],
        ];
        s
    }

    #[test]
    fn hidden_and_bought_items_never_appear() {
        let d = Dataset::from_snapshot(snapshot());
        let u1 = d.users.iter().position(|u| u == "u1").unwrap();
        let ix = |p: &str| d.items.iter().position(|i| i == p).unwrap() as u32;
        assert!(!d.allowed(u1, ix("a")), "bought");
        assert!(d.allowed(u1, ix("b")));
        assert!(!d.allowed(u1, ix("c")), "out of stock");
        assert!(!d.allowed(u1, ix("d")), "unlisted");
        let popular = popular_lists(&d, 10);
        assert_eq!(
            popular
                .0
                .iter()
                .map(|i| i.product_id.as_str())
                .collect::<Vec<_>>(),
            vec!["a", "b"],
            "c is out of stock and d unlisted, whatever their weight"
        );
        let index = d.index();
        // The model ranks everything; the list keeps only what u1 may see.
        let ranked = vec![
            (ix("d"), 3.0),
            (ix("a"), 2.0),
            (ix("c"), 1.5),
            (ix("b"), 1.0),
        ];
        let list = user_list(&d, u1, &ranked, Some("Tech"), &popular, &index, 10);
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].product_id.as_str(), list[0].reason), ("b", "cf"));
    }

    #[test]
    fn thin_lists_fill_from_the_favourite_category_then_overall() {
        let d = Dataset::from_snapshot(snapshot());
        let u3 = d.users.iter().position(|u| u == "u3").unwrap();
        let favourites = favourite_categories(&d);
        assert_eq!(favourites[u3].as_deref(), Some("Office"));
        let popular = popular_lists(&d, 10);
        let index = d.index();
        let list = user_list(&d, u3, &[], favourites[u3].as_deref(), &popular, &index, 2);
        // Office has nothing showable (c out of stock, d unlisted): overall popularity fills.
        assert_eq!(
            list.iter()
                .map(|i| (i.product_id.as_str(), i.reason))
                .collect::<Vec<_>>(),
            vec![("a", "popular"), ("b", "popular")]
        );
    }

    #[test]
    fn bought_together_counts_co_purchases_of_showable_items() {
        let d = Dataset::from_snapshot(snapshot());
        let lists = bought_together(&d, 5);
        let a = &lists.iter().find(|(p, _)| p == "a").unwrap().1;
        assert_eq!(a.len(), 1, "c is out of stock: {a:?}");
        assert_eq!((a[0].product_id.as_str(), a[0].score), ("b", 2.0));
        let c = &lists.iter().find(|(p, _)| p == "c").unwrap().1;
        assert_eq!(c.len(), 2);
    }
}
