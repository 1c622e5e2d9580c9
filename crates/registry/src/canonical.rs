//! The identity of a schema text: formatting must not mint a new id.
//!
//! Avro's Parsing Canonical Form (and `apache_avro`'s `canonical_form`) drops `doc`,
//! `default`, `aliases` and logical types, so two schemas that decode differently would
//! share an id. Here only presentation is normalised: object keys sorted, no whitespace,
//! and a schema written as `{"type": "int"}` becomes `"int"`. Everything else is kept.

use serde_json::Value;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Normalised text of the schema `value`.
pub fn normalise(value: &Value) -> String {
    let mut out = String::new();
    write_schema(value, &mut out);
    out
}

/// Where `value` sits in a schema position (so `{"type": "int"}` may be collapsed).
fn write_schema(value: &Value, out: &mut String) {
    match value {
        Value::Array(branches) => {
            out.push('[');
            for (position, branch) in branches.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_schema(branch, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            if object.len() == 1 {
                if let Some(Value::String(name)) = object.get("type") {
                    if PRIMITIVES.contains(&name.as_str()) {
                        write_plain(&Value::String(name.clone()), out);
                        return;
                    }
                }
            }
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (position, key) in keys.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_plain(&Value::String(key.clone()), out);
                out.push(':');
                let Some(inner) = object.get(key) else {
                    continue;
                };
                match key.as_str() {
                    "type" | "items" | "values" => write_schema(inner, out),
                    "fields" => write_fields(inner, out),
                    _ => write_plain(inner, out),
                }
            }
            out.push('}');
        }
        other => write_plain(other, out),
    }
}

fn write_fields(value: &Value, out: &mut String) {
    let Value::Array(fields) = value else {
        write_plain(value, out);
        return;
    };
    out.push('[');
    for (position, field) in fields.iter().enumerate() {
        if position > 0 {
            out.push(',');
        }
        // A field object is not a schema, but its "type" is: write_schema handles exactly
        // that, and a field always has a "name", so it is never collapsed.
        write_schema(field, out);
    }
    out.push(']');
}

/// Any JSON value (defaults, docs, custom attributes) with sorted keys and no whitespace.
fn write_plain(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (position, key) in keys.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_plain(&Value::String(key.clone()), out);
                out.push(':');
                if let Some(inner) = object.get(key) {
                    write_plain(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_plain(item, out);
            }
            out.push(']');
        }
        // Scalars: serde_json's own rendering (escaping, number formats) is the canonical one.
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn normalise_str(text: &str) -> String {
        normalise(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn whitespace_and_key_order_do_not_matter() {
        let a = r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}"#;
        let b = "{\n  \"fields\" : [ { \"type\" : \"int\", \"name\" : \"a\" } ],\n  \"name\":\"R\",\"type\":\"record\" }";
        assert_eq!(normalise_str(a), normalise_str(b));
        assert_eq!(
            normalise_str(a),
            r#"{"fields":[{"name":"a","type":"int"}],"name":"R","type":"record"}"#
        );
    }

    #[test]
    fn primitive_objects_collapse_only_in_schema_positions() {
        assert_eq!(normalise_str(r#"{"type":"string"}"#), r#""string""#);
        assert_eq!(
            normalise_str(r#"{"type":"array","items":{"type":"long"}}"#),
            r#"{"items":"long","type":"array"}"#
        );
        // A map default that looks like a schema stays as written.
        let with_default = json!({"type": "record", "name": "R", "fields": [
            {"name": "m", "type": {"type": "map", "values": "string"}, "default": {"type": "int"}}]});
        assert!(normalise(&with_default).contains(r#""default":{"type":"int"}"#));
    }

    #[test]
    fn docs_defaults_and_logical_types_are_kept() {
        let a = json!({"type": "record", "name": "R", "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "when", "default": 0}]});
        let b = json!({"type": "record", "name": "R", "fields": [
            {"name": "at", "type": "long", "doc": "when", "default": 0}]});
        assert_ne!(normalise(&a), normalise(&b));
        assert!(normalise(&a).contains("timestamp-millis"));
        let c = json!({"type": "record", "name": "R", "fields": [
            {"name": "at", "type": "long", "doc": "when", "default": 1}]});
        assert_ne!(normalise(&b), normalise(&c));
    }

    #[test]
    fn field_order_is_significant() {
        let a = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}"#;
        let b = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"int"},{"name":"a","type":"int"}]}"#;
        assert_ne!(normalise_str(a), normalise_str(b));
    }
}
