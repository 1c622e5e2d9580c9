//! `fleet bench search-freshness`: how long a change committed in PostgreSQL takes to show
//! in search results, on the running fleet (`fleet up` or `fleet demo`): price changes in the
//! catalog database (catalog-cdc → search-indexer) and stock changes in the warehouse
//! database (warehouse-cdc → inventory-stock-feed → inventory → availability →
//! search-indexer). Each change is timed from its transaction's commit to the first answer of
//! the query service that shows it (polled every 5 ms, the cache included: a cached answer
//! showing the product is invalidated by the commit that changes it). Stock changes take a
//! product's sellable units to 0 and back, and every price change is undone at the end.
//! Reference in the same run: the time the same poll takes when nothing changes (the
//! measurement's own floor).

use std::time::{Duration, Instant};

use loadgen::percentile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use topology::Topology;

use crate::error::missing;
use crate::Result;

/// `fleet bench search-freshness`.
#[derive(clap::Args)]
pub struct Args {
    /// Price changes, then as many stock changes.
    #[arg(long, default_value_t = 120)]
    changes: usize,
    /// Changes in flight at once (different products).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

pub async fn freshness(topology: &Topology, bench: Args) -> Result<()> {
    let env = runtime::StackEnv::from_env()?;
    let urls = search::ops::instance_urls(topology, "127.0.0.1");
    let url = urls
        .first()
        .cloned()
        .ok_or_else(missing("no search-indexer in the topology"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let catalog = stack::connect_postgres(&runtime::postgres_database_url(
        &env.postgres_url,
        "catalog",
    )?)
    .await?;
    let warehouse = stack::connect_postgres(&runtime::postgres_database_url(
        &env.postgres_url,
        "warehouse",
    )?)
    .await?;
    // Products a title query finds (so "shows the change" can be read off one answer).
    let rows = catalog
        .query(
            "SELECT id::text, title, category FROM products ORDER BY md5(id::text) LIMIT 400",
            &[],
        )
        .await?;
    let mut candidates = Vec::new();
    for row in &rows {
        let (id, title, category): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if let Some(hit) = find(&http, &url, &title, &category, &id).await {
            candidates.push((id, title, category, hit));
        }
        if candidates.len() >= bench.changes.max(bench.concurrency) {
            break;
        }
    }
    if candidates.len() < bench.concurrency {
        return Err(missing(
            "too few products answer their own title: is the fleet up and the index ready?",
        )());
    }
    println!(
        "search freshness on the running fleet ({url}); {} products",
        candidates.len()
    );
    // The floor: polling an unchanged product until it "shows" what it already shows.
    let mut floor = Vec::new();
    for (id, title, category, _) in candidates.iter().take(20) {
        let t = Instant::now();
        let _ = find(&http, &url, title, category, id).await;
        floor.push(t.elapsed().as_micros() as i64);
    }
    floor.sort_unstable();
    let mut rng = StdRng::seed_from_u64(5);
    for kind in ["price", "stock"] {
        let mut latencies = Vec::new();
        let mut misses = 0;
        for round in 0..bench.changes.div_ceil(bench.concurrency) {
            let picked: Vec<usize> = (0..bench.concurrency)
                .map(|i| (round * bench.concurrency + i) % candidates.len())
                .collect();
            let mut waits = Vec::new();
            for (id, title, category, hit) in picked.iter().map(|i| &candidates[*i]) {
                let (committed, expect): (Instant, Shows) = if kind == "price" {
                    let cents = hit["price_minor"].as_i64().unwrap_or(0) + rng.random_range(1..50);
                    catalog
                        .execute(
                            "UPDATE products SET price = $2::bigint / 100.0, updated_at = now() WHERE id = $1::text::uuid",
                            &[id, &cents],
                        )
                        .await?;
                    (
                        Instant::now(),
                        Box::new(move |h: &Value| h["price_minor"].as_i64() == Some(cents)),
                    )
                } else {
                    let out = hit["in_stock"].as_bool() != Some(false);
                    // Out: every available row to 0 (kept aside); back: restore them.
                    if out {
                        warehouse
                            .execute(
                                "UPDATE stock SET on_hand = 0, updated_at = now() WHERE product_id = $1::text::uuid AND status = 'available'",
                                &[id],
                            )
                            .await?;
                    } else {
                        warehouse
                            .execute(
                                "UPDATE stock SET on_hand = on_hand + 10, updated_at = now() WHERE product_id = $1::text::uuid AND status = 'available'",
                                &[id],
                            )
                            .await?;
                    }
                    let want = !out;
                    (
                        Instant::now(),
                        Box::new(move |h: &Value| h["in_stock"].as_bool() == Some(want)),
                    )
                };
                waits.push((
                    id.clone(),
                    title.clone(),
                    category.clone(),
                    committed,
                    expect,
                ));
            }
            for (id, title, category, committed, expect) in waits {
                loop {
                    if let Some(hit) = find(&http, &url, &title, &category, &id).await {
                        if expect(&hit) {
                            latencies.push(committed.elapsed().as_micros() as i64);
                            break;
                        }
                    }
                    if committed.elapsed() > Duration::from_secs(10) {
                        misses += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            // Refresh what each product shows now for the next round.
            for i in picked {
                let c = &mut candidates[i];
                if let Some(hit) = find(&http, &url, &c.1, &c.2, &c.0).await {
                    c.3 = hit;
                }
            }
        }
        latencies.sort_unstable();
        let ms = |p| percentile(&latencies, p) as f64 / 1e3;
        println!(
            "  {kind:<5} changes {:>4}: commit → visible p50 {:>6.0} ms  p95 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms  (over 10 s: {misses})",
            latencies.len(),
            ms(0.50),
            ms(0.95),
            ms(0.99),
            latencies.last().copied().unwrap_or(0) as f64 / 1e3,
        );
    }
    println!(
        "  reference: one poll of an unchanged product p50 {:.1} ms, p99 {:.1} ms (the measurement's floor)",
        percentile(&floor, 0.5) as f64 / 1e3,
        percentile(&floor, 0.99) as f64 / 1e3
    );
    Ok(())
}

/// Whether a hit shows the change.
type Shows = Box<dyn Fn(&Value) -> bool + Send>;

/// The product's hit in the answer to its own title (filtered to its category), if any.
async fn find(
    http: &reqwest::Client,
    url: &str,
    title: &str,
    category: &str,
    id: &str,
) -> Option<Value> {
    let answer: Value = http
        .get(format!("{url}/search"))
        .query(&[
            ("q", format!("\"{}\"", title.replace('"', " "))),
            ("category", category.to_string()),
            ("per_page", "100".into()),
        ])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer["hits"]
        .as_array()?
        .iter()
        .find(|h| h["id"] == id)
        .cloned()
}
