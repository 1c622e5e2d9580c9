//! Avro bodies (no framing) to and from serde types.

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::CodecError;

/// Serializes `value` into an Avro body for `schema`. The serde value is first resolved
/// against the schema, which maps plain strings to uuid, longs to timestamps, `Option`s to
/// union branches and enum variants to symbols by name.
// The datum functions are deprecated in 0.22 in favour of GenericDatumWriter/Reader, whose
// API is still moving (0.23); these two call sites are the only place to change later.
#[allow(deprecated)]
pub fn encode_body<T: Serialize>(schema: &Schema, value: &T) -> Result<Vec<u8>, CodecError> {
    let raw = apache_avro::to_value(value)?;
    let resolved = raw.resolve(schema).map_err(|e| CodecError::Mismatch {
        schema: schema_name(schema),
        reason: e.to_string(),
    })?;
    Ok(apache_avro::to_avro_datum(schema, resolved)?)
}

/// Decodes an Avro body written with `writer`, read as `reader` when given (schema
/// resolution: defaults for new fields, promotions, ignored removed fields).
#[allow(deprecated)]
pub fn decode_body(
    writer: &Schema,
    reader: Option<&Schema>,
    mut body: &[u8],
) -> Result<Value, CodecError> {
    let value = apache_avro::from_avro_datum(writer, &mut body, reader)?;
    if !body.is_empty() {
        return Err(CodecError::Mismatch {
            schema: schema_name(writer),
            reason: format!("{} trailing bytes after the record", body.len()),
        });
    }
    Ok(value)
}

/// Converts a decoded value into a domain type.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, CodecError> {
    Ok(apache_avro::from_value(value)?)
}

fn schema_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.fullname(None),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const V1: &str = r#"{"type":"record","name":"Shipment","namespace":"storefleet.test","fields":[
        {"name":"event_id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["UNKNOWN","REQUESTED","SHIPPED"],"default":"UNKNOWN"}},
        {"name":"causation_id","type":["null","string"],"default":null},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
            {"name":"sku","type":"string"},{"name":"quantity","type":"int"}]}}},
        {"name":"amount_minor","type":"long"}]}"#;

    // V2 adds an optional field: a V1 reader must still read V2 records, and vice versa.
    const V2: &str = r#"{"type":"record","name":"Shipment","namespace":"storefleet.test","fields":[
        {"name":"event_id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["UNKNOWN","REQUESTED","SHIPPED"],"default":"UNKNOWN"}},
        {"name":"causation_id","type":["null","string"],"default":null},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
            {"name":"sku","type":"string"},{"name":"quantity","type":"int"}]}}},
        {"name":"amount_minor","type":"long"},
        {"name":"carrier","type":["null","string"],"default":null}]}"#;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Status {
        Unknown,
        Requested,
        Shipped,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Line {
        sku: String,
        quantity: i32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Shipment {
        event_id: String,
        occurred_at: i64,
        status: Status,
        causation_id: Option<String>,
        lines: Vec<Line>,
        amount_minor: i64,
    }

    fn sample() -> Shipment {
        Shipment {
            event_id: "6f1c2a34-8a7b-4c55-9f0e-2a1b3c4d5e6f".into(),
            occurred_at: 1_764_300_000_000,
            status: Status::Shipped,
            causation_id: Some("cause".into()),
            lines: vec![Line {
                sku: "SKU-1".into(),
                quantity: 2,
            }],
            amount_minor: 12_345,
        }
    }

    #[test]
    fn domain_types_round_trip_through_logical_types_enums_and_unions() {
        let schema = Schema::parse_str(V1).unwrap();
        let body = encode_body(&schema, &sample()).unwrap();
        let value = decode_body(&schema, None, &body).unwrap();
        let back: Shipment = from_value(&value).unwrap();
        assert_eq!(back, sample());
        let none = Shipment {
            causation_id: None,
            ..sample()
        };
        let body = encode_body(&schema, &none).unwrap();
        assert_eq!(
            from_value::<Shipment>(&decode_body(&schema, None, &body).unwrap()).unwrap(),
            none
        );
    }

    #[test]
    #[allow(deprecated)]
    fn an_old_reader_reads_a_new_writer_and_a_new_reader_reads_an_old_writer() {
        let v1 = Schema::parse_str(V1).unwrap();
        let v2 = Schema::parse_str(V2).unwrap();
        let body = encode_body(&v1, &sample()).unwrap();
        let as_v2 = decode_body(&v1, Some(&v2), &body).unwrap();
        assert_eq!(from_value::<Shipment>(&as_v2).unwrap(), sample());

        let v2_body = {
            let mut value = apache_avro::to_value(sample()).unwrap();
            if let Value::Record(fields) = &mut value {
                fields.push((
                    "carrier".into(),
                    Value::Union(1, Box::new(Value::String("ups".into()))),
                ));
            }
            apache_avro::to_avro_datum(&v2, value.resolve(&v2).unwrap()).unwrap()
        };
        let as_v1 = decode_body(&v2, Some(&v1), &v2_body).unwrap();
        assert_eq!(from_value::<Shipment>(&as_v1).unwrap(), sample());
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        let schema = Schema::parse_str(V1).unwrap();
        for garbage in [
            &b""[..],
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            b"abc",
        ] {
            assert!(decode_body(&schema, None, garbage).is_err());
        }
        let mut body = encode_body(&schema, &sample()).unwrap();
        body.push(7);
        assert!(decode_body(&schema, None, &body).is_err(), "trailing bytes");
    }

    #[test]
    fn a_value_that_does_not_fit_the_schema_is_a_mismatch() {
        let schema = Schema::parse_str(V1).unwrap();
        let bad = Shipment {
            event_id: "not-a-uuid".into(),
            ..sample()
        };
        assert!(encode_body(&schema, &bad).is_err());
    }
}
