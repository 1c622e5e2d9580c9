//! The Debezium envelope as an Avro value. Pure: no I/O.

use apache_avro::types::Value;

use crate::schema::TableShape;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// A snapshot read.
    Read,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// Debezium's `source.snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMark {
    True,
    Last,
    False,
}

impl SnapshotMark {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotMark::True => "true",
            SnapshotMark::Last => "last",
            SnapshotMark::False => "false",
        }
    }
}

/// Where one change came from.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub server_name: &'a str,
    pub db: &'a str,
    pub ts_ms: i64,
    pub snapshot: SnapshotMark,
    pub tx_id: Option<i64>,
    pub lsn: Option<u64>,
    /// `(last committed LSN, this event's LSN)`.
    pub sequence: Option<(u64, u64)>,
}

/// Position of an event inside its transaction.
#[derive(Debug, Clone)]
pub struct TxBlock {
    pub id: String,
    pub total_order: i64,
    pub data_collection_order: i64,
}

pub struct Change<'a> {
    pub op: Op,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub source: Source<'a>,
    pub ts_ms: i64,
    pub transaction: Option<TxBlock>,
    pub unchanged_toast: Vec<String>,
}

fn optional(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn lsn_value(lsn: u64) -> Value {
    Value::Long(i64::try_from(lsn).unwrap_or(i64::MAX))
}

/// The envelope record of `change` on `shape` (matching `TableShape::value_schema`).
pub fn envelope(shape: &TableShape, change: Change<'_>) -> Value {
    let s = change.source;
    let source = Value::Record(vec![
        (
            "version".into(),
            Value::String(env!("CARGO_PKG_VERSION").into()),
        ),
        ("connector".into(), Value::String("postgresql".into())),
        ("name".into(), Value::String(s.server_name.into())),
        ("ts_ms".into(), Value::Long(s.ts_ms)),
        ("snapshot".into(), Value::String(s.snapshot.as_str().into())),
        ("db".into(), Value::String(s.db.into())),
        ("schema".into(), Value::String(shape.schema.clone())),
        ("table".into(), Value::String(shape.table.clone())),
        ("txId".into(), optional(s.tx_id.map(Value::Long))),
        ("lsn".into(), optional(s.lsn.map(lsn_value))),
        (
            "sequence".into(),
            optional(
                s.sequence
                    .map(|(last, this)| Value::String(format!("[\"{last}\",\"{this}\"]"))),
            ),
        ),
    ]);
    let transaction = change.transaction.map(|t| {
        Value::Record(vec![
            ("id".into(), Value::String(t.id)),
            ("total_order".into(), Value::Long(t.total_order)),
            (
                "data_collection_order".into(),
                Value::Long(t.data_collection_order),
            ),
        ])
    });
    Value::Record(vec![
        ("before".into(), optional(change.before)),
        ("after".into(), optional(change.after)),
        ("source".into(), source),
        ("op".into(), Value::String(change.op.code().into())),
        ("ts_ms".into(), Value::Long(change.ts_ms)),
        ("transaction".into(), optional(transaction)),
        (
            "unchanged_toast".into(),
            Value::Array(
                change
                    .unchanged_toast
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{key_value, row_value, Datum};
    use crate::schema::Column;
    use crate::types::ColumnType;

    #[test]
    fn an_insert_envelope_encodes_with_the_generated_schema() {
        let shape = TableShape {
            schema: "public".into(),
            table: "stock".into(),
            record: "Stock".into(),
            columns: vec![
                Column {
                    name: "product_id".into(),
                    ty: ColumnType::Uuid,
                    key: true,
                },
                Column {
                    name: "on_hand".into(),
                    ty: ColumnType::Int4,
                    key: false,
                },
                Column {
                    name: "note".into(),
                    ty: ColumnType::Text,
                    key: false,
                },
                Column {
                    name: "tags".into(),
                    ty: ColumnType::Array(Box::new(ColumnType::Text)),
                    key: false,
                },
            ],
        };
        let row = vec![
            Datum::Text("6f1c1f0e-4a43-4c61-9d4e-6f4bbf3a2a10".into()),
            Datum::Text("7".into()),
            Datum::UnchangedToast,
            Datum::Text("{a,NULL}".into()),
        ];
        let (after, unchanged) = row_value(&shape, &row).unwrap();
        assert_eq!(unchanged, vec!["note".to_string()]);
        let value = envelope(
            &shape,
            Change {
                op: Op::Update,
                before: None,
                after: Some(after),
                source: Source {
                    server_name: "warehouse",
                    db: "warehouse",
                    ts_ms: 1,
                    snapshot: SnapshotMark::False,
                    tx_id: Some(7),
                    lsn: Some(100),
                    sequence: Some((90, 100)),
                },
                ts_ms: 2,
                transaction: None,
                unchanged_toast: unchanged,
            },
        );
        let schema = apache_avro::Schema::parse(&shape.value_schema()).unwrap();
        #[allow(deprecated)]
        let bytes = apache_avro::to_avro_datum(&schema, value).unwrap();
        assert!(!bytes.is_empty());
        let key_schema = apache_avro::Schema::parse(&shape.key_schema()).unwrap();
        #[allow(deprecated)]
        apache_avro::to_avro_datum(&key_schema, key_value(&shape, &row).unwrap()).unwrap();
    }
}
