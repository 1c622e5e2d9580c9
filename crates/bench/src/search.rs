//! `fleet bench search`: the search service on a 100,000-product catalogue beside tantivy
//! alone on the same documents and queries, in the same run.
//!
//! The catalogue is the real one (the Superstore products `fleet seed` loads) expanded by a
//! generator that keeps its vocabulary and category mix: each generated product takes a
//! real product's sub-category, brand and a title made of words from titles of that
//! sub-category, and a price near the real one. Needs only the data set (no stack).
//!
//! Figures:
//! 1. indexing docs/s: the service's path (catalog decisions, one writer per shard, commits
//!    with positions) beside one raw tantivy writer on one index;
//! 2. queries/s and latency p50/p99 of a realistic mix (single words, several words,
//!    phrases, typos, prefixes, filters; every answer computes facets and highlights, as the
//!    service always does) through the query service over loopback HTTP, through the engine
//!    in-process, and through tantivy alone (the same compiled query on one unsharded index,
//!    top 20 + count + stored fields of the hits), at 1 and 8 concurrent clients. The cache
//!    is off (each query is computed). Client and server share the machine's cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::percentile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use search::doc::Product;
use search::engine::Engine;
use search::index::{compile, schema, Generation, Layout, Payload};
use search::query;
use tantivy::collector::{Count, TopDocs};

use crate::error::missing;
use crate::Result;

/// `fleet bench search`.
#[derive(clap::Args)]
pub struct Args {
    /// Products in the catalogue (the real ones, then generated).
    #[arg(long, default_value_t = 100_000)]
    products: usize,
    /// Seconds per query phase.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Distinct queries in the mix.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
}

