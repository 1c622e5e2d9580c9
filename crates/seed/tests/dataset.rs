//! The whole real data set through the pure parser, when it is in the cache
//! (`bash scripts/fetch-dataset.sh` puts it there); skipped with a note otherwise.

use std::collections::HashSet;
use std::path::PathBuf;

fn cached_dataset() -> PathBuf {
    let cache = std::env::var_os("STOREFLEET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/storefleet")
        });
    cache.join("data/superstore.csv")
}

#[test]
fn the_real_data_set_gives_1862_products_with_four_stock_rows_each() {
    let path = cached_dataset();
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "note: skipped, {} is missing (bash scripts/fetch-dataset.sh fetches it)",
            path.display()
        );
        return;
    };
    let catalog = seed::parse(&bytes).unwrap();
    assert_eq!(catalog.products.len(), 1_862);
    assert_eq!(catalog.stock.len(), 4 * 1_862);
    let ids: HashSet<_> = catalog.products.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 1_862);
    assert!(catalog.stock.iter().all(|s| ids.contains(&s.product_id)));
    assert!(catalog.products.iter().all(|p| p.price.0 > 0));
    // 3 × 37,873 units sold + 5 per row.
    let on_hand: i64 = catalog.stock.iter().map(|s| i64::from(s.on_hand)).sum();
    assert_eq!(on_hand, 3 * 37_873 + 5 * 4 * 1_862);
    // The first product, fully: its first line is row 1 of the file.
    let bookcase = catalog
        .products
        .iter()
        .find(|p| p.sku == "FUR-BO-10001798")
        .unwrap();
    assert_eq!(bookcase.title, "Bush Somerset Collection Bookcase");
    assert_eq!(bookcase.category, "Furniture/Bookcases");
    assert_eq!(bookcase.price, seed::price::Cents(13_098));
    // A SKU with two names is the product named first (the clock, row 30; the frames' lines
    // come later), priced from the clock's lines alone.
    let clock = catalog
        .products
        .iter()
        .find(|p| p.sku == "FUR-FU-10004848")
        .unwrap();
    assert_eq!(
        clock.title,
        "Howard Miller 13-3/4\" Diameter Brushed Chrome Round Wall Clock"
    );
    assert_eq!(clock.price, seed::price::Cents(5_175));
    assert_eq!(catalog, seed::parse(&bytes).unwrap(), "deterministic");
}
