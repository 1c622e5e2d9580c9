//! Answering a search: the shards it concerns queried in parallel, each within its time
//! budget (a slow or failing shard is left out and named in `degraded`, the others answer),
//! merged by rank, paged, and kept in the popular-query cache.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::warn;

use crate::index::{compile, Facets, Hit, Searchable};
use crate::query::SearchRequest;

/// Most facet values returned per facet.
const FACET_VALUES: usize = 20;

/// The answer to one search (the body of a 200).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub query: String,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
    pub sort: &'static str,
    pub hits: Vec<Hit>,
    pub facets: Facets,
    /// Shards that did not answer in time or failed: `shard:<name>`.
    pub degraded: Vec<String>,
    pub took_ms: f64,
    pub cached: bool,
    /// The index commit the answer was read from.
    pub commit_seq: u64,
}

/// The query side of one instance: the generation being served and the cache.
pub struct Engine {
    current: RwLock<Arc<Searchable>>,
    /// Commit sequence of the served generation (set by the indexer after each commit).
    commit_seq: std::sync::atomic::AtomicU64,
    cache: Mutex<Cache>,
    shard_budget: Duration,
}

impl Engine {
    pub fn new(
        searchable: Arc<Searchable>,
        shard_budget: Duration,
        cache_ttl: Duration,
        cache_entries: usize,
    ) -> Self {
        Self {
            current: RwLock::new(searchable),
            commit_seq: Default::default(),
            cache: Mutex::new(Cache::new(cache_ttl, cache_entries)),
            shard_budget,
        }
    }

    pub fn searchable(&self) -> Arc<Searchable> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `next` from now on (a rebuilt generation); the cache starts empty.
    pub fn swap(&self, next: Arc<Searchable>, seq: u64) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.commit_seq
            .store(seq, std::sync::atomic::Ordering::Release);
        self.cache().clear();
    }

    /// A commit became searchable: drop cached answers showing any of `changed`.
    pub fn committed<'a>(&self, seq: u64, changed: impl IntoIterator<Item = &'a str>) {
        self.commit_seq
            .store(seq, std::sync::atomic::Ordering::Release);
        self.cache().invalidate(changed);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cache_len(&self) -> usize {
        self.cache().entries.len()
    }

    /// Answers `request` (from the cache when it holds it).
    pub async fn search(&self, request: &SearchRequest) -> Answer {
        let started = Instant::now();
        let key = request.cache_key();
        let generation = {
            let mut cache = self.cache();
            if let Some(mut hit) = cache.get(&key, started) {
                hit.cached = true;
                hit.took_ms = ms(started);
                return hit;
            }
            cache.generation
        };
        let searchable = self.searchable();
        let seq = self.commit_seq.load(std::sync::atomic::Ordering::Acquire);
        let compiled = Arc::new(compile(&searchable.fields, request));
        let shards = searchable
            .layout
            .searched(request.filters.category.as_deref());
        let depth = request.depth();
        let sort = request.sort;
        let mut tasks = Vec::new();
        for shard in shards {
            let searchable = searchable.clone();
            let compiled = compiled.clone();
            let task = tokio::task::spawn_blocking(move || {
                searchable.search_shard(shard, &compiled, sort, depth)
            });
            tasks.push((shard, tokio::time::timeout(self.shard_budget, task)));
        }
        let mut answers = Vec::new();
        let mut degraded = Vec::new();
        for (shard, task) in tasks {
            let name = &searchable.shards[shard].name;
            match task.await {
                Ok(Ok(Ok(answer))) => answers.push(answer),
                Ok(Ok(Err(e))) => {
                    warn!(shard = %name, error = %e, "shard failed a query");
                    degraded.push(format!("shard:{name}"));
                }
                Ok(Err(e)) => {
                    warn!(shard = %name, error = %e, "shard query panicked");
                    degraded.push(format!("shard:{name}"));
                }
                Err(_) => {
                    warn!(shard = %name, budget_ms = self.shard_budget.as_millis() as u64, "shard too slow");
                    degraded.push(format!("shard:{name}"));
                }
            }
        }
        let mut total = 0u64;
        let mut facets = Facets::default();
        let mut ranked = Vec::new();
        for (i, a) in answers.iter().enumerate() {
            total += a.total as u64;
            facets.merge(a.facets.clone());
            ranked.extend(
                a.top
                    .iter()
                    .map(|(rank, score, address)| (*rank, *score, i, *address)),
            );
        }
        ranked.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| (a.2, a.3).cmp(&(b.2, b.3)))
        });
        let mut hits = Vec::new();
        for (_, score, i, address) in ranked
            .into_iter()
            .skip(request.offset())
            .take(request.per_page as usize)
        {
            match searchable.hit(&answers[i], address, score, &compiled.matcher) {
                Ok(hit) => hits.push(hit),
                Err(e) => {
                    let name = &searchable.shards[answers[i].shard].name;
                    warn!(shard = %name, error = %e, "reading a hit failed");
                    let mark = format!("shard:{name}");
                    if !degraded.contains(&mark) {
                        degraded.push(mark);
                    }
                }
            }
        }
        let answer = Answer {
            query: request.text.clone(),
            total,
            page: request.page,
            per_page: request.per_page,
            sort: request.sort.as_str(),
            hits,
            facets: facets.top(FACET_VALUES),
            degraded,
            took_ms: ms(started),
            cached: false,
            commit_seq: seq,
        };
        if answer.degraded.is_empty() {
            self.cache().put(key, &answer, generation, Instant::now());
        }
        answer
    }
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Popular-query cache: answers by request key for `ttl`, dropped early when a product they
/// show changes. Race rule: an answer computed from a searcher that predates an
/// invalidation of one of its products is not stored (the answer remembers the cache
/// generation it started at; each invalidation bumps the generation and records it per
/// product). Single writer of invalidations: the indexer, after its commit is searchable.
pub struct Cache {
    ttl: Duration,
    max_entries: usize,
    entries: HashMap<String, Entry>,
    by_product: HashMap<String, HashSet<String>>,
    invalidated_at: HashMap<String, u64>,
    cleared_at: u64,
    pub generation: u64,
}