pub async fn search(root: &std::path::Path, bench: Args) -> Result<()> {
    let path = seed::fetch_dataset(&root.join("scripts/fetch-dataset.sh"))
        .await
        .map_err(|e| missing(format!("the data set: {e}"))())?;
    let bytes = std::fs::read(&path)?;
    let base =
        seed::parse(&bytes).map_err(|e| crate::Error::Check(format!("the data set: {e}")))?;
    let real: Vec<Product> = base.products.iter().map(product).collect();
    let products = expand(&real, bench.products, 7);
    let categories: std::collections::BTreeSet<&str> =
        products.iter().map(|p| p.top_category()).collect();
    println!(
        "catalogue: {} products ({} real, the rest generated from their vocabulary), {} top-level categories",
        products.len(),
        real.len(),
        categories.len()
    );
    let dir = tempfile::tempdir()?;

    // 1. Indexing.
    let layout = Layout::new(&[
        "Furniture".into(),
        "Office Supplies".into(),
        "Technology".into(),
    ]);
    let started = Instant::now();
    let (mut writers, _) =
        Generation::open(&dir.path().join("service"), &layout, 64 << 20).map_err(index_error)?;
    // What the indexer does per document once decoded: find the shard of its current
    // document, write it to its shard, remember where it went; a commit per 50,000.
    let mut shards_of = std::collections::HashMap::new();
    for (n, chunk) in products.chunks(50_000).enumerate() {
        for p in chunk {
            let previous = shards_of.get(&p.id).copied();
            writers.upsert(p, previous).map_err(index_error)?;
            shards_of.insert(p.id.clone(), layout.shard_of(p));
        }
        let seq = n as u64 + 1;
        writers
            .commit(&Payload {
                seq,
                ..Payload::default()
            })
            .map_err(index_error)?;
    }
    let service_index = started.elapsed();
    let started = Instant::now();
    let (schema, fields) = schema();
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    let raw = tantivy::Index::create_in_dir(&raw_dir, schema).map_err(tantivy_error)?;
    search::index::register_analyzers(&raw);
    {
        let mut w: tantivy::IndexWriter = raw
            .writer_with_num_threads(1, 64 << 20)
            .map_err(tantivy_error)?;
        for p in &products {
            w.add_document(search::index::document(&fields, p))
                .map_err(tantivy_error)?;
        }
        w.commit().map_err(tantivy_error)?;
    }
    let raw_index = started.elapsed();
    let rate = |d: Duration| products.len() as f64 / d.as_secs_f64();
    println!("\nindexing {} documents:", products.len());
    println!(
        "  service path (catalog + {} shard writers + commit)  {:>9.0} docs/s   ({:.2} s)",
        layout.names().len(),
        rate(service_index),
        service_index.as_secs_f64()
    );
    println!(
        "  tantivy alone (one writer, one index, commit)       {:>9.0} docs/s   ({:.2} s)   ratio {:.2}x",
        rate(raw_index),
        raw_index.as_secs_f64(),
        service_index.as_secs_f64() / raw_index.as_secs_f64()
    );

    // 2. Queries.
    let mix = query_mix(&real, bench.queries, 11);
    let kinds: Vec<&str> = mix.iter().map(|(k, _)| *k).collect();
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for k in &kinds {
        *by_kind.entry(k).or_default() += 1;
    }
    println!("\nquery mix ({} distinct, cycled): {by_kind:?}", mix.len());
    let engine = Arc::new(Engine::new(
        writers.searchable.clone(),
        Duration::from_secs(5),
        Duration::ZERO,
        0,
    ));
    let requests: Arc<Vec<query::SearchRequest>> = Arc::new(
        mix.iter()
            .map(|(_, params)| query::parse(params.iter().map(|(k, v)| (*k, v.as_str()))))
            .collect::<std::result::Result<_, _>>()
            .map_err(|r| {
                crate::Error::Check(format!("a generated query is refused: {}", r.message))
            })?,
    );
    let urls: Arc<Vec<String>> = Arc::new(
        mix.iter()
            .map(|(_, params)| {
                let mut u = reqwest::Url::parse("http://127.0.0.1/search").expect("static url");
                u.query_pairs_mut()
                    .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
                u.query().unwrap_or_default().to_string()
            })
            .collect(),
    );
    let reader = raw.reader().map_err(tantivy_error)?;
    let compiled: Arc<Vec<search::index::Compiled>> =
        Arc::new(requests.iter().map(|r| compile(&fields, r)).collect());
    let (addr, server) = serve(engine.clone()).await?;
    let seconds = Duration::from_secs(bench.seconds);
    println!(
        "\n{:<46} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "path", "clients", "queries/s", "p50 ms", "p99 ms", "hits/q"
    );
    for clients in [1usize, 8] {
        let mut rows = Vec::new();
        // tantivy alone: blocking threads, the same compiled queries.
        let figures = run_threads(clients, seconds, {
            let compiled = compiled.clone();
            let reader = reader.clone();
            move |i| {
                let searcher = reader.searcher();
                let c = &compiled[i % compiled.len()];
                let (top, _count) = searcher
                    .search(
                        c.query.as_ref(),
                        &(TopDocs::with_limit(20).order_by_score(), Count),
                    )
                    .unwrap_or_default();
                for (_, address) in &top {
                    let _: Option<tantivy::TantivyDocument> = searcher.doc(*address).ok();
                }
                top.len()
            }
        });
        rows.push(("tantivy alone (one index, top 20 + count + docs)", figures));
        let figures = run_tasks(clients, seconds, {
            let engine = engine.clone();
            let requests = requests.clone();
            move |i| {
                let engine = engine.clone();
                let requests = requests.clone();
                async move {
                    engine
                        .search(&requests[i % requests.len()])
                        .await
                        .hits
                        .len()
                }
            }
        })
        .await;
        rows.push(("engine in-process (shards, facets, highlights)", figures));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let figures = run_tasks(clients, seconds, {
            let urls = urls.clone();
            move |i| {
                let client = client.clone();
                let url = format!("http://{addr}/search?{}", urls[i % urls.len()]);
                async move {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => r
                            .json::<serde_json::Value>()
                            .await
                            .map(|v| v["hits"].as_array().map_or(0, Vec::len))
                            .unwrap_or(0),
                        _ => usize::MAX,
                    }
                }
            }
        })
        .await;
        rows.push((
            "query service over HTTP (what the storefront gets)",
            figures,
        ));
        let reference = rows[0].1.rate;
        for (label, f) in &rows {
            println!(
                "{label:<46} {clients:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.1}   {:.2}x tantivy's time/query{}",
                f.rate,
                f.p50_ms,
                f.p99_ms,
                f.hits_per_query,
                reference / f.rate,
                if f.errors > 0 { format!(", {} errors", f.errors) } else { String::new() }
            );
        }
    }
    server.abort();
    Ok(())
}

