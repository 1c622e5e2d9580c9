//! Rebuilding a partition's store from its changelog, whole batches only.

use serde::de::DeserializeOwned;

use super::changelog::{apply, ChangelogRecord};
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
    open: Vec<(ChangelogRecord, i64)>,
    pub applied_records: u64,
}

impl<V: DeserializeOwned> Restorer<V> {
    pub fn new(store: PartitionStore<V>) -> Self {
        Self {
            store,
            open: Vec::new(),
            applied_records: 0,
        }
    }

    pub fn push(&mut self, record: ChangelogRecord, offset: i64) -> Result<(), String> {
        if let Some((first, _)) = self.open.first() {
            if first.batch != record.batch {
                self.apply_open()?;
            } else if record.index == 0 {
                self.open.clear();
            }
        }
        let complete = record.index + 1 == record.count;
        self.open.push((record, offset));
        if complete {
            self.apply_open()?;
        }
        Ok(())
    }

    fn apply_open(&mut self) -> Result<(), String> {
        for (record, offset) in self.open.drain(..) {
            apply(&mut self.store, &record.key, record.value.as_deref())?;
            self.store.changelog_next = offset + 1;
            self.applied_records += 1;
        }
        Ok(())
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
    use std::collections::BTreeSet;

    use super::*;
    use crate::state::changelog::batch;
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
        let dirty: BTreeSet<_> = state.into_dirty();
        store.applied.insert("in".into(), offset);
        batch(store, &dirty, Some(("in", offset)), &format!("in:{offset}")).unwrap()
    }

    fn restore(log: &[ChangelogRecord]) -> PartitionStore<i64> {
        let mut r = Restorer::new(PartitionStore::default());
        for (offset, record) in log.iter().enumerate() {
            r.push(record.clone(), offset as i64).unwrap();
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
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&10));
        assert_eq!(restored.get("b"), Some(&5));
        assert_eq!(restored.timer("a").unwrap().at_ms, 1_002);
        assert!(restored.already_applied("in", 2));
        assert!(!restored.already_applied("in", 3));
        assert_eq!(restored.changelog_next, log.len() as i64);
    }

    #[test]
    fn a_batch_cut_by_a_crash_is_dropped_and_its_retry_applies_once() {
        let mut live = PartitionStore::default();
        let mut log = handle(&mut live, "a", 5, 0);
        let second = handle(&mut live, "a", 5, 1);
        log.push(second[0].clone()); // crash after the first record of batch in:1
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&5), "partial batch not applied");
        assert!(
            !restored.already_applied("in", 1),
            "so offset 1 is processed again"
        );

        // The retry writes the whole batch again after the fragment.
        let mut again = restored.clone();
        log.extend(handle(&mut again, "a", 5, 1));
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&10), "applied exactly once");
        assert!(restored.already_applied("in", 1));
    }

    #[test]
    fn an_interior_batch_thinned_by_compaction_still_applies() {
        let mut live = PartitionStore::default();
        let mut log = handle(&mut live, "a", 1, 0);
        log.remove(1); // compaction removed the timer record: superseded later
        log.extend(handle(&mut live, "b", 1, 1));
        let restored = restore(&log);
        assert_eq!(restored.get("a"), Some(&1));
        assert_eq!(restored.get("b"), Some(&1));
    }

    #[test]
    fn deletes_and_cancelled_timers_are_tombstones() {
        let mut live = PartitionStore::<i64>::default();
        let mut log = handle(&mut live, "a", 1, 0);
        let mut state = State::new(&mut live);
        state.delete("a");
        state.cancel_timer("a");
        let dirty = state.into_dirty();
        let b = batch(&live, &dirty, Some(("in", 1)), "in:1").unwrap();
        assert!(b[..2].iter().all(|r| r.value.is_none()));
        log.extend(b);
        let restored = restore(&log);
        assert_eq!(restored.get("a"), None);
        assert!(restored.timer("a").is_none());
        assert!(restored.next_due(i64::MAX).is_none());
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
                        if let Some(last) = log.last().cloned() {
                            let written = last.index as usize + 1;
                            if keep < written {
                                let start = log.len() - written;
                                log.truncate(start + keep);
                                let input: usize =
                                    last.batch.trim_start_matches("in:").parse().unwrap();
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
                for key in 0u8..5 {
                    let k = format!("k{key}");
                    prop_assert_eq!(crashed.get(&k), sequential.get(&k), "value of {}", k);
                    prop_assert_eq!(crashed.timer(&k), sequential.timer(&k));
                }
            }
        }
    }
}
