//! The shoppers' searches: what they type (words of product titles they know, sometimes a
//! category filter) and the report's search section, counted from the answers they got.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::Value;

use crate::percentile;

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

/// What the shoppers' searches got, as they saw it.
#[derive(Default)]
pub(super) struct SearchFigures {
    /// Latency of every search request, answered or not.
    pub(super) micros: Vec<i64>,
    /// Requests that carried a category filter.
    pub(super) filtered: u64,
    /// Answers by what they were: the `source` a 2xx answer named (`search`, `catalog`),
    /// `status <code>` for any other status, `no answer` when none came.
    pub(super) outcomes: BTreeMap<String, u64>,
    /// 2xx answers whose `degraded` named something, and each name's count.
    pub(super) degraded_answers: u64,
    pub(super) degraded: BTreeMap<String, u64>,
}

impl SearchFigures {
    /// One search request: its latency, whether it filtered by category, and its answer
    /// (status and body), if one came.
    pub(super) fn record(&mut self, micros: i64, filtered: bool, answer: Option<(u16, &Value)>) {
        self.micros.push(micros);
        self.filtered += u64::from(filtered);
        let outcome = match answer {
            None => "no answer".to_string(),
            Some((status, body)) if (200..300).contains(&status) => {
                let names: Vec<&str> = body["degraded"]
                    .as_array()
                    .map(|d| d.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !names.is_empty() {
                    self.degraded_answers += 1;
                    for name in names {
                        *self.degraded.entry(name.to_string()).or_default() += 1;
                    }
                }
                body["source"].as_str().unwrap_or("unnamed").to_string()
            }
            Some((status, _)) => format!("status {status}"),
        };
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    /// The report's search section.
    pub(super) fn report(&mut self, load_secs: f64) -> Vec<String> {
        self.micros.sort_unstable();
        let ms = |p| percentile(&self.micros, p) as f64 / 1000.0;
        let requests = self.micros.len();
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        vec![
            "  search (what the shoppers' searches got; latency in ms, as they waited)".into(),
            format!(
                "    requests {requests} ({:.1}/s; with a category filter {})  p50 {:.1}  p95 {:.1}  p99 {:.1}",
                requests as f64 / load_secs.max(f64::EPSILON),
                self.filtered,
                ms(0.50),
                ms(0.95),
                ms(0.99)
            ),
            format!("    answers by source: {}", list(&self.outcomes)),
            format!(
                "    degraded answers {} ({})",
                self.degraded_answers,
                list(&self.degraded)
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

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

    #[test]
    fn the_section_counts_what_the_answers_said() {
        let mut f = SearchFigures::default();
        let search = json!({"source": "search", "hits": [], "degraded": []});
        let shard = json!({"source": "search", "hits": [], "degraded": ["shard:Technology"]});
        let catalog = json!({"source": "catalog", "hits": [], "degraded": ["search"]});
        let refused = json!({"error": {"code": "empty_query"}, "degraded": ["ignored"]});
        for (ms, filtered, answer) in [
            (1, false, Some((200, &search))),
            (2, true, Some((200, &search))),
            (3, false, Some((200, &shard))),
            (4, true, Some((200, &catalog))),
            (5, false, Some((200, &catalog))),
            (6, false, Some((400, &refused))),
            (7, false, Some((503, &Value::Null))),
            (8, false, None),
        ] {
            f.record(ms * 1000, filtered, answer);
        }
        assert_eq!(f.filtered, 2);
        assert_eq!(f.degraded_answers, 3);
        let text = f.report(4.0).join("\n");
        assert!(
            text.contains("requests 8 (2.0/s; with a category filter 2)"),
            "{text}"
        );
        assert!(text.contains("p50 5.0  p95 8.0  p99 8.0"), "{text}");
        assert!(
            text.contains(
                "answers by source: catalog: 2, no answer: 1, search: 3, status 400: 1, status 503: 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("degraded answers 3 (search: 2, shard:Technology: 1)"),
            "{text}"
        );
        let empty = SearchFigures::default().report(1.0).join("\n");
        assert!(empty.contains("requests 0") && empty.contains("degraded answers 0 (none)"));
    }
}
