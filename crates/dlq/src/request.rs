//! Command-line arguments checked against the topology before anything connects: a request
//! that comes out of here names a real dead-letter topic, a real target and a sane deferral.
//! Every problem is reported at once.

use std::path::Path;

use topology::Topology;

use crate::backoff::Deferral;
use crate::plan::{Plan, Selection, Target};
use crate::{redrive_log, DlqAction};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", .problems.join("\n"))]
pub struct RequestError {
    pub problems: Vec<String>,
}

impl RequestError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

/// A `redrive` with every argument checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RedriveRequest {
    pub dlq_topic: String,
    pub selection: Selection,
    pub to: Option<String>,
    pub deferral: Deferral,
    pub dry_run: bool,
}

impl RedriveRequest {
    pub fn from_action(action: DlqAction, topology: &Topology) -> Result<Self, RequestError> {
        let DlqAction::Redrive {
            topic,
            partition,
            offset,
            all,
            error_kind,
            to,
            defer,
            max_defer,
            again,
            dry_run,
        } = action
        else {
            return Err(RequestError::one("not a redrive".into()));
        };
        let mut problems = Vec::new();
        if let Err(problem) = check_dead_letter_topic(topology, &topic) {
            problems.push(problem);
        }
        let target = match (partition, offset, all) {
            (Some(partition), Some(offset), false) => {
                problems.extend(check_position(topology, &topic, partition, offset).err());
                Some(Target::One { partition, offset })
            }
            (None, None, true) => Some(Target::All),
            _ => {
                problems.push("give either --partition P --offset O, or --all".into());
                None
            }
        };
        if let Some(to) = &to {
            problems.extend(target_problem(topology, to));
        }
        let deferral = Deferral::from_secs(defer, max_defer);
        if deferral.is_none() {
            problems.push(format!(
                "--max-defer {max_defer} is below --defer {defer}: the cap must be at least the base"
            ));
        }
        match (target, deferral) {
            (Some(target), Some(deferral)) if problems.is_empty() => Ok(Self {
                dlq_topic: topic,
                selection: Selection {
                    target,
                    error_kind,
                    again,
                },
                to,
                deferral,
                dry_run,
            }),
            _ => Err(RequestError { problems }),
        }
    }
}

/// True for a topology topic whose values are dead letters.
pub fn is_dead_letter_topic(topology: &Topology, topic: &str) -> bool {
    let Some(spec) = topology.topic(topic) else {
        return false;
    };
    let by_path = spec.value_schema.as_deref() == Some(Path::new("dlq/DeadLetter.avsc"));
    let by_name = matches!(
        topology.value_schema(topic),
        Some(apache_avro::Schema::Record(r)) if r.name.fullname(None) == topology::DEAD_LETTER_RECORD
    );
    by_path || by_name
}

/// Every dead-letter topic of the topology, in file order.
pub fn dead_letter_topics(topology: &Topology) -> Vec<&str> {
    topology
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| is_dead_letter_topic(topology, name))
        .collect()
}

pub fn check_dead_letter_topic(topology: &Topology, topic: &str) -> Result<(), String> {
    if is_dead_letter_topic(topology, topic) {
        return Ok(());
    }
    let known = dead_letter_topics(topology).join(", ");
    match topology.topic(topic) {
        Some(_) => Err(format!(
            "`{topic}` does not hold dead letters (its value schema is not dlq/DeadLetter.avsc); dead-letter topics: {known}"
        )),
        None => Err(format!(
            "`{topic}` is not a topic of the topology; dead-letter topics: {known}"
        )),
    }
}

/// A partition the topology declares for `topic` and a non-negative offset.
pub fn check_position(
    topology: &Topology,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), String> {
    let partitions = topology.topic(topic).map_or(0, |t| t.partitions);
    if u32::try_from(partition).map_or(true, |p| p >= partitions) {
        return Err(format!(
            "partition {partition} out of range: `{topic}` has {partitions} partition(s)"
        ));
    }
    if offset < 0 {
        return Err(format!("offset {offset} is negative"));
    }
    Ok(())
}

/// Why `topic` cannot receive redriven records, if it cannot: it must be a topic of the
/// topology (auto-creating a mistyped one would lose the records quietly) and must not be a
/// dead-letter topic or the redrive log.
pub fn target_problem(topology: &Topology, topic: &str) -> Option<String> {
    if topology.topic(topic).is_none() {
        Some(format!("target `{topic}` is not a topic of the topology"))
    } else if is_dead_letter_topic(topology, topic) || topic == redrive_log::TOPIC {
        Some(format!(
            "target `{topic}` is a dead-letter topic or the redrive log, not a processor input"
        ))
    } else {
        None
    }
}

/// Every planned target checked before the first record is produced.
pub fn check_targets(plan: &Plan, topology: &Topology) -> Result<(), RequestError> {
    let problems: Vec<String> = plan
        .targets()
        .keys()
        .filter_map(|topic| target_problem(topology, topic))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RequestError { problems })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use runtime::DeadLetterErrorKind;

    const TOPOLOGY: &str = r#"
