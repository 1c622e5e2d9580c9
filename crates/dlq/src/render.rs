//! What the operator reads: list lines, tables, summaries and the inspect document. Pure
//! string building; the commands print it.

use std::collections::BTreeMap;

use runtime::DeadLetter;
use serde_json::{json, Value as Json};

use crate::kafka::Watermarks;
use crate::letter::bytes_to_json;
use crate::redrive_log::{RedriveEntry, RedriveHistory};
use crate::Coordinates;

/// Longest reason shown on a list line, in characters.
pub const REASON_CHARS: usize = 100;

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, proleptic Gregorian).
pub fn rfc3339_millis(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(86_400_000);
    let ms_of_day = epoch_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day): the era-based conversion (400-year cycles
/// of 146 097 days, years starting in March so the leap day is the last of the year).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// One line of text: whitespace runs become one space, and at most `max` characters are
/// kept (an ellipsis marks the cut).
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn redriven_label(count: u32) -> String {
    match count {
        0 => "no".into(),
        n => format!("yes({n})"),
    }
}

/// `list TOPIC`: one dead letter. `redrive_count` is its count in the redrive log.
pub fn letter_line(at: &Coordinates, letter: &DeadLetter, redrive_count: u32) -> String {
    format!(
        "{}/{}  {}  {}  from {}/{}/{}  attempts={}  processor={}  redriven={}  {}",
        at.partition,
        at.offset,
        rfc3339_millis(letter.failed_at),
        letter.error_kind.as_str(),
        letter.source_topic,
        letter.source_partition,
        letter.source_offset,
        letter.attempts,
        letter.processor,
        redriven_label(redrive_count),
        one_line(&letter.reason, REASON_CHARS),
    )
}

/// `list TOPIC`: a record of the topic that is not a readable dead letter.
pub fn undecodable_line(at: &Coordinates, reason: &str) -> String {
    format!(
        "{}/{}  not a readable dead letter: {}",
        at.partition,
        at.offset,
        one_line(reason, REASON_CHARS)
    )
}

/// Counts of one dead-letter topic on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicCounts {
    pub partitions: usize,
    /// Sum of high - low watermarks (offsets, so transaction markers count too).
    pub records: i64,
    /// Distinct dead letters still in the topic that were redriven.
    pub redriven: usize,
}

impl TopicCounts {
    pub fn new(topic: &str, marks: &[Watermarks], history: &RedriveHistory) -> Self {
        Self {
            partitions: marks.len(),
            records: marks.iter().map(Watermarks::count).sum(),
            redriven: marks
                .iter()
                .map(|m| history.redriven_in(topic, m.partition, m.low..m.high))
                .sum(),
        }
    }
}

/// The `limit` newest of `lines` by time (ties by coordinates), oldest first.
pub fn newest(mut lines: Vec<(i64, Coordinates, String)>, limit: usize) -> Vec<String> {
    lines.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let skip = lines.len().saturating_sub(limit);
    lines
        .into_iter()
        .skip(skip)
        .map(|(_, _, line)| line)
        .collect()
}

/// `list`: every dead-letter topic; `None` counts = not on the broker.
pub fn topics_table(rows: &[(String, Option<TopicCounts>)]) -> String {
    let width = rows
        .iter()
        .map(|(name, _)| name.len())
        .chain(["DEAD-LETTER TOPIC".len()])
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{:<width$}  {:>8}  {:>8}\n",
        "DEAD-LETTER TOPIC", "RECORDS", "REDRIVEN"
    );
    for (name, counts) in rows {
        match counts {
            Some(c) => out.push_str(&format!(
                "{name:<width$}  {:>8}  {:>8}\n",
                c.records, c.redriven
            )),
            None => out.push_str(&format!("{name:<width$}  (not on the broker)\n")),
        }
    }
    out
}

/// `list TOPIC`: the heading above the lines.
pub fn topic_heading(topic: &str, counts: &TopicCounts, shown: usize) -> String {
    let mut out = format!(
        "{topic}: {} record(s) in {} partition(s), {} redriven",
        counts.records, counts.partitions, counts.redriven
    );
    if i64::try_from(shown).map_or(true, |s| s < counts.records) {
        out.push_str(&format!("; showing the newest {shown} (--limit)"));
    }
    out
}

