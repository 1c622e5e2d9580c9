//! The precomputed lists in Redis: the contract between this processor (the only writer) and
//! the storefront (a reader).
//!
//! Layout, for a model version `V`:
//! - `recs:V:u:<user>`: the user's list; `recs:V:i:<product>`: bought together;
//!   `recs:V:p`: popular overall; `recs:V:c:<top category>`: popular in a category. Each value
//!   is JSON `{"version", "items": [{"product_id", "score", "reason"}]}`, with a TTL of the
//!   topology's `ttl_s` (12 h).
//! - `recs:current`: the version readers use, with the same TTL (no training for `ttl_s` means
//!   no lists, and the storefront says it degraded rather than serve stale ones).
//!
//! The swap is atomic: a run writes every key of its new version first, then points
//! `recs:current` at it with one `SET`. A reader reads the pointer and its key in one Lua
//! script ([`READ`]), which Redis runs without interleaving, so it sees the old version whole
//! or the new one whole, never a half-written set. The old version's keys are deleted only
//! after the swap, and a reader inside a script cannot be between the two reads, so the delete
//! needs no grace period.

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use crate::lists::Item;

pub const CURRENT: &str = "recs:current";

/// Keys per pipeline round trip.
const PIPELINE: usize = 1_000;

pub fn user_key(version: &str, user: &str) -> String {
    format!("recs:{version}:u:{user}")
}
pub fn item_key(version: &str, product: &str) -> String {
    format!("recs:{version}:i:{product}")
}
pub fn popular_key(version: &str) -> String {
    format!("recs:{version}:p")
}
pub fn category_key(version: &str, category: &str) -> String {
    format!("recs:{version}:c:{category}")
}

/// The JSON value of one list.
pub fn encode(version: &str, items: &[Item]) -> String {
    serde_json::json!({"version": version, "items": items}).to_string()
}

/// Writes `lists` (key suffix after `recs:V:`, items) under `version`, pipelined, each with
/// `ttl_s`. Nothing reads them until [`swap`].
pub async fn write_version(
    redis: &mut ConnectionManager,
    version: &str,
    lists: impl Iterator<Item = (String, String)>,
    ttl_s: u64,
) -> Result<usize, RedisError> {
    let mut written = 0;
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for (key, value) in lists {
        debug_assert!(key.starts_with(&format!("recs:{version}:")));
        pipe.cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl_s)
            .ignore();
        queued += 1;
        if queued == PIPELINE {
            pipe.query_async::<()>(redis).await?;
            written += queued;
            queued = 0;
            pipe = redis::pipe();
        }
    }
    if queued > 0 {
        pipe.query_async::<()>(redis).await?;
        written += queued;
    }
    Ok(written)
}

/// Points readers at `version` (one `SET`: the atomic swap) and returns the version it
/// replaced.
pub async fn swap(
    redis: &mut ConnectionManager,
    version: &str,
    ttl_s: u64,
) -> Result<Option<String>, RedisError> {
    redis::cmd("SET")
        .arg(CURRENT)
        .arg(version)
        .arg("EX")
        .arg(ttl_s)
        .arg("GET")
        .query_async(redis)
        .await
}

/// Deletes every key of `version` (after a swap away from it). Returns how many.
pub async fn delete_version(
    redis: &mut ConnectionManager,
    version: &str,
) -> Result<usize, RedisError> {
    let pattern = format!("recs:{version}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(PIPELINE)
            .query_async(redis)
            .await?;
        if !keys.is_empty() {
            deleted += keys.len();
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(redis)
                .await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Reads the current version's list under suffix `ARGV[1]` (`u:<user>`), or under
/// `ARGV[2]` (`p`, `c:<category>`) when the first is absent, in one atomic step. Returns
/// nothing when no version is current, else {version, suffix found or false, value}.
pub const READ: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
for i = 1, #ARGV do
  local value = redis.call('GET', 'recs:' .. v .. ':' .. ARGV[i])
  if value then return {v, ARGV[i], value} end
end
return {v, false, false}
"#;

/// What [`read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No version is current: the recommendations are down (or never trained).
    NoVersion,
    /// A version is current but holds none of the asked lists.
    Missing { version: String },
    /// The list under `suffix` of `version`, as stored (JSON).
    List {
        version: String,
        suffix: String,
        json: String,
    },
}

pub fn read_script() -> Script {
    Script::new(READ)
}

/// The first of `suffixes` present in the current version (see [`READ`]).
pub async fn read(
    redis: &mut ConnectionManager,
    script: &Script,
    suffixes: &[&str],
) -> Result<Found, RedisError> {
    let mut invocation = script.key(CURRENT);
    for s in suffixes {
        invocation.arg(*s);
    }
    let value: redis::Value = invocation.invoke_async(redis).await?;
    Ok(match value {
        redis::Value::Nil => Found::NoVersion,
        redis::Value::Array(parts) if parts.len() == 3 => {
            let text = |v: &redis::Value| match v {
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            };
            match (text(&parts[0]), text(&parts[1]), text(&parts[2])) {
                (Some(version), Some(suffix), Some(json)) => Found::List {
                    version,
                    suffix,
                    json,
                },
                (Some(version), _, _) => Found::Missing { version },
                _ => Found::NoVersion,
            }
        }
        _ => Found::NoVersion,
    })
}
