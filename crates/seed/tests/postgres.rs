//! Seeding on a real PostgreSQL: the stack's migration runner builds the tables in scratch
//! databases, then the seed runs twice (the second writes nothing) and once more with one
//! price changed (exactly that product is rewritten).
//!
//! The server: `STOREFLEET_POSTGRES` (a superuser URL, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres` for the machine's shared cluster with trust
//! auth), else the stack's on `STOREFLEET_POSTGRES_PORT` (default 15432; the test command's
//! stack). Without `STOREFLEET_POSTGRES` and with no server there, the tests are skipped with
//! a note. Each test creates its own `seed_test_<pid>_<random>_{catalog,warehouse}` databases
//! and drops them at the end, also when it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seed::{SeedReport, UpsertCounts};
use tokio_postgres::{Client, NoTls};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server to use, or `None` (with a note) when none is configured or running.
async fn server() -> Option<String> {
    let explicit = std::env::var("STOREFLEET_POSTGRES").ok();
    let url = explicit.clone().unwrap_or_else(|| {
        let port = std::env::var("STOREFLEET_POSTGRES_PORT").unwrap_or_else(|_| "15432".into());
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    });
    match tokio_postgres::connect(&url, NoTls).await {
        Ok(_) => Some(url),
        Err(e) if explicit.is_some() => panic!("STOREFLEET_POSTGRES={url}: {e}"),
        Err(e) => {
            eprintln!(
                "note: skipped, no PostgreSQL at {url} ({e}); set STOREFLEET_POSTGRES or start \
                 the stack"
            );
            None
        }
    }
}

/// A catalog and a warehouse database, migrated, dropped again on drop.
struct Scratch {
    admin_url: String,
    names: [String; 2],
    catalog_url: String,
    warehouse_url: String,
}

