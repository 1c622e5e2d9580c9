use super::*;

/// Three SKUs: a bookcase sold three times, binders sold at a discount, and a SKU whose
/// lines carry two names (as 32 SKUs of the real data set do), in the data set's format.
const FIXTURE: &str = r#""Row ID","Order ID","Order Date","Ship Date","Ship Mode","Customer ID","Customer Name","Segment","Country","City","State","Postal Code","Region","Product ID","Category","Sub-Category","Product Name","Sales","Quantity","Discount","Profit"
1,"CA-2016-152156",2016-11-08,2016-11-11,"Second Class","CG-12520","Claire Gute","Consumer","United States","Henderson","Kentucky",42420,"South","FUR-BO-10001798","Furniture","Bookcases","Bush Somerset Collection Bookcase",261.96,2,0,41.9136
2,"CA-2016-138688",2016-06-12,2016-06-16,"Second Class","DV-13045","Darrin Van Huff","Corporate","United States","Los Angeles","California",90036,"West","OFF-BI-10000001","Office Supplies","Binders","Avery Durable Binders, 3"" Rings",22.368,2,0.2,2.5164
3,"US-2015-108966",2015-10-11,2015-10-18,"Standard Class","SO-20335","Sean O'Donnell","Consumer","United States","Fort Lauderdale","Florida",33311,"South","FUR-BO-10001798","Furniture","Bookcases","Bush Somerset Collection Bookcase",392.94,3,0,-383.031
4,"CA-2014-115812",2014-06-09,2014-06-14,"Standard Class","BH-11710","Brosina Hoffman","Consumer","United States","Los Angeles","California",90032,"East","FUR-FU-10004848","Furniture","Furnishings","Howard Miller 13-3/4"" Diameter Brushed Chrome Round Wall Clock",155.25,3,0,14.1694
5,"CA-2014-115812",2014-06-09,2014-06-14,"Standard Class","BH-11710","Brosina Hoffman","Consumer","United States","Los Angeles","California",90032,"West","FUR-FU-10004848","Furniture","Furnishings","DAX Solid Wood Frames",19.54,2,0,5.0596
6,"CA-2017-114412",2017-04-15,2017-04-20,"Standard Class","AA-10480","Andrew Allen","Consumer","United States","Concord","North Carolina",28027,"Central","FUR-BO-10001798","Furniture","Bookcases","Bush Somerset Collection Bookcase",100.00,1,0.32,-5.5
7,"CA-2016-161389",2016-12-05,2016-12-10,"Standard Class","IM-15070","Irene Maddox","Consumer","United States","Seattle","Washington",98103,"East","FUR-FU-10004848","Furniture","Furnishings","Howard Miller 13-3/4"" Diameter Brushed Chrome Round Wall Clock",41.4,1,0.2,1.2
8,"US-2015-118983",2015-11-22,2015-11-26,"Standard Class","HP-14815","Harold Pawlan","Home Office","United States","Fort Worth","Texas",76106,"West","FUR-FU-10004848","Furniture","Furnishings","DAX Solid Wood Frames",9.77,1,0,2.2
"#;

fn header() -> &'static str {
    FIXTURE.lines().next().unwrap_or_default()
}

fn fixture() -> Vec<String> {
    FIXTURE.lines().skip(1).map(String::from).collect()
}

fn csv(lines: &[String]) -> Vec<u8> {
    let mut text = String::from(header());
    for l in lines {
        text.push('\n');
        text.push_str(l);
    }
    text.push('\n');
    text.into_bytes()
}

/// One order line; the columns the catalogue does not read are filler.
fn line(region: &str, sku: &str, sales: &str, quantity: u32, discount: &str) -> String {
    format!(
        r#"1,"CA-1",2016-11-08,2016-11-11,"Second Class","CG-1","C G","Consumer","United States","Henderson","Kentucky",42420,"{region}","{sku}","Furniture","Tables","Some Table",{sales},{quantity},{discount},1.5"#
    )
}

fn product<'a>(catalog: &'a Catalog, sku: &str) -> &'a Product {
    catalog.products.iter().find(|p| p.sku == sku).expect(sku)
}

fn on_hand(catalog: &Catalog, sku: &str) -> Vec<(&'static str, i32)> {
    let id = product(catalog, sku).id;
    catalog
        .stock
        .iter()
        .filter(|s| s.product_id == id)
        .map(|s| (s.fulfillment_center, s.on_hand))
        .collect()
}

#[test]
fn one_product_per_sku_in_sku_order() {
    let catalog = parse(&csv(&fixture())).unwrap();
    let skus: Vec<&str> = catalog.products.iter().map(|p| p.sku.as_str()).collect();
    assert_eq!(
        skus,
        ["FUR-BO-10001798", "FUR-FU-10004848", "OFF-BI-10000001"]
    );
}

#[test]
fn price_is_the_median_unit_list_price() {
    let catalog = parse(&csv(&fixture())).unwrap();
    // Unit list prices 130.98, 130.98 and 100 / (1 × 0.68) = 147.06: median 130.98.
    assert_eq!(product(&catalog, "FUR-BO-10001798").price, Cents(13_098));
    // 22.368 / (2 × 0.8) = 13.98.
    assert_eq!(product(&catalog, "OFF-BI-10000001").price, Cents(1_398));
}

