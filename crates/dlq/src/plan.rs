//! Which dead letters a redrive takes, where each goes, with which headers: decisions only,
//! no I/O. The caller reads the records and the redrive log, and produces what this plans.

use std::collections::BTreeMap;

use runtime::{headers, DeadLetter, DeadLetterErrorKind, DeadLetterHeader};

use crate::redrive_log::RedriveHistory;
use crate::Coordinates;

/// `--partition P --offset O`, or `--all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One { partition: i32, offset: i64 },
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub target: Target,
    /// `--error-kind`: only dead letters of this kind.
    pub error_kind: Option<DeadLetterErrorKind>,
    /// `--again`: also dead letters already redriven.
    pub again: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    NotSelected,
    AlreadyRedriven {
        count: u32,
    },
    /// Redrive it; `n` redrives came before (the backoff exponent).
    Redrive {
        n: u32,
    },
}

impl Selection {
    pub fn decide(
        &self,
        at: &Coordinates,
        letter: &DeadLetter,
        history: &RedriveHistory,
    ) -> Decision {
        if let Target::One { partition, offset } = self.target {
            if at.partition != partition || at.offset != offset {
                return Decision::NotSelected;
            }
        }
        if self
            .error_kind
            .is_some_and(|kind| kind != letter.error_kind)
        {
            return Decision::NotSelected;
        }
        let own = history.count(at);
        if own > 0 && !self.again {
            return Decision::AlreadyRedriven { count: own };
        }
        Decision::Redrive {
            n: history.previous_count(at, redriven_from(letter).as_ref()),
        }
    }
}

/// The dead letter's `sf.redriven-from` (the last one, should there be several): set when
/// the record that failed was itself a redrive.
pub fn redriven_from(letter: &DeadLetter) -> Option<Coordinates> {
    let header = letter
        .headers
        .iter()
        .rev()
        .find(|h| h.key == headers::REDRIVEN_FROM)?;
    Coordinates::parse(std::str::from_utf8(header.value.as_deref()?).ok()?)
}

/// One dead letter to re-produce.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRedrive {
    pub at: Coordinates,
    pub to: String,
    pub n: u32,
    pub letter: DeadLetter,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub redrives: Vec<PlannedRedrive>,
    /// Selected but already redriven (no `--again`), with their counts.
    pub already_redriven: Vec<(Coordinates, u32)>,
    /// Records of the DLQ topic that are not decodable dead letters (never redriven).
    pub undecodable: Vec<(Coordinates, String)>,
}

impl Plan {
    pub fn selected(&self) -> usize {
        self.redrives.len() + self.already_redriven.len()
    }

    /// Redrive counts per target topic.
    pub fn targets(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for r in &self.redrives {
            *out.entry(r.to.as_str()).or_default() += 1;
        }
        out
    }
}

/// Decides every record read from the DLQ topic, in order. `to` overrides each letter's
/// `source_topic` (`--to`).
pub fn plan(
    records: Vec<(Coordinates, Result<DeadLetter, String>)>,
    selection: &Selection,
    to: Option<&str>,
    history: &RedriveHistory,
) -> Plan {
    let mut out = Plan::default();
    for (at, letter) in records {
        let letter = match letter {
            Ok(letter) => letter,
            Err(reason) => {
                out.undecodable.push((at, reason));
                continue;
            }
        };
        match selection.decide(&at, &letter, history) {
            Decision::NotSelected => {}
            Decision::AlreadyRedriven { count } => out.already_redriven.push((at, count)),
            Decision::Redrive { n } => out.redrives.push(PlannedRedrive {
                to: to.unwrap_or(&letter.source_topic).to_string(),
                at,
                n,
                letter,
            }),
        }
    }
    out
}

