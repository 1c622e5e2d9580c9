//! The in-memory store of one partition and the mutable view a handler gets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A durable timer: fires once at `at_ms` for `key`, carrying `payload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub key: String,
    pub at_ms: i64,
    pub payload: String,
}

/// State of one input partition. Single writer: the driver task of the instance that owns
/// the partition; nothing else holds a reference while a record is handled.
///
/// Values are shared (`Arc`), so a snapshot is a cheap copy of the map taken between records
/// and written out on another thread while handling goes on.
#[derive(Debug, Clone)]
pub struct PartitionStore<V> {
    pub(crate) values: HashMap<String, Arc<V>>,
    /// Due order: (at, key) → payload; one timer per key.
    pub(crate) timers: BTreeMap<(i64, String), String>,
    pub(crate) timer_at: HashMap<String, i64>,
    /// Input topic → last applied offset of this partition.
    pub(crate) applied: HashMap<String, i64>,
    /// Changelog offset after the last record this store reflects.
    pub changelog_next: i64,
}

impl<V> Default for PartitionStore<V> {
    fn default() -> Self {
        Self {
            values: HashMap::new(),
            timers: BTreeMap::new(),
            timer_at: HashMap::new(),
            applied: HashMap::new(),
            changelog_next: 0,
        }
    }
}

impl<V> PartitionStore<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.values.get(key).map(Arc::as_ref)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// True when `offset` of `topic` is already reflected in this store.
    pub fn already_applied(&self, topic: &str, offset: i64) -> bool {
        self.applied.get(topic).is_some_and(|done| offset <= *done)
    }

    /// Input topic → last applied offset.
    pub fn applied(&self) -> &HashMap<String, i64> {
        &self.applied
    }

    /// Every key with a value, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The earliest timer due at or before `now_ms`.
    pub fn next_due(&self, now_ms: i64) -> Option<Timer> {
        let ((at, key), payload) = self.timers.iter().next()?;
        (*at <= now_ms).then(|| Timer {
            key: key.clone(),
            at_ms: *at,
            payload: payload.clone(),
        })
    }

    pub(crate) fn put_timer(&mut self, timer: Timer) {
        self.remove_timer(&timer.key);
        self.timer_at.insert(timer.key.clone(), timer.at_ms);
        self.timers.insert((timer.at_ms, timer.key), timer.payload);
    }

    pub(crate) fn remove_timer(&mut self, key: &str) -> Option<Timer> {
        let at = self.timer_at.remove(key)?;
        let payload = self.timers.remove(&(at, key.to_string()))?;
        Some(Timer {
            key: key.to_string(),
            at_ms: at,
            payload,
        })
    }

    pub fn timer(&self, key: &str) -> Option<Timer> {
        let at = *self.timer_at.get(key)?;
        let payload = self.timers.get(&(at, key.to_string()))?.clone();
        Some(Timer {
            key: key.to_string(),
            at_ms: at,
            payload,
        })
    }

    /// Every timer, in due order.
    pub fn timers(&self) -> impl Iterator<Item = Timer> + '_ {
        self.timers.iter().map(|((at, key), payload)| Timer {
            key: key.clone(),
            at_ms: *at,
            payload: payload.clone(),
        })
    }

    /// Sets `key`'s value and timer at once (restore and snapshots).
    pub(crate) fn set_entry(&mut self, key: &str, value: Option<V>, timer: Option<(i64, String)>) {
        match value {
            Some(v) => {
                self.values.insert(key.to_string(), Arc::new(v));
            }
            None => {
                self.values.remove(key);
            }
        }
        self.remove_timer(key);
        if let Some((at_ms, payload)) = timer {
            self.put_timer(Timer {
                key: key.to_string(),
                at_ms,
                payload,
            });
        }
    }

    /// Records that `offset` of `topic` is applied (never moves a marker back): once its
    /// outputs are safe, so a redelivery of it is skipped.
    pub fn mark_applied(&mut self, topic: &str, offset: i64) {
        let done = self.applied.entry(topic.to_string()).or_insert(offset);
        *done = (*done).max(offset);
    }
}

/// The handler's view of its partition's state while it handles one record. Records which
/// keys changed (value or timer) so the driver writes exactly those to the changelog.
pub struct State<'a, V> {
    store: &'a mut PartitionStore<V>,
    dirty: BTreeSet<String>,
    /// First-touch copies, to undo a failed handler's changes.
    undo_values: Vec<(String, Option<Arc<V>>)>,
    undo_timers: Vec<(String, Option<Timer>)>,
}

impl<'a, V: Clone> State<'a, V> {
    pub(crate) fn new(store: &'a mut PartitionStore<V>) -> Self {
        Self {
            store,
            dirty: BTreeSet::new(),
            undo_values: Vec::new(),
            undo_timers: Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.store.get(key)
    }

    pub fn put(&mut self, key: &str, value: V) {
        self.touch_value(key);
        self.store.values.insert(key.to_string(), Arc::new(value));
    }

    pub fn delete(&mut self, key: &str) -> Option<V> {
        self.touch_value(key);
        self.store
            .values
            .remove(key)
            .map(|v| Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Sets (or moves) the timer of `key`; it fires once, at or after `at_ms`.
    pub fn set_timer(&mut self, key: &str, at_ms: i64, payload: &str) {
        self.touch_timer(key);
        self.store.put_timer(Timer {
            key: key.to_string(),
            at_ms,
            payload: payload.to_string(),
        });
    }

    pub fn cancel_timer(&mut self, key: &str) -> Option<Timer> {
        self.touch_timer(key);
        self.store.remove_timer(key)
    }

    fn touch_value(&mut self, key: &str) {
        if !self.undo_values.iter().any(|(k, _)| k == key) {
            let old = self.store.values.get(key).cloned();
            self.undo_values.push((key.to_string(), old));
        }
        self.dirty.insert(key.to_string());
    }

    fn touch_timer(&mut self, key: &str) {
        if !self.undo_timers.iter().any(|(k, _)| k == key) {
            self.undo_timers
                .push((key.to_string(), self.store.timer(key)));
        }
        self.dirty.insert(key.to_string());
    }

    /// Undoes every change made through this view (the handler failed).
    pub(crate) fn rollback(self) {
        for (key, old) in self.undo_values.into_iter().rev() {
            match old {
                Some(v) => self.store.values.insert(key, v),
                None => self.store.values.remove(&key),
            };
        }
        for (key, old) in self.undo_timers.into_iter().rev() {
            self.store.remove_timer(&key);
            if let Some(t) = old {
                self.store.put_timer(t);
            }
        }
    }

    /// The keys whose value or timer changed.
    pub(crate) fn into_dirty(self) -> BTreeSet<String> {
        self.dirty
    }
}
