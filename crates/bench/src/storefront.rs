//! `fleet bench storefront`: requests/s and latency of the storefront's cart and product
//! endpoints. One storefront instance runs in this process on the stack (its Redis, the
//! seeded catalog database, a private key database, private topics); `--concurrency`
//! keep-alive HTTP clients in this process send requests back to back for `--seconds` per
//! phase. Client and server share the machine's cores, so the figures are a floor.
//!
//! Phases:
//! 1. product pages, Zipf-popular (mostly the in-process hot tier and Redis);
//! 2. product pages, uniform over the catalog (Redis, after the first read of each);
//! 3. cart line updates (Lua script in Redis), one cart per client, over 40 products;
//! 4. cart reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::orders::Zipf;
use loadgen::percentile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::error::{check, missing};
use crate::harness::private_database;
use crate::Result;

/// `fleet bench storefront`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// HTTP clients sending back to back.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[derive(Clone, Copy)]
enum Phase {
    ProductZipf,
    ProductUniform,
    CartWrite,
    CartRead,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::ProductZipf => "GET /v1/products/{id} (Zipf)",
            Phase::ProductUniform => "GET /v1/products/{id} (uniform)",
            Phase::CartWrite => "PUT /v1/carts/{user}/lines/{product}",
            Phase::CartRead => "GET /v1/carts/{user}",
        }
    }
}

pub async fn storefront(topology: &Topology, bench: Args) -> Result<()> {
    let env = runtime::StackEnv::from_env()?;
    let suffix = format!("bench-sf-{}", runtime::now_ms());
    let mut t = topology
        .isolated_all(&["storefront"], &suffix)
        .ok_or_else(missing("no storefront processor"))?;
    let (keys_db, keys_url) = private_database(topology, &env, "storefront", &suffix).await?;
    let port = stack::free_port()?;
    for (_, params) in &mut t.processors {
        if let ProcessorParams::Storefront(p) = params {
            p.database = keys_db.clone();
            p.http_port = port;
            // The bench measures the service, not the limiter.
            p.key_rate_per_sec = 1_000_000;
            p.key_burst = 1_000_000;
            p.ip_rate_per_sec = 1_000_000;
            p.ip_burst = 1_000_000;
        }
    }
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let catalog_url = runtime::postgres_database_url(&env.postgres_url, "catalog")?;
    let db = stack::connect_postgres(&catalog_url).await?;
    let products: Vec<String> = db
        .query("SELECT id::text FROM products ORDER BY sku", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    check!(
        !products.is_empty(),
        "the catalog is empty: run `fleet seed` first"
    );
    let key = storefront::keys::create(&keys_url, "bench").await?;

    let token = CancellationToken::new();
    let server = wiring::spawn_processor(&t, "storefront", &env, &token)?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(bench.concurrency)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        check!(Instant::now() < deadline, "the storefront did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "storefront at {base}: {} products, {} clients, {} s per phase, Redis {}",
        products.len(),
        bench.concurrency,
        bench.seconds,
        env.redis_url
    );
    println!(
        "{:<40} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "phase", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let products = Arc::new(products);
    for phase in [
        Phase::ProductZipf,
        Phase::ProductUniform,
        Phase::CartWrite,
        Phase::CartRead,
    ] {
        let stop_at = Instant::now() + Duration::from_secs(bench.seconds);
        let started = Instant::now();
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..bench.concurrency {
            let (http, base, key, products) =
                (http.clone(), base.clone(), key.clone(), products.clone());
            let user = format!("bench-{suffix}-{c}");
            clients.spawn(async move {
                let mut rng = StdRng::seed_from_u64(c as u64);
                let zipf = Zipf::new(products.len(), 1.0);
                let mut micros = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < stop_at {
                    let product = match phase {
                        Phase::ProductZipf => &products[zipf.sample(&mut rng)],
                        // A cart holds at most 50 lines: each client works on 40 products.
                        Phase::CartWrite => &products[rng.random_range(0..products.len().min(40))],
                        _ => &products[rng.random_range(0..products.len())],
                    };
                    let request = match phase {
                        Phase::ProductZipf | Phase::ProductUniform => {
                            http.get(format!("{base}/v1/products/{product}"))
                        }
                        Phase::CartWrite => http
                            .put(format!("{base}/v1/carts/{user}/lines/{product}"))
                            .json(&serde_json::json!({"quantity": rng.random_range(1..=3)})),
                        Phase::CartRead => http.get(format!("{base}/v1/carts/{user}")),
                    };
                    let sent = Instant::now();
                    match request.header("x-api-key", &key).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            micros.push(sent.elapsed().as_micros() as i64);
                        }
                        _ => errors += 1,
                    }
                }
                (micros, errors)
            });
        }
        let mut all = Vec::new();
        let mut errors = 0;
        while let Some(done) = clients.join_next().await {
            let (micros, e) = done?;
            all.extend(micros);
            errors += e;
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let ms = |p| percentile(&all, p) as f64 / 1000.0;
        println!(
            "{:<40} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8}",
            phase.label(),
            all.len(),
            all.len() as f64 / secs,
            ms(0.50),
            ms(0.95),
            ms(0.99),
            errors
        );
    }
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}
