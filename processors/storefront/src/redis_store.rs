//! Everything the storefront keeps in Redis, one key family per concern. Each change that
//! depends on what is there runs as one Lua script, so concurrent requests from any number of
//! storefront instances cannot interleave inside it.
//!
//! | key | what | written by | evictable |
//! |---|---|---|---|
//! | `cart:{user}` (hash product → `qty:version:updated_ms`) | the cart | cart requests, per line | no (no TTL) |
//! | `checkout:{client}:{idempotency key}` | the checkout request a key stands for | the first checkout with the key (SET NX) | after its TTL |
//! | `order:{id}` (hash seq, doc) | latest order status | the projection consumer (newer sequence wins); checkout seeds ACCEPTED if absent | after 30 days |
//! | `avail:{product}` (hash seq, doc) | latest availability | the projection consumer (newer sequence wins) | after 30 days |
//! | `img:{product}` (hash image id → `occurred_at:passed:tiers:url`, see [`crate::images::Verdict`]) | newest image-quality verdict per image | the projection consumer (a verdict not older than the stored one wins) | no (no TTL) |
//! | `product:v2:{id}` | cached catalog product with its image rows | product reads on a miss | yes (TTL; LRU) |
//! | `popular:views` (zset) | view counts, the recommendations fallback | product reads | no |
//!
//! The stack runs Redis with `maxmemory-policy volatile-lru`: only keys with a TTL (caches,
//! idempotency records, order and availability projections) are evicted under memory
//! pressure, never carts or image verdicts. Verdicts have no TTL because their topic keeps a
//! week: an evicted verdict could not be rebuilt, and its image would stay hidden.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Script};

use crate::domain::CartLine;

/// Projections outlive any order a shopper polls; eviction may take them earlier.
const PROJECTION_TTL_SECS: i64 = 30 * 24 * 3600;

static SET_LINE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        -- KEYS[1] cart; ARGV product, quantity, expected version ('' = none), now ms, max lines
        local cur = redis.call('HGET', KEYS[1], ARGV[1])
        local version = 0
        if cur then version = tonumber(string.match(cur, '^%d+:(%d+):')) end
        if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= version then return {-1, version} end
        if tonumber(ARGV[2]) == 0 then
            if cur then redis.call('HDEL', KEYS[1], ARGV[1]) end
            return {0, version}
        end
        if not cur and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return {-2, 0} end
        version = version + 1
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. version .. ':' .. ARGV[4])
        return {1, version}
        "#,
    )
});

/// Removes the ordered lines only where they are unchanged since the cart was read, so a line
/// added or changed during checkout stays in the cart.
static REMOVE_ORDERED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        -- KEYS[1] cart; ARGV pairs of product, stored value as read
        local removed = 0
        for i = 1, #ARGV, 2 do
            if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
                redis.call('HDEL', KEYS[1], ARGV[i])
                removed = removed + 1
            end
        end
        return removed
        "#,
    )
});

/// Newer sequence wins; `seq` -1 (the storefront's ACCEPTED) only creates.
static PROJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        -- KEYS[1] projection; ARGV seq, doc, ttl
        local cur = redis.call('HGET', KEYS[1], 'seq')
        if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
        redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'doc', ARGV[2])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        return 1
        "#,
    )
});

/// An image verdict replaces the stored one unless that one is newer (`occurred_at`); equal
/// times replace, so of two verdicts stamped in one millisecond the later in the log wins,
/// and a redelivered verdict rewrites the same value. Other images' fields are untouched.
static PROJECT_IMAGE_VERDICT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        -- KEYS[1] img:{product}; ARGV image id, occurred_at, encoded verdict
        local cur = redis.call('HGET', KEYS[1], ARGV[1])
        if cur then
            local at = tonumber(string.match(cur, '^(%-?%d+):'))
            if at and at > tonumber(ARGV[2]) then return 0 end
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        return 1
        "#,
    )
});

/// What a conditional cart change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineChange {
    Set { version: u64 },
    Removed,
    Conflict { current_version: u64 },
    CartFull,
}

/// `recommendations::published::READ` (the version pointer and a list in one atomic step)
/// that also leaves out the list's products this storefront's availability projection shows
/// sold out since the list was computed: one round trip for both. Answers like `READ`
/// ({version, suffix, list JSON}); an emptied list's `items` comes back as `{}` (Redis's
/// cjson cannot tell an empty array from an empty object), read as no items.
const RECOMMENDATIONS_IN_STOCK: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
for i = 1, #ARGV do
  local value = redis.call('GET', 'recs:' .. v .. ':' .. ARGV[i])
  if value then
    local list = cjson.decode(value)
    local kept = {}
    for _, item in ipairs(list['items'] or {}) do
      local doc = redis.call('HGET', 'avail:' .. tostring(item['product_id']), 'doc')
      if not doc or cjson.decode(doc)['in_stock'] ~= false then
        table.insert(kept, item)
      end
    end
    list['items'] = kept
    return {v, ARGV[i], cjson.encode(list)}
  end
end
return {v, false, false}
"#;

#[derive(Clone)]
pub struct Store {
    redis: ConnectionManager,
    /// The recommendations' atomic read with the sold-out filter ([`RECOMMENDATIONS_IN_STOCK`]).
    recs: Script,
}

pub fn cart_key(user: &str) -> String {
    format!("cart:{user}")
}

