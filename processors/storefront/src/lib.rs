//! The storefront: the fleet's HTTP front door. One process per instance serves the API
//! ([`api`]) on `http_port + instance` and runs the projection consumer ([`projections`]) in
//! the `storefleet.storefront` group, through the runtime like any processor (2 instances,
//! admin on 9171/9172). Carts, idempotency records, caches and projections live in Redis
//! ([`redis_store`]: every key family and its Lua scripts); API keys in the storefront's
//! database ([`keys`]); product data comes from the catalog database ([`catalog`]); the rules
//! are pure in [`domain`]. It writes checkout requests and shopper interactions to Kafka
//! with its own producer, and nothing else: the saga does the rest. The consumer projects
//! each order's status from `checkout.saga-transitions.v1` (newest sequence per order; dead
//! letters `dlq.storefront.saga-transitions.v1`), each product's
//! `inventory.availability.v1` and, when the optional `image_results` port is bound,
//! image-quality's newest verdict per image from `images.check-results.v1` (dead letters
//! `dlq.storefront.image-results.v1`) into Redis; the API never reads Kafka on a request path.
//!
//! - **Carts**: one Redis hash per user; a `PUT` of a line runs one Lua script: with
//!   `expected_version` it changes the line only if its version is still that (0: only if
//!   the line is absent) and answers 409 with the current version otherwise; without it the
//!   last writer wins. Versions grow by one per change of a line, so two tabs editing one
//!   cart learn of each other instead of silently overwriting.
//! - **Checkout** (`POST /v1/checkout`, `Idempotency-Key` required): the order id is a UUIDv5
//!   of (client, key), so the same key is the same order on any instance. The first request
//!   builds the checkout request from the cart (prices from the catalog, lines sorted, so the
//!   same cart gives the same request) and stores it in Redis with `SET NX` (24 h). Every
//!   request with that key, first or retry, then publishes *the stored request* and waits for
//!   the broker's acknowledgement before answering 202 (first) or 200 (`replayed`). So a
//!   double-click or a retry after a timeout is one order even if the cart changed in
//!   between, and a request whose publish failed (503 with Retry-After) is published by its
//!   retry. The saga's idempotent start absorbs the re-publishes. Ordered cart lines are
//!   removed only where unchanged since they were read (a Lua compare-and-delete), so a line
//!   added during checkout stays.
//! - **Order status** (`GET /v1/orders/{id}?user_id=`): the projection, or `ACCEPTED`
//!   (written by the checkout endpoint with sequence −1, create-only) until the saga's first
//!   status lands. A projection is written only with a newer sequence (the saga's transition
//!   number; the ledger's input offset for availability), so redelivery or a rebalance
//!   cannot move it backwards. Shown only to the order's user (another user's order answers
//!   404: order ids derive from client-chosen keys, so they are not secrets).
//! - **Product pages** (`GET /v1/products/{id}`): cache-aside. The instance's own hot tier
//!   first (a product viewed `hot_views_per_sec` times within a second is kept in process
//!   for `hot_ttl_ms`, so a flash sale's few products do not all queue on one Redis key),
//!   then `product:v2:{id}` in Redis (TTL 60 s), then the catalog database (which fills
//!   Redis): the product and its `product_images` rows in one query. Availability comes from
//!   the projection. A Redis outage slows product pages (catalog reads) but does not fail
//!   them.
//! - **Product images** ([`images`]): a page shows an image only when image-quality's newest
//!   verdict on it is OK *and* was about the URL its row holds now (a changed URL waits for
//!   its own verdict), in position order: `images` (`image_id`, `url`, `zoom`) and
//!   `image_urls` (the same URLs), so no unchecked URL is ever served. A product whose images
//!   all failed (or are not checked yet) is still shown, with no images and
//!   `images_pending_review: true`. The verdicts are read with availability (no extra round
//!   trip) and are not cached, so a verdict shows on the next view, within the projection's
//!   lag (about a second); the image rows are cached with the product, so a new image row or
//!   a changed URL shows within `product_cache_ttl_secs` (60 s) plus `hot_ttl_ms` once its
//!   verdict is in. When the verdicts cannot be read, no image is shown
//!   (`"degraded": ["images"]`). Search hits carry their product's first shown image as
//!   `image_url` (or null), never the index's.
//! - **Search** (`GET /v1/search`, [`search`]) checks the request as the search service
//!   would (a bad one is a 400 without a call) and asks the service's replicas
//!   (`search_urls`, copies of one index): each request starts at the next replica in turn
//!   and, on a 5xx, a timeout or no connection, tries the following one, each try within
//!   `upstream_timeout_ms` (150 ms) and all within twice that. The service's refusal of a
//!   request (a 400 with its error body, e.g. an unclosed quote) reaches the shopper as is,
//!   with no other replica asked. When no replica answers (or none is configured) search
//!   answers from the catalog database (title contains every word, no filters), marked
//!   `"degraded": ["search"]`; either way the products are in `hits`.
//! - **Recommendations** are proxied to their service within `upstream_timeout_ms`; when it
//!   is down, slow or not configured (its processor is an open issue), they come from the
//!   most-viewed products, marked `"degraded": ["recommendations"]`. Product pages and
//!   checkout never depend on search or recommendations.
//! - **API keys** (`fleet keys create <client>`) are shown once and stored as SHA-256 hashes.
//!   Each instance keeps the live hashes in memory behind a lock, replaced wholesale,
//!   reloaded every 5 s and on an unknown key: a new key works at once, a revoked one stops
//!   within seconds, and no request waits on PostgreSQL.
//! - **Limits**: per client IP first (governor token bucket; keyless requests count, so key
//!   guessing is limited), then per key; 429 with `Retry-After` (whole seconds until a
//!   token). Bodies over `max_body_bytes` get 413. Every 4xx has a stable `code` and a
//!   message; 5xx bodies say which dependency is unavailable and nothing more (details go to
//!   the log). The client IP is the TCP peer: behind a proxy, set the limits there
//!   (X-Forwarded-For is not trusted).
//! - **Interactions** (views, searches, add-to-cart, purchases) go to
//!   `recommendations.interactions.v1` fire-and-forget: a page never waits for analytics;
//!   undelivered ones are counted (`storefleet_storefront_interactions_dropped_total`).
//!
//! Limits: carts have no TTL (abandoned-cart cleanup is not built), and the stack's Redis
//! persists nothing: a Redis restart empties carts and the idempotency records (a production
//! deployment keeps them with AOF or a replica). A checkout retried after that builds its
//! request from the then-current cart under the same order id; the saga keeps the order it
//! started and refuses the differing request to its dead-letter topic as a key conflict
//! (counted), so there is still one order and one charge.

