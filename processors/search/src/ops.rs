//! Operator commands against running instances (`fleet search …`): a rebuild of every
//! replica, one after another so the others keep answering, and an ad-hoc query.

use std::time::{Duration, Instant};

use serde_json::Value;
use topology::{ProcessorParams, Topology};

use crate::SearchError;

/// The query service URL of every search-indexer instance in `topology`, on `host`.
pub fn instance_urls(topology: &Topology, host: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (spec, params) in &topology.processors {
        if let ProcessorParams::SearchIndexer(p) = params {
            for i in 0..spec.instances {
                out.push(format!("http://{host}:{}", p.http_port + i));
            }
        }
    }
    out
}

fn http(e: reqwest::Error) -> SearchError {
    SearchError::Config(format!("query service: {e}"))
}

/// Rebuilds each instance in turn: asks for it, then follows its status until the new
/// generation serves. `progress` gets a line per change.
pub async fn rebuild(
    urls: &[String],
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), SearchError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(http)?;
    for url in urls {
        let started = Instant::now();
        let answer = client
            .post(format!("{url}/admin/rebuild"))
            .send()
            .await
            .map_err(http)?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(http)?;
        if !status.is_success() {
            return Err(SearchError::Config(format!(
                "{url}: rebuild refused ({status}): {body}"
            )));
        }
        let generation = body["generation"].as_str().unwrap_or_default().to_string();
        progress(&format!("{url}: building {generation}"));
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s: Value = client
                .get(format!("{url}/admin/status"))
                .send()
                .await
                .map_err(http)?
                .json()
                .await
                .map_err(http)?;
            let r = &s["status"]["rebuild"];
            let state = r["state"].as_str().unwrap_or_default();
            let line = format!("{url}: {state}, {} records read", r["records"]);
            if line != last {
                progress(&line);
                last = line;
            }
            match state {
                "done" if s["status"]["generation"] == generation.as_str() => {
                    progress(&format!(
                        "{url}: serving {generation} ({} products) after {:.1} s",
                        s["status"]["listed_products"],
                        started.elapsed().as_secs_f64()
                    ));
                    break;
                }
                "failed" => {
                    return Err(SearchError::Config(format!(
                        "{url}: rebuild failed: {}",
                        r["error"]
                    )));
                }
                _ if started.elapsed() > timeout => {
                    return Err(SearchError::Config(format!(
                        "{url}: rebuild still {state} after {timeout:?}"
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// One query's raw answer (for `fleet search query`).
pub async fn query(url: &str, params: &[(String, String)]) -> Result<Value, SearchError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(http)?;
    let answer = client
        .get(format!("{url}/search"))
        .query(params)
        .send()
        .await
        .map_err(http)?;
    answer.json().await.map_err(http)
}