impl Store {
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(2));
        Ok(Self {
            redis: ConnectionManager::new_with_config(client, config).await?,
            recs: Script::new(RECOMMENDATIONS_IN_STOCK),
        })
    }

    pub async fn set_line(
        &self,
        user: &str,
        product: &str,
        quantity: u32,
        expected_version: Option<u64>,
        now_ms: i64,
        max_lines: u32,
    ) -> Result<LineChange, RedisError> {
        let mut redis = self.redis.clone();
        let (outcome, version): (i64, u64) = SET_LINE
            .key(cart_key(user))
            .arg(product)
            .arg(quantity)
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(now_ms)
            .arg(max_lines)
            .invoke_async(&mut redis)
            .await?;
        Ok(match outcome {
            1 => LineChange::Set { version },
            0 => LineChange::Removed,
            -1 => LineChange::Conflict {
                current_version: version,
            },
            _ => LineChange::CartFull,
        })
    }

    /// The cart's lines with the raw stored values (for the conditional removal).
    pub async fn cart(&self, user: &str) -> Result<Vec<(CartLine, String)>, RedisError> {
        let mut redis = self.redis.clone();
        let raw: Vec<(String, String)> = redis.hgetall(cart_key(user)).await?;
        let mut lines: Vec<(CartLine, String)> = raw
            .into_iter()
            .filter_map(|(product, stored)| CartLine::parse(&product, &stored).map(|l| (l, stored)))
            .collect();
        lines.sort_by(|a, b| a.0.product_id.cmp(&b.0.product_id));
        Ok(lines)
    }

    pub async fn remove_ordered(
        &self,
        user: &str,
        read: &[(CartLine, String)],
    ) -> Result<u64, RedisError> {
        if read.is_empty() {
            return Ok(0);
        }
        let mut redis = self.redis.clone();
        let mut call = REMOVE_ORDERED.key(cart_key(user));
        for (line, stored) in read {
            call.arg(&line.product_id).arg(stored);
        }
        call.invoke_async(&mut redis).await
    }

    /// Stores `request` under `key` unless one is there; returns what is there afterwards.
    pub async fn remember_checkout(
        &self,
        key: &str,
        request: &str,
        ttl_secs: u64,
    ) -> Result<String, RedisError> {
        let mut redis = self.redis.clone();
        let stored: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(request)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(ttl_secs)
            .query_async(&mut redis)
            .await?;
        Ok(stored.unwrap_or_else(|| request.to_string()))
    }

    pub async fn get_string(&self, key: &str) -> Result<Option<String>, RedisError> {
        let mut redis = self.redis.clone();
        redis.get(key).await
    }

    pub async fn set_string(
        &self,
        key: &str,
        value: &str,
        ttl_secs: u64,
    ) -> Result<(), RedisError> {
        let mut redis = self.redis.clone();
        redis.set_ex(key, value, ttl_secs).await
    }

    /// Writes a projection document if `seq` is newer than what is there.
    pub async fn project(&self, key: &str, seq: i64, doc: &str) -> Result<bool, RedisError> {
        let mut redis = self.redis.clone();
        let applied: i64 = PROJECT
            .key(key)
            .arg(seq)
            .arg(doc)
            .arg(PROJECTION_TTL_SECS)
            .invoke_async(&mut redis)
            .await?;
        Ok(applied == 1)
    }

    pub async fn projection(&self, key: &str) -> Result<Option<String>, RedisError> {
        let mut redis = self.redis.clone();
        redis.hget(key, "doc").await
    }

    /// Writes an image verdict unless the stored one is newer (one Lua script); true if it
    /// is now the stored one.
    pub async fn project_image_verdict(
        &self,
        key: &str,
        image_id: &str,
        occurred_at: i64,
        encoded: &str,
    ) -> Result<bool, RedisError> {
        let mut redis = self.redis.clone();
        let applied: i64 = PROJECT_IMAGE_VERDICT
            .key(key)
            .arg(image_id)
            .arg(occurred_at)
            .arg(encoded)
            .invoke_async(&mut redis)
            .await?;
        Ok(applied == 1)
    }

    /// The stored verdicts of `images` (image id → encoded verdict; absent ones left out).
    pub async fn image_verdicts(
        &self,
        key: &str,
        images: &[&str],
    ) -> Result<HashMap<String, String>, RedisError> {
        if images.is_empty() {
            return Ok(HashMap::new());
        }
        let mut redis = self.redis.clone();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(key)
            .arg(images)
            .query_async(&mut redis)
            .await?;
        Ok(images
            .iter()
            .zip(values)
            .filter_map(|(id, v)| Some((id.to_string(), v?)))
            .collect())
    }

    /// Every stored verdict of each of `keys`, in one pipelined round trip.
    pub async fn image_verdicts_of(
        &self,
        keys: &[String],
    ) -> Result<Vec<HashMap<String, String>>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.hgetall(key);
        }
        pipe.query_async(&mut redis).await
    }

    pub async fn count_view(&self, product: &str) -> Result<(), RedisError> {
        let mut redis = self.redis.clone();
        redis.zincr("popular:views", product, 1).await
    }

    pub async fn popular(&self, n: isize) -> Result<Vec<String>, RedisError> {
        let mut redis = self.redis.clone();
        redis.zrevrange("popular:views", 0, n - 1).await
    }

    /// The first of the precomputed lists `suffixes` (`u:<user>`, `c:<category>`, `p`,
    /// `i:<product>`) in the current version, read atomically with the version pointer,
    /// without what sold out since ([`RECOMMENDATIONS_IN_STOCK`]).
    pub async fn recommendations(
        &self,
        suffixes: &[&str],
    ) -> Result<recommendations::published::Found, RedisError> {
        let mut redis = self.redis.clone();
        recommendations::published::read(&mut redis, &self.recs, suffixes).await
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut redis = self.redis.clone();
        redis::cmd("PING").query_async(&mut redis).await
    }
}