pub mod api;
pub mod catalog;
pub mod checkout;
pub mod domain;
pub mod images;
pub mod keys;
mod metrics;
pub mod projections;
pub mod redis_store;
pub mod search;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codec::{RegistryClient, TopicCodec};
use rdkafka::producer::FutureProducer;
use tasks::Tasks;
use tokio_util::sync::CancellationToken;
use topology::{StorefrontParams, Topology};
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum StorefrontError {
    #[error("storefront configuration: {0}")]
    Config(String),
    #[error("storefront configuration: a database URL")]
    DatabaseUrl(#[source] runtime::RuntimeError),
    #[error("storefront could not start: registering `{topic}`")]
    Register {
        topic: String,
        #[source]
        source: codec::CodecError,
    },
    #[error("storefront could not start: redis at {url}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("storefront could not start: API keys")]
    Keys(#[source] tokio_postgres::Error),
    #[error("storefront could not start: producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("storefront could not start: HTTP listener on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("storefront HTTP server")]
    Serve(#[source] std::io::Error),
    #[error("storefront HTTP server task")]
    ServerTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
}

async fn codec_for(
    topology: &Topology,
    registry: &RegistryClient,
    topic: &str,
) -> Result<TopicCodec, StorefrontError> {
    let text = topology
        .topic(topic)
        .and_then(|t| t.value_schema.as_deref())
        .and_then(|p| topology.schema_text(p))
        .ok_or_else(|| StorefrontError::Config(format!("`{topic}` has no Avro schema")))?;
    TopicCodec::register(registry, &format!("{topic}-value"), text)
        .await
        .map_err(|source| StorefrontError::Register {
            topic: topic.to_string(),
            source,
        })
}

/// The topics of one storefront, by port (topology.yaml binds them).
pub struct Topics {
    /// Written: checkout requests and shopper interactions.
    pub checkout: String,
    pub interactions: String,
    /// Read: the saga transitions (order status) and the availability projection.
    pub status: String,
    pub availability: String,
    /// Read if bound: image-quality's verdicts (without it no image is shown).
    pub image_results: Option<String>,
}

impl Topics {
    pub fn from_spec(spec: &topology::ProcessorSpec) -> Result<Self, StorefrontError> {
        let port = |topic: Option<&str>, port: &str| {
            topic.map(str::to_string).ok_or_else(|| {
                StorefrontError::Config(format!("`{}` binds no topic to port `{port}`", spec.name))
            })
        };
        Ok(Self {
            checkout: port(spec.output("checkout_requests"), "checkout_requests")?,
            interactions: port(spec.output("interactions"), "interactions")?,
            status: port(spec.input("transitions"), "transitions")?,
            availability: port(spec.input("availability"), "availability")?,
            image_results: spec.input("image_results").map(str::to_string),
        })
    }
}

/// Runs one storefront instance until `shutdown`: the API and the projection consumer.
pub async fn run(
    config: runtime::RuntimeConfig,
    topology: &Topology,
    params: StorefrontParams,
    topics: Topics,
    shutdown: CancellationToken,
) -> Result<(), StorefrontError> {
    params.validate().map_err(StorefrontError::Config)?;
    // Our own token: a fatal consumer error stops this instance's API too, and nothing else.
    let shutdown = shutdown.child_token();
    // This instance owns every task it starts (the API server, the key refresher, the
    // janitor, delivery watchers, database connections) and drains them before it returns.
    let tasks = Tasks::new(shutdown.clone());
    let served = serve(config, topology, params, topics, &tasks).await;
    tasks.drain(tasks::DRAIN_TIME).await;
    served
}

async fn serve(
    config: runtime::RuntimeConfig,
    topology: &Topology,
    params: StorefrontParams,
    topics: Topics,
    tasks: &Tasks,
) -> Result<(), StorefrontError> {
    let shutdown = tasks.token().clone();
    let Topics {
        checkout,
        interactions,
        status: status_topic,
        availability: availability_topic,
        image_results: image_results_topic,
    } = topics;
    let topics = api::Topics {
        checkout,
        interactions,
    };
    let stack = &config.stack;
    let database = |name: &str| {
        runtime::postgres_database_url(&stack.postgres_url, name)
            .map_err(StorefrontError::DatabaseUrl)
    };
    let store = redis_store::Store::connect(&stack.redis_url)
        .await
        .map_err(|source| StorefrontError::Redis {
            url: stack.redis_url.clone(),
            source,
        })?;
    let keys = keys::KeyRing::load(&database(&params.database)?, tasks)
        .await
        .map_err(StorefrontError::Keys)?;
    let registry = RegistryClient::new(&stack.registry_url);
    let checkout_codec = codec_for(topology, &registry, &topics.checkout).await?;
    let interactions_codec = codec_for(topology, &registry, &topics.interactions).await?;
    let producer: FutureProducer = runtime::producer_config(
        &stack.bootstrap_servers,
        &format!("storefront-{}", config.instance),
    )
    .create()
    .map_err(StorefrontError::Producer)?;
    let (key_limiter, ip_limiter) = api::limiters(&params);
    let port = params
        .http_port
        .checked_add(config.instance)
        .ok_or_else(|| StorefrontError::Config("http_port + instance overflows".into()))?;
    let address = SocketAddr::new(stack.admin_host, port);
    let search_replicas = params
        .search_urls
        .iter()
        .map(|base| search::endpoint(base))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StorefrontError::Config)?;
    let app = Arc::new(api::App {
        catalog: catalog::Catalog::new(
            &database(&params.catalog_database)?,
            &params.currency,
            4,
            tasks,
        ),
        hot: Mutex::new((
            domain::HotTracker::new(params.hot_views_per_sec),
            Default::default(),
        )),
        params,
        store: store.clone(),
        keys: keys.clone(),
        producer,
        checkout_codec,
        interactions_codec,
        topics,
        http: reqwest::Client::new(),
        // Instances start at different replicas, so their first requests spread too.
        search: api::SearchReplicas::new(search_replicas, usize::from(config.instance)),
        key_limiter,
        ip_limiter,
        metrics: metrics::Metrics::register(),
        tasks: tasks.clone(),
    });

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StorefrontError::Listen { address, source })?;
    info!(%address, "storefront API listening");
    let server_shutdown = shutdown.clone();
    let service = api::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = tasks.spawn("storefront api server", async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    tasks.spawn(
        "api key refresher",
        keys.refresh(Duration::from_secs(5), shutdown.clone()),
    );
    let janitor = {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        async move {
            // Forget idle limiter entries so a flood of addresses cannot grow memory forever.
            while !shutdown.is_cancelled() {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {
                        app.ip_limiter.retain_recent();
                        app.key_limiter.retain_recent();
                    }
                }
            }
        }
    };
    tasks.spawn("rate limiter janitor", janitor);

    let consumer = projections::Projections {
        store,
        status_topic,
        availability_topic,
        image_results_topic,
        metrics: app.metrics.clone(),
    };
    let consumed = runtime::run(config, topology, consumer, shutdown.clone()).await;
    // The consumer ends on shutdown or on a fatal error; either way the API goes too.
    shutdown.cancel();
    let served = server.await;
    // The last handles to the database clients: their connections close before the drain.
    drop(app);
    consumed?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StorefrontError::Serve(e)),
        Err(e) => Err(StorefrontError::ServerTask(e)),
    }
}