struct Entry {
    answer: Answer,
    products: Vec<String>,
    stored_at: Instant,
}

impl Cache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: HashMap::new(),
            by_product: HashMap::new(),
            invalidated_at: HashMap::new(),
            cleared_at: 0,
            generation: 0,
        }
    }

    pub fn get(&mut self, key: &str, now: Instant) -> Option<Answer> {
        let fresh = self
            .entries
            .get(key)
            .map(|e| now.duration_since(e.stored_at) < self.ttl)?;
        if fresh {
            return self.entries.get(key).map(|e| e.answer.clone());
        }
        self.remove(key);
        None
    }

    pub fn put(&mut self, key: String, answer: &Answer, started_at: u64, now: Instant) {
        if self.ttl.is_zero() || self.max_entries == 0 || self.cleared_at > started_at {
            return;
        }
        let products: Vec<String> = answer.hits.iter().map(|h| h.id.clone()).collect();
        if products
            .iter()
            .any(|p| self.invalidated_at.get(p).is_some_and(|g| *g > started_at))
        {
            return;
        }
        if self.entries.len() >= self.max_entries {
            self.evict(now);
        }
        for p in &products {
            self.by_product
                .entry(p.clone())
                .or_default()
                .insert(key.clone());
        }
        self.entries.insert(
            key,
            Entry {
                answer: answer.clone(),
                products,
                stored_at: now,
            },
        );
    }

    pub fn invalidate<'a>(&mut self, changed: impl IntoIterator<Item = &'a str>) {
        self.generation += 1;
        for product in changed {
            self.invalidated_at
                .insert(product.to_string(), self.generation);
            if let Some(keys) = self.by_product.remove(product) {
                for key in keys {
                    self.remove(&key);
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.generation += 1;
        self.cleared_at = self.generation;
        self.entries.clear();
        self.by_product.clear();
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            for p in entry.products {
                if let Some(keys) = self.by_product.get_mut(&p) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_product.remove(&p);
                    }
                }
            }
        }
    }

    /// Drops expired entries, then the oldest tenth if still full.
    fn evict(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| now.duration_since(e.stored_at) >= self.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.remove(&k);
        }
        if self.entries.len() >= self.max_entries {
            let mut by_age: Vec<(Instant, String)> = self
                .entries
                .iter()
                .map(|(k, e)| (e.stored_at, k.clone()))
                .collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(self.max_entries / 10 + 1) {
                self.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Highlights;

    fn answer(ids: &[&str]) -> Answer {
        Answer {
            query: "q".into(),
            total: ids.len() as u64,
            page: 1,
            per_page: 20,
            sort: "relevance",
            hits: ids
                .iter()
                .map(|id| Hit {
                    id: (*id).into(),
                    sku: String::new(),
                    title: String::new(),
                    brand: String::new(),
                    category: String::new(),
                    price: "1.00".into(),
                    price_minor: 100,
                    in_stock: Some(true),
                    available_quantity: Some(1),
                    image_url: None,
                    updated_at: 0,
                    score: 1.0,
                    shard: "x".into(),
                    highlights: Highlights {
                        title: String::new(),
                        description: String::new(),
                    },
                })
                .collect(),
            facets: Facets::default(),
            degraded: vec![],
            took_ms: 0.0,
            cached: false,
            commit_seq: 1,
        }
    }

    #[test]
    fn answers_expire_and_are_dropped_when_a_shown_product_changes() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(10), 100);
        let g = c.generation;
        c.put("a".into(), &answer(&["p1", "p2"]), g, t0);
        c.put("b".into(), &answer(&["p3"]), g, t0);
        assert!(c.get("a", t0).is_some());
        assert!(c.get("a", t0 + Duration::from_secs(11)).is_none());
        c.put("a".into(), &answer(&["p1", "p2"]), c.generation, t0);
        c.invalidate(["p2"]);
        assert!(c.get("a", t0).is_none());
        assert!(c.get("b", t0).is_some());
        assert!(
            !c.by_product.contains_key("p1"),
            "no dangling reverse entries"
        );
    }

    #[test]
    fn an_answer_computed_before_an_invalidation_is_not_stored() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(10), 100);
        let started = c.generation;
        c.invalidate(["p1"]); // a commit lands while the query runs
        c.put("a".into(), &answer(&["p1"]), started, t0);
        assert!(c.get("a", t0).is_none());
        // Unrelated products still cache.
        c.put("b".into(), &answer(&["p9"]), started, t0);
        assert!(c.get("b", t0).is_some());
        c.clear();
        c.put("c".into(), &answer(&["p9"]), started, t0);
        assert!(c.get("c", t0).is_none(), "nothing from before a swap");
    }

    #[test]
    fn a_full_cache_evicts_the_oldest() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_secs(10), 10);
        for i in 0..25 {
            c.put(
                format!("k{i}"),
                &answer(&["p"]),
                0,
                t0 + Duration::from_millis(i),
            );
        }
        assert!(c.entries.len() <= 10);
        assert!(c.get("k24", t0).is_some());
        assert!(c.get("k0", t0).is_none());
    }
}
