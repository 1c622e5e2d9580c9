//! `search-indexer`: the shop's search engine. A tantivy index of the catalogue, fed by the
//! catalog's CDC topic and the ledger's availability projection, sharded by top-level
//! category, and the query service that answers the storefront's searches from it.
//!
//! - **One process per instance does both**: the indexer loop writes the index on local disk
//!   and the query service in the same process reads it (`http_port + instance`). A commit
//!   is searchable the moment it lands (the readers reload in the same process), there is no
//!   shared file system or index shipping to run, and each instance is a full replica that
//!   reads every partition, so N instances are N interchangeable query servers: the
//!   storefront rotates over them and skips one that is down. The cost is N copies of the
//!   indexing work, small next to the queries (a catalogue changes far less than it is read).
//! - **Exactly-once indexing.** The offsets a tantivy commit covers are in that commit's
//!   payload (every shard's); a restart, also after `kill -9`, seeks to them (see
//!   [`indexer`]). Versions (the catalog row's commit LSN, the ledger's sequence) make a
//!   record met twice change nothing either way. A crash between two shards' commits (the
//!   shards commit one after another: tens of milliseconds on a busy disk) leaves shards at
//!   different sequences; the restart recovers in place: it replays from the oldest shard's
//!   positions (the shards already past them ignore what they hold), keeps the newer
//!   document of a product caught in two shards, and continues the sequence past the newest.
//! - **Freshness**: a change waits at most a quarter of `freshness_ms` for its commit.
//!   `search_freshness_seconds` measures source commit → searchable.
//! - **Shards** ([`index::Layout`]): one per configured top-level category, `other`, and
//!   `_unlisted` (stock state of products without a catalog row, never searched). A query
//!   filtered to a category asks only its shard; otherwise all shards in parallel, each
//!   within `shard_budget_ms`. A shard that fails or is late is left out and named in the
//!   answer's `degraded`; the others answer. Scores are BM25 per shard (each shard's own
//!   term statistics), merged by score.
//! - **Queries** ([`query`], [`index::compile`]): every word must match in title (boost 3),
//!   brand (2), category (1.5) or description (1); English stems; typos by word length (0
//!   under 5 letters, 1 up to 8, 2 beyond) at half weight; the last word also as a prefix;
//!   `"phrases"`; filters (category, brand, price range, in stock) that do not score; facets
//!   (category, brand, stock state) over all matches; sort by relevance, price or newest;
//!   pages up to the 1,000th result; highlights. Hits come from the index's stored fields.
//! - **Popular-query cache** ([`engine::Cache`]): answers for `cache_ttl_ms`, dropped when a
//!   product they show changes (invalidated after the commit is searchable; an answer
//!   computed from an older searcher is not stored). A product that newly matches a cached
//!   query shows once the entry expires.
//! - **Rebuild** (`fleet search rebuild`): see [`indexer`].
//! - Bad records are dead-lettered with the reason like everywhere (the runtime's
//!   [`runtime::source::Source`]); bad requests get a 400 with a code ([`query::Rejection`]).
//!
//! Single writers: the indexer loop owns the writers, the catalog map and the positions;
//! queries only read committed segments; the cache's invalidations come only from the
//! loop, after each commit.

pub mod doc;
pub mod engine;
pub mod http;
pub mod index;
pub mod indexer;
pub mod ops;
pub mod query;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime::source::Source;
use runtime::{Metrics, Phase, RuntimeConfig, Topic};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorSpec, SearchIndexerParams, Topology};
use tracing::info;

use crate::engine::Engine;
use crate::index::{IndexError, Layout};
use crate::indexer::{IndexMetrics, Indexer, Inputs, Root, Status};

