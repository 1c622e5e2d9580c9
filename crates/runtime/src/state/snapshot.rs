//! Local snapshots: a store written to disk with the changelog offset it covers, so a
//! restart restores only the changelog's tail. Written atomically (temp file + rename); a
//! missing, unreadable or newer-than-the-log snapshot is ignored and the full log is read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::{PartitionStore, Timer};

#[derive(Serialize, Deserialize)]
struct SnapshotFile<V> {
    changelog_next: i64,
    values: HashMap<String, V>,
    timers: Vec<Timer>,
    applied: HashMap<String, i64>,
}

/// What is written: the same shape as [`SnapshotFile`], borrowing the store's values.
#[derive(Serialize)]
struct SnapshotOut<'a, V: Serialize> {
    changelog_next: i64,
    #[serde(serialize_with = "shared_values")]
    values: &'a HashMap<String, Arc<V>>,
    timers: Vec<Timer>,
    applied: &'a HashMap<String, i64>,
}

fn shared_values<S: serde::Serializer, V: Serialize>(
    values: &&HashMap<String, Arc<V>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(values.iter().map(|(k, v)| (k, v.as_ref())))
}

pub fn write_snapshot<V: Serialize>(path: &Path, store: &PartitionStore<V>) -> std::io::Result<()> {
    let file = SnapshotOut {
        changelog_next: store.changelog_next,
        values: &store.values,
        timers: store
            .timers
            .iter()
            .map(|((at, key), payload)| Timer {
                key: key.clone(),
                at_ms: *at,
                payload: payload.clone(),
            })
            .collect(),
        applied: &store.applied,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A temp file of this writer's own: two writers of one partition's snapshot (a periodic
    // one in the acker beside the drain's, or a late one from the partition's previous owner
    // sharing the state folder) must never write into the same file; each rename is atomic,
    // and any complete snapshot is a correct starting point for the changelog's tail.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{unique}.tmp", std::process::id()));
    let mut writer = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    serde_json::to_writer(&mut writer, &file).map_err(std::io::Error::other)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

/// The snapshot at `path`, if it exists, parses, and covers no more than `changelog_end`.
pub fn read_snapshot<V: DeserializeOwned>(
    path: &Path,
    changelog_end: i64,
) -> Option<PartitionStore<V>> {
    let bytes = std::fs::read(path).ok()?;
    let file: SnapshotFile<V> = serde_json::from_slice(&bytes).ok()?;
    if file.changelog_next > changelog_end {
        return None; // the changelog was recreated or truncated: the snapshot is not ours
    }
    let mut store = PartitionStore {
        values: file
            .values
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
        applied: file.applied,
        changelog_next: file.changelog_next,
        ..PartitionStore::default()
    };
    for timer in file.timers {
        store.put_timer(timer);
    }
    Some(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_is_refused_when_ahead_of_the_log() {
        let dir = std::env::temp_dir().join(format!("sf-snap-{}", std::process::id()));
        let path = dir.join("p0.json");
        let mut store = PartitionStore::<u32>::default();
        store.values.insert("k".into(), std::sync::Arc::new(7));
        store.put_timer(Timer {
            key: "k".into(),
            at_ms: 9,
            payload: "x".into(),
        });
        store.applied.insert("in".into(), 41);
        store.changelog_next = 100;
        write_snapshot(&path, &store).unwrap();
        let back: PartitionStore<u32> = read_snapshot(&path, 100).unwrap();
        assert_eq!(back.get("k"), Some(&7));
        assert_eq!(back.timer("k").unwrap().at_ms, 9);
        assert!(back.already_applied("in", 41));
        assert_eq!(back.changelog_next, 100);
        assert!(read_snapshot::<u32>(&path, 99).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn writers_of_one_snapshot_at_once_leave_a_whole_one() {
        // Two writers of one partition's snapshot once shared a temp file: the result mixed
        // their bytes at the write buffer's 8 KiB boundary and did not parse.
        let dir = std::env::temp_dir().join(format!("sf-snap-race-{}", std::process::id()));
        let path = dir.join("p0.json");
        let stores: Vec<PartitionStore<u32>> = (0..4u32)
            .map(|w| {
                let mut store = PartitionStore::<u32>::default();
                for k in 0..5_000u32 {
                    store
                        .values
                        .insert(format!("key-{w}-{k}"), std::sync::Arc::new(k));
                }
                store.changelog_next = i64::from(w) + 1;
                store
            })
            .collect();
        for _ in 0..5 {
            std::thread::scope(|scope| {
                for store in &stores {
                    let path = &path;
                    scope.spawn(move || write_snapshot(path, store).unwrap());
                }
            });
            let back: PartitionStore<u32> = read_snapshot(&path, 10).expect("a whole snapshot");
            assert_eq!(back.len(), 5_000);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