/// `redrive`: one record redriven (or, in a dry run, that would be).
pub fn redrive_line(
    at: &Coordinates,
    to: &str,
    n: u32,
    not_before_ms: i64,
    now_ms: i64,
    dry_run: bool,
) -> String {
    let verb = if dry_run { "would redrive" } else { "redriven" };
    let wait_secs = (not_before_ms - now_ms) as f64 / 1000.0;
    format!(
        "{verb} {}/{} -> {to}  n={n}  not before {} (+{wait_secs:.1}s)",
        at.partition,
        at.offset,
        rfc3339_millis(not_before_ms)
    )
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub dlq_topic: String,
    pub dry_run: bool,
    pub selected: usize,
    pub redriven: usize,
    pub already_redriven: usize,
    pub failed: usize,
    pub undecodable: usize,
    pub targets: BTreeMap<String, usize>,
}

pub fn summary(s: &Summary) -> String {
    let verb = if s.dry_run {
        "would redrive"
    } else {
        "redriven"
    };
    let mut out = format!(
        "{}{}: selected {}, {verb} {}, skipped (already redriven) {}",
        if s.dry_run { "dry run, " } else { "" },
        s.dlq_topic,
        s.selected,
        s.redriven,
        s.already_redriven
    );
    if s.already_redriven > 0 {
        out.push_str(" (--again redrives those too)");
    }
    if s.failed > 0 {
        out.push_str(&format!(", FAILED {}", s.failed));
    }
    if s.undecodable > 0 {
        out.push_str(&format!(
            "; {} record(s) not readable as dead letters, left alone",
            s.undecodable
        ));
    }
    for (topic, count) in &s.targets {
        out.push_str(&format!("\n  -> {topic}: {count}"));
    }
    out
}