#[derive(Debug, Error)]
pub enum SearchError {
    #[error("search-indexer configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error("the index")]
    Index(#[from] IndexError),
    #[error("query service on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The input topics of `spec` by port, with their partition counts from `topology`.
pub fn inputs(spec: &ProcessorSpec, topology: &Topology) -> Result<Inputs, SearchError> {
    let port = |name: &str| {
        spec.input(name)
            .map(String::from)
            .ok_or_else(|| SearchError::Config(format!("input port `{name}` is not bound")))
    };
    let products = port("products")?;
    let availability = port("availability")?;
    let mut partitions = Vec::new();
    for topic in [&products, &availability] {
        let spec = topology.topic(topic).ok_or_else(|| {
            SearchError::Config(format!("topic `{topic}` is not in the topology"))
        })?;
        for p in 0..spec.partitions {
            partitions.push((topic.clone(), i32::try_from(p).unwrap_or(i32::MAX)));
        }
    }
    Ok(Inputs {
        products,
        availability,
        partitions,
    })
}

/// Runs one instance (indexer loop, query service, admin port) until `shutdown`.
pub async fn run(
    config: RuntimeConfig,
    topology: &Topology,
    spec: &ProcessorSpec,
    params: SearchIndexerParams,
    shutdown: CancellationToken,
) -> Result<(), SearchError> {
    let tasks = tasks::Tasks::new(shutdown.clone());
    let outcome = run_inner(config, topology, spec, params, shutdown, &tasks).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    outcome
}

async fn run_inner(
    config: RuntimeConfig,
    topology: &Topology,
    spec: &ProcessorSpec,
    params: SearchIndexerParams,
    shutdown: CancellationToken,
    tasks: &tasks::Tasks,
) -> Result<(), SearchError> {
    let instance = config.instance;
    let metrics = Metrics::new(&config.processor, instance);
    let index_metrics = IndexMetrics::new(metrics.registry());
    let phase = Phase::default();
    runtime::serve_admin(
        config.admin_addr,
        config.processor.clone(),
        metrics.clone(),
        phase.clone(),
        None,
        tasks,
    )
    .await?;
    let root = Root(
        config
            .state_dir
            .join("search")
            .join(format!("{}-{instance}", config.processor)),
    );
    let group = if instance == 0 {
        config.group.clone()
    } else {
        format!("{}.replica-{instance}", config.group)
    };
    let http_addr = SocketAddr::new(
        config.admin_addr.ip(),
        params
            .http_port
            .checked_add(instance)
            .ok_or_else(|| SearchError::Config("http_port + instance overflows".into()))?,
    );
    let Some(source) = Source::start(config, topology, metrics, &shutdown).await? else {
        return Ok(());
    };
    let layout = Layout::new(&params.shards);
    let status = Arc::new(Mutex::new(Status::default()));
    let writer_memory = params.writer_memory_mb * 1024 * 1024;
    let index_name = format!("products@{}-{instance}", spec.name);
    let state =
        tokio::task::block_in_place(|| indexer::open_current(&root, &layout, writer_memory))?;
    let engine = Arc::new(Engine::new(
        state.writers().searchable.clone(),
        Duration::from_millis(params.shard_budget_ms),
        Duration::from_millis(params.cache_ttl_ms),
        params.cache_entries,
    ));
    let indexer = Indexer {
        source: Arc::new(source),
        inputs: inputs(spec, topology)?,
        commits: Topic::output(spec, "commits")?,
        layout,
        root,
        writer_memory,
        commit_wait: Duration::from_millis((params.freshness_ms / 4).max(10)),
        engine,
        status: status.clone(),
        metrics: index_metrics.clone(),
        group,
        index_name,
    };
    let (rebuild_tx, rebuild_rx) = mpsc::channel(1);
    let api = http::Api {
        engine: indexer.engine.clone(),
        status,
        rebuilds: rebuild_tx,
        metrics: index_metrics,
        fault_injection: params.fault_injection,
    };
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| SearchError::Listen {
            addr: http_addr,
            source,
        })?;
    let token = shutdown.clone();
    tasks.spawn("search http", async move {
        let _ = axum::serve(listener, http::router(api))
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    });
    info!(%http_addr, "query service listening");
    phase.set(Phase::RUNNING);
    let outcome = indexer.run(state, rebuild_rx, shutdown).await;
    phase.set(Phase::STOPPING);
    outcome
}