/// The headers of the redriven record: the original ones in order, minus every `sf.*` one a
/// previous redrive (or anything else) set, plus this redrive's deferral and provenance.
pub fn redrive_headers(
    original: &[DeadLetterHeader],
    from: &Coordinates,
    not_before_ms: i64,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> = original
        .iter()
        .filter(|h| !h.key.starts_with("sf."))
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    out.push((
        headers::NOT_BEFORE.to_string(),
        Some(not_before_ms.to_string().into_bytes()),
    ));
    out.push((
        headers::REDRIVEN_FROM.to_string(),
        Some(from.to_string().into_bytes()),
    ));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::redrive_log::RedriveEntry;

    pub(crate) fn letter(kind: DeadLetterErrorKind) -> DeadLetter {
        DeadLetter {
            original_key: Some(b"order-1".to_vec()),
            original_value: Some(vec![0, 0, 0, 0, 1, 2]),
            source_topic: "orders.order-placed.v1".into(),
            source_partition: 4,
            source_offset: 99,
            original_timestamp: Some(1_764_300_000_000),
            original_schema_id: Some(1),
            processor: "shipping".into(),
            consumer_group: "storefleet.shipping".into(),
            error_kind: kind,
            reason: "carrier timed out".into(),
            attempts: 5,
            failed_at: 1_764_300_000_500,
            headers: vec![DeadLetterHeader {
                key: "trace-id".into(),
                value: Some(b"t-1".to_vec()),
            }],
        }
    }

    fn logged(count: u32) -> RedriveEntry {
        RedriveEntry {
            redriven_at: 0,
            to: "orders.order-placed.v1".into(),
            not_before: 0,
            count,
        }
    }

    fn all() -> Selection {
        Selection {
            target: Target::All,
            error_kind: None,
            again: false,
        }
    }

    fn at(offset: i64) -> Coordinates {
        Coordinates::new("dlq.shipping.order-placed.v1", 0, offset)
    }

    #[test]
    fn one_target_selects_only_its_coordinates() {
        let s = Selection {
            target: Target::One {
                partition: 0,
                offset: 3,
            },
            ..all()
        };
        let h = RedriveHistory::default();
        let l = letter(DeadLetterErrorKind::Processing);
        assert_eq!(s.decide(&at(3), &l, &h), Decision::Redrive { n: 0 });
        assert_eq!(s.decide(&at(4), &l, &h), Decision::NotSelected);
        let other_partition = Coordinates::new(at(3).topic, 1, 3);
        assert_eq!(s.decide(&other_partition, &l, &h), Decision::NotSelected);
    }

    #[test]
    fn the_error_kind_filter_selects_only_that_kind() {
        let s = Selection {
            error_kind: Some(DeadLetterErrorKind::RetriesExhausted),
            ..all()
        };
        let h = RedriveHistory::default();
        let retries = letter(DeadLetterErrorKind::RetriesExhausted);
        let decode = letter(DeadLetterErrorKind::Decode);
        assert_eq!(s.decide(&at(0), &retries, &h), Decision::Redrive { n: 0 });
        assert_eq!(s.decide(&at(0), &decode, &h), Decision::NotSelected);
    }

    #[test]
    fn already_redriven_letters_are_skipped_unless_again_which_continues_the_count() {
        let mut h = RedriveHistory::default();
        h.insert(at(1), logged(2));
        let l = letter(DeadLetterErrorKind::Processing);
        assert_eq!(
            all().decide(&at(1), &l, &h),
            Decision::AlreadyRedriven { count: 2 }
        );
        let again = Selection {
            again: true,
            ..all()
        };
        assert_eq!(again.decide(&at(1), &l, &h), Decision::Redrive { n: 2 });
        assert_eq!(again.decide(&at(2), &l, &h), Decision::Redrive { n: 0 });
    }

    #[test]
    fn a_letter_from_a_failed_redrive_inherits_its_parents_count() {
        let mut h = RedriveHistory::default();
        h.insert(at(1), logged(1));
        let mut child = letter(DeadLetterErrorKind::Processing);
        child.headers.push(DeadLetterHeader {
            key: headers::REDRIVEN_FROM.into(),
            value: Some(at(1).to_string().into_bytes()),
        });
        assert_eq!(redriven_from(&child), Some(at(1)));
        assert_eq!(all().decide(&at(7), &child, &h), Decision::Redrive { n: 1 });
    }

    #[test]
    fn planning_splits_redrives_skips_and_undecodable_records_and_routes_targets() {
        let mut h = RedriveHistory::default();
        h.insert(at(1), logged(1));
        let records = vec![
            (at(0), Ok(letter(DeadLetterErrorKind::Processing))),
            (at(1), Ok(letter(DeadLetterErrorKind::Processing))),
            (at(2), Err("not Avro".to_string())),
            (at(3), Ok(letter(DeadLetterErrorKind::Decode))),
        ];
        let p = plan(records.clone(), &all(), None, &h);
        assert_eq!(p.redrives.len(), 2);
        assert_eq!(p.already_redriven, vec![(at(1), 1)]);
        assert_eq!(p.undecodable.len(), 1);
        assert_eq!(p.selected(), 3);
        assert_eq!(
            p.targets().into_iter().collect::<Vec<_>>(),
            vec![("orders.order-placed.v1", 2)]
        );

        let redirected = plan(records, &all(), Some("orders.retry.v1"), &h);
        assert!(redirected
            .redrives
            .iter()
            .all(|r| r.to == "orders.retry.v1"));
    }

    #[test]
    fn redrive_headers_keep_the_originals_and_replace_every_sf_header() {
        let original = vec![
            DeadLetterHeader {
                key: "trace-id".into(),
                value: Some(b"t-1".to_vec()),
            },
            DeadLetterHeader {
                key: headers::NOT_BEFORE.into(),
                value: Some(b"1".to_vec()),
            },
            DeadLetterHeader {
                key: headers::REDRIVEN_FROM.into(),
                value: Some(b"old/0/0".to_vec()),
            },
            DeadLetterHeader {
                key: "empty".into(),
                value: None,
            },
        ];
        let out = redrive_headers(&original, &at(5), 1_764_300_030_000);
        assert_eq!(
            out,
            vec![
                ("trace-id".to_string(), Some(b"t-1".to_vec())),
                ("empty".to_string(), None),
                ("sf.not-before".to_string(), Some(b"1764300030000".to_vec())),
                (
                    "sf.redriven-from".to_string(),
                    Some(b"dlq.shipping.order-placed.v1/0/5".to_vec())
                ),
            ]
        );
    }
}
