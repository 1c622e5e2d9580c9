//! API keys: made by operators (`fleet keys create`), shown once, stored only as
//! SHA-256 hashes in the storefront's database. Each instance holds the live hashes in memory
//! and reloads them every few seconds and when an unknown key arrives (misses waiting at the
//! same time share one reload), so a new key works at once and a revoked one stops within
//! seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};
use tasks::Tasks;
use tracing::warn;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    /// Rate limits count per key (its hash), not per client name.
    pub key_hash: String,
}

pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random key: `sf_` and 40 hex digits (160 bits).
pub fn generate() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sf_{hex}")
}

/// Creates a key for `client`; returns it (the only time it is seen in clear).
pub async fn create(database_url: &str, client: &str) -> Result<String, tokio_postgres::Error> {
    let key = generate();
    pg::with_client(database_url, "storefront", async |db| {
        db.execute(
            "INSERT INTO api_keys (key_hash, client, prefix) VALUES ($1, $2, $3)",
            &[&hash(&key), &client, &&key[..10]],
        )
        .await
    })
    .await??;
    Ok(key)
}

/// Revokes every live key whose prefix is `prefix` (or the key itself); returns how many.
pub async fn revoke(database_url: &str, prefix_or_key: &str) -> Result<u64, tokio_postgres::Error> {
    pg::with_client(database_url, "storefront", async |db| {
        db.execute(
            "UPDATE api_keys SET revoked_at = now()
             WHERE revoked_at IS NULL AND (prefix = $1 OR key_hash = $2)",
            &[&prefix_or_key, &hash(prefix_or_key)],
        )
        .await
    })
    .await?
}

/// (prefix, client, created, revoked) of every key.
pub async fn list(
    database_url: &str,
) -> Result<Vec<(String, String, String, Option<String>)>, tokio_postgres::Error> {
    let rows = pg::with_client(database_url, "storefront", async |db| {
        db.query(
            "SELECT prefix, client, created_at::text, revoked_at::text FROM api_keys ORDER BY created_at",
            &[],
        )
        .await
    })
    .await??;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// The live keys of one instance. The loader task is the single writer of the map; request
/// handlers only read it.
#[derive(Clone)]
pub struct KeyRing {
    live: Arc<RwLock<HashMap<String, String>>>,
    /// Serialises reloads and remembers when the last one finished.
    reload: Arc<tokio::sync::Mutex<Instant>>,
    /// The reloads' connection, replaced when it closes.
    db: Arc<pg::Shared>,
}

impl KeyRing {
    /// Loads the live keys; the reloads' connection task runs on `tasks`.
    pub async fn load(database_url: &str, tasks: &Tasks) -> Result<Self, tokio_postgres::Error> {
        let ring = Self {
            live: Arc::default(),
            reload: Arc::new(tokio::sync::Mutex::new(Instant::now())),
            db: Arc::new(pg::Shared::new(database_url, "storefront", 1, tasks)),
        };
        ring.reload_now().await?;
        Ok(ring)
    }

    async fn reload_now(&self) -> Result<(), tokio_postgres::Error> {
        let db = self.db.client().await?;
        let rows = db
            .query(
                "SELECT key_hash, client FROM api_keys WHERE revoked_at IS NULL",
                &[],
            )
            .await?;
        let fresh: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads unless a reload finished after `since` (its answer is fresh enough) or within
    /// `min_gap`.
    async fn reload_if_stale(&self, since: Instant, min_gap: Duration) {
        let mut last = self.reload.lock().await;
        if *last >= since || last.elapsed() < min_gap {
            return;
        }
        if let Err(e) = self.reload_now().await {
            warn!(error = %e, "API keys not reloaded; keeping the last set");
        }
        *last = Instant::now();
    }

    fn lookup(&self, key_hash: &str) -> Option<Client> {
        self.live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_hash)
            .map(|name| Client {
                name: name.clone(),
                key_hash: key_hash.to_string(),
            })
    }

    /// The client `key` belongs to, if it is live.
    pub async fn authenticate(&self, key: &str) -> Option<Client> {
        let arrived = Instant::now();
        let key_hash = hash(key);
        if let Some(client) = self.lookup(&key_hash) {
            return Some(client);
        }
        // Unknown: maybe made since the last reload. Misses that arrived before a reload
        // finished share it, so a flood of bad keys costs one reload at a time (and the per-IP
        // limit has already bounded it).
        self.reload_if_stale(arrived, Duration::ZERO).await;
        self.lookup(&key_hash)
    }

    /// Reloads every `every` until `shutdown` (revocations take effect within it).
    pub async fn refresh(self, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => self.reload_if_stale(Instant::now(), every / 2).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with("sf_") && a.len() == 43);
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        // A well-known SHA-256 test vector.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
