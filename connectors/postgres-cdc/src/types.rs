//! PostgreSQL column types as the connector sees them (from a pgoutput Relation message or
//! the catalog), and their Avro types. Pure: no I/O.

use serde_json::{json, Value as Json};

/// The PostgreSQL types the connector maps precisely; anything else travels as its text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// `numeric(precision, scale)`: an Avro decimal.
    Numeric {
        precision: u32,
        scale: u32,
    },
    /// `numeric` without a type modifier has no fixed scale: sent as its exact text.
    NumericText,
    Text,
    Uuid,
    Json,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// A one-dimensional array of the element type.
    Array(Box<ColumnType>),
    /// Enums, domains, ranges, geometric and other types: their text form.
    Other(u32),
}

/// Debezium's `connect.name` for strings that carry a semantic type.
const UUID_NAME: &str = "io.debezium.data.Uuid";
const JSON_NAME: &str = "io.debezium.data.Json";

impl ColumnType {
    /// Classifies a type by OID and type modifier (`atttypmod`; -1 when none).
    pub fn from_oid(oid: u32, typmod: i32) -> Self {
        match oid {
            16 => Self::Bool,
            21 => Self::Int2,
            23 => Self::Int4,
            20 => Self::Int8,
            700 => Self::Float4,
            701 => Self::Float8,
            1700 => numeric(typmod),
            25 | 1043 | 1042 | 19 => Self::Text,
            2950 => Self::Uuid,
            114 | 3802 => Self::Json,
            17 => Self::Bytea,
            1082 => Self::Date,
            1083 => Self::Time,
            1114 => Self::Timestamp,
            1184 => Self::TimestampTz,
            1000 => array(Self::Bool),
            1005 => array(Self::Int2),
            1007 => array(Self::Int4),
            1016 => array(Self::Int8),
            1021 => array(Self::Float4),
            1022 => array(Self::Float8),
            1231 => array(numeric(typmod)),
            1009 | 1015 | 1014 => array(Self::Text),
            2951 => array(Self::Uuid),
            3807 | 199 => array(Self::Json),
            1182 => array(Self::Date),
            1185 => array(Self::TimestampTz),
            other => Self::Other(other),
        }
    }

    /// The Avro type of a non-null value of this column.
    pub fn avro(&self) -> Json {
        match self {
            Self::Bool => json!("boolean"),
            Self::Int2 | Self::Int4 => json!("int"),
            Self::Int8 => json!("long"),
            Self::Float4 => json!("float"),
            Self::Float8 => json!("double"),
            Self::Numeric { precision, scale } => json!({
                "type": "bytes", "logicalType": "decimal",
                "precision": precision, "scale": scale
            }),
            Self::NumericText | Self::Text | Self::Other(_) => json!("string"),
            Self::Uuid => json!({"type": "string", "connect.name": UUID_NAME}),
            Self::Json => json!({"type": "string", "connect.name": JSON_NAME}),
            Self::Bytea => json!("bytes"),
            Self::Date => json!({"type": "int", "logicalType": "date"}),
            Self::Time => json!({"type": "long", "logicalType": "time-micros"}),
            Self::Timestamp => json!({"type": "long", "logicalType": "local-timestamp-micros"}),
            Self::TimestampTz => json!({"type": "long", "logicalType": "timestamp-micros"}),
            // PostgreSQL arrays may hold NULL elements.
            Self::Array(element) => json!({"type": "array", "items": ["null", element.avro()]}),
        }
    }
}

fn array(element: ColumnType) -> ColumnType {
    ColumnType::Array(Box::new(element))
}

/// `numeric(p, s)` stores `((p << 16) | s) + 4` in its type modifier.
fn numeric(typmod: i32) -> ColumnType {
    if typmod < 4 {
        return ColumnType::NumericText;
    }
    let packed = (typmod - 4) as u32;
    let precision = (packed >> 16) & 0xffff;
    let scale = packed & 0xffff;
    // Precision above 38 digits does not fit the i128 the converter computes with.
    if precision == 0 || precision > 38 || scale > precision {
        ColumnType::NumericText
    } else {
        ColumnType::Numeric { precision, scale }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmod_unpacks_precision_and_scale() {
        // numeric(12,2): ((12 << 16) | 2) + 4
        let typmod = ((12 << 16) | 2) + 4;
        assert_eq!(
            ColumnType::from_oid(1700, typmod),
            ColumnType::Numeric {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(ColumnType::from_oid(1700, -1), ColumnType::NumericText);
    }

    #[test]
    fn arrays_and_unknown_types_classify() {
        assert_eq!(
            ColumnType::from_oid(1009, -1),
            ColumnType::Array(Box::new(ColumnType::Text))
        );
        assert_eq!(ColumnType::from_oid(99999, -1), ColumnType::Other(99999));
        assert_eq!(
            ColumnType::from_oid(1184, -1).avro()["logicalType"],
            "timestamp-micros"
        );
    }
}