version: 1
topics:
  - name: orders.order-placed.v1
    partitions: 6
    key: string
    value: avro
    value_schema: orders/OrderPlaced.avsc
    external_writers: [load-generator]
  - name: shipping.shipment-events.v1
    partitions: 3
    key: string
    value: avro
    value_schema: shipping/ShipmentEvent.avsc
  - name: dlq.shipping.order-placed.v1
    partitions: 3
    retention_ms: 2592000000
    key: bytes
    value: avro
    value_schema: dlq/DeadLetter.avsc
processors:
  - name: shipping
    kind: shipping
    group: storefleet.shipping
    inputs:
      placed:
        topic: orders.order-placed.v1
        dead_letter: dlq.shipping.order-placed.v1
    outputs:
      shipments: shipping.shipment-events.v1
    admin_port: 9101
    params:
      carrier: acme
"#;

    pub(crate) const DLQ: &str = "dlq.shipping.order-placed.v1";

    /// A small topology over the repo's real schemas (the real DeadLetter schema included).
    pub(crate) fn topology() -> Topology {
        let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        topology::load_str(TOPOLOGY, &schemas).expect("test topology is valid")
    }

    fn redrive(args: &[&str]) -> Result<RedriveRequest, RequestError> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            action: DlqAction,
        }
        let cli = Cli::try_parse_from(["dlq", "redrive"].into_iter().chain(args.iter().copied()))
            .expect("clap accepts it");
        RedriveRequest::from_action(cli.action, &topology())
    }

    #[test]
    fn dead_letter_topics_are_found_by_their_value_schema() {
        let t = topology();
        assert_eq!(dead_letter_topics(&t), vec![DLQ]);
        assert!(check_dead_letter_topic(&t, DLQ).is_ok());
        assert!(check_dead_letter_topic(&t, "orders.order-placed.v1")
            .unwrap_err()
            .contains("does not hold dead letters"));
        assert!(check_dead_letter_topic(&t, "dlq.typo.v1")
            .unwrap_err()
            .contains("not a topic of the topology"));
    }

    #[test]
    fn a_valid_redrive_becomes_a_typed_request() {
        let request = redrive(&[DLQ, "--partition", "2", "--offset", "7"]).unwrap();
        assert_eq!(request.dlq_topic, DLQ);
        assert_eq!(
            request.selection.target,
            Target::One {
                partition: 2,
                offset: 7
            }
        );
        assert_eq!(request.deferral, Deferral::from_secs(30, 300).unwrap());
        let all = redrive(&[
            DLQ,
            "--all",
            "--error-kind",
            "decode",
            "--to",
            "orders.order-placed.v1",
        ])
        .unwrap();
        assert_eq!(all.selection.target, Target::All);
        assert_eq!(all.selection.error_kind, Some(DeadLetterErrorKind::Decode));
        assert_eq!(all.to.as_deref(), Some("orders.order-placed.v1"));
    }

    #[test]
    fn every_problem_of_a_bad_redrive_is_reported_at_once() {
        let error = redrive(&[
            "orders.order-placed.v1",
            "--partition",
            "9",
            "--offset",
            "1",
            "--to",
            "orders.typo.v1",
            "--defer",
            "60",
            "--max-defer",
            "10",
        ])
        .unwrap_err();
        assert_eq!(error.problems.len(), 4, "{error}");
        let text = error.to_string();
        for part in [
            "does not hold dead letters",
            "partition 9 out of range",
            "`orders.typo.v1` is not a topic",
            "--max-defer 10 is below --defer 60",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
    }

    #[test]
    fn redriving_into_a_dead_letter_topic_or_the_log_is_refused() {
        let error = redrive(&[DLQ, "--all", "--to", DLQ]).unwrap_err();
        assert!(error.to_string().contains("dead-letter topic"), "{error}");
        assert!(target_problem(&topology(), redrive_log::TOPIC).is_some());
        assert!(target_problem(&topology(), "shipping.shipment-events.v1").is_none());
    }

    #[test]
    fn planned_targets_outside_the_topology_are_refused_before_producing() {
        use crate::plan::{plan, Selection};
        use crate::redrive_log::RedriveHistory;
        use crate::Coordinates;
        let mut letter = crate::plan::tests::letter(DeadLetterErrorKind::Processing);
        letter.source_topic = "orders.order-placed.v0".into();
        let selection = Selection {
            target: Target::All,
            error_kind: None,
            again: false,
        };
        let records = vec![(Coordinates::new(DLQ, 0, 0), Ok(letter))];
        let p = plan(records, &selection, None, &RedriveHistory::default());
        let error = check_targets(&p, &topology()).unwrap_err();
        assert!(error.to_string().contains("orders.order-placed.v0"));
    }
}
