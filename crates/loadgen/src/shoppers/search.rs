//! The shoppers' searches: what they type (words of product titles they know, sometimes a
//! category filter).

use rand::Rng;
use serde_json::Value;

/// Words nobody searches for.
const STOPWORDS: [&str; 12] = [
    "and", "the", "for", "with", "from", "of", "by", "in", "on", "to", "set", "pack",
];

/// The words of `title` a shopper might type: lower-case runs of letters and digits, at
/// least three long, with a letter, not a stopword.
pub(super) fn words(title: &str) -> Vec<String> {
    title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && w.chars().any(char::is_alphabetic))
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// A query from a known title: one of its words, or (two times in five) two of them in
/// title order; `None` if the title has no searchable word.
pub(super) fn query(title: &str, rng: &mut impl Rng) -> Option<String> {
    let words = words(title);
    if words.is_empty() {
        return None;
    }
    let first = rng.random_range(0..words.len());
    if words.len() >= 2 && rng.random_bool(0.4) {
        let mut second = rng.random_range(0..words.len() - 1);
        if second >= first {
            second += 1;
        }
        let (a, b) = (first.min(second), first.max(second));
        return Some(format!("{} {}", words[a], words[b]));
    }
    Some(words[first].clone())
}

/// A category to narrow a search by, from an answer's `facets.category` (name → count):
/// one with results, picked in proportion to its count. `None` if the answer has none (the
/// catalog's fallback has no facets).
pub(super) fn facet_category(answer: &Value, rng: &mut impl Rng) -> Option<String> {
    let facets: Vec<(&String, u64)> = answer["facets"]["category"]
        .as_object()?
        .iter()
        .filter_map(|(name, count)| Some((name, count.as_u64()?)))
        .filter(|(name, count)| *count > 0 && !name.is_empty())
        .collect();
    let total: u64 = facets.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return None;
    }
    let mut at = rng.random_range(0..total);
    for (name, count) in facets {
        if at < count {
            return Some(name.clone());
        }
        at -= count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn shoppers_type_the_telling_words_of_a_title() {
        assert_eq!(
            words("Hon Deluxe Fabric Upholstered Stacking Chairs, Rounded Back"),
            [
                "hon",
                "deluxe",
                "fabric",
                "upholstered",
                "stacking",
                "chairs",
                "rounded",
                "back"
            ]
        );
        assert_eq!(
            words("Avery 508 Binder Set for the Office, 3/Pack"),
            ["avery", "binder", "office"]
        );
        assert_eq!(
            words("Bretford CR4500 Series"),
            ["bretford", "cr4500", "series"]
        );
        assert!(words("3M 3/4 - of").is_empty());
    }

    #[test]
    fn a_query_is_one_or_two_words_of_the_title_in_its_order() {
        let mut rng = StdRng::seed_from_u64(1);
        let title = "Global Troy Executive Leather Low-Back Tilter";
        let known = words(title);
        let (mut one, mut two) = (0, 0);
        for _ in 0..500 {
            let q = query(title, &mut rng).unwrap();
            let parts: Vec<&str> = q.split(' ').collect();
            let at: Vec<usize> = parts
                .iter()
                .map(|p| {
                    known
                        .iter()
                        .position(|w| w == p)
                        .expect("a word of the title")
                })
                .collect();
            match at[..] {
                [_] => one += 1,
                [a, b] => {
                    assert!(a < b, "{q}");
                    two += 1;
                }
                _ => panic!("{q}"),
            }
        }
        assert!(
            (250..=350).contains(&one) && one + two == 500,
            "{one} {two}"
        );
        assert_eq!(query("Stapler", &mut rng).as_deref(), Some("stapler"));
        assert_eq!(query("3M 10", &mut rng), None);
    }

    #[test]
    fn a_refinement_picks_a_category_the_answer_has_results_in() {
        let mut rng = StdRng::seed_from_u64(2);
        let answer = json!({"facets": {"category": {
            "Furniture/Chairs": 9, "Technology/Phones": 1, "Office Supplies/Paper": 0}}});
        let mut picked: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..1_000 {
            *picked
                .entry(facet_category(&answer, &mut rng).unwrap())
                .or_default() += 1;
        }
        assert!(!picked.contains_key("Office Supplies/Paper"));
        assert!(picked["Furniture/Chairs"] > 800, "{picked:?}");
        assert!(picked["Technology/Phones"] > 40, "{picked:?}");
        for none in [
            json!({"source": "catalog", "hits": []}),
            json!({"facets": {"category": {}}}),
            json!({"facets": {"category": {"A": 0}}}),
        ] {
            assert_eq!(facet_category(&none, &mut rng), None, "{none}");
        }
    }
}