#[test]
fn a_sku_with_two_names_is_its_first_named_product_with_that_products_price() {
    let catalog = parse(&csv(&fixture())).unwrap();
    let clock = product(&catalog, "FUR-FU-10004848");
    assert_eq!(
        clock.title,
        "Howard Miller 13-3/4\" Diameter Brushed Chrome Round Wall Clock"
    );
    // The clock's lines: 51.75 and 41.4 / 0.8 = 51.75; the frames' 9.77 do not count.
    assert_eq!(clock.price, Cents(5_175));
    assert_eq!(clock.brand, "Howard");
    // Demand counts every line of the SKU: 3 + 1 units East, 2 + 1 West.
    assert_eq!(
        on_hand(&catalog, "FUR-FU-10004848"),
        [
            ("FC-WEST-1", 14),
            ("FC-EAST-1", 17),
            ("FC-CENTRAL-1", 5),
            ("FC-SOUTH-1", 5)
        ]
    );
}

#[test]
fn product_fields_are_derived_from_the_first_line() {
    let catalog = parse(&csv(&fixture())).unwrap();
    let bookcase = product(&catalog, "FUR-BO-10001798");
    assert_eq!(
        bookcase,
        &Product {
            id: Uuid::new_v5(&PRODUCT_NAMESPACE, b"FUR-BO-10001798"),
            sku: "FUR-BO-10001798".into(),
            title: "Bush Somerset Collection Bookcase".into(),
            description: "Bush Somerset Collection Bookcase: bookcases from the Furniture range."
                .into(),
            category: "Furniture/Bookcases".into(),
            brand: "Bush".into(),
            price: Cents(13_098),
            image_urls: vec![
                "https://images.storefleet.test/FUR-BO-10001798/1.jpg".into(),
                "https://images.storefleet.test/FUR-BO-10001798/2.jpg".into(),
            ],
            seller: "seller-bookcases".into(),
        }
    );
    let binders = product(&catalog, "OFF-BI-10000001");
    assert_eq!(binders.title, "Avery Durable Binders, 3\" Rings");
    assert_eq!(binders.category, "Office Supplies/Binders");
    assert_eq!(seller("Sub Category/X"), "seller-sub-category-x");
}

#[test]
fn product_ids_never_change() {
    // Pinned: a different namespace would re-key every product and its CDC topic.
    assert_eq!(
        product_id("FUR-BO-10001798"),
        Uuid::new_v5(&PRODUCT_NAMESPACE, b"FUR-BO-10001798")
    );
    assert_eq!(
        PRODUCT_NAMESPACE.to_string(),
        "7b1e4c52-9d0a-4f36-b8e2-51c3a6d90e47"
    );
    assert_ne!(product_id("FUR-BO-10001798"), product_id("FUR-BO-10001799"));
}

#[test]
fn four_available_stock_rows_per_product_from_regional_demand() {
    let catalog = parse(&csv(&fixture())).unwrap();
    assert_eq!(catalog.stock.len(), 3 * 4);
    assert!(catalog.stock.iter().all(|s| s.status == AVAILABLE));
    // Bookcase: 5 units South, 1 Central; 3 × units + 5.
    assert_eq!(
        on_hand(&catalog, "FUR-BO-10001798"),
        [
            ("FC-WEST-1", 5),
            ("FC-EAST-1", 5),
            ("FC-CENTRAL-1", 8),
            ("FC-SOUTH-1", 20)
        ]
    );
}

#[test]
fn the_same_lines_give_the_same_catalogue_whatever_the_order_of_other_skus() {
    let lines = fixture();
    let first = parse(&csv(&lines)).unwrap();
    assert_eq!(first, parse(&csv(&lines)).unwrap());
    // Lines of different SKUs interleave freely; within a SKU the order is kept.
    let mut grouped: Vec<String> = Vec::new();
    for sku in ["OFF-BI-10000001", "FUR-FU-10004848", "FUR-BO-10001798"] {
        grouped.extend(lines.iter().filter(|l| l.contains(sku)).cloned());
    }
    assert_eq!(first, parse(&csv(&grouped)).unwrap());
}

#[test]
fn bad_input_is_an_error_with_its_place_not_a_panic() {
    let with = |l: String| parse(&csv(&[l]));
    let field = |result: Result<Catalog, CatalogError>| match result {
        Err(CatalogError::Field { line, column, .. }) => (line, column),
        other => panic!("expected a field error, got {other:?}"),
    };
    let bad_region = line("North", "A-1", "1", 1, "0");
    assert_eq!(field(with(bad_region)), (2, "Region"));
    let full_discount = line("West", "A-1", "1", 1, "1");
    assert_eq!(field(with(full_discount)), (2, "Discount"));
    let zero_quantity = line("West", "A-1", "1", 0, "0");
    assert_eq!(field(with(zero_quantity)), (2, "Quantity"));
    let bad_sales = line("West", "A-1", "1.23456", 1, "0");
    assert_eq!(field(with(bad_sales)), (2, "Sales"));
    let no_sku = line("West", "", "1", 1, "0");
    assert_eq!(field(with(no_sku)), (2, "Product ID"));
    assert!(matches!(parse(&csv(&[])), Err(CatalogError::Empty)));
    assert!(matches!(
        parse(b"\"Product ID\",\"Sales\"\nA,1\n"),
        Err(CatalogError::MissingColumn("Product Name"))
    ));
    assert!(matches!(
        parse(&csv(&["1,2".into()])),
        Err(CatalogError::Csv { line: 2, .. })
    ));
}
