//! `fleet images`: ad-hoc checks of URLs and files (for operators and sellers' support), the
//! verdicts on file by image and by product, the products flagged for review, and re-check
//! requests.

use std::path::Path;

use clap::Subcommand;
use events::images::ImageCheckRequested;
use image_quality::fetch::{FetchPolicy, Fetcher};
use image_quality::store::Store;
use topology::{ImageQualityParams, ProcessorParams, ProcessorSpec, Topology};

#[derive(Subcommand)]
pub enum ImagesAction {
    /// Check images now, without the fleet: each URL is downloaded with the processor's
    /// limits, each FILE read; prints the verdict and scores (one JSON line each with --json).
    Check {
        /// http(s) URLs or file paths.
        #[arg(required = true)]
        targets: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The verdict on file for an image id.
    Show { image_id: String },
    /// Every verdict on file for a product's images.
    Product { product_id: String },
    /// Products whose every checked image failed (flagged for a person to review).
    Review {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Verdicts on file by status.
    Stats,
    /// Ask for a re-check of images (by id, from the catalog's product_images rows): a record
    /// on the request topic, answered like an upload.
    Recheck {
        #[arg(required = true)]
        image_ids: Vec<String>,
    },
}

fn image_quality(topology: &Topology) -> anyhow::Result<(&ProcessorSpec, ImageQualityParams)> {
    topology
        .processors
        .iter()
        .find_map(|(spec, params)| match params {
            ProcessorParams::ImageQuality(p) if spec.inputs.contains_key("requests") => {
                Some((spec, p.clone()))
            }
            _ => None,
        })
        .ok_or_else(|| {
            anyhow::anyhow!("the topology has no image-quality processor reading requests")
        })
}

pub async fn run(topology: &Topology, action: ImagesAction) -> anyhow::Result<()> {
    let (spec, params) = image_quality(topology)?;
    match action {
        ImagesAction::Check { targets, json } => check(&params, &targets, json).await,
        ImagesAction::Recheck { image_ids } => recheck(topology, spec, &image_ids).await,
        action => {
            let stack = runtime::StackEnv::from_env()?;
            let url = runtime::postgres_database_url(&stack.postgres_url, &params.database)?;
            let tasks = tasks::Tasks::new(tokio_util::sync::CancellationToken::new());
            let store = Store::open(&url, 1, &tasks);
            let print = |v: &image_quality::store::StoredVerdict| {
                println!("{}", serde_json::to_string(v).unwrap_or_default())
            };
            match action {
                ImagesAction::Show { image_id } => match store.get(&image_id).await? {
                    Some(v) => print(&v),
                    None => anyhow::bail!("no verdict on file for image {image_id}"),
                },
                ImagesAction::Product { product_id } => {
                    let verdicts = store.by_product(&product_id).await?;
                    if verdicts.is_empty() {
                        anyhow::bail!("no verdict on file for product {product_id}'s images");
                    }
                    verdicts.iter().for_each(print);
                }
                ImagesAction::Review { limit } => {
                    let flagged = store.flagged(limit).await?;
                    println!(
                        "{} product(s) whose every checked image failed",
                        flagged.len()
                    );
                    for f in flagged {
                        println!(
                            "{}  {} image(s): {}",
                            f.product_id,
                            f.images,
                            f.image_ids.join(", ")
                        );
                    }
                }
                ImagesAction::Stats => {
                    for (status, n) in store.counts().await? {
                        println!("{status:<22} {n}");
                    }
                }
                _ => unreachable!("handled above"),
            }
            drop(store);
            tasks.drain(tasks::DRAIN_TIME).await;
            Ok(())
        }
    }
}

async fn check(params: &ImageQualityParams, targets: &[String], json: bool) -> anyhow::Result<()> {
    let fetcher = Fetcher::new(FetchPolicy::from_params(params), u32::MAX, u32::MAX);
    let policy = image_quality::checker_policy(params);
    for target in targets {
        let fetched = if target.starts_with("http://") || target.starts_with("https://") {
            fetcher
                .fetch(target)
                .await
                .map(|d| (d.bytes, d.content_type))
                .map_err(|e| e.detail().to_string())
        } else {
            read_capped(Path::new(target), params.max_bytes).map(|b| (b, None))
        };
        let line = match fetched {
            Err(error) => {
                serde_json::json!({"target": target, "status": "NOT_CHECKED", "error": error})
            }
            Ok((bytes, content_type)) => {
                let policy = policy.clone();
                let a = tokio::task::spawn_blocking(move || {
                    imageq::assess(&bytes, content_type.as_deref(), &policy)
                })
                .await?;
                serde_json::json!({
                    "target": target,
                    "status": if a.ok() { "OK" } else { "REJECTED" },
                    "reasons": a.reasons.iter().map(|r| image_quality::verdict::reason(*r).as_str()).collect::<Vec<_>>(),
                    "format": a.format.map(|f| f.mime()),
                    "width": a.width,
                    "height": a.height,
                    "orientation": a.orientation,
                    "size_bytes": a.size_bytes,
                    "blur_score": a.blur_score,
                    "tiers": a.tiers.as_ref().map(|t| serde_json::json!({"thumbnail": t.thumbnail, "zoom": t.zoom, "print": t.print})),
                    "watermark": a.watermark.as_ref().map(|w| serde_json::json!({"suspected": w.suspected, "score": w.score, "region": w.region})),
                    "detail": a.detail,
                })
            }
        };
        if json {
            println!("{line}");
        } else {
            println!("{}", human(&line));
        }
    }
    Ok(())
}

/// One verdict as a person reads it.
fn human(v: &serde_json::Value) -> String {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let mut out = format!("{:<9} {}", s("status"), s("target"));
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        out.push_str(&format!("\n          {error}"));
        return out;
    }
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
        .unwrap_or_default();
    if !reasons.is_empty() {
        out.push_str(&format!("  [{}]", reasons.join(", ")));
    }
    match (v["width"].as_u64(), v["height"].as_u64()) {
        (Some(w), Some(h)) => out.push_str(&format!(
            "\n          {} {w}x{h} px, {} bytes, orientation {}",
            s("format"),
            v["size_bytes"],
            v["orientation"]
        )),
        _ => out.push_str(&format!("\n          {} bytes", v["size_bytes"])),
    }
    if let Some(blur) = v["blur_score"].as_f64() {
        out.push_str(&format!(", blur score {blur:.1}"));
    }
    if let Some(t) = v["tiers"].as_object() {
        let yes: Vec<&str> = ["thumbnail", "zoom", "print"]
            .into_iter()
            .filter(|k| t[*k].as_bool() == Some(true))
            .collect();
        out.push_str(&format!(
            ", good for: {}",
            if yes.is_empty() {
                "nothing".to_string()
            } else {
                yes.join(", ")
            }
        ));
    }
    if let Some(w) = v["watermark"].as_object() {
        out.push_str(&format!(
            ", watermark score {:.2}{}",
            w["score"].as_f64().unwrap_or(0.0),
            if w["suspected"].as_bool() == Some(true) {
                " (suspected)"
            } else {
                ""
            }
        ));
    }
    if let Some(detail) = v.get("detail").and_then(|d| d.as_str()) {
        out.push_str(&format!("\n          {detail}"));
    }
    out
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "{}: larger than the {cap}-byte cap",
            path.display()
        ));
    }
    Ok(bytes)
}