impl Scratch {
    async fn create(admin_url: &str) -> Scratch {
        let prefix = format!("seed_test_{}_{}", std::process::id(), rand::random::<u32>());
        let names = [format!("{prefix}_catalog"), format!("{prefix}_warehouse")];
        let url_of = |name: &str| match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("{admin_url} names no database"),
        };
        let scratch = Scratch {
            admin_url: admin_url.to_string(),
            catalog_url: url_of(&names[0]),
            warehouse_url: url_of(&names[1]),
            names,
        };
        let migrations = repo_root().join("migrations");
        for (name, url, folder) in [
            (&scratch.names[0], &scratch.catalog_url, "catalog"),
            (&scratch.names[1], &scratch.warehouse_url, "warehouse"),
        ] {
            assert!(stack::create_database(admin_url, name).await.unwrap());
            assert!(!stack::create_database(admin_url, name).await.unwrap());
            let dir = migrations.join(folder);
            let applied = stack::apply_migrations(url, &dir).await.unwrap();
            let expected: Vec<String> = stack::migration_files(&dir)
                .unwrap()
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            assert!(!expected.is_empty(), "no migrations in {}", dir.display());
            assert_eq!(applied, expected);
            // A second run finds everything applied.
            assert!(stack::apply_migrations(url, &dir).await.unwrap().is_empty());
            let recorded: i64 = connect(url)
                .await
                .query_one("SELECT count(*) FROM storefleet_migrations", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(recorded as usize, expected.len());
        }
        scratch
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let names = self.names.clone();
        // Drop runs outside any runtime's async context only on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the scratch databases");
            runtime.block_on(async {
                for name in &names {
                    if let Err(e) = stack::drop_database(&admin_url, name).await {
                        eprintln!("could not drop scratch database {name}: {e}");
                    }
                }
            })
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop the scratch databases {:?}", self.names);
        }
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Per product id: (price as text, updated_at as text, xmin).
async fn products(url: &str) -> BTreeMap<String, (String, String, String)> {
    connect(url)
        .await
        .query(
            "SELECT id::text, price::text, updated_at::text, xmin::text FROM products",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

/// Per (product id, center): (on_hand, updated_at as text, xmin).
async fn stock(url: &str) -> BTreeMap<(String, String), (i32, String, String)> {
    connect(url)
        .await
        .query(
            "SELECT product_id::text, fulfillment_center, on_hand, updated_at::text, xmin::text \
             FROM stock WHERE status = 'available'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4))))
        .collect()
}

const HEADER: &str = r#""Row ID","Order ID","Order Date","Ship Date","Ship Mode","Customer ID","Customer Name","Segment","Country","City","State","Postal Code","Region","Product ID","Category","Sub-Category","Product Name","Sales","Quantity","Discount","Profit""#;
const REGIONS: [&str; 4] = ["West", "East", "Central", "South"];

/// A synthetic data set of `skus` products with 1 to 3 lines each: more than two batches of
/// products and ten of stock rows. `price_factor` scales the sales of `OFF-PA-00000007`.
fn synthetic_csv(skus: u32, price_factor: u32) -> String {
    let mut text = String::from(HEADER);
    let mut row = 0;
    for n in 0..skus {
        let sku = format!("OFF-PA-{n:08}");
        for k in 0..(n % 3 + 1) {
            row += 1;
            let quantity = (n + k) % 7 + 1;
            let (discount, percent_off) = [("0", 0), ("0.2", 20), ("0.45", 45)][(k % 3) as usize];
            // Every line of a SKU has the same list price, in cents.
            let mut list_cents = u64::from(n % 900 + 100);
            if n == 7 {
                list_cents *= u64::from(price_factor);
            }
            // Sales in ten-thousandths: list × quantity × (1 − discount).
            let sales = list_cents * u64::from(quantity) * (100 - percent_off);
            let sales = format!("{}.{:04}", sales / 10_000, sales % 10_000);
            let region = REGIONS[((n + k) % 4) as usize];
            text.push_str(&format!(
                "\n{row},\"CA-{row}\",2016-11-08,2016-11-11,\"Standard Class\",\"C-1\",\"A B\",\
                 \"Consumer\",\"United States\",\"Henderson\",\"Kentucky\",42420,\"{region}\",\
                 \"{sku}\",\"Office Supplies\",\"Paper\",\"Papery {n} Copy Paper\",{sales},\
                 {quantity},{discount},1.0"
            ));
        }
    }
    text.push('\n');
    text
}

fn counts(inserted: u64, updated: u64, unchanged: u64) -> UpsertCounts {
    UpsertCounts {
        inserted,
        updated,
        unchanged,
    }
}

async fn seed_file(scratch: &Scratch, csv: &str) -> SeedReport {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("superstore.csv");
    std::fs::write(&path, csv).unwrap();
    seed::seed(
        &scratch.catalog_url,
        &scratch.warehouse_url,
        &path,
        seed::catalog::IMAGE_HOST,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_reseed_writes_nothing_and_a_changed_price_rewrites_one_product() {
    let Some(admin_url) = server().await else {
        return;
    };
    let scratch = Scratch::create(&admin_url).await;
    let skus = 1_234u64;

    let first = seed_file(&scratch, &synthetic_csv(1_234, 1)).await;
    assert_eq!(first.products, counts(skus, 0, 0));
    assert_eq!(first.stock, counts(4 * skus, 0, 0));
    let products_before = products(&scratch.catalog_url).await;
    let stock_before = stock(&scratch.warehouse_url).await;
    assert_eq!(products_before.len() as u64, skus);
    assert_eq!(stock_before.len() as u64, 4 * skus);
    // Four rows per product, one per center, and no stock for an unknown product.
    for id in products_before.keys() {
        let centers: Vec<&str> = stock_before
            .keys()
            .filter(|(product, _)| product == id)
            .map(|(_, center)| center.as_str())
            .collect();
        assert_eq!(
            centers,
            ["FC-CENTRAL-1", "FC-EAST-1", "FC-SOUTH-1", "FC-WEST-1"]
        );
    }

    let second = seed_file(&scratch, &synthetic_csv(1_234, 1)).await;
    assert_eq!(second.products, counts(0, 0, skus));
    assert_eq!(second.stock, counts(0, 0, 4 * skus));
    // Not a single row version changed: nothing for CDC to capture.
    assert_eq!(products(&scratch.catalog_url).await, products_before);
    assert_eq!(stock(&scratch.warehouse_url).await, stock_before);

    let third = seed_file(&scratch, &synthetic_csv(1_234, 3)).await;
    assert_eq!(third.products, counts(0, 1, skus - 1));
    assert_eq!(third.stock, counts(0, 0, 4 * skus));
    let products_after = products(&scratch.catalog_url).await;
    let changed_id = seed::catalog::product_id("OFF-PA-00000007").to_string();
    for (id, before) in &products_before {
        let after = &products_after[id];
        if *id == changed_id {
            // List price (7 % 900 + 100) cents, tripled.
            assert_eq!((before.0.as_str(), after.0.as_str()), ("1.07", "3.21"));
            assert_ne!(after.1, before.1, "updated_at moves with the change");
            assert_ne!(after.2, before.2);
        } else {
            assert_eq!(after, before, "product {id} must be untouched");
        }
    }
    assert_eq!(stock(&scratch.warehouse_url).await, stock_before);
}

#[tokio::test]
async fn the_real_data_set_seeds_1862_products_once() {
    let csv = cached_dataset();
    if !csv.is_file() {
        eprintln!(
            "note: skipped, {} is missing (bash scripts/fetch-dataset.sh fetches it)",
            csv.display()
        );
        return;
    }
    let Some(admin_url) = server().await else {
        return;
    };
    let scratch = Scratch::create(&admin_url).await;
    let first = seed::seed(
        &scratch.catalog_url,
        &scratch.warehouse_url,
        &csv,
        seed::catalog::IMAGE_HOST,
    )
    .await
    .unwrap();
    assert_eq!(first.products, counts(1_862, 0, 0));
    assert_eq!(first.stock, counts(4 * 1_862, 0, 0));
    assert_eq!(first.images, counts(2 * 1_862, 0, 0));
    let second = seed::seed(
        &scratch.catalog_url,
        &scratch.warehouse_url,
        &csv,
        seed::catalog::IMAGE_HOST,
    )
    .await
    .unwrap();
    assert_eq!(
        second.products.written() + second.stock.written() + second.images.written(),
        0
    );
    let on_hand: i64 = connect(&scratch.warehouse_url)
        .await
        .query_one("SELECT sum(on_hand) FROM stock", &[])
        .await
        .unwrap()
        .get(0);
    // 3 × 37,873 units sold (the data set's total quantity) + 5 × 7,448 rows.
    assert_eq!(on_hand, 3 * 37_873 + 5 * 4 * 1_862);
}

fn cached_dataset() -> PathBuf {
    let cache = std::env::var_os("STOREFLEET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/storefleet")
        });
    cache.join("data/superstore.csv")
}
