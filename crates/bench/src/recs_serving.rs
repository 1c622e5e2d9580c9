//! The serving half of `fleet bench recs`: every user's list published to Redis the way a
//! training run does it (a version's keys, then the pointer), one storefront instance in this
//! process reading them, and `GET /v1/recommendations/{user}` for random users at 1 and N
//! clients. Beside it, the same atomic read straight from Redis (no HTTP, no storefront): the
//! floor the storefront adds to. Runs on a Redis database of its own (`--redis-db`), so a
//! running fleet's lists are untouched.

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use topology::Topology;

use crate::error::check;
use crate::Result;

/// One list per user, `k` items each, under version `version` in `redis_url`'s database;
/// returns the seconds the writes and the swap took.
pub async fn publish(redis_url: &str, version: &str, lists: Vec<(String, String)>) -> Result<f64> {
    let client = redis::Client::open(redis_url)?;
    let mut redis = redis::aio::ConnectionManager::new(client).await?;
    let started = Instant::now();
    let ttl = 12 * 3600;
    recommendations::published::write_version(&mut redis, version, lists.into_iter(), ttl).await?;
    if let Some(old) = recommendations::published::swap(&mut redis, version, ttl).await? {
        if old != version {
            recommendations::published::delete_version(&mut redis, &old).await?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Serves `users`' lists (already published under the current version of `redis_url`)
/// through a storefront in this process and straight from Redis; prints a table.
pub async fn serve(
    topology: &Topology,
    redis_url: &str,
    users: Arc<Vec<String>>,
    seconds: u64,
    clients: &[usize],
) -> Result<()> {
    let mut env = runtime::StackEnv::from_env()?;
    env.redis_url = redis_url.to_string();
    let most = clients.iter().copied().max().unwrap_or(1);
    let front = crate::front::start(topology, &env, "bench-recs", most).await?;
    // Every answer must be the user's own precomputed list (not a fallback).
    let probe: serde_json::Value = front
        .http
        .get(format!("{}/v1/recommendations/{}", front.base, users[0]))
        .header("x-api-key", &front.key)
        .send()
        .await?
        .json()
        .await?;
    check!(
        probe["list"] == "user",
        "the storefront did not serve the published list: {probe}"
    );
    let redis = redis::aio::ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    let script = Arc::new(recommendations::published::read_script());
    println!(
        "\nserving: {} users' lists, {seconds} s per row (client and server share the cores)",
        users.len()
    );
    println!(
        "{:<46} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "path", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for &c in clients {
        let (u, r, script) = (users.clone(), redis.clone(), script.clone());
        let raw = crate::front::hammer(c, seconds, move |_, rng| {
            let (mut r, script) = (r.clone(), script.clone());
            let user = format!("u:{}", u[rng.random_range(0..u.len())]);
            async move {
                matches!(
                    recommendations::published::read(&mut r, &script, &[&user]).await,
                    Ok(recommendations::published::Found::List { .. })
                )
            }
        })
        .await?;
        print_row("Redis alone (the atomic read script)", c, &raw);
        let (u, http, base, key) = (
            users.clone(),
            front.http.clone(),
            front.base.clone(),
            front.key.clone(),
        );
        let served = crate::front::hammer(c, seconds, move |_, rng| {
            let user = &u[rng.random_range(0..u.len())];
            let request = http
                .get(format!("{base}/v1/recommendations/{user}"))
                .header("x-api-key", &key);
            async move {
                match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
        .await?;
        print_row("storefront GET /v1/recommendations/{user}", c, &served);
    }
    front.stop().await;
    Ok(())
}

fn print_row(label: &str, clients: usize, m: &crate::front::Measured) {
    println!(
        "{label:<46} {clients:>8} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>7}",
        m.micros.len(),
        m.per_second,
        m.ms(0.50),
        m.ms(0.99),
        m.errors
    );
}
