//! `fleet bench registry`: the schema registry's throughput over HTTP on loopback.
//!
//! Measures, with a bounded number of requests in flight: registrations of new distinct
//! schemas (each one a write acknowledged by Kafka before the registry answers), idempotent
//! re-registrations of the same schemas (answered from memory), and lookups of schemas by
//! id (`GET /schemas/ids/{id}`, what every consumer does on an unknown id). The figures are
//! for the registry of the running stack, whose storage is the `_schemas` topic on the
//! stack's broker; the same workload then runs against an in-process registry with memory
//! storage, so the cost of the Kafka acknowledgement shows beside it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::check;
use crate::{Error, Result};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// `fleet bench registry`.
#[derive(clap::Args)]
pub struct Args {
    /// New distinct schemas to register (one subject each).
    #[arg(long, default_value_t = 500)]
    schemas: usize,
    /// `GET /schemas/ids/{id}` requests.
    #[arg(long, default_value_t = 20_000)]
    lookups: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

pub async fn registry(args: Args) -> Result<()> {
    let Args {
        schemas,
        lookups,
        concurrency,
    } = args;
    if schemas == 0 || concurrency == 0 {
        return Err(Error::Invalid(
            "--schemas and --concurrency must be positive".into(),
        ));
    }
    let env = runtime::StackEnv::from_env()?;
    println!(
        "workload: {schemas} distinct schemas (one subject each), {lookups} id lookups, at most {concurrency} requests in flight, HTTP/1.1 keep-alive on loopback"
    );
    let stack = Bench::new(&env.registry_url);
    stack.probe().await.map_err(|source| Error::NoRegistry {
        url: env.registry_url.clone(),
        source: Box::new(source),
    })?;
    println!(
        "\nregistry of the running stack, {}: Kafka-backed (state in the `_schemas` topic on broker {}, nisshi SQLite as `fleet stack up` starts it; its own process, from the build that started the stack)",
        env.registry_url, env.bootstrap_servers
    );
    stack.run(schemas, lookups, concurrency).await?;

    let (address, shutdown, server) = in_process_memory_registry().await?;
    let memory = Bench::new(&format!("http://{address}"));
    println!(
        "\nin-process registry (this process), http://{address}: memory storage, no Kafka write (client and server share this process's cores)"
    );
    let measured = memory.run(schemas, lookups, concurrency).await;
    shutdown.cancel();
    let _ = server.await;
    measured
}

/// One registry under test.
struct Bench {
    base: String,
    http: reqwest::Client,
}

/// Throughput and latency of one phase.
struct Phase {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn print(&mut self, label: &str) {
        self.latencies.sort_unstable();
        let at = |q: f64| {
            let index = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
            self.latencies
                .get(index)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "  {label:<34} {:>9.0} /s   ({} requests in {:.2}s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
            self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.requests,
            self.elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

impl Bench {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    async fn probe(&self) -> Result<()> {
        let response = self
            .http
            .get(format!("{}/subjects", self.base))
            .send()
            .await?;
        check!(
            response.status().is_success(),
            "GET /subjects: {}",
            response.status()
        );
        Ok(())
    }

    async fn run(&self, schemas: usize, lookups: usize, concurrency: usize) -> Result<()> {
        let stamp = runtime::now_ms();
        let work: Vec<(String, String)> = (0..schemas)
            .map(|i| {
                (
                    format!("bench.registry.{stamp}.{i}-value"),
                    distinct_schema(stamp, i),
                )
            })
            .collect();

        let (mut phase, ids) = self.register_all(&work, concurrency).await?;
        phase.print("registrations (new schemas)");
        let (mut phase, again) = self.register_all(&work, concurrency).await?;
        check!(again == ids, "re-registration returned other ids");
        phase.print("re-registrations (idempotent)");
        let mut phase = self.lookup_all(&ids, lookups, concurrency).await?;
        phase.print("id lookups GET /schemas/ids/{id}");
        let mut phase = self.lookup_all(&ids, lookups.min(2_000), 1).await?;
        phase.print("id lookups, one at a time");

        // Leave the registry as it was (not timed).
        futures::stream::iter(&work)
            .map(|(subject, _)| self.forget(subject))
            .buffer_unordered(concurrency)
            .collect::<Vec<()>>()
            .await;
        Ok(())
    }

    /// Registers every (subject, schema) with at most `concurrency` requests in flight;
    /// returns the ids in `work` order.
    async fn register_all(
        &self,
        work: &[(String, String)],
        concurrency: usize,
    ) -> Result<(Phase, Vec<u32>)> {
        let started = Instant::now();
        let results: Vec<(usize, Result<(u32, Duration)>)> =
            futures::stream::iter(work.iter().enumerate())
                .map(|(index, (subject, schema))| async move {
                    (index, self.register(subject, schema).await)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        let elapsed = started.elapsed();
        let mut ids = vec![0; work.len()];
        let mut latencies = Vec::with_capacity(work.len());
        for (index, result) in results {
            let (id, latency) = result?;
            ids[index] = id;
            latencies.push(latency);
        }
        Ok((
            Phase {
                requests: work.len(),
                elapsed,
                latencies,
            },
            ids,
        ))
    }

    async fn register(&self, subject: &str, schema: &str) -> Result<(u32, Duration)> {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("Content-Type", CONTENT_TYPE)
            .body(json!({ "schema": schema }).to_string())
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        let latency = started.elapsed();
        match body["id"].as_u64().and_then(|id| u32::try_from(id).ok()) {
            Some(id) if status.is_success() => Ok((id, latency)),
            _ => Err(Error::Check(format!(
                "registering under {subject}: HTTP {status} {body}"
            ))),
        }
    }

    /// `requests` lookups cycling over `ids`, each answer checked.
    async fn lookup_all(&self, ids: &[u32], requests: usize, concurrency: usize) -> Result<Phase> {
        let started = Instant::now();
        let results: Vec<Result<Duration>> = futures::stream::iter(0..requests)
            .map(|n| self.lookup(ids[n % ids.len()]))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed();
        let latencies = results.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Phase {
            requests,
            elapsed,
            latencies,
        })
    }

    async fn lookup(&self, id: u32) -> Result<Duration> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}/schemas/ids/{id}", self.base))
            .header("Accept", CONTENT_TYPE)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        check!(
            status.is_success() && body.starts_with(b"{\"schema\""),
            "GET /schemas/ids/{id}: HTTP {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(started.elapsed())
    }

    async fn forget(&self, subject: &str) {
        for query in ["", "?permanent=true"] {
            let _ = self
                .http
                .delete(format!("{}/subjects/{subject}{query}", self.base))
                .send()
                .await;
        }
    }
}

/// A record schema no earlier run registered: its field name carries the run and index.
fn distinct_schema(stamp: i64, index: usize) -> String {
    json!({
        "type": "record",
        "name": "BenchRecord",
        "namespace": "storefleet.bench",
        "fields": [
            {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": format!("value_{stamp}_{index}"), "type": ["null", "long"], "default": null}
        ]
    })
    .to_string()
}

async fn in_process_memory_registry() -> Result<(
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
)> {
    let shutdown = CancellationToken::new();
    let (ready, bound) = oneshot::channel();
    let config = registry::RegistryConfig {
        listen: "127.0.0.1:0".parse()?,
        storage: registry::Storage::Memory,
    };
    let token = shutdown.clone();
    // Owner: the caller, through the returned token and handle.
    let server = tokio::spawn(async move {
        if let Err(error) = registry::serve(config, token, Some(ready)).await {
            tracing::warn!(%error, "in-process registry stopped");
        }
    });
    let address = bound.await.map_err(Error::RegistryDidNotStart)?;
    Ok((address, shutdown, server))
}
