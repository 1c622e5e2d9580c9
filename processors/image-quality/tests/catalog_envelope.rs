//! A catalog row's change as the CDC connector writes it (its own envelope builder, encoded
//! with the committed schemas/cdc/ProductImageChange.avsc) decodes into what image-quality
//! reads and becomes a check of the row's URL: the connector and this reader agree on the
//! envelope's shape, field for field.

use events::images::ProductImageChange;
use image_quality::verdict::{from_catalog, CatalogChange};
use postgres_cdc::convert::{row_value, Datum};
use postgres_cdc::envelope::{envelope, Change, Op, SnapshotMark, Source};
use postgres_cdc::schema::{Column, TableShape};
use postgres_cdc::types::ColumnType;

fn shape() -> TableShape {
    let column = |name: &str, ty, key| Column {
        name: name.into(),
        ty,
        key,
    };
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

#[test]
fn the_connectors_envelope_decodes_into_a_check_of_the_rows_url() {
    let shape = shape();
    let row = vec![
        Datum::Text("6f1c1f0e-4a43-4c61-9d4e-6f4bbf3a2a10".into()),
        Datum::Text("0b5d7c9e-1111-4c61-9d4e-6f4bbf3a2a10".into()),
        Datum::Text("http://127.0.0.1:28090/seller-images/SKU-1/1.jpg".into()),
        Datum::Text("0".into()),
        Datum::Text("seller-chairs".into()),
        Datum::Text("2026-12-08 00:46:48.123456+00".into()),
    ];
    let (after, _) = row_value(&shape, &row).unwrap();
    let value = envelope(
        &shape,
        Change {
            op: Op::Create,
            before: None,
            after: Some(after),
            source: Source {
                server_name: "catalog",
                db: "catalog",
                ts_ms: 1_796_690_808_000,
                snapshot: SnapshotMark::False,
                tx_id: Some(7),
                lsn: Some(100),
                sequence: Some((90, 100)),
            },
            ts_ms: 1_796_690_808_440,
            transaction: None,
            unchanged_toast: Vec::new(),
        },
    );
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/cdc/ProductImageChange.avsc"
    );
    let schema = codec::Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    #[allow(deprecated)]
    let body = apache_avro::to_avro_datum(&schema, value).unwrap();
    let decoded = codec::decode_body(&schema, None, &body).unwrap();
    let change: ProductImageChange = codec::from_value(&decoded).unwrap();
    let CatalogChange::Check(check) = from_catalog(change, "e".into(), 0).unwrap() else {
        panic!("an insert is a check")
    };
    assert_eq!(
        check.request.image_id,
        "6f1c1f0e-4a43-4c61-9d4e-6f4bbf3a2a10"
    );
    assert_eq!(
        check.request.product_id,
        "0b5d7c9e-1111-4c61-9d4e-6f4bbf3a2a10"
    );
    assert_eq!(
        check.request.url,
        "http://127.0.0.1:28090/seller-images/SKU-1/1.jpg"
    );
    assert_eq!(check.request.seller_id.as_deref(), Some("seller-chairs"));
    assert_eq!(check.request.occurred_at, 1_796_690_808_440);
    assert!(check.reuse_verdict);
}
