//! Bytes to readable values, without I/O: the dead letter from its Avro body, Avro values as
//! JSON, and opaque bytes as text or hex. The caller fetches writer schemas.

use apache_avro::types::Value;
use apache_avro::Schema;
use runtime::DeadLetter;
use serde_json::{json, Value as Json};

/// Decodes a dead letter's Avro body written with `writer`, read as `reader` (the topology's
/// DeadLetter schema) so older or newer writers resolve.
pub fn decode_dead_letter(
    writer: &Schema,
    reader: Option<&Schema>,
    body: &[u8],
) -> Result<DeadLetter, codec::CodecError> {
    codec::from_value(&codec::decode_body(writer, reader, body)?)
}

/// An Avro value as JSON: unions unwrapped, enums as symbols, bytes and fixed as hex,
/// logical types as their underlying numbers or strings. Non-finite floats become null.
pub fn avro_to_json(value: &Value) -> Json {
    match value {
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::String(hex(bytes)),
        Value::Union(_, inner) => avro_to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(avro_to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        other => Json::try_from(other.clone()).unwrap_or(Json::Null),
    }
}

/// Bytes as `{"format": "utf8", "text": ...}` when they are printable UTF-8, else
/// `{"format": "hex", "hex": ...}`.
pub fn bytes_to_json(bytes: &[u8]) -> Json {
    match printable_text(bytes) {
        Some(text) => json!({"format": "utf8", "text": text}),
        None => json!({"format": "hex", "hex": hex(bytes)}),
    }
}

/// The bytes as text when they are UTF-8 without control characters (tabs and newlines
/// allowed): what a terminal shows faithfully.
pub fn printable_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .then_some(text)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::DeadLetterErrorKind;

    const DEAD_LETTER_SCHEMA: &str = include_str!("../../../schemas/dlq/DeadLetter.avsc");

    #[test]
    fn a_dead_letter_encoded_like_the_runtime_encodes_it_decodes_back() {
        let schema = Schema::parse_str(DEAD_LETTER_SCHEMA).unwrap();
        let letter = crate::plan::tests::letter(DeadLetterErrorKind::RetriesExhausted);
        let body = codec::encode_body(&schema, &letter).unwrap();
        assert_eq!(
            decode_dead_letter(&schema, Some(&schema), &body).unwrap(),
            letter
        );
        assert!(decode_dead_letter(&schema, Some(&schema), b"\xff\x00garbage").is_err());
        assert!(decode_dead_letter(&schema, None, &[]).is_err());
    }

    #[test]
    fn avro_values_become_plain_json() {
        let value = Value::Record(vec![
            ("id".into(), Value::String("o-1".into())),
            ("qty".into(), Value::Int(2)),
            ("at".into(), Value::TimestampMillis(5)),
            ("kind".into(), Value::Enum(1, "SHIPPED".into())),
            (
                "note".into(),
                Value::Union(1, Box::new(Value::String("n".into()))),
            ),
            ("none".into(), Value::Union(0, Box::new(Value::Null))),
            ("blob".into(), Value::Bytes(vec![0, 255])),
            ("lines".into(), Value::Array(vec![Value::Long(1)])),
            ("nan".into(), Value::Double(f64::NAN)),
        ]);
        assert_eq!(
            avro_to_json(&value),
            json!({"id": "o-1", "qty": 2, "at": 5, "kind": "SHIPPED", "note": "n",
                "none": null, "blob": "00ff", "lines": [1], "nan": null})
        );
    }

    #[test]
    fn bytes_are_text_when_printable_and_hex_otherwise() {
        assert_eq!(
            bytes_to_json(b"order-1"),
            json!({"format": "utf8", "text": "order-1"})
        );
        assert_eq!(
            bytes_to_json(b"\x00\x00\x00\x00\x01"),
            json!({"format": "hex", "hex": "0000000001"})
        );
        assert_eq!(
            bytes_to_json(&[0xc3, 0x28]),
            json!({"format": "hex", "hex": "c328"}),
            "invalid UTF-8"
        );
        assert_eq!(printable_text("a\tb\nc".as_bytes()), Some("a\tb\nc"));
    }
}
