//! Changelog records: how store changes are written to, and read back from, Kafka.
//!
//! A key's value and timer travel together as one record `v/<key>` whose payload is a JSON
//! *entry*: `{"b": batch id, "i": index, "n": count, "v": value, "t": [at, payload],
//! "a": {input topic: applied offset}}`. `a`, the applied offsets of every input of the
//! partition, rides on the last record of each batch; a batch that changed no key writes
//! them alone under the key `m/`. A key with neither value nor timer is a tombstone (so
//! compaction can drop it), which carries its batch position in the `sf.batch` / `sf.part`
//! headers instead. Entries need no headers: on the SQLite broker every header is one more
//! row per record.
//!
//! Read compatibility with the first format (issue 4): `v/<key>` holding the bare JSON value
//! and `t/<key>` / `a/<topic>` records, all positioned by headers, still restore.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::{PartitionStore, Timer};

pub const BATCH_HEADER: &str = "sf.batch";
pub const PART_HEADER: &str = "sf.part";
/// The key of a batch that carries applied offsets only.
pub const MARKER_KEY: &str = "m/";

/// A changelog record that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("entry {key}")]
    Entry {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown changelog key {0:?}")]
    UnknownKey(String),
    #[error("entry {key}: part {index}/{count}")]
    Part { key: String, index: u32, count: u32 },
    #[error("tombstone {0} without batch headers")]
    HeaderlessTombstone(String),
    #[error("value {key}")]
    Value {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("timer {key}")]
    Timer {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("applied marker {topic}")]
    AppliedMarker {
        topic: String,
        #[source]
        source: std::num::ParseIntError,
    },
}

/// A record to produce to the changelog (the store's partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

#[derive(Serialize)]
struct EntryOut<'a, V> {
    b: &'a str,
    i: u32,
    n: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<&'a V>,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<(i64, &'a str)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<&'a HashMap<String, i64>>,
}

#[derive(Deserialize)]
#[serde(bound = "V: DeserializeOwned")]
struct EntryIn<V> {
    b: String,
    i: u32,
    n: u32,
    #[serde(default)]
    v: Option<V>,
    #[serde(default)]
    t: Option<(i64, String)>,
    #[serde(default)]
    a: Option<HashMap<String, i64>>,
}

/// The batch for the changes of `dirty` keys, each as the store holds it now, with the
/// store's applied offsets on the last record. Deleted keys come first, as tombstones; the
/// offsets ride on the last live entry, or alone under [`MARKER_KEY`] when no key is live
/// (never on a tombstone, which compaction removes).
pub fn batch<V: Serialize>(
    store: &PartitionStore<V>,
    dirty: &BTreeSet<String>,
    batch_id: &str,
) -> Result<Vec<ChangelogRecord>, serde_json::Error> {
    let timer_of = |key: &String| {
        store.timer_at.get(key.as_str()).and_then(|at| {
            store
                .timers
                .get(&(*at, key.clone()))
                .map(|p| (*at, p.as_str()))
        })
    };
    let (live, deleted): (Vec<&String>, Vec<&String>) = dirty
        .iter()
        .partition(|k| store.get(k).is_some() || timer_of(k).is_some());
    let marker_alone = live.is_empty();
    let count = deleted.len() + live.len() + usize::from(marker_alone);
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(count as usize);
    for key in deleted {
        let index = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out.push(ChangelogRecord {
            key: format!("v/{key}"),
            value: None,
            headers: vec![
                (BATCH_HEADER.to_string(), batch_id.to_string()),
                (PART_HEADER.to_string(), format!("{index}/{count}")),
            ],
        });
    }
    let live_count = live.len();
    for (i, key) in live.into_iter().enumerate() {
        let index = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out.push(entry(
            key,
            store.get(key),
            timer_of(key),
            (i + 1 == live_count).then_some(&store.applied),
            batch_id,
            index,
            count,
        )?);
    }
    if marker_alone {
        let entry = EntryOut::<V> {
            b: batch_id,
            i: count - 1,
            n: count,
            v: None,
            t: None,
            a: Some(&store.applied),
        };
        out.push(ChangelogRecord {
            key: MARKER_KEY.to_string(),
            value: Some(serde_json::to_vec(&entry)?),
            headers: Vec::new(),
        });
    }
    Ok(out)
}

/// The record of one live key at `index` of a batch of `count` (the form [`batch`] writes;
/// benchmarks write changelogs directly with it).
#[allow(clippy::too_many_arguments)]
pub fn entry<V: Serialize>(
    key: &str,
    value: Option<&V>,
    timer: Option<(i64, &str)>,
    applied: Option<&HashMap<String, i64>>,
    batch_id: &str,
    index: u32,
    count: u32,
) -> Result<ChangelogRecord, serde_json::Error> {
    let entry = EntryOut {
        b: batch_id,
        i: index,
        n: count,
        v: value,
        t: timer,
        a: applied,
    };
    Ok(ChangelogRecord {
        key: format!("v/{key}"),
        value: Some(serde_json::to_vec(&entry)?),
        headers: Vec::new(),
    })
}

