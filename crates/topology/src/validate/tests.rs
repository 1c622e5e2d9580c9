use super::*;
use crate::{Guarantee, ProcessorKind};

const EVENT: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"storefleet.orders",
  "fields":[{"name":"order_id","type":"string"}]}"#;
const SHIPMENT: &str = r#"{"type":"record","name":"ShipmentEvent","namespace":"storefleet.shipping",
  "fields":[{"name":"order_id","type":"string"}]}"#;
const DEAD_LETTER: &str = r#"{"type":"record","name":"DeadLetter","namespace":"storefleet.dlq",
  "fields":[{"name":"reason","type":"string"}]}"#;

fn schema_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("orders")).unwrap();
    std::fs::create_dir_all(dir.path().join("dlq")).unwrap();
    std::fs::create_dir_all(dir.path().join("shipping")).unwrap();
    std::fs::write(dir.path().join("shipping/ShipmentEvent.avsc"), SHIPMENT).unwrap();
    std::fs::write(dir.path().join("orders/OrderPlaced.avsc"), EVENT).unwrap();
    std::fs::write(dir.path().join("dlq/DeadLetter.avsc"), DEAD_LETTER).unwrap();
    std::fs::write(
        dir.path().join("orders/Broken.avsc"),
        "{\"type\": \"record\"",
    )
    .unwrap();
    dir
}

const GOOD: &str = r#"
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
    partitions: 1
    cleanup_policy: delete
    retention_ms: -1
    key: bytes
    value: avro
    value_schema: dlq/DeadLetter.avsc
processors:
  - name: shipping
    kind: shipping
    group: storefleet.shipping
    instances: 2
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

#[test]
fn a_good_topology_loads_with_typed_params_and_schemas() {
    let dir = schema_dir();
    let t = load_str(GOOD, dir.path()).expect("valid");
    assert_eq!(t.topics.len(), 3);
    let (spec, params) = t.processor("shipping").unwrap();
    assert_eq!(spec.kind, ProcessorKind::Shipping);
    assert_eq!(spec.guarantee, Guarantee::AtLeastOnce);
    let ProcessorParams::Shipping(p) = params else {
        panic!("shipping parameters expected, got {params:?}");
    };
    assert_eq!(p.carrier, "acme");
    assert_eq!(p.default_fulfillment_center, "FC-EAST-1");
    assert!(t.value_schema("orders.order-placed.v1").is_some());
    let subjects: Vec<String> = t.subjects().into_iter().map(|(s, _)| s).collect();
    assert!(subjects.contains(&"orders.order-placed.v1-value".to_string()));
}

