//! A captured table's shape and the Avro schemas derived from it: the key record (primary
//! key columns), the row record, and the Debezium envelope. Pure: no I/O.
//!
//! Every non-key column is an optional field (`["null", T]`, default null): pgoutput's
//! Relation message does not say which columns are NOT NULL, and optional fields make adding
//! or dropping a column a compatible schema change. A column whose type changes is not.

use serde_json::{json, Value as Json};

use crate::types::ColumnType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
}

/// One captured table as the stream currently describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub schema: String,
    pub table: String,
    /// Avro record name prefix (`Product` → `ProductKey`, `ProductRow`, `ProductChange`).
    pub record: String,
    pub columns: Vec<Column>,
}

/// How a relation changed between two Relation messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShapeChange {
    pub added: Vec<String>,
    pub dropped: Vec<String>,
    /// Columns whose type changed: `(name, old, new)`.
    pub retyped: Vec<(String, ColumnType, ColumnType)>,
    /// The key columns changed.
    pub key_changed: bool,
}

impl ShapeChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.dropped.is_empty()
            && self.retyped.is_empty()
            && !self.key_changed
    }

    /// Adding and dropping optional columns keeps old and new records readable by each
    /// other; a type or key change does not.
    pub fn is_compatible(&self) -> bool {
        self.retyped.is_empty() && !self.key_changed
    }
}

pub const NAMESPACE: &str = "storefleet.cdc";

impl TableShape {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.key)
    }

    /// The key columns' entries of a row given in column order.
    pub fn key_of<'a, T>(&'a self, row: &'a [T]) -> impl Iterator<Item = &'a T> + 'a {
        self.columns
            .iter()
            .zip(row)
            .filter(|(c, _)| c.key)
            .map(|(_, v)| v)
    }

    pub fn diff(&self, newer: &TableShape) -> ShapeChange {
        let mut change = ShapeChange::default();
        for column in &newer.columns {
            match self.columns.iter().find(|c| c.name == column.name) {
                None => change.added.push(column.name.clone()),
                Some(old) if old.ty != column.ty => {
                    change
                        .retyped
                        .push((column.name.clone(), old.ty.clone(), column.ty.clone()))
                }
                Some(_) => {}
            }
        }
        for column in &self.columns {
            if !newer.columns.iter().any(|c| c.name == column.name) {
                change.dropped.push(column.name.clone());
            }
        }
        let keys = |s: &TableShape| s.key_columns().map(|c| c.name.clone()).collect::<Vec<_>>();
        change.key_changed = keys(self) != keys(newer);
        change
    }

    /// The key record: the replica identity columns, none optional.
    pub fn key_schema(&self) -> Json {
        let fields: Vec<Json> = self
            .key_columns()
            .map(|c| json!({"name": c.name, "type": c.ty.avro()}))
            .collect();
        json!({
            "type": "record",
            "name": format!("{}Key", self.record),
            "namespace": NAMESPACE,
            "doc": format!("Key of the change events of {}: its primary key.", self.qualified()),
            "fields": fields,
        })
    }

    fn row_schema(&self) -> Json {
        let fields: Vec<Json> = self
            .columns
            .iter()
            .map(|c| {
                if c.key {
                    json!({"name": c.name, "type": c.ty.avro()})
                } else {
                    json!({"name": c.name, "type": ["null", c.ty.avro()], "default": null})
                }
            })
            .collect();
        json!({
            "type": "record",
            "name": format!("{}Row", self.record),
            "doc": format!("A row of {}.", self.qualified()),
            "fields": fields,
        })
    }

    /// The Debezium envelope: `before`, `after`, `source`, `op`, `ts_ms`, `transaction`, and
    /// `unchanged_toast` (names of columns whose unchanged TOASTed value was not sent).
    pub fn value_schema(&self) -> Json {
        let row_name = format!("{}Row", self.record);
        json!({
            "type": "record",
            "name": format!("{}Change", self.record),
            "namespace": NAMESPACE,
            "doc": format!(
                "Debezium-compatible change event of one row of {}. A delete (op d) is followed by a tombstone.",
                self.qualified()
            ),
            "fields": [
                {"name": "before", "type": ["null", self.row_schema()], "default": null,
                 "doc": "Row before the change: for u and d the key columns only (replica identity default); null for c and r."},
                {"name": "after", "type": ["null", row_name], "default": null,
                 "doc": "Row after the change; null for d."},
                {"name": "source", "type": source_schema(), "doc": "Where the change came from."},
                {"name": "op", "type": "string",
                 "doc": "c (insert), u (update), d (delete), r (snapshot read), t (truncate)."},
                {"name": "ts_ms", "type": "long",
                 "doc": "When the connector processed the change, ms since the Unix epoch."},
                {"name": "transaction", "type": ["null", transaction_schema()], "default": null,
                 "doc": "Transaction metadata; null for snapshot reads."},
                {"name": "unchanged_toast", "type": {"type": "array", "items": "string"}, "default": [],
                 "doc": "Columns of `after` whose large (TOASTed) value did not change and was not sent: their field holds a placeholder, not the value."}
            ]
        })
    }
}

