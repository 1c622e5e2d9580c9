//! The monitor's own `/metrics`: everything a sample found, as Prometheus gauges. Rendered
//! once per sample into a fresh registry, so a partition or an instance that disappears
//! leaves no stale series behind. Labels are group, processor, topic, partition, instance
//! and status: never record data.

use std::collections::BTreeMap;

use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use crate::model::{GroupDetail, InstanceState, InstanceView, Overview, Status};

const PREFIX: &str = "storefleet_monitor";

struct Gauges {
    registry: Registry,
}

impl Gauges {
    fn new() -> Self {
        Self {
            registry: Registry::new(),
        }
    }

    fn vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        runtime::Registrar::on(&self.registry).metric(GaugeVec::new(
            Opts::new(format!("{PREFIX}_{name}"), help),
            labels,
        ))
    }

    /// A gauge without labels, set to `value`.
    fn single(&self, name: &str, help: &str, value: f64) {
        runtime::Registrar::on(&self.registry)
            .metric(Gauge::with_opts(Opts::new(
                format!("{PREFIX}_{name}"),
                help,
            )))
            .set(value);
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The exposition for one sample.
pub fn render(overview: &Overview, groups: &BTreeMap<String, GroupDetail>) -> String {
    let g = Gauges::new();
    let part = ["group", "topic", "partition"];
    let offset_lag = g.vec(
        "partition_offset_lag",
        "Records between the group's committed offset and the high watermark",
        &part,
    );
    let time_lag = g.vec(
        "partition_time_lag_seconds",
        "Age of the oldest unconsumed record, from its timestamp (0 without lag)",
        &part,
    );
    let consume_rate = g.vec(
        "partition_consume_rate",
        "Committed offset advance, records per second",
        &part,
    );
    let produce_rate = g.vec(
        "partition_produce_rate",
        "High watermark advance, records per second",
        &part,
    );
    let committed = g.vec(
        "partition_committed_offset",
        "The group's committed offset",
        &part,
    );
    let high = g.vec(
        "partition_high_watermark",
        "The partition's high watermark",
        &part,
    );
    let part_code = g.vec(
        "partition_status_code",
        "Partition status: 0 OK, 1 WARN, 2 STALLED, 3 STOPPED, -1 UNKNOWN",
        &part,
    );
    let part_status = g.vec(
        "partition_status",
        "1 for the partition's current status, 0 for the others",
        &["group", "topic", "partition", "status"],
    );
    for detail in groups.values() {
        for p in &detail.partitions {
            let partition = p.partition.to_string();
            let labels = [detail.group.as_str(), p.topic.as_str(), partition.as_str()];
            offset_lag
                .with_label_values(&labels)
                .set(p.offset_lag as f64);
            high.with_label_values(&labels).set(p.high as f64);
            part_code
                .with_label_values(&labels)
                .set(p.status.code() as f64);
            for (gauge, value) in [
                (&time_lag, p.time_lag_seconds),
                (&consume_rate, p.consume_rate),
                (&produce_rate, p.produce_rate),
                (&committed, p.committed.map(|c| c as f64)),
            ] {
                if let Some(v) = value {
                    gauge.with_label_values(&labels).set(v);
                }
            }
            for status in Status::ALL {
                part_status
                    .with_label_values(&[labels[0], labels[1], labels[2], status.as_str()])
                    .set(f64::from(u8::from(status == p.status)));
            }
        }
    }

    let grp = ["group", "processor"];
    let group_code = g.vec(
        "group_status_code",
        "Group status (its worst partition): 0 OK, 1 WARN, 2 STALLED, 3 STOPPED, -1 UNKNOWN",
        &grp,
    );
    let group_status = g.vec(
        "group_status",
        "1 for the group's current status, 0 for the others",
        &["group", "processor", "status"],
    );
    let group_lag = g.vec(
        "group_offset_lag",
        "Offset lag summed over the group's partitions",
        &grp,
    );
    let group_time_lag = g.vec(
        "group_max_time_lag_seconds",
        "The oldest unconsumed record's age over the group's partitions",
        &grp,
    );
    let group_rate = g.vec(
        "group_consume_rate",
        "Committed offsets advance, records per second, summed",
        &grp,
    );
    let group_members = g.vec(
        "group_members",
        "Members of the consumer group as the broker describes it",
        &grp,
    );
    let throughput = g.vec(
        "processor_throughput",
        "Records per second the processor's instances report consuming",
        &["processor"],
    );
    for p in &overview.processors {
        let labels = [p.group.as_str(), p.name.as_str()];
        group_code
            .with_label_values(&labels)
            .set(p.status.code() as f64);
        for status in Status::ALL {
            group_status
                .with_label_values(&[labels[0], labels[1], status.as_str()])
                .set(f64::from(u8::from(status == p.status)));
        }
        group_lag
            .with_label_values(&labels)
            .set(p.offset_lag as f64);
        for (gauge, value) in [
            (&group_time_lag, p.max_time_lag_seconds),
            (&group_rate, p.consume_rate),
            (&group_members, p.members.map(f64::from)),
        ] {
            if let Some(v) = value {
                gauge.with_label_values(&labels).set(v);
            }
        }
        if let Some(t) = p.throughput {
            throughput.with_label_values(&[&p.name]).set(t);
        }
    }

    let up = g.vec(
        "instance_up",
        "1 when the instance's admin /health answers 200",
        &["processor", "instance", "address"],
    );
    let instance_rate = g.vec(
        "instance_throughput",
        "Records per second the instance reports (in for processors, changes out for connectors)",
        &["processor", "instance"],
    );
    let instances = overview
        .processors
        .iter()
        .map(|p| (&p.name, &p.instances))
        .chain(overview.connectors.iter().map(|c| (&c.name, &c.instances)));
    for (owner, list) in instances {
        for InstanceView {
            index,
            address,
            state,
            throughput,
            ..
        } in list
        {
            let index = index.to_string();
            up.with_label_values(&[owner.as_str(), index.as_str(), address.as_str()])
                .set(f64::from(u8::from(*state == InstanceState::Up)));
            if let Some(t) = throughput {
                instance_rate
                    .with_label_values(&[owner.as_str(), index.as_str()])
                    .set(*t);
            }
        }
    }

    let dlq = g.vec(
        "dlq_records",
        "Records in a dead-letter topic (high minus low watermark)",
        &["topic"],
    );
    for d in &overview.dlq {
        if let Some(records) = d.records {
            dlq.with_label_values(&[&d.topic]).set(records as f64);
        }
    }
    if let Some(stuck) = overview.stuck_sagas {
        g.single(
            "stuck_sagas",
            "Sum of storefleet_checkout_sagas_stuck_total over the checkout instances that answered",
            stuck as f64,
        );
    }
    g.single(
        "broker_up",
        "1 when the last sample got the broker's metadata",
        f64::from(u8::from(overview.broker.reachable)),
    );
    g.single(
        "sample_kafka_seconds",
        "How long the Kafka part of the last sample took",
        overview.broker.sample_ms as f64 / 1000.0,
    );
    g.single(
        "samples",
        "Samples taken since the monitor started",
        overview.seq as f64,
    );
    g.render()
}
