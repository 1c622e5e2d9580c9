//! What the shoppers got from the endpoints that depend on another service (search,
//! recommendations): the report's section for each, counted from the answers received.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::percentile;

/// What the shoppers got from one dependency-backed endpoint (search, recommendations), as
/// they saw it: the report's section for it.
#[derive(Default)]
pub(super) struct AnswerFigures {
    /// Latency of every request, answered or not.
    pub(super) micros: Vec<i64>,
    /// Requests that carried a category (a filter, a cold-start hint).
    pub(super) filtered: u64,
    /// Answers by what they were: the `source` a 2xx answer named (`search`, `catalog`,
    /// `recommendations`, `popular`),
    /// `status <code>` for any other status, `no answer` when none came.
    pub(super) outcomes: BTreeMap<String, u64>,
    /// 2xx answers whose `degraded` named something, and each name's count.
    pub(super) degraded_answers: u64,
    pub(super) degraded: BTreeMap<String, u64>,
}

impl AnswerFigures {
    /// One request: its latency, whether it named a category, and its answer
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

    /// The report's section: `heading` first (`search (what the shoppers' searches got…)`).
    pub(super) fn report(&mut self, heading: &str, load_secs: f64) -> Vec<String> {
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
            format!("  {heading}; latency in ms, as they waited"),
            format!(
                "    requests {requests} ({:.1}/s; with a category {})  p50 {:.1}  p95 {:.1}  p99 {:.1}",
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
    use serde_json::json;

    #[test]
    fn the_section_counts_what_the_answers_said() {
        let mut f = AnswerFigures::default();
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
        let text = f.report("search", 4.0).join("\n");
        assert!(
            text.contains("requests 8 (2.0/s; with a category 2)"),
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
        let empty = AnswerFigures::default().report("search", 1.0).join("\n");
        assert!(empty.contains("requests 0") && empty.contains("degraded answers 0 (none)"));
    }
}
