//! Relevance on the real catalogue (the Superstore products `fleet seed` loads), through the
//! index and the query engine, no broker: known answers in the top 3, typos, prefixes,
//! filters, facets, sorting, paging, and a shard that fails or is slow. Needs the data set in
//! the cache (`bash scripts/fetch-dataset.sh`; the test command fetches it); skipped with a
//! note otherwise. Facet counts against SQL on the catalog database: tests/search.rs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use search::doc::Product;
use search::engine::{Answer, Engine};
use search::index::{Generation, Layout, Payload};
use search::query;

fn csv_path() -> PathBuf {
    let cache = std::env::var_os("STOREFLEET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/storefleet")
        });
    cache.join("data/superstore.csv")
}

fn catalogue() -> Option<Vec<Product>> {
    let path = csv_path();
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "note: skipped, {} is missing (bash scripts/fetch-dataset.sh fetches it)",
            path.display()
        );
        return None;
    };
    let catalog = seed::parse(&bytes).expect("the data set parses");
    Some(
        catalog
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| Product {
                id: p.id.to_string(),
                listed: true,
                sku: p.sku.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                category: p.category.clone(),
                brand: p.brand.clone(),
                price_minor: u64::try_from(p.price.0).unwrap(),
                image_url: p.image_urls.first().cloned(),
                updated_at_ms: 1_700_000_000_000 + i as i64,
                catalog_lsn: 1,
                // Every seventh product out of stock, so the filter has something to do.
                in_stock: Some(i % 7 != 0),
                available_quantity: Some(if i % 7 == 0 { 0 } else { 5 }),
                availability_seq: 1,
            })
            .collect(),
    )
}

struct Fixture {
    engine: Engine,
    products: Vec<Product>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Option<Fixture> {
    let products = catalogue()?;
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&[
        "Furniture".into(),
        "Office Supplies".into(),
        "Technology".into(),
    ]);
    let (mut writers, _) = Generation::open(dir.path(), &layout, 32 << 20).unwrap();
    for p in &products {
        writers.upsert(p, None).unwrap();
    }
    writers
        .commit(&Payload {
            seq: 1,
            ..Payload::default()
        })
        .unwrap();
    let engine = Engine::new(
        writers.searchable.clone(),
        Duration::from_millis(500),
        Duration::ZERO,
        0,
    );
    Some(Fixture {
        engine,
        products,
        _dir: dir,
    })
}

impl Fixture {
    async fn search(&self, params: &[(&str, &str)]) -> Answer {
        let request = query::parse(params.iter().copied()).expect("a valid request");
        self.engine.search(&request).await
    }

    async fn titles(&self, q: &str) -> Vec<String> {
        self.search(&[("q", q)])
            .await
            .hits
            .into_iter()
            .map(|h| h.title)
            .collect()
    }
}

fn top3_contains(titles: &[String], needle: &str) -> bool {
    titles
        .iter()
        .take(3)
        .any(|t| t.to_lowercase().contains(&needle.to_lowercase()))
}

#[tokio::test]
async fn known_products_rank_in_the_top_three() {
    let Some(f) = fixture() else { return };
    for (q, expected) in [
        (
            "Bush Somerset Collection Bookcase",
            "Bush Somerset Collection Bookcase",
        ),
        ("Mitel 5320 IP Phone", "Mitel 5320 IP Phone"),
        (
            "logitech wireless keyboard",
            "Logitech K350 2.4Ghz Wireless Keyboard",
        ),
        ("swing arm lamp", "Swing Arm Lamp"),
        ("shredder", "Shredder"),
        ("canon copier", "Canon"),
        ("\"stacking chairs\"", "Stacking Chair"),
    ] {
        let titles = f.titles(q).await;
        assert!(
            top3_contains(&titles, expected),
            "{q:?}: {:?}",
            &titles[..titles.len().min(5)]
        );
    }
}

#[tokio::test]
async fn typos_are_forgiven_by_word_length() {
    let Some(f) = fixture() else { return };
    // 8 letters, one transposition; 9+ letters, two edits; the last word also a prefix.
    for (q, expected) in [
        ("bookcsae ", "Bookcase"),
        ("shreder ", "Shredder"),
        ("logitehc keybaord ", "Logitech"),
        ("envelopse ", "Envelope"),
    ] {
        let titles = f.titles(q).await;
        assert!(
            top3_contains(&titles, expected),
            "{q:?}: {:?}",
            &titles[..titles.len().min(5)]
        );
    }
    // Under 5 letters no typo is allowed: "lmap" finds no lamp.
    let answer = f.search(&[("q", "lmap ")]).await;
    assert!(
        answer
            .hits
            .iter()
            .all(|h| !h.title.to_lowercase().contains("lamp")),
        "{:?}",
        answer.hits.first()
    );
}

#[tokio::test]
async fn the_last_word_matches_as_a_prefix_as_you_type() {
    let Some(f) = fixture() else { return };
    assert!(top3_contains(&f.titles("bookc").await, "bookcase"));
    assert!(top3_contains(&f.titles("logit").await, "logitech"));
    assert!(top3_contains(&f.titles("swing arm la").await, "lamp"));
    // With a space after it, a word is complete: "logi " (too short for a typo) matches
    // nothing, where "logi" finds Logitech.
    assert_eq!(f.search(&[("q", "logi ")]).await.total, 0);
    assert!(top3_contains(&f.titles("logi").await, "logitech"));
}

