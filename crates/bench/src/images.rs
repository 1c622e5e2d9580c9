//! `fleet bench images`: image-quality throughput.
//!
//! 1. **CPU, per core** ([`crate::images_cpu`]): decoding and scoring ~1-megapixel JPEGs
//!    (`scripts/fetch-photos.sh`'s `bench/`) from memory on one thread, beside OpenCV
//!    (`cv2.imdecode` grayscale + Laplacian variance, one thread) on the same files in the same
//!    run.
//! 2. **End to end**: the image-quality processor (in this process, `cpu_threads` of the
//!    machine's cores) on private topics and a private verdicts database, downloading the same
//!    files from a local HTTP server in this process: requests produced at once, verdicts read
//!    back from the results topic; images/s and request → verdict latency.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::IntoResponse;
use codec::RegistryClient;
use events::images::{ImageCheckRequested, ImageCheckResult, ImageCheckStatus};
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::percentile;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

use crate::error::{check, missing};
use crate::harness::{codec, private_database};
use crate::Result;

/// `fleet bench images`.
#[derive(clap::Args)]
pub struct Args {
    /// Seconds of the CPU comparison, each side.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Images through the processor end to end (0: skip that part).
    #[arg(long, default_value_t = 2_000)]
    images: usize,
    /// The processor's CPU pool (threads) end to end.
    #[arg(long, default_value_t = 2)]
    cpu_threads: usize,
    /// Checks in flight end to end.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

fn env_path(name: &str, script: &str) -> Result<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(missing(format!(
            "{name} (run `export {name}=$(bash {script})` first)"
        )))
}

pub async fn images(topology: &Topology, bench: Args) -> Result<()> {
    let photos = env_path("STOREFLEET_PHOTOS", "scripts/fetch-photos.sh")?;
    let python = env_path("STOREFLEET_IMAGES_PY", "scripts/images-env.sh")?;
    let dir = photos.join("bench");
    let seconds = bench.seconds;
    let cpu = {
        let (dir, python) = (dir.clone(), python.clone());
        tokio::task::spawn_blocking(move || crate::images_cpu::run(&dir, &python, seconds))
            .await
            .map_err(|e| crate::Error::Check(format!("the CPU bench panicked: {e}")))??
    };
    cpu.print();
    if bench.images > 0 {
        end_to_end(topology, &dir, &bench).await?;
    }
    Ok(())
}

async fn serve_file(
    State(files): State<Arc<Vec<Vec<u8>>>>,
    UrlPath(n): UrlPath<usize>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/jpeg")],
        files[n % files.len()].clone(),
    )
}

async fn end_to_end(topology: &Topology, dir: &std::path::Path, bench: &Args) -> Result<()> {
    let env = runtime::StackEnv::from_env()?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jpg") {
            files.push(std::fs::read(&path)?);
        }
    }
    check!(!files.is_empty(), "no JPEGs in {}", dir.display());
    let bytes: usize = files.iter().map(Vec::len).sum::<usize>() / files.len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/img/{n}", axum::routing::get(serve_file))
        .with_state(Arc::new(files));
    let stop_host = CancellationToken::new();
    // Owner: this bench, which cancels `stop_host` and awaits the handle.
    let shutdown = stop_host.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });

    let suffix = format!("bench-images-{}", runtime::now_ms());
    let mut t = topology
        .isolated_all(&["image-quality"], &suffix)
        .ok_or_else(missing("no image-quality processor"))?;
    let (database, _) = private_database(topology, &env, "images", &suffix).await?;
    for (_, params) in &mut t.processors {
        if let ProcessorParams::ImageQuality(p) = params {
            p.database = database.clone();
            p.concurrency = bench.concurrency;
            p.cpu_threads = bench.cpu_threads;
            p.host_rate_per_sec = 1_000_000;
            p.host_burst = 1_000_000;
        }
    }
    stack::create_topics_at(&env.bootstrap_servers, &t).await?;
    let (spec, _) = t
        .processor("image-quality")
        .ok_or_else(missing("image-quality"))?;
    let requests = spec.inputs["requests"].topic.clone();
    let results = spec.outputs["results"].clone();
    let registry = RegistryClient::new(&env.registry_url);
    let request_codec = codec(&t, &registry, &requests, "images.check-requested.v1").await?;
    let result_codec = codec(&t, &registry, &results, "images.check-results.v1").await?;
    let batch: Vec<(String, Vec<u8>)> = (0..bench.images)
        .map(|n| {
            let id = format!("{suffix}-{n}");
            let r = ImageCheckRequested {
                event_id: runtime::ids::derived(&[&id]),
                occurred_at: runtime::now_ms(),
                correlation_id: id.clone(),
                causation_id: None,
                image_id: id.clone(),
                product_id: format!("p-{}", n / 2),
                url: format!("{host}/img/{n}"),
                seller_id: None,
            };
            Ok((id, request_codec.encode(&r)?))
        })
        .collect::<Result<_>>()?;
    let answers = reader(
        &env.bootstrap_servers,
        &results,
        &format!("{suffix}-answers"),
    )?;
    let token = CancellationToken::new();
    let task = wiring::spawn_processor(&t, "image-quality", &env, &token)?;
    println!(
        "end to end: {} requests for ~{} KB JPEGs from a local HTTP server; image-quality with \
         {} CPU thread(s), {} checks in flight",
        bench.images,
        bytes / 1024,
        bench.cpu_threads,
        bench.concurrency
    );
    let started = Instant::now();
    let sent_ms = runtime::now_ms();
    produce_all(&producer(&env.bootstrap_servers)?, &requests, batch).await?;
    let mut latency = Vec::with_capacity(bench.images);
    let mut seen_ids = std::collections::HashSet::new();
    let mut ok = 0usize;
    let mut last = started;
    while seen_ids.len() < bench.images {
        let seen = drain(&answers, 10_000, Duration::from_secs(30)).await;
        check!(
            !seen.is_empty(),
            "no verdicts for 30 s ({} of {})",
            seen_ids.len(),
            bench.images
        );
        for record in seen {
            let value = result_codec
                .decode(record.payload.as_deref().unwrap_or_default())
                .await?;
            let v: ImageCheckResult = codec::from_value(&value)?;
            if !seen_ids.insert(v.image_id) {
                continue;
            }
            ok += usize::from(v.status == ImageCheckStatus::Ok);
            let received_ms = runtime::now_ms() - record.received.elapsed().as_millis() as i64;
            latency.push(received_ms - sent_ms);
            last = record.received;
        }
    }
    let secs = (last - started).as_secs_f64();
    token.cancel();
    task.await??;
    stop_host.cancel();
    let _ = server.await;
    latency.sort_unstable();
    println!(
        "end to end: {} verdicts ({ok} OK) in {secs:.2} s = {:.1} images/s ({:.1} per CPU thread); \
         request -> verdict p50 {} ms, p99 {} ms (all requests sent at once)",
        bench.images,
        bench.images as f64 / secs.max(1e-9),
        bench.images as f64 / secs.max(1e-9) / bench.cpu_threads as f64,
        percentile(&latency, 0.50),
        percentile(&latency, 0.99),
    );
    stack::drop_database(&env.postgres_url, &database).await?;
    Ok(())
}