fn index_error(e: search::index::IndexError) -> crate::Error {
    crate::Error::Check(format!("index: {e}"))
}

fn tantivy_error(e: tantivy::TantivyError) -> crate::Error {
    crate::Error::Check(format!("tantivy: {e}"))
}

fn product(p: &seed::Product) -> Product {
    Product {
        id: p.id.to_string(),
        listed: true,
        sku: p.sku.clone(),
        title: p.title.clone(),
        description: p.description.clone(),
        category: p.category.clone(),
        brand: p.brand.clone(),
        price_minor: u64::try_from(p.price.0).unwrap_or(0),
        image_url: p.image_urls.first().cloned(),
        updated_at_ms: 1_700_000_000_000,
        catalog_lsn: 1,
        in_stock: Some(true),
        available_quantity: Some(10),
        availability_seq: 1,
    }
}

/// `n` products: the real ones, then generated ones that reuse the real vocabulary per
/// sub-category (a real product's brand, sub-category and description pattern; title words
/// drawn from titles of the same sub-category; a model number; a price within ±40%).
fn expand(real: &[Product], n: usize, seed: u64) -> Vec<Product> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut words: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for p in real {
        words
            .entry(&p.category)
            .or_default()
            .extend(p.title.split_whitespace().skip(1));
    }
    let mut out: Vec<Product> = real.to_vec();
    while out.len() < n {
        let i = out.len();
        let model = &real[rng.random_range(0..real.len())];
        let pool = &words[model.category.as_str()];
        let len = rng.random_range(2..6);
        let mut title = vec![model.brand.clone()];
        for _ in 0..len {
            title.push(pool[rng.random_range(0..pool.len())].to_string());
        }
        title.push(format!(
            "{}{}",
            ["X", "Pro", "M", "S"][i % 4],
            rng.random_range(100..9999)
        ));
        let title = title.join(" ");
        let (top, sub) = model
            .category
            .split_once('/')
            .unwrap_or((&model.category, ""));
        let factor = rng.random_range(0.6..1.4);
        out.push(Product {
            id: format!("gen-{i:07}"),
            sku: format!("GEN-{i:07}"),
            description: format!("{title}: {} from the {top} range.", sub.to_lowercase()),
            title,
            price_minor: ((model.price_minor as f64) * factor) as u64,
            updated_at_ms: 1_700_000_000_000 + i as i64,
            in_stock: Some(rng.random_bool(0.9)),
            ..model.clone()
        });
    }
    out
}

