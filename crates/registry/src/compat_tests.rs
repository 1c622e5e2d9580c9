//! Evolution table: each case is (old, new) with the verdicts Confluent's Java registry gives.

use serde_json::{json, Value};

use super::*;
use crate::avro::parse;

/// A record `shop.Customer` with the given fields.
fn record(fields: Value) -> Value {
    json!({"type": "record", "name": "Customer", "namespace": "shop", "fields": fields})
}

fn parsed(value: &Value) -> ParsedSchema {
    parse(value, &[]).unwrap_or_else(|error| panic!("{value}: {error}"))
}

struct Case {
    name: &'static str,
    old: Value,
    new: Value,
    /// The new schema reads old data.
    backward: bool,
    /// The old schema reads new data.
    forward: bool,
}

fn case(name: &'static str, old: Value, new: Value, backward: bool, forward: bool) -> Case {
    Case {
        name,
        old,
        new,
        backward,
        forward,
    }
}

fn color(symbols: &[&str], default: Option<&str>) -> Value {
    let mut schema = json!({"type": "enum", "name": "Color", "symbols": symbols});
    if let Some(default) = default {
        schema["default"] = json!(default);
    }
    record(json!([{"name": "color", "type": schema}]))
}

fn field(field_type: Value) -> Value {
    record(json!([{"name": "f", "type": field_type}]))
}

