//! Rebuilding a partition's store from its changelog, whole batches only.

use super::changelog::{apply, Decoded};
use super::store::PartitionStore;

/// Feeds changelog records in offset order into a store.
///
/// A batch is applied when its last part arrives. If another batch starts while one is
/// incomplete, the incomplete one lost records to compaction (a later batch exists, so it
/// was written whole) and is applied as it is; if the same batch id starts again at part 0,
/// the earlier attempt was cut by a crash and is discarded. Whatever is incomplete at the
/// end was cut by a crash and is dropped by [`Restorer::finish`].
pub struct Restorer<V> {
    store: PartitionStore<V>,
    open: Vec<(Decoded<V>, i64)>,
    pub applied_records: u64,
}

impl<V> Restorer<V> {
    pub fn new(store: PartitionStore<V>) -> Self {
        Self {
            store,
            open: Vec::new(),
            applied_records: 0,
        }
    }

    pub fn push(&mut self, record: Decoded<V>, offset: i64) {
        if let Some((first, _)) = self.open.first() {
            if first.batch != record.batch {
                self.apply_open();
            } else if record.index == 0 {
                self.open.clear();
            }
        }
        let complete = record.index + 1 == record.count;
        self.open.push((record, offset));
        if complete {
            self.apply_open();
        }
    }

    fn apply_open(&mut self) {
        for (record, offset) in self.open.drain(..) {
            apply(&mut self.store, record.change);
            self.store.changelog_next = offset + 1;
            self.applied_records += 1;
        }
    }

    /// The restored store. `changelog_next` points after the last applied batch, so a
    /// dropped partial batch is read again (and dropped again, or superseded) next time.
    pub fn finish(mut self) -> PartitionStore<V> {
        self.open.clear();
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::changelog::{batch, decode, ChangelogRecord};
    use crate::state::State;

    fn handle(
        store: &mut PartitionStore<i64>,
        key: &str,
        add: i64,
        offset: i64,
    ) -> Vec<ChangelogRecord> {
        let mut state = State::new(store);
        let now = state.get(key).copied().unwrap_or(0);
        state.put(key, now + add);
        state.set_timer(key, 1_000 + offset, "expire");
        let total = state.get("total").copied().unwrap_or(0);
        state.put("total", total + add);
        let dirty = state.into_dirty();
        store.mark_applied("in", offset);
        batch(store, &dirty, &format!("g:{offset}")).unwrap()
    }

    fn decoded(record: &ChangelogRecord) -> Decoded<i64> {
        decode(&record.key, record.value.as_deref(), |name| {
            record
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    fn restore(log: &[ChangelogRecord]) -> PartitionStore<i64> {
        let mut r = Restorer::new(PartitionStore::default());
        for (offset, record) in log.iter().enumerate() {
            r.push(decoded(record), offset as i64);
        }
        r.finish()
    }

    #[test]
    fn a_full_log_restores_values_timers_and_applied_offsets() {
        let mut live = PartitionStore::default();
        let mut log = Vec::new();
        for (i, key) in ["a", "b", "a"].iter().enumerate() {
            log.extend(handle(&mut live, key, 5, i as i64));
        }
        // One record per changed key: value, timer and applied offsets travel together.
        assert_eq!(log.len(), 6);
        assert!(log.iter().all(|r| r.headers.is_empty()));
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&10));
        assert_eq!(restored.get("b"), Some(&5));
        assert_eq!(restored.get("total"), Some(&15));
        assert_eq!(restored.timer("a").unwrap().at_ms, 1_002);
        assert!(restored.already_applied("in", 2));
        assert!(!restored.already_applied("in", 3));
        assert_eq!(restored.changelog_next, log.len() as i64);
    }

    #[test]
    fn a_batch_cut_by_a_crash_at_the_end_is_dropped() {
        let mut live = PartitionStore::default();
        let mut log = handle(&mut live, "a", 5, 0);
        let mut state = State::new(&mut live);
        state.put("b", 1);
        state.put("c", 1);
        let dirty = state.into_dirty();
        live.mark_applied("in", 1);
        let second = batch(&live, &dirty, "g:1").unwrap();
        assert_eq!(second.len(), 2);
        log.push(second[0].clone()); // crash after the first record of the batch
        let restored = restore(&log);
        assert_eq!(restored.get("b"), None, "partial batch not applied");
        assert!(
            !restored.already_applied("in", 1),
            "so offset 1 is processed again"
        );
        assert_eq!(restored.changelog_next, 2, "after the first, whole batch");
    }

    #[test]
    fn an_interior_batch_thinned_by_compaction_still_applies() {
        let mut live = PartitionStore::default();
        let mut state = State::new(&mut live);
        state.put("a", 1);
        state.put("z", 1);
        let dirty = state.into_dirty();
        live.mark_applied("in", 0);
        let mut log = batch(&live, &dirty, "g:0").unwrap();
        log.remove(1); // compaction removed z: superseded later
        let mut state = State::new(&mut live);
        state.put("z", 2);
        let dirty = state.into_dirty();
        live.mark_applied("in", 1);
        log.extend(batch(&live, &dirty, "g:1").unwrap());
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&1));
        assert_eq!(restored.get("z"), Some(&2));
        assert!(restored.already_applied("in", 1));
    }