/// `inspect`: the whole dead letter. `key` and `value` are the original key and value as
/// the caller decoded them (Avro when framed, else text or hex).
pub fn inspect_document(
    at: &Coordinates,
    letter: &DeadLetter,
    key: Json,
    value: Json,
    redrive: Option<&RedriveEntry>,
) -> Json {
    let headers: Vec<Json> = letter
        .headers
        .iter()
        .map(|h| json!({"key": h.key, "value": h.value.as_deref().map(bytes_to_json)}))
        .collect();
    json!({
        "dead_letter": {"topic": at.topic, "partition": at.partition, "offset": at.offset},
        "source": {
            "topic": letter.source_topic,
            "partition": letter.source_partition,
            "offset": letter.source_offset,
            "timestamp": letter.original_timestamp.map(rfc3339_millis),
        },
        "processor": letter.processor,
        "consumer_group": letter.consumer_group,
        "error_kind": letter.error_kind.as_str(),
        "reason": letter.reason,
        "attempts": letter.attempts,
        "failed_at": rfc3339_millis(letter.failed_at),
        "original_schema_id": letter.original_schema_id,
        "original_key": key,
        "original_value": value,
        "original_headers": headers,
        "redrive": redrive.map(|r| json!({
            "count": r.count,
            "to": r.to,
            "redriven_at": rfc3339_millis(r.redriven_at),
            "not_before": rfc3339_millis(r.not_before),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::letter;
    use runtime::DeadLetterErrorKind;

    #[test]
    fn timestamps_are_utc_rfc3339_with_millis() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_764_300_000_500),
            "2025-11-28T03:20:00.500Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(4_102_444_800_000),
            "2100-01-01T00:00:00.000Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        // Nonsense from the wire must not panic.
        let _ = rfc3339_millis(i64::MIN);
        let _ = rfc3339_millis(i64::MAX);
    }

    #[test]
    fn reasons_are_flattened_and_cut_on_character_boundaries() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("ééééé", 3), "éé…");
        assert_eq!(one_line("abc", 3), "abc");
        assert_eq!(one_line("abcd", 0), "…");
    }

    #[test]
    fn a_list_line_names_every_triage_fact() {
        let mut l = letter(DeadLetterErrorKind::RetriesExhausted);
        l.reason = format!("timeout\n{}", "x".repeat(300));
        let line = letter_line(&Coordinates::new("dlq.a.v1", 1, 42), &l, 0);
        assert!(
            line.starts_with(
                "1/42  2025-11-28T03:20:00.500Z  RETRIES_EXHAUSTED  \
                 from orders.order-placed.v1/4/99  attempts=5  processor=shipping  \
                 redriven=no  timeout xxx"
            ),
            "{line}"
        );
        assert!(line.ends_with('…') && !line.contains('\n'), "{line}");
        let again = letter_line(&Coordinates::new("dlq.a.v1", 1, 42), &l, 2);
        assert!(again.contains("redriven=yes(2)"), "{again}");
    }

    #[test]
    fn the_topics_table_aligns_counts_and_flags_missing_topics() {
        let rows = vec![
            (
                "dlq.shipping.order-placed.v1".to_string(),
                Some(TopicCounts {
                    partitions: 3,
                    records: 12,
                    redriven: 3,
                }),
            ),
            ("dlq.b.v1".to_string(), None),
        ];
        let table = topics_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("dlq.shipping.order-placed.v1  "));
        assert!(lines[1].ends_with("      12         3"), "{:?}", lines[1]);
        assert!(lines[2].contains("(not on the broker)"));
        assert_eq!(lines[0].len(), lines[1].len());
    }

    #[test]
    fn topic_counts_sum_partitions_and_count_redrives_still_in_the_topic() {
        let mut history = RedriveHistory::default();
        let entry = RedriveEntry {
            redriven_at: 0,
            to: "t".into(),
            not_before: 0,
            count: 1,
        };
        history.insert(Coordinates::new("dlq.a.v1", 0, 1), entry.clone());
        history.insert(Coordinates::new("dlq.a.v1", 1, 50), entry.clone());
        history.insert(Coordinates::new("dlq.a.v1", 1, 5), entry);
        let marks = [
            Watermarks {
                partition: 0,
                low: 0,
                high: 4,
            },
            Watermarks {
                partition: 1,
                low: 10,
                high: 60,
            },
        ];
        assert_eq!(
            TopicCounts::new("dlq.a.v1", &marks, &history),
            TopicCounts {
                partitions: 2,
                records: 54,
                redriven: 2,
            },
            "1/5 is below the low watermark: deleted by retention"
        );
    }

    #[test]
    fn newest_keeps_the_latest_lines_in_time_order() {
        let at = |p, o| Coordinates::new("t", p, o);
        let lines = vec![
            (30, at(0, 2), "c".to_string()),
            (10, at(0, 0), "a".to_string()),
            (20, at(1, 0), "b".to_string()),
            (30, at(0, 1), "c0".to_string()),
        ];
        assert_eq!(newest(lines.clone(), 2), vec!["c0", "c"]);
        assert_eq!(newest(lines.clone(), 10), vec!["a", "b", "c0", "c"]);
        assert!(newest(lines, 0).is_empty());
    }

    #[test]
    fn the_heading_mentions_the_limit_only_when_it_hides_records() {
        let counts = TopicCounts {
            partitions: 2,
            records: 5,
            redriven: 1,
        };
        assert!(!topic_heading("t", &counts, 5).contains("--limit"));
        assert!(topic_heading("t", &counts, 2).contains("showing the newest 2"));
    }

    #[test]
    fn the_summary_counts_and_lists_targets() {
        let s = Summary {
            dlq_topic: "dlq.a.v1".into(),
            dry_run: false,
            selected: 3,
            redriven: 2,
            already_redriven: 1,
            failed: 0,
            undecodable: 1,
            targets: BTreeMap::from([("orders.order-placed.v1".to_string(), 2)]),
        };
        assert_eq!(
            summary(&s),
            "dlq.a.v1: selected 3, redriven 2, skipped (already redriven) 1 \
             (--again redrives those too); 1 record(s) not readable as dead letters, \
             left alone\n  -> orders.order-placed.v1: 2"
        );
        let dry = summary(&Summary {
            dry_run: true,
            failed: 1,
            ..s
        });
        assert!(dry.starts_with("dry run, dlq.a.v1: selected 3, would redrive 2"));
        assert!(dry.contains("FAILED 1"));
    }

    #[test]
    fn the_inspect_document_has_the_whole_dead_letter() {
        let l = letter(DeadLetterErrorKind::Processing);
        let doc = inspect_document(
            &Coordinates::new("dlq.a.v1", 0, 3),
            &l,
            bytes_to_json(b"order-1"),
            json!({"format": "avro", "value": {"order_id": "o-1"}}),
            None,
        );
        assert_eq!(doc["dead_letter"]["offset"], 3);
        assert_eq!(doc["source"]["topic"], "orders.order-placed.v1");
        assert_eq!(doc["source"]["timestamp"], "2025-11-28T03:20:00.000Z");
        assert_eq!(doc["error_kind"], "PROCESSING");
        assert_eq!(doc["original_key"]["text"], "order-1");
        assert_eq!(doc["original_value"]["value"]["order_id"], "o-1");
        assert_eq!(doc["original_headers"][0]["key"], "trace-id");
        assert_eq!(doc["original_headers"][0]["value"]["text"], "t-1");
        assert_eq!(doc["redrive"], Json::Null);
    }
}
