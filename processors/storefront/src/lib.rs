//! The storefront: the fleet's HTTP front door. One process per instance serves the API
//! ([`api`]) on `http_port + instance` and runs the projection consumer ([`projections`]) in
//! the `storefront` group. Carts, idempotency records, caches and projections live in Redis
//! ([`redis_store`]); API keys in the storefront's database ([`keys`]); product data comes from
//! the catalog database ([`catalog`]). It writes checkout requests and shopper interactions
//! to Kafka, and nothing else: the saga does the rest.

pub mod api;
pub mod catalog;
pub mod domain;
pub mod keys;
mod metrics;
pub mod projections;
pub mod redis_store;

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
    #[error("storefront could not start: {0}")]
    Start(String),
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
        .map_err(|e| StorefrontError::Start(format!("registering `{topic}`: {e}")))
}

/// The topics of one storefront (renamed copies in isolated topologies).
pub struct Topics {
    /// Written: checkout requests and shopper interactions.
    pub checkout: String,
    pub interactions: String,
    /// Read: the saga transitions (order status) and the availability projection.
    pub status: String,
    pub availability: String,
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
    } = topics;
    let topics = api::Topics {
        checkout,
        interactions,
    };
    let stack = &config.stack;
    let database = |name: &str| {
        runtime::postgres_database_url(&stack.postgres_url, name)
            .map_err(|e| StorefrontError::Config(e.to_string()))
    };
    let store = redis_store::Store::connect(&stack.redis_url)
        .await
        .map_err(|e| StorefrontError::Start(format!("redis at {}: {e}", stack.redis_url)))?;
    let keys = keys::KeyRing::load(&database(&params.database)?, tasks)
        .await
        .map_err(|e| StorefrontError::Start(format!("API keys: {e}")))?;
    let registry = RegistryClient::new(&stack.registry_url);
    let checkout_codec = codec_for(topology, &registry, &topics.checkout).await?;
    let interactions_codec = codec_for(topology, &registry, &topics.interactions).await?;
    let producer: FutureProducer = runtime::producer_config(
        &stack.bootstrap_servers,
        &format!("storefront-{}", config.instance),
    )
    .create()
    .map_err(|e| StorefrontError::Start(format!("producer: {e}")))?;
    let (key_limiter, ip_limiter) = api::limiters(&params);
    let port = params
        .http_port
        .checked_add(config.instance)
        .ok_or_else(|| StorefrontError::Config("http_port + instance overflows".into()))?;
    let address = SocketAddr::new(stack.admin_host, port);
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
        key_limiter,
        ip_limiter,
        metrics: metrics::Metrics::register(),
        tasks: tasks.clone(),
    });

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| StorefrontError::Start(format!("HTTP listener on {address}: {e}")))?;
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
        Ok(Err(e)) => Err(StorefrontError::Start(format!("HTTP server: {e}"))),
        Err(e) => Err(StorefrontError::Start(format!("HTTP server task: {e}"))),
    }
}
