//! `fleet bench recs`: the recommendations model at the seed's scale, beside the `implicit`
//! library on the very same matrix in the same run, then serving through the storefront.
//!
//! 1. A synthetic shop (`recs::synth`: Zipf item popularity, topic affinities, log-normal user
//!    activity; default 100,000 users × 20,000 items), deterministic by seed.
//! 2. Ours: ALS seconds per iteration (64 factors, conjugate gradient), then top-K for every
//!    user with what they interacted with excluded.
//! 3. `implicit` (PyPI, CPU ALS with CG, BLAS on one thread, `--threads` threads) on the same
//!    triples file: the same two figures; the ratios are ours ÷ implicit's.
//! 4. Serving ([`crate::recs_serving`]): every user's list published to a Redis database of
//!    the bench's own, then `GET /v1/recommendations/{user}` through a storefront instance in
//!    this process at 1 and 8 clients, beside the bare Redis read.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use recommendations::evaluate::{save, Reference};
use recs::synth::{generate, to_matrix, SynthConfig};
use recs::{recommend_all, train, AlsParams};
use topology::Topology;

use crate::error::check;
use crate::Result;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    #[arg(long, default_value_t = 20_000)]
    items: usize,
    #[arg(long, default_value_t = 64)]
    factors: usize,
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// Threads for ours and for `implicit` alike.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// List length.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Skip the `implicit` reference (no Python environment needed).
    #[arg(long)]
    no_reference: bool,
    /// Seconds per serving row (0 skips serving).
    #[arg(long, default_value_t = 10)]
    serve_seconds: u64,
    /// The Redis database (on the stack's server) the serving lists go to.
    #[arg(long, default_value_t = 9)]
    redis_db: u32,
}

pub async fn recs(root: &Path, topology: &Topology, bench: Args) -> Result<()> {
    check!(bench.threads > 0, "--threads must be at least 1");
    let config = SynthConfig {
        users: bench.users,
        items: bench.items,
        ..SynthConfig::default()
    };
    let params = AlsParams {
        factors: bench.factors,
        iterations: bench.iterations,
        threads: bench.threads,
        ..AlsParams::default()
    };
    let k = bench.k;
    let (matrix, lists, ours) = tokio::task::spawn_blocking({
        let params = params.clone();
        move || -> Result<_> {
            let started = Instant::now();
            let log = generate(&config);
            let matrix = to_matrix(&log, config.users, config.items)
                .map_err(|e| crate::Error::Check(e.to_string()))?;
            println!(
                "synthetic shop: {} users × {} items, {} events → {} user-item pairs ({:.3}% dense), made in {:.1} s",
                matrix.rows(),
                matrix.cols(),
                log.len(),
                matrix.nnz(),
                100.0 * matrix.nnz() as f64 / (matrix.rows() * matrix.cols()) as f64,
                started.elapsed().as_secs_f64()
            );
            println!(
                "ALS: {} factors, regularization {}, alpha {}, {} iterations, {} CG steps, {} threads",
                params.factors,
                params.regularization,
                params.alpha,
                params.iterations,
                params.cg_steps,
                params.threads
            );
            let mut each = Vec::new();
            let model = train(&matrix, &params, |s| each.push(s.elapsed.as_secs_f64()))
                .map_err(|e| crate::Error::Check(e.to_string()))?;
            let per_iteration = each.iter().sum::<f64>() / each.len().max(1) as f64;
            let started = Instant::now();
            let lists = recommend_all(&model, k, Some(&matrix), &[], params.threads)
                .map_err(|e| crate::Error::Check(e.to_string()))?;
            let topk = started.elapsed().as_secs_f64();
            Ok((matrix, lists, (per_iteration, topk)))
        }
    })
    .await??;

    let reference = if bench.no_reference {
        None
    } else {
        let scratch = tempfile::tempdir()?;
        let file = scratch.path().join("synthetic.triples");
        let (root, params) = (root.to_path_buf(), params.clone());
        let answer = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
            save(&matrix, &file).map_err(|e| crate::Error::Check(e.to_string()))?;
            let r = Reference::prepare(&root).map_err(|e| crate::Error::Check(e.to_string()))?;
            r.run(&file, None, &params, k, &[])
                .map_err(|e| crate::Error::Check(e.to_string()))
        })
        .await??;
        Some(answer)
    };
    println!(
        "\n{:<44} {:>12} {:>16} {:>8}",
        "figure (same matrix, same threads)", "ours", "implicit", "ratio"
    );
    let theirs = |key: &str| reference.as_ref().and_then(|j| j[key].as_f64());
    for (label, ours, theirs, shown) in [
        (
            "ALS seconds per iteration".to_string(),
            ours.0,
            theirs("seconds_per_iteration"),
            format!("{:.3}", ours.0),
        ),
        (
            format!("top-{k} for all users, seconds"),
            ours.1,
            theirs("topk_seconds"),
            format!("{:.2}", ours.1),
        ),
    ] {
        match theirs {
            Some(t) => println!("{label:<44} {shown:>12} {t:>16.3} {:>7.2}x", ours / t),
            None => println!("{label:<44} {shown:>12} {:>16} {:>8}", "(not run)", "-"),
        }
    }
    if let Some(j) = &reference {
        println!(
            "implicit {} (CPU ALS, conjugate gradient, BLAS on one thread)",
            j["implicit_version"].as_str().unwrap_or("?")
        );
    }

    if bench.serve_seconds == 0 {
        return Ok(());
    }
    let env = runtime::StackEnv::from_env()?;
    let redis_url = with_database(&env.redis_url, bench.redis_db);
    let version = format!("vbench{}", runtime::now_ms());
    let users: Vec<String> = (0..lists.len())
        .map(|u| format!("bench-user-{u}"))
        .collect();
    let values: Vec<(String, String)> = users
        .iter()
        .enumerate()
        .map(|(u, user)| {
            let items: Vec<recommendations::lists::Item> = lists
                .ids(u)
                .iter()
                .zip(lists.scores(u))
                .map(|(i, s)| recommendations::lists::Item {
                    product_id: format!("bench-product-{i}"),
                    score: *s,
                    reason: "cf",
                })
                .collect();
            (
                recommendations::published::user_key(&version, user),
                recommendations::published::encode(&version, &items),
            )
        })
        .collect();
    let keys = values.len();
    let seconds = crate::recs_serving::publish(&redis_url, &version, values).await?;
    println!(
        "\npublished {keys} lists to {redis_url} in {seconds:.2} s ({:.0} keys/s, pipelined)",
        keys as f64 / seconds
    );
    crate::recs_serving::serve(
        topology,
        &redis_url,
        Arc::new(users),
        bench.serve_seconds,
        &[1, 8],
    )
    .await
}

/// `url` (a Redis URL) pointing at database `db`.
fn with_database(url: &str, db: u32) -> String {
    let trimmed = url.trim_end_matches('/');
    let base = match trimmed.rsplit_once('/') {
        Some((head, tail)) if head.ends_with('/') || !tail.chars().all(|c| c.is_ascii_digit()) => {
            trimmed
        }
        Some((head, _)) => head,
        None => trimmed,
    };
    format!("{base}/{db}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_serving_database_replaces_the_urls_own() {
        for (url, want) in [
            ("redis://127.0.0.1:16379/", "redis://127.0.0.1:16379/9"),
            ("redis://127.0.0.1:16379", "redis://127.0.0.1:16379/9"),
            ("redis://127.0.0.1:16379/2", "redis://127.0.0.1:16379/9"),
        ] {
            assert_eq!(super::with_database(url, 9), want, "{url}");
        }
    }
}
