//! One sample's readings (Kafka, admin ports) turned into the views: per partition offset
//! lag, time lag, rates, trend and status; per group and processor the totals and the worst
//! status; instances, connectors, dead letters, stuck sagas. No I/O: the readings come in,
//! the history is updated, the views come out.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::history::{History, PartitionSample};
use crate::kafka::{KafkaReading, Marks, Oldest};
use crate::model::{
    BrokerView, ConnectorView, DlqView, GroupDetail, HistoryPoint, InstanceState, InstanceView,
    Overview, PartitionView, ProcessorView, Status, Trend,
};
use crate::plan::{GroupPlan, Plan, Target};
use crate::rules::{self, Consumers, Rules, Verdict};
use crate::scrape::InstanceProbe;

/// Everything one sample read.
pub struct SampleInputs<'a> {
    pub seq: u64,
    pub at_ms: i64,
    pub interval_ms: u64,
    pub bootstrap: &'a str,
    pub plan: &'a Plan,
    pub targets: &'a [Target],
    pub kafka: &'a KafkaReading,
    /// In `targets` order.
    pub probes: &'a [InstanceProbe],
}

pub struct Assembled {
    pub overview: Overview,
    /// By group id.
    pub groups: BTreeMap<String, GroupDetail>,
}

pub fn assemble(inputs: &SampleInputs<'_>, history: &mut History) -> Assembled {
    let mut instances: HashMap<&str, Vec<InstanceView>> = HashMap::new();
    let mut stuck: Option<u64> = None;
    for (target, probe) in inputs.targets.iter().zip(inputs.probes) {
        let throughput = history.instance_rate(
            &target.owner,
            target.index,
            inputs.at_ms,
            probe.records_total,
        );
        if let Some(n) = probe.stuck_sagas {
            *stuck.get_or_insert(0) += n.max(0.0) as u64;
        }
        instances
            .entry(&target.owner)
            .or_default()
            .push(InstanceView {
                index: target.index,
                address: target.addr.to_string(),
                state: probe.state,
                assigned_partitions: probe.assigned_partitions,
                throughput,
                records_total: probe.records_total,
            });
    }

    let mut processors = Vec::new();
    let mut groups = BTreeMap::new();
    for plan in &inputs.plan.groups {
        let own = instances
            .remove(plan.processor.as_str())
            .unwrap_or_default();
        let detail = group_detail(inputs, plan, &own, history);
        history.push_point(
            &plan.group,
            HistoryPoint {
                at_ms: inputs.at_ms,
                offset_lag: detail.partitions.iter().map(|p| p.offset_lag).sum(),
                max_time_lag_seconds: max_time_lag(&detail.partitions),
                consume_rate: sum_known(detail.partitions.iter().map(|p| p.consume_rate)),
                status: detail.status,
            },
        );
        processors.push(processor_view(plan, &detail, own));
        groups.insert(plan.group.clone(), detail);
    }

    let connectors = inputs
        .plan
        .connectors
        .iter()
        .map(|c| {
            let own = instances.remove(c.name.as_str()).unwrap_or_default();
            ConnectorView {
                name: c.name.clone(),
                instances_up: up_count(&own),
                throughput: sum_known(own.iter().map(|i| i.throughput)),
                instances: own,
            }
        })
        .collect();

    let dlq: Vec<DlqView> = inputs
        .plan
        .dlq_topics
        .iter()
        .map(|topic| {
            let records = inputs
                .kafka
                .marks(topic)
                .map(|marks| marks.iter().map(|m| (m.high - m.low).max(0)).sum());
            DlqView {
                topic: topic.clone(),
                records,
                change: history.dlq_change(topic, records),
            }
        })
        .collect();

    let status = processors
        .iter()
        .map(|p: &ProcessorView| p.status)
        .max()
        .unwrap_or(Status::Ok);
    let overview = Overview {
        seq: inputs.seq,
        at_ms: inputs.at_ms,
        interval_ms: inputs.interval_ms,
        window_samples: history.window(),
        broker: BrokerView {
            bootstrap: inputs.bootstrap.to_string(),
            reachable: inputs.kafka.reachable,
            sample_ms: inputs.kafka.elapsed.as_millis() as u64,
        },
        status,
        processors,
        connectors,
        dlq_total: dlq.iter().filter_map(|d| d.records).sum(),
        dlq,
        stuck_sagas: stuck,
        problems: Vec::new(),
    };
    Assembled { overview, groups }
}

