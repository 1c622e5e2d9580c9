//! The sample's HTTP I/O: every instance's admin `/health` and `/metrics`, concurrently,
//! each bounded by the probe timeout; and the `/metrics/fleet` federation.

use futures::future::join_all;
use serde_json::Value;

use crate::model::InstanceState;
use crate::plan::{Target, STUCK_SAGAS};
use crate::promtext;

/// What one instance's admin port said.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceProbe {
    pub state: InstanceState,
    pub assigned_partitions: Option<i64>,
    /// The target's throughput counter, summed over its labels.
    pub records_total: Option<f64>,
    /// Checkout only.
    pub stuck_sagas: Option<f64>,
}

/// Probes every target at once; answers in `targets` order.
pub async fn probe_all(client: &reqwest::Client, targets: &[Target]) -> Vec<InstanceProbe> {
    join_all(targets.iter().map(|t| probe(client, t))).await
}

async fn probe(client: &reqwest::Client, target: &Target) -> InstanceProbe {
    let mut out = InstanceProbe {
        state: InstanceState::Down,
        assigned_partitions: None,
        records_total: None,
        stuck_sagas: None,
    };
    let health = client
        .get(format!("http://{}/health", target.addr))
        .send()
        .await;
    let Ok(response) = health else {
        return out;
    };
    out.state = if response.status().is_success() {
        InstanceState::Up
    } else {
        InstanceState::NotReady
    };
    if let Ok(body) = response.json::<Value>().await {
        out.assigned_partitions = body.get("assigned_partitions").and_then(Value::as_i64);
    }
    if let Some(text) = metrics_text(client, target).await {
        out.records_total = promtext::sum(&text, target.throughput_metric);
        if target.counts_stuck_sagas {
            // The counter exists once the checkout processor registered it; an instance
            // that answers without it has none stuck.
            out.stuck_sagas = Some(promtext::sum(&text, STUCK_SAGAS).unwrap_or(0.0));
        }
    }
    out
}

async fn metrics_text(client: &reqwest::Client, target: &Target) -> Option<String> {
    let response = client
        .get(format!("http://{}/metrics", target.addr))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// Every reachable instance's `/metrics` merged into one exposition; each sample is labelled
/// `processor` and `instance` (the instance index; the runtime's own metrics already carry
/// both with these values, a processor's domain metrics get them here). Unreachable
/// instances are left out; the monitor's `storefleet_monitor_instance_up` says which.
pub async fn federate(client: &reqwest::Client, targets: &[Target]) -> String {
    let texts = join_all(targets.iter().map(|t| metrics_text(client, t))).await;
    let sources: Vec<promtext::Source<'_>> = targets
        .iter()
        .zip(&texts)
        .filter_map(|(target, text)| {
            Some(promtext::Source {
                text: text.as_deref()?,
                labels: vec![
                    ("processor".to_string(), target.owner.clone()),
                    ("instance".to_string(), target.index.to_string()),
                ],
            })
        })
        .collect();
    promtext::federate(&sources)
}
