//! What to watch, read once from the topology: each processor's consumer group and input
//! topics, every instance's admin address, the dead-letter topics. Pure.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use apache_avro::Schema;
use topology::{ProcessorKind, Topology, DEAD_LETTER_RECORD};

/// The counter an instance's throughput is the rate of.
pub const PROCESSOR_THROUGHPUT: &str = "storefleet_records_in_total";
pub const CONNECTOR_THROUGHPUT: &str = "storefleet_cdc_changes_total";
/// Summed over the checkout instances: sagas that ran out of compensation attempts.
pub const STUCK_SAGAS: &str = "storefleet_checkout_sagas_stuck_total";

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub groups: Vec<GroupPlan>,
    pub connectors: Vec<ConnectorPlan>,
    /// Topics named `dlq.*` that carry dead letters (value record `storefleet.dlq.DeadLetter`;
    /// so `dlq.redrives.v1`, the redrive log, is not one).
    pub dlq_topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    pub processor: String,
    pub kind: ProcessorKind,
    pub group: String,
    /// The inputs the group consumes, each once, in topology order.
    pub topics: Vec<String>,
    /// Admin address of instance i at index i.
    pub instances: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorPlan {
    pub name: String,
    pub instances: Vec<SocketAddr>,
}

/// One admin endpoint to probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Processor or connector name.
    pub owner: String,
    pub index: u16,
    pub addr: SocketAddr,
    pub throughput_metric: &'static str,
    /// A checkout instance: its stuck sagas count.
    pub counts_stuck_sagas: bool,
}

impl Plan {
    pub fn from_topology(topology: &Topology, admin_host: IpAddr) -> Self {
        let addrs = |port: u16, count: u16| -> Vec<SocketAddr> {
            (0..count)
                .map(|i| SocketAddr::new(admin_host, port.saturating_add(i)))
                .collect()
        };
        let groups = topology
            .processors
            .iter()
            .map(|(spec, _)| {
                let mut topics: Vec<String> = Vec::new();
                for input in spec.inputs.values() {
                    if !topics.contains(&input.topic) {
                        topics.push(input.topic.clone());
                    }
                }
                GroupPlan {
                    processor: spec.name.clone(),
                    kind: spec.kind,
                    group: spec.group.clone(),
                    topics,
                    instances: addrs(spec.admin_port, spec.instances),
                }
            })
            .collect();
        let connectors = topology
            .connectors
            .iter()
            .map(|(spec, _)| ConnectorPlan {
                name: spec.name.clone(),
                instances: addrs(spec.admin_port, 1),
            })
            .collect();
        let dlq_topics = topology
            .topics
            .iter()
            .filter(|t| t.name.starts_with("dlq."))
            .filter(|t| {
                matches!(topology.value_schema(&t.name),
                    Some(Schema::Record(r)) if r.name.fullname(None) == DEAD_LETTER_RECORD)
            })
            .map(|t| t.name.clone())
            .collect();
        Self {
            groups,
            connectors,
            dlq_topics,
        }
    }

    /// Every topic whose watermarks a sample reads (inputs and dead letters), each once.
    pub fn topics(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .groups
            .iter()
            .flat_map(|g| g.topics.iter())
            .chain(self.dlq_topics.iter())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// Every admin endpoint: processors' instances, then connectors'.
    pub fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for group in &self.groups {
            for (i, addr) in group.instances.iter().enumerate() {
                out.push(Target {
                    owner: group.processor.clone(),
                    index: i as u16,
                    addr: *addr,
                    throughput_metric: PROCESSOR_THROUGHPUT,
                    counts_stuck_sagas: group.kind == ProcessorKind::Checkout,
                });
            }
        }
        for connector in &self.connectors {
            for (i, addr) in connector.instances.iter().enumerate() {
                out.push(Target {
                    owner: connector.name.clone(),
                    index: i as u16,
                    addr: *addr,
                    throughput_metric: CONNECTOR_THROUGHPUT,
                    counts_stuck_sagas: false,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fleet() -> Topology {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        topology::load(&root.join("topology.yaml")).expect("the repository's topology is valid")
    }

    #[test]
    fn the_fleet_plan_watches_every_group_input_and_dead_letter_topic() {
        let plan = Plan::from_topology(&fleet(), IpAddr::from([127, 0, 0, 1]));
        let checkout = plan
            .groups
            .iter()
            .find(|g| g.processor == "checkout")
            .unwrap();
        assert_eq!(checkout.group, "storefleet.checkout");
        assert_eq!(checkout.topics.len(), 3);
        assert_eq!(
            checkout.instances,
            vec![
                "127.0.0.1:9161".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:9162".parse().unwrap()
            ]
        );
        assert!(plan
            .dlq_topics
            .contains(&"dlq.shipping.order-placed.v1".to_string()));
        assert!(plan
            .dlq_topics
            .contains(&"dlq.catalog-cdc.rows.v1".to_string()));
        assert!(!plan.dlq_topics.contains(&"dlq.redrives.v1".to_string()));
        let topics = plan.topics();
        assert!(topics.contains(&"orders.order-placed.v1".to_string()));
        assert_eq!(
            topics.len(),
            topics.iter().collect::<BTreeSet<_>>().len(),
            "each topic once"
        );
        let targets = plan.targets();
        let stuck: Vec<_> = targets.iter().filter(|t| t.counts_stuck_sagas).collect();
        assert_eq!(stuck.len(), 2);
        assert!(targets
            .iter()
            .any(|t| t.owner == "catalog-cdc" && t.throughput_metric == CONNECTOR_THROUGHPUT));
    }

    #[test]
    fn an_isolated_copy_watches_the_renamed_group_and_topics() {
        let isolated = fleet().isolated("shipping", "t1").unwrap();
        let plan = Plan::from_topology(&isolated, IpAddr::from([127, 0, 0, 1]));
        let shipping = plan
            .groups
            .iter()
            .find(|g| g.processor == "shipping")
            .unwrap();
        assert_eq!(shipping.group, "storefleet.shipping.t1");
        assert_eq!(
            shipping.topics,
            vec!["orders.order-placed.v1.t1".to_string()]
        );
        assert!(plan
            .dlq_topics
            .contains(&"dlq.shipping.order-placed.v1.t1".to_string()));
    }
}
