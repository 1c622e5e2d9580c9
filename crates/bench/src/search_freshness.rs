//! `fleet bench search-freshness`: how long a change committed in PostgreSQL takes to show
//! in search results, on the running fleet (`fleet up` or `fleet demo`): price changes in the
//! catalog database (catalog-cdc → search-indexer) and stock changes in the warehouse
//! database (warehouse-cdc → inventory-stock-feed → inventory → availability →
//! search-indexer). Each change is timed from its transaction's commit to the first answer of
//! the query service that shows it (polled every 5 ms, the cache included: a cached answer
//! showing the product is invalidated by the commit that changes it). Stock changes take a
//! product's sellable units to 0 and back, and every price change is undone at the end.
//! Stock levels are not put back: the warehouse's level of a product it took to 0 and back is
//! then below what was sold of it before, so a later `fleet load` report on the same stack
//! (whose oversold check reads sold ≤ the warehouse's level) counts those products as
//! oversold although the ledger sold only what it was given. Run it on a stack you will not
//! judge by that check afterwards, or re-seed.
//! Reference in the same run: the time the same poll takes when nothing changes (the
//! measurement's own floor).
//!
//! Where a stock change's time goes: the end offsets of the stock path's topics are noted
//! before the stock changes, and afterwards the records written since are read back (nothing
//! extra polls the broker while changes are timed). Each record's CreateTime is when its
//! producer sent it, so for each change the first record about its product on each topic
//! splits commit → visible into hops: the connector (WAL → `cdc.warehouse.stock`), the stock
//! feed (→ `inventory.stock-commands`), the ledger (→ `inventory.availability`) and the
//! indexer (→ a searchable commit, read by the poll).

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
    let hops = stock_hops(topology)?;
    let mut starts = Vec::new();
    let mut stock_changes: Vec<(String, i64, i64)> = Vec::new();
    for kind in ["price", "stock"] {
        if kind == "stock" {
            for (_, topic) in &hops {
                starts.push(end_offsets(&env.bootstrap_servers, topic)?);
            }
        }
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
                    stock_changes.push((id.clone(), runtime::now_ms(), 0));
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
                            if kind == "stock" {
                                let visible = runtime::now_ms();
                                if let Some(c) = stock_changes
                                    .iter_mut()
                                    .rev()
                                    .find(|c| c.0 == id && c.2 == 0)
                                {
                                    c.2 = visible;
                                }
                            }
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
    let mut written = Vec::new();
    for ((_, topic), start) in hops.iter().zip(&starts) {
        written.push(read_since(&env.bootstrap_servers, topic, start).await?);
    }
    print_hops(&hops, &written, &stock_changes);
    println!(
        "  note: the stock levels changed stay changed; a later load report's oversold check on this stack counts these products"
    );
    Ok(())
}

/// The stock path's topics in order (label, topic), from the topology's bindings.
fn stock_hops(t: &Topology) -> Result<Vec<(&'static str, String)>> {
    let input = |processor: &str, port: &str| {
        t.processor(processor)
            .and_then(|(spec, _)| spec.inputs.get(port))
            .map(|i| i.topic.clone())
            .ok_or_else(missing(format!(
                "no {processor} input `{port}` in the topology"
            )))
    };
    Ok(vec![
        (
            "warehouse-cdc",
            input("inventory-stock-feed", "stock_changes")?,
        ),
        ("inventory-stock-feed", input("inventory", "commands")?),
        (
            "inventory (ledger)",
            input("search-indexer", "availability")?,
        ),
    ])
}

/// Every partition's end offset of `topic` now.
fn end_offsets(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut out = Vec::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            out.push((p.id(), high));
        }
    }
    Ok(out)
}

/// (key, CreateTime) of every record of `topic` from `starts` to its end now.
async fn read_since(
    bootstrap: &str,
    topic: &str,
    starts: &[(i32, i64)],
) -> Result<Vec<(Vec<u8>, i64)>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("freshness-hops-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for (p, offset) in starts {
        assignment.add_partition_offset(topic, *p, rdkafka::Offset::Offset(*offset))?;
    }
    consumer.assign(&assignment)?;
    let seen = loadgen::kafka::drain(&consumer, usize::MAX, Duration::from_secs(3)).await;
    Ok(seen
        .into_iter()
        .filter_map(|s| Some((s.key?, s.timestamp_ms?)))
        .collect())
}

/// Per stock change, the first record about its product on each hop's topic at or after its
/// commit: the time each hop added, p50/p99 over the changes all hops saw.
fn print_hops(
    hops: &[(&'static str, String)],
    written: &[Vec<(Vec<u8>, i64)>],
    changes: &[(String, i64, i64)],
) {
    let mut spans: Vec<Vec<i64>> = vec![Vec::new(); hops.len() + 1];
    let mut complete = 0;
    for (id, committed, visible) in changes.iter().filter(|c| c.2 > 0) {
        let first = |records: &[(Vec<u8>, i64)]| {
            records
                .iter()
                .filter(|(key, at)| {
                    *at >= committed - 1 && key.windows(id.len()).any(|w| w == id.as_bytes())
                })
                .map(|(_, at)| *at)
                .min()
        };
        let times: Option<Vec<i64>> = written.iter().map(|r| first(r)).collect();
        let Some(times) = times else { continue };
        complete += 1;
        let mut previous = *committed;
        for (hop, at) in times.iter().enumerate() {
            spans[hop].push(at - previous);
            previous = *at;
        }
        spans[hops.len()].push(visible - previous);
    }
    println!("  where a stock change's time goes ({complete} changes seen on every hop; ms, by record CreateTime):");
    let labels = hops
        .iter()
        .map(|(label, topic)| format!("{label} → {topic}"))
        .chain(std::iter::once(
            "search-indexer → searchable, polled".to_string(),
        ));
    for (label, mut span) in labels.zip(spans) {
        span.sort_unstable();
        println!(
            "    {label:<62} p50 {:>6} ms  p99 {:>6} ms",
            percentile(&span, 0.5),
            percentile(&span, 0.99)
        );
    }
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
