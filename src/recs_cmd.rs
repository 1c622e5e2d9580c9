//! `fleet recs`: a training run on demand, and the offline evaluation.

use clap::Subcommand;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

#[derive(Subcommand)]
pub enum RecsAction {
    /// Train now from the interaction store, swap the new lists into Redis and publish them
    /// (the same run the schedule makes; waits if another run holds the lock).
    Train,
    /// Offline quality: a time split (80% past / 20% future) of MovieLens-100K and of the
    /// Superstore purchases, precision/MAP/NDCG@10 of the ALS model against a popularity
    /// baseline and the `implicit` library on the same split (fetches the data sets and the
    /// Python environment into the cache on first use).
    Evaluate {
        /// Threads for training and ranking (the reference gets as many).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Skip the `implicit` reference (no Python environment needed).
        #[arg(long)]
        no_reference: bool,
        /// Instead, print the hyperparameter grid on MovieLens' validation split (cut from
        /// the training period only) that chose the evaluation's parameters.
        #[arg(long)]
        tune: bool,
    },
}

pub async fn run(topology: &Topology, action: RecsAction) -> anyhow::Result<()> {
    match action {
        RecsAction::Train => train(topology).await,
        RecsAction::Evaluate {
            threads,
            no_reference,
            tune,
        } => {
            let repo = topology
                .schema_dir
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf();
            tokio::task::spawn_blocking(move || {
                if tune {
                    let log = recommendations::evaluate::movielens(&fetched(
                        &repo,
                        "scripts/fetch-movielens.sh",
                    )?)?;
                    for line in recommendations::evaluate::tune(&log, threads)? {
                        println!("{line}");
                    }
                    Ok(())
                } else {
                    evaluate(&repo, threads, !no_reference)
                }
            })
            .await?
        }
    }
}

/// A data set's path, from the script that fetches it into the cache (its last line).
fn fetched(repo: &std::path::Path, script: &str) -> anyhow::Result<std::path::PathBuf> {
    let out = std::process::Command::new("bash")
        .arg(repo.join(script))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(path.into())
}

fn evaluate(repo: &std::path::Path, threads: usize, reference: bool) -> anyhow::Result<()> {
    use recommendations::evaluate as ev;
    println!("fetching the data sets (cached after the first run)…");
    let movielens = ev::movielens(&fetched(repo, "scripts/fetch-movielens.sh")?)?;
    let superstore = ev::superstore(&fetched(repo, "scripts/fetch-dataset.sh")?)?;
    let reference = if reference {
        println!("preparing the `implicit` reference (scripts/recs-env.sh)…");
        Some(ev::Reference::prepare(repo)?)
    } else {
        None
    };
    let scratch = tempfile::tempdir()?;
    let params = ev::movielens_params(threads);
    println!(
        "ALS: {} factors, regularization {}, alpha {}, {} iterations, {} CG steps, {threads} threads",
        params.factors, params.regularization, params.alpha, params.iterations, params.cg_steps
    );
    for (name, log) in [("movielens-100k", &movielens), ("superstore", &superstore)] {
        let e = ev::run(name, log, &params, reference.as_ref(), scratch.path())?;
        println!();
        for line in e.report() {
            println!("{line}");
        }
    }
    Ok(())
}

async fn train(topology: &Topology) -> anyhow::Result<()> {
    let (spec, params) = topology
        .processors
        .iter()
        .find_map(|(spec, params)| match params {
            ProcessorParams::Recommendations(p) => Some((spec, p.clone())),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("the topology has no recommendations processor"))?;
    let config = runtime::RuntimeConfig::from_spec(spec, 0, runtime::StackEnv::from_env()?)?;
    let shutdown = CancellationToken::new();
    let trainer = recommendations::trainer(config, topology, spec, params, &shutdown)
        .await?
        .ok_or_else(|| anyhow::anyhow!("stopped before the trainer started"))?;
    println!("training from the interaction store…");
    loop {
        match trainer.run("manual").await? {
            Some(report) => {
                println!(
                    "version {}: {} users × {} items ({} pairs from {} interactions, {} hidden)",
                    report.version,
                    report.users,
                    report.items,
                    report.pairs,
                    report.interactions,
                    report.hidden_items
                );
                println!(
                    "read {} ms, train {} ms ({} iterations), rank {} ms, redis {} keys in {} ms, {} lists published; replaced {}, {} old keys deleted; total {} ms",
                    report.read_ms,
                    report.train_ms,
                    report.iteration_ms.len(),
                    report.rank_ms,
                    report.redis_keys,
                    report.redis_ms,
                    report.summaries,
                    report.replaced.as_deref().unwrap_or("nothing"),
                    report.deleted_keys,
                    report.total_ms
                );
                return Ok(());
            }
            None => {
                println!("another run holds the training lock; waiting");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}