fn cases() -> Vec<Case> {
    let base = record(json!([{"name": "id", "type": "long"}]));
    let logical = record(json!([
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]));
    let mut logical_plus_optional = logical.clone();
    if let Some(fields) = logical_plus_optional["fields"].as_array_mut() {
        fields.push(json!({"name": "note", "type": ["null", "string"], "default": null}));
    }
    let address = |extra: Value| {
        let mut fields = vec![json!({"name": "city", "type": "string"})];
        if !extra.is_null() {
            fields.push(extra);
        }
        record(json!([{"name": "ship_to", "type":
            {"type": "record", "name": "Address", "fields": fields}}]))
    };
    let linked = |extra: Option<Value>| {
        let mut fields = vec![
            json!({"name": "value", "type": "int"}),
            json!({"name": "next", "type": ["null", "Node"], "default": null}),
        ];
        fields.extend(extra);
        json!({"type": "record", "name": "Node", "fields": fields})
    };
    vec![
        case(
            "add field with default",
            base.clone(),
            record(
                json!([{"name": "id", "type": "long"}, {"name": "name", "type": "string", "default": ""}]),
            ),
            true,
            true,
        ),
        case(
            "add field without default",
            base.clone(),
            record(json!([{"name": "id", "type": "long"}, {"name": "name", "type": "string"}])),
            false,
            true,
        ),
        case(
            "remove field that had a default",
            record(
                json!([{"name": "id", "type": "long"}, {"name": "name", "type": "string", "default": ""}]),
            ),
            base.clone(),
            true,
            true,
        ),
        case(
            "remove field without default",
            record(json!([{"name": "id", "type": "long"}, {"name": "name", "type": "string"}])),
            base.clone(),
            true,
            false,
        ),
        case(
            "promote int to long",
            field(json!("int")),
            field(json!("long")),
            true,
            false,
        ),
        case(
            "narrow long to int",
            field(json!("long")),
            field(json!("int")),
            false,
            true,
        ),
        case(
            "promote int to double",
            field(json!("int")),
            field(json!("double")),
            true,
            false,
        ),
        case(
            "promote float to double",
            field(json!("float")),
            field(json!("double")),
            true,
            false,
        ),
        case(
            "int to string",
            field(json!("int")),
            field(json!("string")),
            false,
            false,
        ),
        case(
            "string to bytes",
            field(json!("string")),
            field(json!("bytes")),
            true,
            true,
        ),
        case(
            "enum adds a symbol",
            color(&["RED", "GREEN"], None),
            color(&["RED", "GREEN", "BLUE"], None),
            true,
            false,
        ),
        case(
            "enum adds a symbol, old reader has a default",
            color(&["RED", "GREEN"], Some("RED")),
            color(&["RED", "GREEN", "BLUE"], Some("RED")),
            true,
            true,
        ),
        case(
            "enum removes a symbol",
            color(&["RED", "GREEN", "BLUE"], None),
            color(&["RED", "GREEN"], None),
            false,
            true,
        ),
        case(
            "enum removes a symbol, new reader has a default",
            color(&["RED", "GREEN", "BLUE"], None),
            color(&["RED", "GREEN"], Some("RED")),
            true,
            true,
        ),
        case(
            "union widens",
            field(json!(["null", "string"])),
            field(json!(["null", "string", "int"])),
            true,
            false,
        ),
        case(
            "union narrows",
            field(json!(["null", "string", "int"])),
            field(json!(["null", "string"])),
            false,
            true,
        ),
        case(
            "type becomes optional",
            field(json!("string")),
            field(json!(["null", "string"])),
            true,
            false,
        ),
        case(
            "optional becomes required",
            field(json!(["null", "string"])),
            field(json!("string")),
            false,
            true,
        ),
        case(
            "union branch promotes",
            field(json!(["null", "int"])),
            field(json!(["null", "long"])),
            true,
            false,
        ),
        case(
            "add optional field beside uuid/decimal/timestamp-millis fields",
            logical.clone(),
            logical_plus_optional,
            true,
            true,
        ),
        case(
            "logical type changes on the same underlying type",
            field(json!({"type": "long", "logicalType": "timestamp-millis"})),
            field(json!({"type": "long", "logicalType": "timestamp-micros"})),
            true,
            true,
        ),
        case(
            "decimal scale changes (Java ignores logical types)",
            field(json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2})),
            field(json!({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 4})),
            true,
            true,
        ),
        case(
            "nested record adds a field without default",
            address(Value::Null),
            address(json!({"name": "zip", "type": "string"})),
            false,
            true,
        ),
        case(
            "nested record adds a field with default",
            address(Value::Null),
            address(json!({"name": "zip", "type": "string", "default": ""})),
            true,
            true,
        ),
        case(
            "rename field with an alias",
            record(json!([{"name": "name", "type": "string"}])),
            record(json!([{"name": "full_name", "aliases": ["name"], "type": "string"}])),
            true,
            false,
        ),
        case(
            "rename field without alias or default",
            record(json!([{"name": "name", "type": "string"}])),
            record(json!([{"name": "full_name", "type": "string"}])),
            false,
            false,
        ),
        case(
            "rename record with an alias",
            record(json!([{"name": "id", "type": "long"}])),
            json!({"type": "record", "name": "Client", "namespace": "shop", "aliases": ["shop.Customer"],
                   "fields": [{"name": "id", "type": "long"}]}),
            true,
            false,
        ),
        case(
            "rename record without alias",
            record(json!([{"name": "id", "type": "long"}])),
            json!({"type": "record", "name": "Client", "namespace": "shop",
                   "fields": [{"name": "id", "type": "long"}]}),
            false,
            false,
        ),
        case(
            "change only the namespace (Java compares unqualified names)",
            record(json!([{"name": "id", "type": "long"}])),
            json!({"type": "record", "name": "Customer", "namespace": "crm",
                   "fields": [{"name": "id", "type": "long"}]}),
            true,
            true,
        ),
        case(
            "fixed size changes",
            field(json!({"type": "fixed", "name": "Hash", "size": 16})),
            field(json!({"type": "fixed", "name": "Hash", "size": 32})),
            false,
            false,
        ),
        case(
            "array items promote",
            field(json!({"type": "array", "items": "int"})),
            field(json!({"type": "array", "items": "long"})),
            true,
            false,
        ),
        case(
            "map values change type",
            field(json!({"type": "map", "values": "string"})),
            field(json!({"type": "map", "values": "int"})),
            false,
            false,
        ),
        case(
            "recursive record adds a field with default",
            linked(None),
            linked(Some(
                json!({"name": "label", "type": "string", "default": ""}),
            )),
            true,
            true,
        ),
        case(
            "recursive record adds a field without default",
            linked(None),
            linked(Some(json!({"name": "label", "type": "string"}))),
            false,
            true,
        ),
        case(
            "record becomes an enum",
            field(json!({"type": "record", "name": "X", "fields": []})),
            field(json!({"type": "enum", "name": "X", "symbols": ["A"]})),
            false,
            false,
        ),
    ]
}