/// One changelog record read back: its batch position and what it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<V> {
    pub batch: String,
    pub index: u32,
    pub count: u32,
    pub change: Change<V>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change<V> {
    /// Value and timer of a key (either may be absent), and the applied offsets when the
    /// record ends its batch.
    Entry {
        key: String,
        value: Option<V>,
        timer: Option<(i64, String)>,
        applied: Option<HashMap<String, i64>>,
    },
    /// The key is gone (value and timer).
    Deleted(String),
    /// First format: a bare value, a timer, an applied offset.
    Value(String, Option<V>),
    Timer(String, Option<Timer>),
    Applied(String, i64),
}

impl ChangelogRecord {
    /// Parses the `i/n` part header.
    pub fn parse_part(text: &str) -> Option<(u32, u32)> {
        let (i, n) = text.split_once('/')?;
        let (i, n) = (i.parse().ok()?, n.parse().ok()?);
        (i < n).then_some((i, n))
    }
}

/// Reads one record (`headers` looked up by name) of either format.
pub fn decode<V: DeserializeOwned>(
    key: &str,
    payload: Option<&[u8]>,
    header: impl Fn(&str) -> Option<String>,
) -> Result<Decoded<V>, ChangelogError> {
    let positioned = header(BATCH_HEADER).zip(
        header(PART_HEADER)
            .as_deref()
            .and_then(ChangelogRecord::parse_part),
    );
    match (positioned, payload) {
        (None, Some(bytes)) => {
            let entry: EntryIn<V> =
                serde_json::from_slice(bytes).map_err(|source| ChangelogError::Entry {
                    key: key.to_string(),
                    source,
                })?;
            let change = match key.strip_prefix("v/") {
                Some(k) => Change::Entry {
                    key: k.to_string(),
                    value: entry.v,
                    timer: entry.t,
                    applied: entry.a,
                },
                None if key == MARKER_KEY => Change::Entry {
                    key: String::new(),
                    value: None,
                    timer: None,
                    applied: entry.a,
                },
                None => return Err(ChangelogError::UnknownKey(key.to_string())),
            };
            if entry.i >= entry.n {
                return Err(ChangelogError::Part {
                    key: key.to_string(),
                    index: entry.i,
                    count: entry.n,
                });
            }
            Ok(Decoded {
                batch: entry.b,
                index: entry.i,
                count: entry.n,
                change,
            })
        }
        (None, None) => Err(ChangelogError::HeaderlessTombstone(key.to_string())),
        (Some((batch, (index, count))), payload) => {
            let change = decode_first_format(key, payload)?;
            Ok(Decoded {
                batch,
                index,
                count,
                change,
            })
        }
    }
}

fn decode_first_format<V: DeserializeOwned>(
    key: &str,
    payload: Option<&[u8]>,
) -> Result<Change<V>, ChangelogError> {
    if let Some(k) = key.strip_prefix("v/") {
        return match payload {
            None => Ok(Change::Deleted(k.to_string())),
            Some(bytes) => {
                let v = serde_json::from_slice(bytes).map_err(|source| ChangelogError::Value {
                    key: k.to_string(),
                    source,
                })?;
                Ok(Change::Value(k.to_string(), Some(v)))
            }
        };
    }
    if let Some(k) = key.strip_prefix("t/") {
        let timer = payload
            .map(|bytes| {
                serde_json::from_slice(bytes).map_err(|source| ChangelogError::Timer {
                    key: k.to_string(),
                    source,
                })
            })
            .transpose()?;
        return Ok(Change::Timer(k.to_string(), timer));
    }
    if let Some(topic) = key.strip_prefix("a/") {
        let text = payload.map(String::from_utf8_lossy).unwrap_or_default();
        let offset = text
            .parse::<i64>()
            .map_err(|source| ChangelogError::AppliedMarker {
                topic: topic.to_string(),
                source,
            })?;
        return Ok(Change::Applied(topic.to_string(), offset));
    }
    Err(ChangelogError::UnknownKey(key.to_string()))
}

/// Applies one decoded change to a store.
pub(crate) fn apply<V>(store: &mut PartitionStore<V>, change: Change<V>) {
    match change {
        Change::Entry {
            key,
            value,
            timer,
            applied,
        } => {
            if !key.is_empty() {
                store.set_entry(&key, value, timer);
            }
            for (topic, offset) in applied.into_iter().flatten() {
                store.mark_applied(&topic, offset);
            }
        }
        Change::Deleted(key) => store.set_entry(&key, None, None),
        Change::Value(key, value) => {
            let timer = store.timer(&key).map(|t| (t.at_ms, t.payload));
            store.set_entry(&key, value, timer);
        }
        Change::Timer(key, timer) => {
            store.remove_timer(&key);
            if let Some(t) = timer {
                store.put_timer(t);
            }
        }
        Change::Applied(topic, offset) => store.mark_applied(&topic, offset),
    }
}
