//! Changelog records: how a store mutation is written to, and read back from, Kafka.
//!
//! Keys are namespaced: `v/<key>` a value (JSON), `t/<key>` a timer (JSON), `a/<topic>` the
//! applied-offset marker of an input topic. A `None` value is a tombstone.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::store::{Dirty, PartitionStore, Timer};

pub const BATCH_HEADER: &str = "sf.batch";
pub const PART_HEADER: &str = "sf.part";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub batch: String,
    pub index: u32,
    pub count: u32,
}

impl ChangelogRecord {
    pub fn part_header(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }

    /// Parses the `i/n` part header.
    pub fn parse_part(text: &str) -> Option<(u32, u32)> {
        let (i, n) = text.split_once('/')?;
        let (i, n) = (i.parse().ok()?, n.parse().ok()?);
        (i < n).then_some((i, n))
    }
}

/// The batch for one handled input: every dirty value and timer as it is now, then the
/// applied-offset marker (`applied` = input topic and offset) when there is an input.
pub(crate) fn batch<V: Serialize>(
    store: &PartitionStore<V>,
    dirty: &BTreeSet<Dirty>,
    applied: Option<(&str, i64)>,
    batch_id: &str,
) -> Result<Vec<ChangelogRecord>, serde_json::Error> {
    let mut entries: Vec<(String, Option<Vec<u8>>)> = Vec::with_capacity(dirty.len() + 1);
    for d in dirty {
        match d {
            Dirty::Value(k) => {
                let value = store.values.get(k).map(serde_json::to_vec).transpose()?;
                entries.push((format!("v/{k}"), value));
            }
            Dirty::Timer(k) => {
                let value = store.timer(k).map(|t| serde_json::to_vec(&t)).transpose()?;
                entries.push((format!("t/{k}"), value));
            }
        }
    }
    if let Some((topic, offset)) = applied {
        entries.push((format!("a/{topic}"), Some(offset.to_string().into_bytes())));
    }
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| ChangelogRecord {
            key,
            value,
            batch: batch_id.to_string(),
            index: u32::try_from(i).unwrap_or(u32::MAX),
            count,
        })
        .collect())
}

/// Applies one changelog entry to a store.
pub(crate) fn apply<V: DeserializeOwned>(
    store: &mut PartitionStore<V>,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), String> {
    if let Some(k) = key.strip_prefix("v/") {
        match value {
            Some(bytes) => {
                let v = serde_json::from_slice(bytes).map_err(|e| format!("value {k}: {e}"))?;
                store.values.insert(k.to_string(), v);
            }
            None => {
                store.values.remove(k);
            }
        }
    } else if let Some(k) = key.strip_prefix("t/") {
        match value {
            Some(bytes) => {
                let t: Timer =
                    serde_json::from_slice(bytes).map_err(|e| format!("timer {k}: {e}"))?;
                store.put_timer(t);
            }
            None => {
                store.remove_timer(k);
            }
        }
    } else if let Some(topic) = key.strip_prefix("a/") {
        let text = value.map(String::from_utf8_lossy).unwrap_or_default();
        let offset = text
            .parse::<i64>()
            .map_err(|e| format!("applied marker {topic}: {e}"))?;
        store.applied.insert(topic.to_string(), offset);
    } else {
        return Err(format!("unknown changelog key {key:?}"));
    }
    Ok(())
}
