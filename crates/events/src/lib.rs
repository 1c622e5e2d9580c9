//! The fleet's event types in Rust, mirroring the Avro schemas in `schemas/` field for field
//! (serde names = Avro names). Each type is tested against its `.avsc` file, so a schema
//! change that breaks a type fails here rather than on the wire.
//!
//! Conventions: ids are strings (uuids where the schema says `logicalType: uuid`), times are
//! epoch milliseconds, money is minor units plus an ISO 4217 currency, enums carry an
//! `Unknown` symbol first so they can grow compatibly.

pub mod checkout;
pub mod images;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod recommendations;
pub mod search;
pub mod shipping;

use serde::{Deserialize, Serialize};

/// A postal address (the same shape in every schema that carries one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub recipient_name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    pub country_code: String,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShippingSpeed {
    Unknown,
    Standard,
    Expedited,
    NextDay,
}

#[cfg(test)]
pub(crate) mod schema_check {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// Encodes `value` with the real schema file and decodes it back.
    pub fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        schema_file: &str,
        value: &T,
    ) {
        let path = format!("{}/../../schemas/{schema_file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("schema file");
        let schema = codec::Schema::parse_str(&text).expect("schema parses");
        let body = codec::encode_body(&schema, value).expect("value fits the schema");
        let decoded = codec::decode_body(&schema, None, &body).expect("decodes");
        let back: T = codec::from_value(&decoded).expect("converts back");
        assert_eq!(&back, value);
    }
}