fn expected(level: CompatibilityLevel, case: &Case) -> bool {
    match level {
        CompatibilityLevel::None => true,
        CompatibilityLevel::Backward | CompatibilityLevel::BackwardTransitive => case.backward,
        CompatibilityLevel::Forward | CompatibilityLevel::ForwardTransitive => case.forward,
        CompatibilityLevel::Full | CompatibilityLevel::FullTransitive => {
            case.backward && case.forward
        }
    }
}

const LEVELS: [CompatibilityLevel; 7] = [
    CompatibilityLevel::None,
    CompatibilityLevel::Backward,
    CompatibilityLevel::BackwardTransitive,
    CompatibilityLevel::Forward,
    CompatibilityLevel::ForwardTransitive,
    CompatibilityLevel::Full,
    CompatibilityLevel::FullTransitive,
];

#[test]
fn evolution_table_matches_confluent_verdicts() {
    let mut failures = Vec::new();
    for case in cases() {
        // Every schema in the table is also one apache_avro accepts.
        for schema in [&case.old, &case.new] {
            crate::avro::validate(&schema.to_string(), &[])
                .unwrap_or_else(|error| panic!("{}: {error}", case.name));
        }
        let old = parsed(&case.old);
        let new = parsed(&case.new);
        let text = case.old.to_string();
        let previous = [Previous {
            version: 1,
            schema_text: &text,
            schema: &old,
        }];
        for level in LEVELS {
            let messages = check(level, &new, &previous);
            if messages.is_empty() != expected(level, &case) {
                failures.push(format!("{} under {level}: {messages:?}", case.name));
            }
        }
    }
    assert!(cases().len() >= 20);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn transitive_levels_check_every_earlier_version() {
    let v1 = parsed(&field(json!("int")));
    let v2 = parsed(&record(json!([])));
    let v3 = parsed(&record(
        json!([{"name": "f", "type": "string", "default": ""}]),
    ));
    let previous = [
        Previous {
            version: 1,
            schema_text: "v1",
            schema: &v1,
        },
        Previous {
            version: 2,
            schema_text: "v2",
            schema: &v2,
        },
    ];
    assert!(check(CompatibilityLevel::Backward, &v3, &previous).is_empty());
    let messages = check(CompatibilityLevel::BackwardTransitive, &v3, &previous);
    assert!(
        messages.iter().any(|m| m.contains("TYPE_MISMATCH")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"{oldSchemaVersion: 1}".to_string()),
        "{messages:?}"
    );
}

#[test]
fn messages_name_the_problem_and_its_path() {
    let old = parsed(&record(json!([{"name": "id", "type": "long"}])));
    let new = parsed(&record(
        json!([{"name": "id", "type": "long"}, {"name": "age", "type": "int"}]),
    ));
    let messages = check(
        CompatibilityLevel::Backward,
        &new,
        &[Previous {
            version: 3,
            schema_text: "OLD",
            schema: &old,
        }],
    );
    assert_eq!(
        messages,
        vec![
            "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'age' at path '/fields/1' in the new schema has no default value and is missing in the old schema', additionalInfo:'age'}".to_string(),
            "{oldSchemaVersion: 3}".to_string(),
            "{oldSchema: 'OLD'}".to_string(),
            "{compatibility: 'BACKWARD'}".to_string(),
        ]
    );
    let enum_messages = can_read(
        &parsed(&color(&["RED"], None)),
        &parsed(&color(&["RED", "GREEN", "BLUE"], None)),
    );
    assert_eq!(enum_messages.len(), 1);
    assert_eq!(
        enum_messages[0].kind,
        IncompatibilityKind::MissingEnumSymbols
    );
    assert_eq!(enum_messages[0].info, "[BLUE, GREEN]");
    assert_eq!(enum_messages[0].location, "/fields/0/type/symbols");
}

#[test]
fn levels_parse_case_insensitively() {
    assert_eq!(
        "full_transitive".parse(),
        Ok(CompatibilityLevel::FullTransitive)
    );
    assert_eq!("NONE".parse(), Ok(CompatibilityLevel::None));
    assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
    assert_eq!(CompatibilityLevel::default(), CompatibilityLevel::Backward);
}
