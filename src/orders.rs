//! `fleet orders`: what support and operators ask about orders.
//!
//! - `status ORDER`: the saga's state and its history, from the checkout instance that owns
//!   the order (its admin endpoint's interactive query of the saga store).
//! - `stuck`: every order whose latest status is STUCK, read from the saga transitions
//!   (`checkout.saga-transitions.v1`: the newest sequence per order is its status).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use codec::RegistryClient;
use events::checkout::{OrderStatusCode, SagaTransition};
use topology::Topology;

pub async fn status(topology: &Topology, order: &str) -> Result<()> {
    let env = runtime::StackEnv::from_env()?;
    let (spec, _) = topology
        .processor("checkout")
        .context("no checkout processor in the topology")?;
    let http = reqwest::Client::new();
    for instance in 0..spec.instances {
        let port = spec.admin_port + instance;
        let url = format!("http://{}:{port}/state/{order}", env.admin_host);
        let Ok(response) = http.get(&url).send().await else {
            eprintln!("checkout-{instance} ({url}) is not reachable");
            continue;
        };
        if response.status().is_success() {
            let saga: serde_json::Value = response.json().await?;
            println!("{}", serde_json::to_string_pretty(&saga)?);
            return Ok(());
        }
    }
    anyhow::bail!("no running checkout instance knows order {order}")
}

pub async fn stuck(topology: &Topology) -> Result<()> {
    let env = runtime::StackEnv::from_env()?;
    let (spec, _) = topology
        .processor("checkout")
        .context("no checkout processor in the topology")?;
    let topic = spec
        .outputs
        .iter()
        .find(|o| o.starts_with("checkout.saga-transitions"))
        .context("checkout writes no saga transitions topic")?;
    let mut latest: HashMap<String, SagaTransition> = HashMap::new();
    for t in read_values::<SagaTransition>(&env, topic).await? {
        if latest
            .get(&t.order_id)
            .is_none_or(|s| s.sequence < t.sequence)
        {
            latest.insert(t.order_id.clone(), t);
        }
    }
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for t in latest.values() {
        *by_status.entry(format!("{:?}", t.to_state)).or_default() += 1;
    }
    println!("{topic}: {} orders {by_status:?}", latest.len());
    let mut stuck: Vec<&SagaTransition> = latest
        .values()
        .filter(|t| t.status == Some(OrderStatusCode::Stuck))
        .collect();
    stuck.sort_by_key(|t| t.occurred_at);
    for t in stuck {
        println!(
            "STUCK {}  since {}  total {} {}  failure {:?}  {}",
            t.order_id,
            t.occurred_at,
            t.total_minor.unwrap_or_default(),
            t.currency.as_deref().unwrap_or(""),
            t.failure_code,
            t.reason.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// Every Avro value of `topic` as it is now (start to end, no group), decoded with its writer
/// schema from the registry. A record that is not Confluent-framed Avro is an error.
pub(crate) async fn read_values<T: serde::de::DeserializeOwned>(
    env: &runtime::StackEnv,
    topic: &str,
) -> Result<Vec<T>> {
    let marks = dlq::kafka::topic_watermarks(&env.bootstrap_servers, topic).await?;
    let ranges = marks.iter().map(|m| m.everything()).collect();
    read_values_in(env, topic, ranges).await
}

/// The Avro values of `topic` in `ranges` (no group), decoded as [`read_values`] does.
pub(crate) async fn read_values_in<T: serde::de::DeserializeOwned>(
    env: &runtime::StackEnv,
    topic: &str,
    ranges: Vec<dlq::kafka::PartitionRange>,
) -> Result<Vec<T>> {
    let records = dlq::kafka::read(&env.bootstrap_servers, topic, ranges).await?;
    let registry = RegistryClient::new(&env.registry_url);
    let mut values = Vec::with_capacity(records.len());
    for record in records {
        let Some(bytes) = record.value else { continue };
        let (id, body) = codec::unframe(&bytes)?;
        let schema = registry.schema_by_id(id).await?;
        let value = codec::decode_body(&schema, None, body)?;
        values.push(codec::from_value(&value)?);
    }
    Ok(values)
}
