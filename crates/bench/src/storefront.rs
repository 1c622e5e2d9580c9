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

use loadgen::orders::Zipf;
use rand::Rng;
use topology::Topology;

use crate::error::check;
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
    let front = crate::front::start(topology, &env, "bench-sf", bench.concurrency).await?;
    println!(
        "storefront at {}: {} products, {} clients, {} s per phase, Redis {}",
        front.base,
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
    let zipf = Arc::new(Zipf::new(products.len(), 1.0));
    let run = runtime::now_ms();
    for phase in [
        Phase::ProductZipf,
        Phase::ProductUniform,
        Phase::CartWrite,
        Phase::CartRead,
    ] {
        let (http, base, key) = (front.http.clone(), front.base.clone(), front.key.clone());
        let (products, zipf) = (products.clone(), zipf.clone());
        let m = crate::front::hammer(bench.concurrency, bench.seconds, move |c, rng| {
            let user = format!("bench-{run}-{c}");
            let product = match phase {
                Phase::ProductZipf => &products[zipf.sample(rng)],
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
            }
            .header("x-api-key", &key);
            async move {
                match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await?;
        println!(
            "{:<40} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8}",
            phase.label(),
            m.micros.len(),
            m.per_second,
            m.ms(0.50),
            m.ms(0.95),
            m.ms(0.99),
            m.errors
        );
    }
    front.stop().await;
    Ok(())
}