#[tokio::test]
async fn filters_constrain_every_hit_and_facets_count_all_matches() {
    let Some(f) = fixture() else { return };
    let a = f
        .search(&[
            ("q", "phone"),
            ("category", "Technology/Phones"),
            ("max_price", "100"),
            ("in_stock", "true"),
            ("per_page", "100"),
        ])
        .await;
    assert!(a.total > 0);
    for h in &a.hits {
        assert_eq!(h.category, "Technology/Phones");
        assert!(h.price_minor <= 10_000, "{}", h.price);
        assert_eq!(h.in_stock, Some(true));
    }
    // Brand filter, case-insensitive; facets over all matches of the query.
    let a = f
        .search(&[("q", "binders"), ("brand", "AVERY"), ("per_page", "100")])
        .await;
    assert!(a.total > 0 && a.hits.iter().all(|h| h.brand == "Avery"));
    let all = f.search(&[("q", "binders"), ("per_page", "100")]).await;
    assert_eq!(
        all.facets.brand.get("Avery").copied(),
        Some(a.total),
        "brand facet equals the filtered total"
    );
    let by_category: u64 = all.facets.category.values().sum();
    assert_eq!(
        by_category, all.total,
        "every match counted once in the category facet"
    );
    let by_stock: u64 = all.facets.in_stock.values().sum();
    assert_eq!(by_stock, all.total);
    // Facets computed independently from the catalogue for a word with no typo budget.
    let desk = f.search(&[("q", "desk "), ("per_page", "1")]).await;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let word = regex_word("desk");
    for p in &f.products {
        if [&p.title, &p.description, &p.brand, &p.category]
            .iter()
            .any(|t| word(t))
        {
            *expected.entry(p.category.clone()).or_default() += 1;
        }
    }
    assert_eq!(desk.facets.category, expected);
    // A top-level category filter asks only that shard.
    let a = f.search(&[("q", "desk"), ("category", "furniture")]).await;
    assert!(a
        .hits
        .iter()
        .all(|h| h.shard == "Furniture" && h.category.starts_with("Furniture/")));
}

/// Whether `text` has `word` or `word` + "s" as a whole word (case-insensitive).
fn regex_word(word: &'static str) -> impl Fn(&str) -> bool {
    move |text: &str| {
        text.split(|c: char| !c.is_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case(word) || w.eq_ignore_ascii_case(&format!("{word}s")))
    }
}

#[tokio::test]
async fn sorting_and_paging() {
    let Some(f) = fixture() else { return };
    let asc = f
        .search(&[("q", "chair"), ("sort", "price_asc"), ("per_page", "50")])
        .await;
    let prices: Vec<u64> = asc.hits.iter().map(|h| h.price_minor).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    let desc = f
        .search(&[("q", "chair"), ("sort", "price_desc"), ("per_page", "5")])
        .await;
    assert!(desc.hits[0].price_minor >= *prices.last().unwrap());
    let newest = f
        .search(&[("q", "chair"), ("sort", "newest"), ("per_page", "10")])
        .await;
    assert!(newest
        .hits
        .windows(2)
        .all(|w| w[0].updated_at >= w[1].updated_at));
    // Page 2 continues page 1 without overlap.
    let p1 = f.search(&[("q", "xerox"), ("per_page", "10")]).await;
    let p2 = f
        .search(&[("q", "xerox"), ("per_page", "10"), ("page", "2")])
        .await;
    let both: Vec<&String> = p1.hits.iter().chain(&p2.hits).map(|h| &h.id).collect();
    let unique: std::collections::HashSet<_> = both.iter().collect();
    assert_eq!((both.len(), unique.len()), (20, 20));
    assert_eq!(p1.total, p2.total);
}

#[tokio::test]
async fn hits_carry_what_a_result_page_shows_with_highlights() {
    let Some(f) = fixture() else { return };
    let a = f.search(&[("q", "bookcase")]).await;
    let h = &a.hits[0];
    assert!(!h.sku.is_empty() && h.image_url.is_some() && h.in_stock.is_some());
    assert_eq!(
        h.price,
        format!("{}.{:02}", h.price_minor / 100, h.price_minor % 100)
    );
    assert!(
        h.highlights.title.contains("<mark>"),
        "{}",
        h.highlights.title
    );
}

#[tokio::test]
async fn a_broken_or_slow_shard_degrades_only_its_results() {
    let Some(f) = fixture() else { return };
    let searchable = f.engine.searchable();
    let tech = searchable.shard_index("Technology").unwrap();
    searchable.shards[tech]
        .fault
        .fail
        .store(true, Ordering::Relaxed);
    let a = f.search(&[("q", "black"), ("per_page", "100")]).await;
    assert_eq!(a.degraded, vec!["shard:Technology".to_string()]);
    assert!(!a.hits.is_empty() && a.hits.iter().all(|h| h.shard != "Technology"));
    searchable.shards[tech]
        .fault
        .fail
        .store(false, Ordering::Relaxed);
    searchable.shards[tech]
        .fault
        .delay_ms
        .store(2_000, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let a = f.search(&[("q", "black"), ("per_page", "100")]).await;
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "answered within the shard budget"
    );
    assert_eq!(a.degraded, vec!["shard:Technology".to_string()]);
    // A query for another category never waits for the slow shard.
    let a = f.search(&[("q", "chair"), ("category", "Furniture")]).await;
    assert!(a.degraded.is_empty() && !a.hits.is_empty());
    searchable.shards[tech]
        .fault
        .delay_ms
        .store(0, Ordering::Relaxed);
    let _ = Arc::strong_count(&searchable);
}