/// Who consumes the group: the broker's member list when it gave one, else the instances
/// that answer `/health`.
fn consumers(members: Option<u32>, instances: &[InstanceView]) -> Consumers {
    match members {
        Some(0) => Consumers::Absent,
        Some(n) => Consumers::Present(n),
        None if instances.is_empty() => Consumers::Unknown,
        None => match up_count(instances) {
            0 => Consumers::Absent,
            n => Consumers::Present(n as u32),
        },
    }
}

fn group_detail(
    inputs: &SampleInputs<'_>,
    plan: &GroupPlan,
    instances: &[InstanceView],
    history: &mut History,
) -> GroupDetail {
    let kafka = inputs.kafka;
    let reading = kafka.groups.get(&plan.group);
    // A kind that never joins its group has no members to list: its instances' health says.
    let members = reading
        .and_then(|r| r.members)
        .filter(|_| plan.kind.joins_group());
    let consumers = consumers(members, instances);
    let mut partitions = Vec::new();
    // Problems that leave no partition to judge (missing topic, unreadable offsets).
    let mut blind: Vec<(String, Verdict)> = Vec::new();
    if !kafka.reachable {
        blind.push((
            inputs.bootstrap.to_string(),
            verdict(Status::Unknown, "broker unreachable"),
        ));
    }
    for topic in &plan.topics {
        if !kafka.reachable {
            break;
        }
        let Some(marks) = kafka.marks(topic) else {
            blind.push((
                topic.clone(),
                verdict(Status::Unknown, "topic is not on the broker"),
            ));
            continue;
        };
        let Some(Some(committed)) = reading.map(|r| &r.committed) else {
            blind.push((
                topic.clone(),
                verdict(Status::Unknown, "committed offsets unreadable"),
            ));
            continue;
        };
        for m in marks {
            let c = committed
                .get(&(topic.clone(), m.partition))
                .copied()
                .flatten();
            let key = (plan.group.clone(), topic.clone(), m.partition);
            let oldest = kafka
                .oldest
                .get(&(
                    topic.clone(),
                    m.partition,
                    KafkaReading::start_offset(c, *m),
                ))
                .copied();
            let rules = Rules {
                window: history.window(),
                keeping_up_ms: inputs.interval_ms as i64,
            };
            let sample = partition_sample(inputs.at_ms, c, *m, oldest);
            let window = history.record_partition(key, sample);
            partitions.push(partition_view(topic, *m, window, consumers, rules));
        }
    }
    let judged: Vec<(String, Verdict)> = partitions
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.topic, p.partition),
                verdict(p.status, &p.reason),
            )
        })
        .chain(blind)
        .collect();
    let group = rules::worst(judged.iter().map(|(name, v)| (name.clone(), v)));
    GroupDetail {
        seq: inputs.seq,
        at_ms: inputs.at_ms,
        group: plan.group.clone(),
        processor: plan.processor.clone(),
        status: group.status,
        reason: group.reason,
        members,
        partitions,
    }
}

fn verdict(status: Status, reason: &str) -> Verdict {
    Verdict {
        status,
        reason: reason.to_string(),
    }
}

/// One partition's sample, from what lies at its start offset (`None`: not read).
fn partition_sample(
    at_ms: i64,
    committed: Option<i64>,
    marks: Marks,
    oldest: Option<Oldest>,
) -> PartitionSample {
    let start = KafkaReading::start_offset(committed, marks);
    let offsets = (marks.high - start).max(0);
    let (lag, time_lag_ms, marker_offsets) = match oldest {
        _ if offsets == 0 => (0, Some(0), 0),
        // Phantom lag: only transaction markers or aborted records are left.
        Some(Oldest::Nothing) => (0, Some(0), offsets),
        Some(Oldest::Record(timestamp)) => (offsets, timestamp.map(|ts| (at_ms - ts).max(0)), 0),
        None => (offsets, None, 0),
    };
    PartitionSample {
        at_ms,
        committed,
        start,
        high: marks.high,
        lag,
        time_lag_ms,
        marker_offsets,
    }
}

