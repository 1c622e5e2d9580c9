//! The monitor's answers as data: what `/api/overview`, `/api/groups/{group}` and
//! `/api/history` return, what `fleet status` prints, what `fetch_overview` reads back.
//! Plain serde types, no I/O.

use serde::{Deserialize, Serialize};

/// The status of a partition or a consumer group (see [`crate::rules`] for the rules).
/// Declared from least to most severe: a group is its worst partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Caught up, or consuming and not falling behind.
    Ok,
    /// Nothing to judge on: the topic is missing, the broker did not answer.
    Unknown,
    /// Consuming, but the lag grew across the whole window.
    Warn,
    /// Somebody is in the group, yet the committed offset stood still across the whole
    /// window while there was lag.
    Stalled,
    /// Lag, and nobody consumes (no group member, or no instance reachable).
    Stopped,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Ok,
        Status::Unknown,
        Status::Warn,
        Status::Stalled,
        Status::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Unknown => "UNKNOWN",
            Status::Warn => "WARN",
            Status::Stalled => "STALLED",
            Status::Stopped => "STOPPED",
        }
    }

    /// The numeric gauge value: 0 OK, 1 WARN, 2 STALLED, 3 STOPPED, -1 UNKNOWN (so that
    /// `>= 2` means "somebody must act" and an unknown never pages as a stall).
    pub fn code(self) -> i64 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Stalled => 2,
            Status::Stopped => 3,
            Status::Unknown => -1,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an instance's admin port answered `/health`, and what it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// `/health` answered 200 (`running`).
    Up,
    /// `/health` answered, but not `running` (starting, stopping).
    NotReady,
    /// No answer (refused, timed out, not HTTP).
    Down,
}

/// The fleet at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Sample number since the monitor started (1 = first); `snapshot` answers 1.
    pub seq: u64,
    /// When the sample was taken (Unix ms).
    pub at_ms: i64,
    pub interval_ms: u64,
    /// Samples a status rule looks at.
    pub window_samples: usize,
    pub broker: BrokerView,
    /// The worst group status.
    pub status: Status,
    pub processors: Vec<ProcessorView>,
    pub connectors: Vec<ConnectorView>,
    /// Every dead-letter topic of the topology.
    pub dlq: Vec<DlqView>,
    /// Dead letters in all dead-letter topics (absent topics count 0).
    pub dlq_total: i64,
    /// Sum of `storefleet_checkout_sagas_stuck_total` over the checkout instances that
    /// answered; `None` when none did (unknown, not zero).
    pub stuck_sagas: Option<u64>,
    /// What went wrong while sampling (broker, groups), one line each.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerView {
    pub bootstrap: String,
    pub reachable: bool,
    /// How long the Kafka part of the sample took (ms).
    pub sample_ms: u64,
}

/// One processor: its consumer group and its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessorView {
    pub name: String,
    pub kind: String,
    pub group: String,
    pub status: Status,
    pub reason: String,
    /// Sum over the group's partitions.
    pub offset_lag: i64,
    /// The oldest unconsumed record's age over the group's partitions (seconds); `None`
    /// when no partition's could be read.
    pub max_time_lag_seconds: Option<f64>,
    /// Committed offsets advanced per second, summed (`None` until two samples).
    pub consume_rate: Option<f64>,
    /// Records per second arriving in the inputs (high watermarks), summed.
    pub produce_rate: Option<f64>,
    /// Records per second the instances report (`storefleet_records_in_total`), summed.
    pub throughput: Option<f64>,
    /// Members of the consumer group as the broker describes it (`None`: not known).
    pub members: Option<u32>,
    pub instances_up: usize,
    pub instances: Vec<InstanceView>,
    pub partitions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub index: u16,
    /// `host:port` of the admin endpoint.
    pub address: String,
    pub state: InstanceState,
    /// From `/health`.
    pub assigned_partitions: Option<i64>,
    /// Records per second between the last two samples (records in for processors,
    /// change events out for connectors).
    pub throughput: Option<f64>,
    /// The counter behind `throughput`.
    pub records_total: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorView {
    pub name: String,
    pub instances_up: usize,
    pub instances: Vec<InstanceView>,
    pub throughput: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqView {
    pub topic: String,
    /// High minus low watermark over the partitions; `None` when the topic is not on the
    /// broker.
    pub records: Option<i64>,
    /// Change since the previous sample (`None` on the first).
    pub change: Option<i64>,
}

/// `/api/groups/{group}`: the partition table of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDetail {
    pub seq: u64,
    pub at_ms: i64,
    pub group: String,
    pub processor: String,
    pub status: Status,
    pub reason: String,
    pub members: Option<u32>,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Rising,
    Steady,
    Falling,
    /// Fewer than three samples.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub low: i64,
    pub high: i64,
    /// `None`: the group never committed this partition (lag counts from `low`).
    pub committed: Option<i64>,
    /// Records waiting: high watermark − committed offset (or low watermark), less
    /// `marker_offsets`.
    pub offset_lag: i64,
    /// Age of the oldest unconsumed record (its timestamp, not an interpolation); 0 when
    /// there is no lag; `None` when the record could not be read.
    pub time_lag_seconds: Option<f64>,
    /// Offsets between the committed offset and the high watermark that hold nothing a
    /// consumer reads (transaction markers, aborted records): not counted as lag, so an idle
    /// partition of a transactional topic shows no phantom lag.
    pub marker_offsets: i64,
    /// Committed offset advance per second over the last interval.
    pub consume_rate: Option<f64>,
    /// High watermark advance per second over the last interval.
    pub produce_rate: Option<f64>,
    /// How the consume rate moves: newer half of the window against the older half.
    pub consume_trend: Trend,
    /// Lag change per second across the window (positive: falling behind).
    pub lag_change_per_second: Option<f64>,
    pub status: Status,
    pub reason: String,
}

/// `/api/history`: one group's series, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupHistory {
    pub group: String,
    pub points: Vec<HistoryPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub at_ms: i64,
    pub offset_lag: i64,
    pub max_time_lag_seconds: Option<f64>,
    pub consume_rate: Option<f64>,
    pub status: Status,
}
