//! What the monitor remembers between samples: each partition's last `window` samples (what
//! the status rules and the rates look at), each instance's and dead-letter topic's previous
//! count (for rates and changes), and each group's chart series over the history duration.
//!
//! Single writer: the sampler task owns the one `History` and is the only one to change it;
//! HTTP handlers see copies published with each sample.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::model::HistoryPoint;
use crate::rules::Observation;

/// One partition of one group at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSample {
    pub at_ms: i64,
    pub committed: Option<i64>,
    /// Where the group's unconsumed records start (committed offset, or the low watermark).
    pub start: i64,
    pub high: i64,
    pub lag: i64,
    /// Age of the oldest unconsumed record (ms), 0 without lag; `None` when unread.
    pub time_lag_ms: Option<i64>,
    /// Offsets past `start` holding nothing a consumer reads (transaction markers, aborted
    /// records): not counted in `lag`.
    pub marker_offsets: i64,
}

impl PartitionSample {
    pub fn observation(&self) -> Observation {
        Observation {
            at_ms: self.at_ms,
            committed: self.committed,
            lag: self.lag,
            time_lag_ms: self.time_lag_ms,
        }
    }
}

/// (group, topic, partition)
pub type PartitionKey = (String, String, i32);

#[derive(Debug)]
pub struct History {
    window: usize,
    keep_ms: i64,
    partitions: HashMap<PartitionKey, VecDeque<PartitionSample>>,
    /// (owner, instance) → (sample time, counter)
    instances: HashMap<(String, u16), (i64, f64)>,
    dlq: HashMap<String, i64>,
    series: BTreeMap<String, VecDeque<HistoryPoint>>,
}

impl History {
    pub fn new(window: usize, keep_ms: i64) -> Self {
        // The rules need two samples to compare.
        Self {
            window: window.max(2),
            keep_ms,
            partitions: HashMap::new(),
            instances: HashMap::new(),
            dlq: HashMap::new(),
            series: BTreeMap::new(),
        }
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Appends a partition's sample; returns its window, oldest first, the new one last.
    pub fn record_partition(
        &mut self,
        key: PartitionKey,
        sample: PartitionSample,
    ) -> &VecDeque<PartitionSample> {
        let window = self.window;
        let samples = self.partitions.entry(key).or_default();
        // A sample older than the last (a clock step back) restarts the window.
        if samples.back().is_some_and(|last| last.at_ms > sample.at_ms) {
            samples.clear();
        }
        samples.push_back(sample);
        while samples.len() > window {
            samples.pop_front();
        }
        samples
    }

    /// Records/s of an instance's counter since its previous sample (a counter that went
    /// down was restarted: counted from zero).
    pub fn instance_rate(
        &mut self,
        owner: &str,
        index: u16,
        at_ms: i64,
        total: Option<f64>,
    ) -> Option<f64> {
        let key = (owner.to_string(), index);
        let Some(total) = total else {
            self.instances.remove(&key);
            return None;
        };
        let previous = self.instances.insert(key, (at_ms, total));
        let (then, before) = previous?;
        let seconds = (at_ms - then) as f64 / 1000.0;
        if seconds <= 0.0 {
            return None;
        }
        let delta = if total >= before {
            total - before
        } else {
            total
        };
        Some(delta / seconds)
    }

    /// A dead-letter topic's count change since the previous sample.
    pub fn dlq_change(&mut self, topic: &str, records: Option<i64>) -> Option<i64> {
        let Some(records) = records else {
            self.dlq.remove(topic);
            return None;
        };
        let before = self.dlq.insert(topic.to_string(), records)?;
        Some(records - before)
    }

    /// Appends a chart point, dropping points older than the history duration.
    pub fn push_point(&mut self, group: &str, point: HistoryPoint) {
        let horizon = point.at_ms - self.keep_ms;
        let points = self.series.entry(group.to_string()).or_default();
        points.push_back(point);
        while points.front().is_some_and(|p| p.at_ms < horizon) {
            points.pop_front();
        }
    }

    /// Every group's chart series, oldest point first.
    pub fn series(&self) -> BTreeMap<String, Vec<HistoryPoint>> {
        self.series
            .iter()
            .map(|(group, points)| (group.clone(), points.iter().cloned().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn sample(at_ms: i64, lag: i64) -> PartitionSample {
        PartitionSample {
            at_ms,
            committed: Some(0),
            start: 0,
            high: lag,
            lag,
            time_lag_ms: Some(0),
            marker_offsets: 0,
        }
    }

    #[test]
    fn partition_windows_keep_the_last_n_samples() {
        let mut history = History::new(3, 60_000);
        let key: PartitionKey = ("g".into(), "t".into(), 0);
        for i in 0..5 {
            history.record_partition(key.clone(), sample(i * 1000, i));
        }
        let window = history.record_partition(key.clone(), sample(5000, 5));
        let lags: Vec<i64> = window.iter().map(|s| s.lag).collect();
        assert_eq!(lags, vec![3, 4, 5]);
        // A clock step back starts over.
        let window = history.record_partition(key, sample(100, 9));
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn instance_rates_come_from_consecutive_counters() {
        let mut history = History::new(3, 60_000);
        assert_eq!(history.instance_rate("p", 0, 0, Some(100.0)), None);
        assert_eq!(
            history.instance_rate("p", 0, 2000, Some(300.0)),
            Some(100.0)
        );
        // Restarted: the counter began again from 0.
        assert_eq!(history.instance_rate("p", 0, 4000, Some(50.0)), Some(25.0));
        // Unreachable, then back: no rate across the gap.
        assert_eq!(history.instance_rate("p", 0, 6000, None), None);
        assert_eq!(history.instance_rate("p", 0, 8000, Some(70.0)), None);
    }

    #[test]
    fn dlq_changes_and_chart_horizon() {
        let mut history = History::new(3, 10_000);
        assert_eq!(history.dlq_change("dlq.a", Some(3)), None);
        assert_eq!(history.dlq_change("dlq.a", Some(5)), Some(2));
        for at in [0, 5_000, 10_000, 15_000, 20_000] {
            history.push_point(
                "g",
                HistoryPoint {
                    at_ms: at,
                    offset_lag: 0,
                    max_time_lag_seconds: Some(0.0),
                    consume_rate: None,
                    status: Status::Ok,
                },
            );
        }
        let kept: Vec<i64> = history.series()["g"].iter().map(|p| p.at_ms).collect();
        assert_eq!(kept, vec![10_000, 15_000, 20_000]);
    }
}