fn problems(text: &str) -> Vec<Problem> {
    let dir = schema_dir();
    match load_str(text, dir.path()) {
        Ok(_) => panic!("expected problems"),
        Err(TopologyError::Invalid(p)) => p,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn has(problems: &[Problem], path_part: &str, message_part: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path.contains(path_part) && p.message.contains(message_part))
}

#[test]
fn every_problem_is_reported_in_one_run_with_its_path() {
    let broken = GOOD
        .replace(
            "topic: orders.order-placed.v1",
            "topic: orders.order-plaed.v1",
        )
        .replace(
            "shipments: shipping.shipment-events.v1",
            "shipments: shipping.nowhere.v1",
        )
        .replace(
            "value_schema: orders/OrderPlaced.avsc\n    external_writers",
            "value_schema: orders/Missing.avsc\n    external_writers",
        )
        .replace("partitions: 3", "partitions: 0")
        + r#"
  - name: shipping
    kind: shipping
    group: storefleet.shipping
    inputs: {}
    admin_port: 9102
    params:
      carier: typo
"#;
    let p = problems(&broken);
    assert!(
        has(
            &p,
            "inputs.placed.topic",
            "unknown topic `orders.order-plaed.v1`"
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            "outputs.shipments",
            "unknown topic `shipping.nowhere.v1`"
        ),
        "{p:#?}"
    );
    assert!(has(&p, "topics[0]", "Missing.avsc"), "{p:#?}");
    assert!(has(&p, "topics[1]", "must be at least 1"), "{p:#?}");
    assert!(
        has(&p, "processors[1] (shipping)", "duplicate processor name"),
        "{p:#?}"
    );
    assert!(
        has(&p, "processors[1] (shipping).group", "shared"),
        "{p:#?}"
    );
    assert!(
        has(&p, "processors[1] (shipping).inputs", "at least one input"),
        "{p:#?}"
    );
    assert!(
        has(&p, "processors[1] (shipping).admin_port", "9102"),
        "{p:#?}"
    );
    assert!(
        has(&p, "processors[1] (shipping).params", "carier"),
        "{p:#?}"
    );
    assert!(p.len() >= 9, "{p:#?}");
}

#[test]
fn unknown_fields_bad_enums_and_unparsable_schemas_are_problems() {
    let broken = GOOD
        .replace("cleanup_policy: delete", "cleanup_policy: shred")
        .replace("partitions: 6", "partitions: 6\n    retention: 7d")
        .replace(
            "value_schema: dlq/DeadLetter.avsc",
            "value_schema: orders/Broken.avsc",
        )
        .replace("kind: shipping", "kind: teleport");
    let p = problems(&broken);
    assert!(has(&p, "topics[2]", "shred"), "{p:#?}");
    assert!(has(&p, "topics[0]", "retention"), "{p:#?}");
    assert!(has(&p, "processors[0]", "teleport"), "{p:#?}");
}

#[test]
fn a_dead_letter_topic_must_carry_dead_letters_and_inputs_need_a_writer() {
    let broken = GOOD
        .replace(
            "value_schema: dlq/DeadLetter.avsc",
            "value_schema: orders/OrderPlaced.avsc",
        )
        .replace("    external_writers: [load-generator]\n", "");
    let p = problems(&broken);
    assert!(
        has(&p, "inputs.placed.dead_letter", "storefleet.dlq.DeadLetter"),
        "{p:#?}"
    );
    assert!(has(&p, "inputs.placed.topic", "nobody writes it"), "{p:#?}");
}

#[test]
fn every_port_of_the_kind_is_bound_once_to_a_topic_of_its_record() {
    // Unbound port, unknown port, and a topic carrying another record than the port takes:
    // all caught by `fleet validate`, before `fleet run` would look the port up.
    let p = problems(&GOOD.replace(
        "    outputs:\n      shipments: shipping.shipment-events.v1\n",
        "    outputs:\n      shipmints: shipping.shipment-events.v1\n",
    ));
    assert!(
        has(
            &p,
            "processors[0] (shipping).outputs",
            "port `shipments` of kind shipping is not bound"
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            "outputs.shipmints",
            "has no outputs port `shipmints` (its ports: shipments)"
        ),
        "{p:#?}"
    );
    let p = problems(&GOOD.replace(
        "shipments: shipping.shipment-events.v1",
        "shipments: orders.order-placed.v1",
    ));
    assert!(
        has(
            &p,
            "outputs.shipments",
            "carries storefleet.orders.OrderPlaced but port `shipments` takes storefleet.shipping.ShipmentEvent"
        ),
        "{p:#?}"
    );
}

#[test]
fn yaml_syntax_errors_and_wrong_versions_are_reported() {
    let p = problems("version: [1\n");
    assert!(has(&p, "<file>", "not valid YAML"), "{p:#?}");
    let p = problems(&GOOD.replace("version: 1", "version: 2\nextras: true"));
    assert!(has(&p, "version", "unsupported version 2"), "{p:#?}");
    assert!(has(&p, "extras", "unknown top-level key"), "{p:#?}");
}

#[test]
fn an_isolated_copy_renames_what_the_processor_touches_and_round_trips_as_yaml() {
    let dir = schema_dir();
    let t = load_str(GOOD, dir.path()).unwrap();
    let iso = t.isolated("shipping", "t1").unwrap();
    let (spec, _) = iso.processor("shipping").unwrap();
    assert_eq!(spec.input("placed"), Some("orders.order-placed.v1.t1"));
    assert_eq!(
        spec.inputs["placed"].dead_letter,
        "dlq.shipping.order-placed.v1.t1"
    );
    assert_eq!(
        spec.output("shipments"),
        Some("shipping.shipment-events.v1.t1")
    );
    assert_eq!(spec.group, "storefleet.shipping.t1");
    assert!(iso.value_schema("orders.order-placed.v1.t1").is_some());
    assert!(iso.topic("orders.order-placed.v1").is_none());
    let again = load_str(&iso.to_yaml(), dir.path()).expect("isolated copy is valid");
    assert_eq!(again.topics, iso.topics);
}

#[test]
fn the_yaml_carries_changes_made_to_typed_params() {
    // A bench points its private processes at private databases by changing the typed
    // parameters; the file it writes for them must say so (it once wrote the raw YAML, and
    // every bench run put its orders into the stack's own database).
    let dir = schema_dir();
    let mut t = load_str(GOOD, dir.path()).unwrap();
    for (_, params) in &mut t.processors {
        if let ProcessorParams::Shipping(p) = params {
            p.carrier = "changed-carrier".into();
        }
    }
    let again = load_str(&t.to_yaml(), dir.path()).expect("written copy is valid");
    let (_, params) = again.processor("shipping").unwrap();
    let ProcessorParams::Shipping(p) = params else {
        panic!("shipping parameters expected, got {params:?}");
    };
    assert_eq!(p.carrier, "changed-carrier");
}

#[test]
fn the_project_topology_round_trips_through_its_yaml() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology.yaml");
    let t = load(&path).expect("project topology loads");
    let again = load_str(&t.to_yaml(), &t.schema_dir).expect("written copy is valid");
    assert_eq!(again.topics, t.topics);
    assert_eq!(again.processors.len(), t.processors.len());
    for ((spec, params), (spec2, params2)) in t.processors.iter().zip(&again.processors) {
        assert_eq!(spec.name, spec2.name);
        assert_eq!(params, params2, "parameters of {}", spec.name);
    }
    for ((spec, params), (spec2, params2)) in t.connectors.iter().zip(&again.connectors) {
        assert_eq!(spec.name, spec2.name);
        assert_eq!(params, params2, "parameters of {}", spec.name);
    }
}

#[test]
fn overridden_params_change_raw_and_typed_together_and_are_checked() {
    let dir = schema_dir();
    let mut t = load_str(GOOD, dir.path()).unwrap();
    assert!(t
        .set_params("shipping", &[("carrier", "override".into())])
        .unwrap());
    let again = load_str(&t.to_yaml(), dir.path()).unwrap();
    for topology in [&t, &again] {
        let (spec, params) = topology.processor("shipping").unwrap();
        let ProcessorParams::Shipping(p) = params else {
            panic!("shipping parameters expected, got {params:?}");
        };
        assert_eq!(p.carrier, "override");
        assert_eq!(spec.params["carrier"], "override");
    }
    assert!(t
        .set_params("shipping", &[("no_such_field", 1.into())])
        .is_err());
    assert!(!t.set_params("nobody", &[]).unwrap());
}