async fn recheck(
    topology: &Topology,
    spec: &ProcessorSpec,
    image_ids: &[String],
) -> anyhow::Result<()> {
    let stack = runtime::StackEnv::from_env()?;
    let catalog = runtime::postgres_database_url(&stack.postgres_url, "catalog")?;
    let config = runtime::RuntimeConfig::from_spec(spec, 0, stack)?;
    let topic = runtime::Topic::<ImageCheckRequested>::input(spec, "requests")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let metrics = runtime::Metrics::new("images-recheck", 0);
    let source = runtime::source::Source::start(config, topology, metrics, &shutdown)
        .await?
        .ok_or_else(|| anyhow::anyhow!("stopped before the producer started"))?;
    let rows = pg::with_client(&catalog, "catalog", async |c| {
        c.query(
            "SELECT id::text, product_id::text, url, seller FROM product_images WHERE id::text = ANY($1)",
            &[&image_ids],
        )
        .await
    })
    .await??;
    for id in image_ids {
        let Some(row) = rows.iter().find(|r| r.get::<_, String>(0) == *id) else {
            println!("{id}: no such row in catalog.product_images; skipped");
            continue;
        };
        let event_id = runtime::ids::random();
        let request = ImageCheckRequested {
            event_id: event_id.clone(),
            occurred_at: runtime::now_ms(),
            correlation_id: id.clone(),
            causation_id: None,
            image_id: id.clone(),
            product_id: row.get(1),
            url: row.get(2),
            seller_id: row.get(3),
        };
        source.send(&topic, id, &request).await?;
        println!("{id}: re-check requested ({event_id})");
    }
    Ok(())
}