fn partition_view(
    topic: &str,
    marks: Marks,
    window: &VecDeque<PartitionSample>,
    consumers: Consumers,
    rules: Rules,
) -> PartitionView {
    let last = *window.back().expect("the sample just recorded");
    let observations: Vec<_> = window.iter().map(PartitionSample::observation).collect();
    let judged = rules::evaluate(&observations, consumers, rules);
    let previous = window.len().checked_sub(2).map(|i| window[i]);
    let rate = |f: fn(&PartitionSample) -> i64| {
        previous.and_then(|p| per_second(f(&last) - f(&p), last.at_ms - p.at_ms))
    };
    let first = window[0];
    PartitionView {
        topic: topic.to_string(),
        partition: marks.partition,
        low: marks.low,
        high: marks.high,
        committed: last.committed,
        offset_lag: last.lag,
        time_lag_seconds: last.time_lag_ms.map(|ms| ms as f64 / 1000.0),
        marker_offsets: last.marker_offsets,
        consume_rate: rate(|s| s.start),
        produce_rate: rate(|s| s.high),
        consume_trend: consume_trend(window),
        // Signed: negative while the lag drains.
        lag_change_per_second: (window.len() >= 2 && last.at_ms > first.at_ms)
            .then(|| (last.lag - first.lag) as f64 * 1000.0 / (last.at_ms - first.at_ms) as f64),
        status: judged.status,
        reason: judged.reason,
    }
}

/// A non-negative change per second (an offset that went back reads as 0).
fn per_second(delta: i64, ms: i64) -> Option<f64> {
    (ms > 0).then(|| delta.max(0) as f64 * 1000.0 / ms as f64)
}

/// The consume rate over the newer half of the window against the older half; within 10%
/// is steady.
fn consume_trend(window: &VecDeque<PartitionSample>) -> Trend {
    if window.len() < 3 {
        return Trend::Unknown;
    }
    let rates: Vec<f64> = window
        .iter()
        .zip(window.iter().skip(1))
        .filter_map(|(a, b)| per_second(b.start - a.start, b.at_ms - a.at_ms))
        .collect();
    if rates.len() < 2 {
        return Trend::Unknown;
    }
    let half = rates.len() / 2;
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (older, newer) = (mean(&rates[..half]), mean(&rates[rates.len() - half..]));
    if (newer - older).abs() <= 0.1 * older.max(newer) {
        Trend::Steady
    } else if newer > older {
        Trend::Rising
    } else {
        Trend::Falling
    }
}

fn processor_view(
    plan: &GroupPlan,
    detail: &GroupDetail,
    instances: Vec<InstanceView>,
) -> ProcessorView {
    let partitions = &detail.partitions;
    ProcessorView {
        name: plan.processor.clone(),
        kind: plan.kind.as_str().to_string(),
        group: plan.group.clone(),
        status: detail.status,
        reason: detail.reason.clone(),
        offset_lag: partitions.iter().map(|p| p.offset_lag).sum(),
        max_time_lag_seconds: max_time_lag(partitions),
        consume_rate: sum_known(partitions.iter().map(|p| p.consume_rate)),
        produce_rate: sum_known(partitions.iter().map(|p| p.produce_rate)),
        throughput: sum_known(instances.iter().map(|i| i.throughput)),
        members: detail.members,
        instances_up: up_count(&instances),
        instances,
        partitions: partitions.len(),
    }
}

fn up_count(instances: &[InstanceView]) -> usize {
    instances
        .iter()
        .filter(|i| i.state == InstanceState::Up)
        .count()
}

/// The largest time lag; unknown (`None`) when a partition with lag could not have its
/// oldest record read in time (a loaded broker): a max over the others would understate it.
fn max_time_lag(partitions: &[PartitionView]) -> Option<f64> {
    if partitions
        .iter()
        .any(|p| p.offset_lag > 0 && p.time_lag_seconds.is_none())
    {
        return None;
    }
    partitions
        .iter()
        .filter_map(|p| p.time_lag_seconds)
        .fold(None, |max: Option<f64>, t| {
            Some(max.map_or(t, |m| m.max(t)))
        })
}

