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
            .map_err(StorefrontError::DatabaseUrl)
    };
    let store = redis_store::Store::connect(&stack.redis_url)
        .await
        .map_err(|source| StorefrontError::Redis {
            url: stack.redis_url.clone(),
            source,
        })?;
    let keys = keys::KeyRing::load(&database(&params.database)?)
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
    let app = Arc::new(api::App {
        catalog: catalog::Catalog::new(&database(&params.catalog_database)?, &params.currency, 4),
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
    });

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StorefrontError::Listen { address, source })?;
    info!(%address, "storefront API listening");
    let server_shutdown = shutdown.clone();
    let service = api::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    tokio::spawn(keys.refresh(Duration::from_secs(5), shutdown.clone()));
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
    tokio::spawn(janitor);

    let consumer = projections::Projections {
        store,
        status_topic,
        availability_topic,
    };
    let consumed = runtime::run(config, topology, consumer, shutdown.clone()).await;
    // The consumer ends on shutdown or on a fatal error; either way the API goes too.
    shutdown.cancel();
    let served = server.await;
    consumed?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StorefrontError::Serve(e)),
        Err(e) => Err(StorefrontError::ServerTask(e)),
    }
}
