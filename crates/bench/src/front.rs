//! What the HTTP benches share: one storefront instance in this process (isolated topics, a
//! private key database, the limiter off: a bench measures the service, not the limiter), and
//! closed-loop clients timing requests back to back.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::error::{check, missing};
use crate::harness::private_database;
use crate::Result;

pub struct Front {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An API key of its own.
    pub key: String,
    pub http: reqwest::Client,
    token: CancellationToken,
    server: tokio::task::JoinHandle<wiring::Result<()>>,
}

/// Starts the storefront of `topology` in this process on `env` (its Redis, PostgreSQL and
/// broker) and waits until it answers `/health`.
pub async fn start(
    topology: &Topology,
    env: &runtime::StackEnv,
    label: &str,
    clients: usize,
) -> Result<Front> {
    let suffix = format!("{label}-{}", runtime::now_ms());
    let mut t = topology
        .isolated_all(&["storefront"], &suffix)
        .ok_or_else(missing("no storefront processor"))?;
    t.processors.retain(|(p, _)| p.name == "storefront");
    let (keys_db, keys_url) = private_database(topology, env, "storefront", &suffix).await?;
    let port = stack::free_port()?;
    for (_, params) in &mut t.processors {
        if let ProcessorParams::Storefront(p) = params {
            p.database = keys_db.clone();
            p.http_port = port;
            p.key_rate_per_sec = 1_000_000;
            p.key_burst = 1_000_000;
            p.ip_rate_per_sec = 1_000_000;
            p.ip_burst = 1_000_000;
        }
    }
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let key = storefront::keys::create(&keys_url, "bench").await?;
    let token = CancellationToken::new();
    let server = wiring::spawn_processor(&t, "storefront", env, &token)?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
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
    Ok(Front {
        base,
        key,
        http,
        token,
        server,
    })
}

impl Front {
    pub async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

/// What [`hammer`] measured.
pub struct Measured {
    /// Latencies of the successful requests, µs, sorted.
    pub micros: Vec<i64>,
    pub per_second: f64,
    pub errors: u64,
}

impl Measured {
    /// The `p` quantile, ms.
    pub fn ms(&self, p: f64) -> f64 {
        loadgen::percentile(&self.micros, p) as f64 / 1000.0
    }
}

/// `clients` loops, each calling `call(client, rng)` back to back for `seconds` and timing the
/// future it returns (`true`: success). Each client's `rng` is seeded by its number.
pub async fn hammer<F, Fut>(clients: usize, seconds: u64, call: F) -> Result<Measured>
where
    F: Fn(usize, &mut StdRng) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(c as u64);
            let mut micros = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < stop_at {
                let request = call(c, &mut rng);
                let sent = Instant::now();
                if request.await {
                    micros.push(sent.elapsed().as_micros() as i64);
                } else {
                    errors += 1;
                }
            }
            (micros, errors)
        });
    }
    let mut micros = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (m, e) = done?;
        micros.extend(m);
        errors += e;
    }
    micros.sort_unstable();
    let per_second = micros.len() as f64 / started.elapsed().as_secs_f64();
    Ok(Measured {
        micros,
        per_second,
        errors,
    })
}