/// The sum of the known values; `None` when none is known.
fn sum_known(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use topology::ProcessorKind;

    use super::*;
    use crate::kafka::GroupReading;
    use crate::plan::PROCESSOR_THROUGHPUT;

    const TOPIC: &str = "orders.v1";
    const GROUP: &str = "g";

    fn plan() -> Plan {
        let addr: SocketAddr = "127.0.0.1:9101".parse().unwrap();
        Plan {
            groups: vec![GroupPlan {
                processor: "shipping".into(),
                kind: ProcessorKind::Shipping,
                group: GROUP.into(),
                topics: vec![TOPIC.into(), "missing.v1".into()],
                instances: vec![addr],
            }],
            connectors: Vec::new(),
            dlq_topics: vec!["dlq.a".into()],
        }
    }

    fn targets(plan: &Plan) -> Vec<Target> {
        let mut t = plan.targets();
        assert_eq!(t[0].throughput_metric, PROCESSOR_THROUGHPUT);
        t.truncate(1);
        t
    }

    /// Partition 0: committed 10 of 30, record 10 stamped 5 s before the sample.
    /// Partition 1: committed 7 of 8, offset 7 a transaction marker (nothing readable).
    fn reading(at_ms: i64, committed0: i64, members: Option<u32>) -> KafkaReading {
        let mut topics = BTreeMap::new();
        topics.insert(
            TOPIC.to_string(),
            Some(vec![
                Marks {
                    partition: 0,
                    low: 0,
                    high: 30,
                },
                Marks {
                    partition: 1,
                    low: 0,
                    high: 8,
                },
            ]),
        );
        topics.insert("missing.v1".to_string(), None);
        topics.insert(
            "dlq.a".to_string(),
            Some(vec![Marks {
                partition: 0,
                low: 2,
                high: 5,
            }]),
        );
        let committed: HashMap<_, _> = [
            ((TOPIC.to_string(), 0), Some(committed0)),
            ((TOPIC.to_string(), 1), Some(7)),
        ]
        .into();
        let mut groups = BTreeMap::new();
        groups.insert(
            GROUP.to_string(),
            GroupReading {
                committed: Some(committed),
                members,
            },
        );
        let mut oldest = HashMap::new();
        oldest.insert(
            (TOPIC.to_string(), 0, committed0),
            Oldest::Record(Some(at_ms - 5_000)),
        );
        oldest.insert((TOPIC.to_string(), 1, 7), Oldest::Nothing);
        KafkaReading {
            reachable: true,
            topics,
            groups,
            oldest,
            errors: Vec::new(),
            elapsed: Duration::from_millis(12),
        }
    }

    fn probe(total: f64) -> InstanceProbe {
        InstanceProbe {
            state: InstanceState::Up,
            assigned_partitions: Some(2),
            records_total: Some(total),
            stuck_sagas: None,
        }
    }

    fn run(
        history: &mut History,
        seq: u64,
        at_ms: i64,
        kafka: &KafkaReading,
        total: f64,
    ) -> Assembled {
        run_plan(plan(), history, seq, at_ms, kafka, total)
    }

    fn run_plan(
        plan: Plan,
        history: &mut History,
        seq: u64,
        at_ms: i64,
        kafka: &KafkaReading,
        total: f64,
    ) -> Assembled {
        let targets = targets(&plan);
        let inputs = SampleInputs {
            seq,
            at_ms,
            interval_ms: 1000,
            bootstrap: "b:9092",
            plan: &plan,
            targets: &targets,
            kafka,
            probes: &[probe(total)],
        };
        assemble(&inputs, history)
    }

    #[test]
    fn lag_time_lag_phantom_markers_rates_and_missing_topics() {
        let mut history = History::new(5, 600_000);
        let first = run(
            &mut history,
            1,
            100_000,
            &reading(100_000, 10, Some(1)),
            50.0,
        );
        let detail = &first.groups[GROUP];
        let p0 = &detail.partitions[0];
        assert_eq!((p0.offset_lag, p0.time_lag_seconds), (20, Some(5.0)));
        assert_eq!((p0.consume_rate, p0.consume_trend), (None, Trend::Unknown));
        // Only a transaction marker past the committed offset: no phantom lag.
        let p1 = &detail.partitions[1];
        assert_eq!(
            (p1.offset_lag, p1.marker_offsets, p1.time_lag_seconds),
            (0, 1, Some(0.0))
        );
        assert_eq!(p1.status, Status::Ok);
        // The missing input topic makes the group UNKNOWN, named.
        assert_eq!(detail.status, Status::Unknown);
        assert!(
            detail
                .reason
                .starts_with("missing.v1: topic is not on the broker"),
            "{}",
            detail.reason
        );
        let overview = &first.overview;
        assert_eq!(overview.dlq[0].records, Some(3));
        assert_eq!(overview.dlq_total, 3);
        assert_eq!(overview.processors[0].throughput, None);
        assert_eq!(overview.processors[0].max_time_lag_seconds, Some(5.0));
        assert_eq!(overview.broker.sample_ms, 12);

        let second = run(
            &mut history,
            2,
            102_000,
            &reading(102_000, 14, Some(1)),
            250.0,
        );
        let p0 = &second.groups[GROUP].partitions[0];
        assert_eq!(p0.consume_rate, Some(2.0), "4 offsets in 2 s");
        assert_eq!(p0.produce_rate, Some(0.0));
        assert_eq!(
            p0.lag_change_per_second,
            Some(-2.0),
            "lag 20 then 16 in 2 s"
        );
        assert_eq!(second.overview.processors[0].throughput, Some(100.0));
        assert_eq!(second.overview.dlq[0].change, Some(0));
        let series = history.series();
        assert_eq!(series[GROUP].len(), 2);
        assert_eq!(series[GROUP][1].offset_lag, 16);
    }

    #[test]
    fn membership_decides_stopped_and_instances_stand_in_when_it_is_unknown() {
        let mut history = History::new(5, 600_000);
        let gone = run(&mut history, 1, 1_000, &reading(1_000, 10, Some(0)), 1.0);
        assert_eq!(gone.groups[GROUP].partitions[0].status, Status::Stopped);
        // Membership unreadable, the one instance answers: somebody consumes.
        let mut history = History::new(5, 600_000);
        let unknown = run(&mut history, 1, 1_000, &reading(1_000, 10, None), 1.0);
        assert_eq!(unknown.groups[GROUP].partitions[0].status, Status::Ok);
        assert_eq!(consumers(None, &[]), Consumers::Unknown);
    }

    #[test]
    fn a_kind_that_never_joins_its_group_is_judged_by_its_instances() {
        // search-indexer replicas assign themselves partitions: the group lists no member
        // while the instance that answers /health consumes.
        let mut plan = plan();
        plan.groups[0].kind = ProcessorKind::SearchIndexer;
        let mut history = History::new(5, 600_000);
        let up = run_plan(
            plan,
            &mut history,
            1,
            1_000,
            &reading(1_000, 10, Some(0)),
            1.0,
        );
        assert_eq!(up.groups[GROUP].partitions[0].status, Status::Ok);
    }

    #[test]
    fn an_unreachable_broker_makes_every_group_unknown() {
        let mut history = History::new(5, 600_000);
        let down = run(&mut history, 1, 1_000, &KafkaReading::default(), 1.0);
        let detail = &down.groups[GROUP];
        assert!(detail.partitions.is_empty());
        assert_eq!(detail.status, Status::Unknown);
        assert!(
            detail.reason.contains("broker unreachable"),
            "{}",
            detail.reason
        );
        assert!(!down.overview.broker.reachable);
        assert_eq!(down.overview.dlq[0].records, None);
    }

    #[test]
    fn consume_trend_compares_the_window_halves() {
        let sample = |at_ms: i64, start: i64| PartitionSample {
            at_ms,
            committed: Some(start),
            start,
            high: 1000,
            lag: 1000 - start,
            time_lag_ms: Some(1),
            marker_offsets: 0,
        };
        let trend = |starts: &[i64]| {
            let window: VecDeque<_> = starts
                .iter()
                .enumerate()
                .map(|(i, s)| sample(i as i64 * 1000, *s))
                .collect();
            consume_trend(&window)
        };
        assert_eq!(trend(&[0, 10]), Trend::Unknown);
        assert_eq!(trend(&[0, 10, 20, 30, 40]), Trend::Steady);
        assert_eq!(trend(&[0, 10, 20, 40, 60]), Trend::Rising);
        assert_eq!(trend(&[0, 20, 40, 50, 60]), Trend::Falling);
        assert_eq!(trend(&[5, 5, 5, 5]), Trend::Steady);
    }
}
