//! The redrive log `dlq.redrives.v1`: one record per redrive, written only after the
//! redriven record was acknowledged. Key `<dlq topic>/<partition>/<offset>` (UTF-8), value a
//! small JSON object:
//!
//! ```json
//! {"redriven_at": 1764300000000, "to": "orders.order-placed.v1",
//!  "not_before": 1764300021345, "count": 1}
//! ```
//!
//! `redriven_at` and `not_before` are milliseconds since the Unix epoch; `count` is how many
//! redrives this record's lineage has had, this one included (1 the first time; see
//! [`RedriveHistory::previous_count`]). Folding the log gives every dead letter's history.

use std::collections::HashMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::Coordinates;

pub const TOPIC: &str = "dlq.redrives.v1";
/// Used when the topology does not declare the log topic: one partition (the log is tiny and
/// read whole), deleted after 30 days like the dead letters themselves.
pub const DEFAULT_PARTITIONS: i32 = 1;
pub const DEFAULT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveEntry {
    pub redriven_at: i64,
    pub to: String,
    pub not_before: i64,
    pub count: u32,
}

impl RedriveEntry {
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of integers and a string always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogRecordError {
    #[error("key {0:?} is not <dlq topic>/<partition>/<offset>")]
    Key(String),
    #[error("value is not a redrive entry: {0}")]
    Value(String),
}

/// The log folded: the latest (highest-count) entry per dead letter.
#[derive(Debug, Default, Clone)]
pub struct RedriveHistory {
    latest: HashMap<Coordinates, RedriveEntry>,
}

impl RedriveHistory {
    /// Applies one log record. A malformed record is an error the caller reports and skips;
    /// it never poisons the rest of the log.
    pub fn apply(&mut self, key: &[u8], value: &[u8]) -> Result<(), LogRecordError> {
        let key_text = String::from_utf8_lossy(key);
        let at = Coordinates::parse(&key_text)
            .ok_or_else(|| LogRecordError::Key(key_text.to_string()))?;
        let entry: RedriveEntry =
            serde_json::from_slice(value).map_err(|e| LogRecordError::Value(e.to_string()))?;
        self.insert(at, entry);
        Ok(())
    }

    pub fn insert(&mut self, at: Coordinates, entry: RedriveEntry) {
        match self.latest.get(&at) {
            Some(known) if known.count > entry.count => {}
            _ => {
                self.latest.insert(at, entry);
            }
        }
    }

    /// Count of the latest redrive of exactly this dead letter; 0 if never redriven.
    pub fn count(&self, at: &Coordinates) -> u32 {
        self.latest.get(at).map_or(0, |e| e.count)
    }

    pub fn latest(&self, at: &Coordinates) -> Option<&RedriveEntry> {
        self.latest.get(at)
    }

    /// How many redrives came before the next redrive of `at` (its `n`).
    ///
    /// A redriven record that fails again is dead-lettered anew, at new coordinates, with the
    /// `sf.redriven-from` header it was redriven with (`parent`). Counting from 0 again would
    /// reset the backoff every cycle, so a dead letter never redriven itself continues its
    /// parent's count: the backoff keeps growing across redrive → fail → redrive.
    pub fn previous_count(&self, at: &Coordinates, parent: Option<&Coordinates>) -> u32 {
        match self.count(at) {
            0 => parent.map_or(0, |p| self.count(p)),
            own => own,
        }
    }

    /// Distinct dead letters of `topic`/`partition` with offsets in `range` that were
    /// redriven at least once.
    pub fn redriven_in(&self, topic: &str, partition: i32, range: Range<i64>) -> usize {
        self.latest
            .keys()
            .filter(|at| {
                at.topic == topic && at.partition == partition && range.contains(&at.offset)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(count: u32) -> RedriveEntry {
        RedriveEntry {
            redriven_at: 1_000,
            to: "orders.order-placed.v1".into(),
            not_before: 31_000,
            count,
        }
    }

    #[test]
    fn the_entry_is_the_documented_small_json() {
        let json: serde_json::Value = serde_json::from_slice(&entry(1).to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"redriven_at": 1000, "to": "orders.order-placed.v1",
                "not_before": 31000, "count": 1})
        );
    }

    #[test]
    fn folding_keeps_the_highest_count_per_dead_letter() {
        let mut h = RedriveHistory::default();
        let key = b"dlq.a.v1/0/7";
        h.apply(key, &entry(2).to_json()).unwrap();
        h.apply(key, &entry(1).to_json()).unwrap();
        h.apply(b"dlq.a.v1/1/7", &entry(1).to_json()).unwrap();
        let at = Coordinates::new("dlq.a.v1", 0, 7);
        assert_eq!(h.count(&at), 2);
        assert_eq!(h.count(&Coordinates::new("dlq.a.v1", 0, 8)), 0);
        assert_eq!(h.redriven_in("dlq.a.v1", 0, 0..100), 1);
        assert_eq!(h.redriven_in("dlq.a.v1", 0, 8..100), 0, "offset 7 outside");
        assert_eq!(h.redriven_in("dlq.b.v1", 0, 0..100), 0);
    }

    #[test]
    fn malformed_log_records_are_typed_errors_and_change_nothing() {
        let mut h = RedriveHistory::default();
        assert!(matches!(
            h.apply(b"nonsense", &entry(1).to_json()),
            Err(LogRecordError::Key(_))
        ));
        assert!(matches!(
            h.apply(b"dlq.a.v1/0/1", b"{\"count\": \"x\"}"),
            Err(LogRecordError::Value(_))
        ));
        assert_eq!(h.count(&Coordinates::new("dlq.a.v1", 0, 1)), 0);
    }

    #[test]
    fn a_dead_letter_of_a_redriven_record_continues_its_parents_count() {
        let mut h = RedriveHistory::default();
        let parent = Coordinates::new("dlq.a.v1", 0, 1);
        let child = Coordinates::new("dlq.a.v1", 0, 9);
        assert_eq!(h.previous_count(&child, Some(&parent)), 0, "nothing logged");
        h.insert(parent.clone(), entry(2));
        assert_eq!(h.previous_count(&child, Some(&parent)), 2);
        assert_eq!(h.previous_count(&child, None), 0);
        h.insert(child.clone(), entry(3));
        assert_eq!(h.previous_count(&child, Some(&parent)), 3, "own count wins");
    }
}