/// A realistic mix of queries from the real vocabulary: (kind, parameters).
fn query_mix(
    real: &[Product],
    n: usize,
    seed: u64,
) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let words: Vec<String> = real
        .iter()
        .flat_map(|p| {
            p.title
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_lowercase)
        })
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let p = &real[rng.random_range(0..real.len())];
        let title_words: Vec<String> = p
            .title
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 3)
            .map(str::to_lowercase)
            .collect();
        let any = words[rng.random_range(0..words.len())].clone();
        let roll: f64 = rng.random();
        let (kind, params) = if roll < 0.25 {
            ("single word", vec![("q", format!("{any} "))])
        } else if roll < 0.40 && title_words.len() >= 2 {
            (
                "two words",
                vec![("q", format!("{} {} ", title_words[0], title_words[1]))],
            )
        } else if roll < 0.50 && title_words.len() >= 2 {
            (
                "phrase",
                vec![("q", format!("\"{} {}\"", title_words[0], title_words[1]))],
            )
        } else if roll < 0.65 {
            let w = title_words
                .iter()
                .find(|w| w.len() >= 6)
                .cloned()
                .unwrap_or_else(|| any.clone());
            ("typo", vec![("q", format!("{} ", typo(&w, &mut rng)))])
        } else if roll < 0.80 {
            let w = title_words.first().cloned().unwrap_or_else(|| any.clone());
            let cut = (w.len() / 2).max(2).min(w.len());
            ("prefix", vec![("q", w[..cut].to_string())])
        } else {
            let top = p.top_category().to_string();
            let max = format!("{}", (p.price_minor / 100).max(5) * 2);
            (
                "filtered",
                vec![
                    ("q", format!("{any} ")),
                    ("category", top),
                    ("max_price", max),
                    ("in_stock", "true".into()),
                ],
            )
        };
        out.push((kind, params));
    }
    out
}

/// One adjacent transposition in the middle of the word.
fn typo(word: &str, rng: &mut StdRng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.len() >= 4 {
        let i = rng.random_range(1..c.len() - 2);
        c.swap(i, i + 1);
    }
    c.into_iter().collect()
}

struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    hits_per_query: f64,
    errors: usize,
}

fn figures(mut micros: Vec<i64>, hits: usize, errors: usize, elapsed: Duration) -> Figures {
    micros.sort_unstable();
    let n = micros.len().max(1);
    Figures {
        rate: micros.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&micros, 0.50) as f64 / 1e3,
        p99_ms: percentile(&micros, 0.99) as f64 / 1e3,
        hits_per_query: hits as f64 / n as f64,
        errors,
    }
}

/// `clients` OS threads calling `work(i)` back to back for `seconds`.
fn run_threads(
    clients: usize,
    seconds: Duration,
    work: impl Fn(usize) -> usize + Send + Sync + 'static,
) -> Figures {
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let work = work.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut micros = Vec::new();
                let mut hits = 0;
                while started.elapsed() < seconds {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    hits += work(i);
                    micros.push(t.elapsed().as_micros() as i64);
                }
                (micros, hits)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut hits = 0;
    for h in handles {
        if let Ok((m, n)) = h.join() {
            all.extend(m);
            hits += n;
        }
    }
    figures(all, hits, 0, started.elapsed())
}

/// `clients` tasks awaiting `work(i)` back to back for `seconds` (`usize::MAX` = an error).
async fn run_tasks<F, Fut>(clients: usize, seconds: Duration, work: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let work = work.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut micros = Vec::new();
                let mut hits = 0;
                let mut errors = 0;
                while started.elapsed() < seconds {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let n = work(i).await;
                    micros.push(t.elapsed().as_micros() as i64);
                    if n == usize::MAX {
                        errors += 1;
                    } else {
                        hits += n;
                    }
                }
                (micros, hits, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut hits, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((m, h, e)) = t.await {
            all.extend(m);
            hits += h;
            errors += e;
        }
    }
    figures(all, hits, errors, started.elapsed())
}

/// The query service's router on an ephemeral loopback port.
async fn serve(engine: Arc<Engine>) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let status = Arc::new(std::sync::Mutex::new(search::indexer::Status {
        ready: true,
        ..Default::default()
    }));
    let (rebuilds, _) = tokio::sync::mpsc::channel(1);
    let registry = prometheus::Registry::new();
    let api = search::http::Api {
        engine,
        status,
        rebuilds,
        metrics: search::indexer::IndexMetrics::new(&registry),
        fault_injection: false,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, search::http::router(api)).await;
    });
    Ok((addr, server))
}
