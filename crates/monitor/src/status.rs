//! `fleet status`: the overview as a terminal table. Pure string building.

use std::fmt::Write;

use crate::model::{InstanceState, InstanceView, Overview, Status};

/// The overview as text: one line per processor, the reason under every group that is not
/// OK, connectors, dead letters, stuck sagas and sampling problems.
pub fn render_status(overview: &Overview) -> String {
    let mut out = String::new();
    let broker = if overview.broker.reachable {
        format!("reachable, {} ms", overview.broker.sample_ms)
    } else {
        "UNREACHABLE".to_string()
    };
    let _ = writeln!(
        out,
        "fleet status: {}  (sample {} at {} UTC; broker {} {broker}; window {} x {:.1}s)",
        overview.status,
        overview.seq,
        time_of_day(overview.at_ms),
        overview.broker.bootstrap,
        overview.window_samples,
        overview.interval_ms as f64 / 1000.0,
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:<34} {:<8} {:>5} {:>7} {:>11} {:>10} {:>9} {:>10}",
        "PROCESSOR",
        "GROUP",
        "STATUS",
        "UP",
        "MEMBERS",
        "THROUGHPUT",
        "OFFSET LAG",
        "TIME LAG",
        "CONSUMED"
    );
    for p in &overview.processors {
        let _ = writeln!(
            out,
            "{:<22} {:<34} {:<8} {:>5} {:>7} {:>11} {:>10} {:>9} {:>10}",
            p.name,
            p.group,
            p.status.as_str(),
            up(&p.instances),
            p.members.map_or("?".to_string(), |m| m.to_string()),
            rate(p.throughput),
            p.offset_lag,
            p.max_time_lag_seconds
                .map_or("?".to_string(), |s| format!("{s:.1}s")),
            rate(p.consume_rate),
        );
        if p.status != Status::Ok {
            let _ = writeln!(out, "    {}", p.reason);
        }
        let down: Vec<String> = p
            .instances
            .iter()
            .filter(|i| i.state != InstanceState::Up)
            .map(|i| format!("#{} {} ({})", i.index, i.address, state(i.state)))
            .collect();
        if !down.is_empty() {
            let _ = writeln!(out, "    not up: {}", down.join(", "));
        }
    }
    if !overview.connectors.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<22} {:>5} {:>11}", "CONNECTOR", "UP", "THROUGHPUT");
        for c in &overview.connectors {
            let _ = writeln!(
                out,
                "{:<22} {:>5} {:>11}",
                c.name,
                up(&c.instances),
                rate(c.throughput)
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "dead letters: {}", overview.dlq_total);
    for d in &overview.dlq {
        match d.records {
            Some(0) => {}
            Some(n) => {
                let change = match d.change {
                    Some(c) if c != 0 => format!(" ({c:+} since the previous sample)"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "    {:<44} {n}{change}", d.topic);
            }
            None => {
                let _ = writeln!(out, "    {:<44} (not on the broker)", d.topic);
            }
        }
    }
    let stuck = overview
        .stuck_sagas
        .map_or("unknown (no checkout instance answered)".to_string(), |n| {
            n.to_string()
        });
    let _ = writeln!(out, "stuck sagas: {stuck}");
    if !overview.problems.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "problems:");
        for p in &overview.problems {
            let _ = writeln!(out, "    {p}");
        }
    }
    out
}

fn up(instances: &[InstanceView]) -> String {
    let n = instances
        .iter()
        .filter(|i| i.state == InstanceState::Up)
        .count();
    format!("{n}/{}", instances.len())
}

fn state(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Up => "up",
        InstanceState::NotReady => "not ready",
        InstanceState::Down => "down",
    }
}

fn rate(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.1}/s"))
}

/// `HH:MM:SS` of a Unix millisecond time, UTC.
fn time_of_day(at_ms: i64) -> String {
    let seconds = at_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BrokerView, ConnectorView, DlqView, ProcessorView};

    fn instance(index: u16, state: InstanceState) -> InstanceView {
        InstanceView {
            index,
            address: format!("127.0.0.1:{}", 9101 + index),
            state,
            assigned_partitions: Some(3),
            throughput: Some(10.0),
            records_total: Some(100.0),
        }
    }

    #[test]
    fn renders_processors_reasons_dead_letters_and_problems() {
        let overview = Overview {
            seq: 7,
            at_ms: 3_723_000,
            interval_ms: 2000,
            window_samples: 10,
            broker: BrokerView {
                bootstrap: "127.0.0.1:19092".into(),
                reachable: true,
                sample_ms: 42,
            },
            status: Status::Stalled,
            processors: vec![ProcessorView {
                name: "shipping".into(),
                kind: "shipping".into(),
                group: "storefleet.shipping".into(),
                status: Status::Stalled,
                reason: "orders.order-placed.v1/2: committed offset 5 unchanged".into(),
                offset_lag: 12,
                max_time_lag_seconds: Some(3.25),
                consume_rate: Some(0.0),
                produce_rate: Some(1.0),
                throughput: Some(20.0),
                members: Some(1),
                instances_up: 1,
                instances: vec![
                    instance(0, InstanceState::Up),
                    instance(1, InstanceState::Down),
                ],
                partitions: 6,
            }],
            connectors: vec![ConnectorView {
                name: "catalog-cdc".into(),
                instances_up: 0,
                instances: vec![instance(0, InstanceState::Down)],
                throughput: None,
            }],
            dlq: vec![
                DlqView {
                    topic: "dlq.shipping.order-placed.v1".into(),
                    records: Some(3),
                    change: Some(1),
                },
                DlqView {
                    topic: "dlq.payment.commands.v1".into(),
                    records: Some(0),
                    change: Some(0),
                },
                DlqView {
                    topic: "dlq.gone.v1".into(),
                    records: None,
                    change: None,
                },
            ],
            dlq_total: 3,
            stuck_sagas: None,
            problems: vec!["describing group x: timed out".into()],
        };
        let text = render_status(&overview);
        assert!(
            text.starts_with("fleet status: STALLED  (sample 7 at 01:02:03 UTC"),
            "{text}"
        );
        let row = text.lines().find(|l| l.starts_with("shipping ")).unwrap();
        for cell in [
            "storefleet.shipping",
            "STALLED",
            "1/2",
            "20.0/s",
            "12",
            "3.2s",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(text.contains("    orders.order-placed.v1/2: committed offset 5 unchanged"));
        assert!(text.contains("not up: #1 127.0.0.1:9102 (down)"));
        assert!(text.contains("catalog-cdc"));
        assert!(text.contains("dlq.shipping.order-placed.v1"));
        assert!(text.contains("3 (+1 since the previous sample)"));
        assert!(
            !text.contains("dlq.payment.commands.v1"),
            "empty DLQs are not listed"
        );
        assert!(text.contains("dlq.gone.v1") && text.contains("(not on the broker)"));
        assert!(text.contains("stuck sagas: unknown"));
        assert!(text.contains("describing group x: timed out"));
    }
}
