//! The schemas in `schemas/cdc/` (what consumers compile against and `fleet stack up`
//! registers) are exactly what the connector generates for the migrated tables. Regenerate
//! them with `STOREFLEET_WRITE_SCHEMAS=1 cargo test -p postgres-cdc --test static_schemas`.
//! The integration test `tests/cdc.rs` (root) checks these shapes against the live catalog.

use postgres_cdc::schema::{Column, TableShape};
use postgres_cdc::types::ColumnType;

fn column(name: &str, ty: ColumnType, key: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        key,
    }
}

pub fn products() -> TableShape {
    TableShape {
        schema: "public".into(),
        table: "products".into(),
        record: "Product".into(),
        columns: vec![
            column("id", ColumnType::Uuid, true),
            column("sku", ColumnType::Text, false),
            column("title", ColumnType::Text, false),
            column("description", ColumnType::Text, false),
            column("category", ColumnType::Text, false),
            column("brand", ColumnType::Text, false),
            column(
                "price",
                ColumnType::Numeric {
                    precision: 12,
                    scale: 2,
                },
                false,
            ),
            column(
                "image_urls",
                ColumnType::Array(Box::new(ColumnType::Text)),
                false,
            ),
            column("seller", ColumnType::Text, false),
            column("updated_at", ColumnType::TimestampTz, false),
        ],
    }
}

pub fn product_images() -> TableShape {
    TableShape {
        schema: "public".into(),
        table: "product_images".into(),
        record: "ProductImage".into(),
        columns: vec![
            column("id", ColumnType::Uuid, true),
            column("product_id", ColumnType::Uuid, false),
            column("url", ColumnType::Text, false),
            column("position", ColumnType::Int4, false),
            column("seller", ColumnType::Text, false),
            column("updated_at", ColumnType::TimestampTz, false),
        ],
    }
}

pub fn stock() -> TableShape {
    TableShape {
        schema: "public".into(),
        table: "stock".into(),
        record: "Stock".into(),
        columns: vec![
            column("product_id", ColumnType::Uuid, true),
            column("fulfillment_center", ColumnType::Text, true),
            column("status", ColumnType::Text, true),
            column("on_hand", ColumnType::Int4, false),
            column("updated_at", ColumnType::TimestampTz, false),
        ],
    }
}

fn check(shape: &TableShape, file_prefix: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/cdc");
    for (suffix, schema) in [
        ("Key", shape.key_schema()),
        ("Change", shape.value_schema()),
    ] {
        let path = dir.join(format!("{file_prefix}{suffix}.avsc"));
        if std::env::var_os("STOREFLEET_WRITE_SCHEMAS").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&schema).unwrap() + "\n").unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            on_disk,
            schema,
            "{} differs from the generated schema",
            path.display()
        );
    }
}

#[test]
fn committed_cdc_schemas_equal_the_generated_ones() {
    check(&products(), "Product");
    check(&product_images(), "ProductImage");
    check(&stock(), "Stock");
}