fn source_schema() -> Json {
    json!({
        "type": "record",
        "name": "Source",
        "doc": "Debezium PostgreSQL source block.",
        "fields": [
            {"name": "version", "type": "string"},
            {"name": "connector", "type": "string"},
            {"name": "name", "type": "string", "doc": "Logical server name of the connector."},
            {"name": "ts_ms", "type": "long", "doc": "Commit time in the database (snapshot: read time), ms since the Unix epoch."},
            {"name": "snapshot", "type": "string", "default": "false",
             "doc": "true, last (the snapshot's final row) or false (streamed)."},
            {"name": "db", "type": "string"},
            {"name": "schema", "type": "string"},
            {"name": "table", "type": "string"},
            {"name": "txId", "type": ["null", "long"], "default": null},
            {"name": "lsn", "type": ["null", "long"], "default": null,
             "doc": "Commit LSN of the transaction (snapshot: the slot's consistent point); consumers dedupe by it."},
            {"name": "sequence", "type": ["null", "string"], "default": null,
             "doc": "JSON [last committed LSN, this event's LSN] as strings, as Debezium sends it."}
        ]
    })
}

fn transaction_schema() -> Json {
    json!({
        "type": "record",
        "name": "TransactionBlock",
        "fields": [
            {"name": "id", "type": "string", "doc": "<txId>:<commit lsn>."},
            {"name": "total_order", "type": "long"},
            {"name": "data_collection_order", "type": "long"}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> TableShape {
        TableShape {
            schema: "public".into(),
            table: "products".into(),
            record: "Product".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: ColumnType::Uuid,
                    key: true,
                },
                Column {
                    name: "title".into(),
                    ty: ColumnType::Text,
                    key: false,
                },
                Column {
                    name: "price".into(),
                    ty: ColumnType::Numeric {
                        precision: 12,
                        scale: 2,
                    },
                    key: false,
                },
            ],
        }
    }

    #[test]
    fn generated_schemas_parse() {
        let shape = products();
        apache_avro::Schema::parse(&shape.key_schema()).unwrap();
        apache_avro::Schema::parse(&shape.value_schema()).unwrap();
    }

    #[test]
    fn adding_a_column_is_compatible_and_retyping_is_not() {
        let old = products();
        let mut added = old.clone();
        added.columns.push(Column {
            name: "color".into(),
            ty: ColumnType::Text,
            key: false,
        });
        let change = old.diff(&added);
        assert_eq!(change.added, vec!["color".to_string()]);
        assert!(change.is_compatible());

        let mut retyped = old.clone();
        retyped.columns[1].ty = ColumnType::Int4;
        let change = old.diff(&retyped);
        assert!(!change.is_compatible());
        assert!(old.diff(&old).is_empty());
    }
}
