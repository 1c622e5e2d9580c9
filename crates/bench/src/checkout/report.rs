//! What the checkout bench prints: one block per phase, then the records per checkout.

use std::collections::BTreeMap;

use loadgen::percentile;
use monitor::promtext;

use super::fleet::{ticks_per_second, Snapshot};
use super::load::Phase;
use super::raw::Raw;

pub fn raw(raw: &Raw) {
    println!(
        "raw broker: round trip (produce, acked, consumed) p50 {} ms, p99 {} ms; {} records of {} B: produce {:.0}/s, consume {:.0}/s",
        raw.rtt_p50, raw.rtt_p99, raw.records, raw.bytes, raw.produce_per_sec, raw.consume_per_sec
    );
}

/// A phase: outcome and latency, CPU per checkout by process, and the hops.
pub fn phase(phase: &Phase, rate: Option<u64>, before: &Snapshot, after: &Snapshot) {
    let settled = phase.placed + phase.failed;
    let throughput = settled as f64 / phase.settle_secs.max(1e-9);
    let held = match rate {
        Some(rate) => {
            // Held: every order settled, and the last within 2 s of the last send.
            let lag = phase.settle_secs - phase.send_secs;
            if phase.unsettled == 0 && lag < 2.0 {
                format!("held {rate}/s")
            } else {
                format!(
                    "NOT held: {:.0}/s completed, last order settled {lag:.1} s after the last send",
                    throughput
                )
            }
        }
        None => format!("{throughput:.0} checkouts/s"),
    };
    println!(
        "\n{}: {} sent in {:.1} s, {} placed, {} failed, {} not settled; {held}; request -> PLACED p50 {} ms, p95 {} ms, p99 {} ms",
        phase.label,
        phase.sent.len(),
        phase.send_secs,
        phase.placed,
        phase.failed,
        phase.unsettled,
        percentile(&phase.latencies, 0.50),
        percentile(&phase.latencies, 0.95),
        percentile(&phase.latencies, 0.99),
    );
    if settled == 0 {
        return;
    }
    let seconds = phase.settle_secs.max(1e-9);
    let mut cpu: Vec<(String, f64)> = after
        .cpu
        .iter()
        .map(|(label, ticks)| {
            let used = ticks.saturating_sub(*before.cpu.get(label).unwrap_or(&0));
            (
                label.clone(),
                used as f64 * 1000.0 / ticks_per_second() as f64,
            )
        })
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = cpu.iter().map(|(_, ms)| ms).sum();
    let line: Vec<String> = cpu
        .iter()
        .filter(|(_, ms)| *ms > 0.0)
        .map(|(label, ms)| format!("{label} {:.2}", ms / settled as f64))
        .collect();
    println!(
        "  CPU ms per checkout: {}; total {:.2} ({:.0}% of the machine's 2 cores over the phase)",
        line.join(", "),
        total / settled as f64,
        total / 1000.0 / seconds / 2.0 * 100.0
    );
    hops(before, after);
    let records = records_by_topic(before, after);
    let sum: i64 = records.values().sum();
    println!(
        "  records per checkout: {:.1} (all topics and changelogs of the run)",
        sum as f64 / settled as f64
    );
}

/// Cumulative histogram buckets `(le, count)`.
type Buckets = Vec<(f64, f64)>;

/// Per processor and input topic: the records' age when handled and the handler's time.
fn hops(before: &Snapshot, after: &Snapshot) {
    // processor -> topic -> (age buckets, handler buckets), instances summed.
    let mut by: BTreeMap<(String, String), (Buckets, Buckets)> = BTreeMap::new();
    for (label, text) in &after.metrics {
        let processor = label.rsplit_once('-').map_or(label.as_str(), |(p, _)| p);
        let earlier = before.metrics.get(label).map(String::as_str).unwrap_or("");
        for topic in input_topics(text) {
            let window = |name: &str| {
                promtext::delta(
                    &promtext::histogram(text, name, &[("topic", &topic)]),
                    &promtext::histogram(earlier, name, &[("topic", &topic)]),
                )
            };
            let age = window("storefleet_record_age_seconds");
            let handler = window("storefleet_processing_seconds");
            let entry = by
                .entry((processor.to_string(), topic.clone()))
                .or_insert_with(|| (Vec::new(), Vec::new()));
            add(&mut entry.0, &age);
            add(&mut entry.1, &handler);
        }
    }
    println!("  hops (input record age when handled / handler time, ms p50 p99):");
    for ((processor, topic), (age, handler)) in &by {
        let count = age.last().map_or(0.0, |(_, c)| *c);
        if count == 0.0 {
            continue;
        }
        let q = |b: &[(f64, f64)], p| promtext::quantile(b, p).map_or(0.0, |s| s * 1000.0);
        println!(
            "    {processor:<16} {:<32} {count:>7.0} records  age {:>7.1} {:>7.1}  handler {:>6.2} {:>6.2}",
            base(topic),
            q(age, 0.5),
            q(age, 0.99),
            q(handler, 0.5),
            q(handler, 0.99),
        );
    }
}

fn add(into: &mut Vec<(f64, f64)>, from: &[(f64, f64)]) {
    if into.is_empty() {
        into.extend_from_slice(from);
        return;
    }
    for (le, count) in from {
        if let Some(slot) = into.iter_mut().find(|(l, _)| l == le) {
            slot.1 += count;
        }
    }
}

/// The `topic` label values of `storefleet_record_age_seconds` in a metrics text.
fn input_topics(text: &str) -> Vec<String> {
    let mut topics: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("storefleet_record_age_seconds_count"))
        .filter_map(|l| {
            let start = l.find("topic=\"")? + 7;
            let end = l[start..].find('"')? + start;
            Some(l[start..end].to_string())
        })
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

/// A run's topic name without the run's suffix (`<base>.<suffix>`, changelogs
/// `<group>.<suffix>-<store>-changelog`).
fn base(topic: &str) -> String {
    match topic.find(".bc") {
        Some(at) => {
            let rest = &topic[at + 3..];
            let tail = rest.find('-').map_or("", |i| &rest[i..]);
            format!("{}{tail}", &topic[..at])
        }
        None => topic.to_string(),
    }
}

fn records_by_topic(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, i64> {
    after
        .records
        .iter()
        .filter(|(topic, _)| !topic.starts_with("bench.raw"))
        .map(|(topic, high)| {
            (
                base(topic),
                high - before.records.get(topic).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Records per checkout by topic over every measured phase together.
pub fn records_total(phases: &[(Phase, Snapshot, Snapshot)], _suffix: &str) {
    let mut by: BTreeMap<String, i64> = BTreeMap::new();
    let mut checkouts = 0usize;
    for (phase, before, after) in phases {
        checkouts += phase.placed + phase.failed;
        for (topic, n) in records_by_topic(before, after) {
            *by.entry(topic).or_default() += n;
        }
    }
    if checkouts == 0 {
        return;
    }
    let total: i64 = by.values().sum();
    println!(
        "\nrecords per checkout over all phases ({checkouts} checkouts): {:.1}",
        total as f64 / checkouts as f64
    );
    for (topic, n) in &by {
        println!("  {topic:<60} {:>6.2}", *n as f64 / checkouts as f64);
    }
}
