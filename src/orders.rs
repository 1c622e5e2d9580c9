//! `fleet orders`: what support and operators ask about orders.
//!
//! - `status ORDER`: the saga's state and its history, from the checkout instance that owns
//!   the order (its admin endpoint's interactive query of the saga store).
//! - `stuck`: every order whose latest status is STUCK, read from the saga transitions
//!   (`checkout.saga-transitions.v1`: the newest sequence per order is its status).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
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
    let topic = &wiring::output(topology, "checkout", "transitions")?;
    let mut latest: HashMap<String, SagaTransition> = HashMap::new();
    for t in wiring::topics::read_values::<SagaTransition>(&env, topic).await? {
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