    #[test]
    fn deletes_are_tombstones_and_a_batch_of_deletes_carries_its_marker_alone() {
        let mut live = PartitionStore::<i64>::default();
        let mut log = handle(&mut live, "a", 1, 0);
        let mut state = State::new(&mut live);
        state.delete("a");
        state.cancel_timer("a");
        state.delete("total");
        let dirty = state.into_dirty();
        live.mark_applied("in", 1);
        let b = batch(&live, &dirty, "g:1").unwrap();
        assert_eq!(b.len(), 3);
        assert!(
            b[..2].iter().all(|r| r.value.is_none()),
            "deletes are tombstones"
        );
        assert_eq!(b[2].key, crate::state::changelog::MARKER_KEY);
        log.extend(b);
        let restored = restore(&log);
        assert_eq!(restored.get("a"), None);
        assert!(restored.timer("a").is_none());
        assert!(restored.next_due(i64::MAX).is_none());
        assert!(restored.already_applied("in", 1));
    }

    #[test]
    fn the_first_format_still_restores() {
        let header = |batch: &str, part: &str| {
            vec![
                (crate::state::BATCH_HEADER.to_string(), batch.to_string()),
                (crate::state::PART_HEADER.to_string(), part.to_string()),
            ]
        };
        let log = vec![
            ChangelogRecord {
                key: "v/a".into(),
                value: Some(b"7".to_vec()),
                headers: header("in:0:0", "0/3"),
            },
            ChangelogRecord {
                key: "t/a".into(),
                value: Some(br#"{"key":"a","at_ms":9,"payload":"x"}"#.to_vec()),
                headers: header("in:0:0", "1/3"),
            },
            ChangelogRecord {
                key: "a/in".into(),
                value: Some(b"0".to_vec()),
                headers: header("in:0:0", "2/3"),
            },
        ];
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&7));
        assert_eq!(restored.timer("a").unwrap().at_ms, 9);
        assert!(restored.already_applied("in", 0));
    }

    mod crashes {
        use super::*;
        use proptest::prelude::*;

        /// Runs `inputs` (key index, amount) like the runtime does, crashing as told: each
        /// crash keeps only `keep` records of the log's last batch and rewinds the committed
        /// offset by `rewind` records, then restores from the log and carries on, skipping
        /// inputs the restored markers cover. Returns the final store.
        fn run_with_crashes(
            inputs: &[(u8, i64)],
            crashes: &[(usize, usize, usize)],
        ) -> PartitionStore<i64> {
            let mut log: Vec<ChangelogRecord> = Vec::new();
            let mut live = PartitionStore::default();
            let mut committed = 0usize;
            let mut next = 0usize;
            let mut crash_iter = crashes.iter().peekable();
            while next < inputs.len() {
                if let Some(&&(at, keep, rewind)) = crash_iter.peek() {
                    if at <= next {
                        crash_iter.next();
                        // The last batch may be cut anywhere. The committer never commits
                        // an input whose batch is not fully acknowledged, so a cut batch's
                        // input is at or after the committed offset.
                        if let Some(last) = log.last().map(decoded) {
                            let written = last.index as usize + 1;
                            if keep < written {
                                let start = log.len() - written;
                                log.truncate(start + keep);
                                let input: usize =
                                    last.batch.trim_start_matches("g:").parse().unwrap();
                                committed = committed.min(input);
                            }
                        }
                        live = restore(&log);
                        next = committed.saturating_sub(rewind);
                        committed = next;
                        continue;
                    }
                }
                let offset = next as i64;
                if !live.already_applied("in", offset) {
                    let (key, amount) = inputs[next];
                    log.extend(handle(&mut live, &format!("k{key}"), amount, offset));
                }
                next += 1;
                committed = next;
            }
            live
        }

        proptest! {
            #[test]
            fn any_crash_sequence_ends_in_the_state_of_a_sequential_replay(
                inputs in proptest::collection::vec((0u8..5, -50i64..50), 1..60),
                crashes in proptest::collection::vec((0usize..60, 0usize..4, 0usize..10), 0..6),
            ) {
                let mut crashes = crashes;
                crashes.sort();
                let crashed = run_with_crashes(&inputs, &crashes);
                let mut sequential = PartitionStore::default();
                for (offset, (key, amount)) in inputs.iter().enumerate() {
                    let _ = handle(&mut sequential, &format!("k{key}"), *amount, offset as i64);
                }
                prop_assert_eq!(crashed.get("total"), sequential.get("total"));
                for key in 0u8..5 {
                    let k = format!("k{key}");
                    prop_assert_eq!(crashed.get(&k), sequential.get(&k), "value of {}", k);
                    prop_assert_eq!(crashed.timer(&k), sequential.timer(&k));
                }
            }
        }
    }
}
