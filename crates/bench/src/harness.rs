//! What the benchmarks share, and nothing else of the crate: the private broker's storage
//! engine, how figures name the broker, scratch databases and topic codecs.

use codec::{RegistryClient, TopicCodec};
use topology::Topology;

use crate::error::missing;
use crate::Result;

/// A storage engine for a private benchmark broker.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Engine {
    Memory,
    Sqlite,
    /// nisshi's PostgreSQL engine, in a database of its own on the stack's PostgreSQL.
    Postgres,
}

impl Engine {
    /// How figures name the engine.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Memory => "private nisshi, memory engine",
            Engine::Sqlite => "private nisshi, sqlite engine",
            Engine::Postgres => "private nisshi, postgresql engine",
        }
    }
}

/// How figures name the broker a benchmark runs on: a private one of `engine`, or the stack's.
pub fn broker_label(engine: Option<Engine>) -> &'static str {
    engine.map_or("the stack's nisshi, sqlite engine", Engine::label)
}

/// A private broker of `engine`, or `None` to use the stack's.
pub async fn private_broker(engine: Option<Engine>) -> Result<Option<stack::PrivateBroker>> {
    match engine {
        Some(engine) => Ok(Some(start_private_broker(engine).await?)),
        None => Ok(None),
    }
}

pub async fn start_private_broker(engine: Engine) -> Result<stack::PrivateBroker> {
    let storage = match engine {
        Engine::Memory => "memory://nisshi/".to_string(),
        Engine::Sqlite => stack::SQLITE_STORAGE.to_string(),
        Engine::Postgres => {
            let env = runtime::StackEnv::from_env()?;
            let database = format!("nisshi_bench_{}", runtime::now_ms());
            stack::create_database(&env.postgres_url, &database).await?;
            stack::postgres_storage(&env.postgres_url, &database)?
        }
    };
    Ok(stack::PrivateBroker::start(&storage).await?)
}

/// The value codec of `topic` (a renamed copy in `t`), registered under the subject of its
/// base topic `base`.
pub async fn codec(
    t: &Topology,
    registry: &RegistryClient,
    topic: &str,
    base: &str,
) -> Result<TopicCodec> {
    let text = t
        .topic(topic)
        .and_then(|s| s.value_schema.as_deref())
        .and_then(|p| t.schema_text(p))
        .ok_or_else(missing(format!("schema of {topic}")))?;
    Ok(TopicCodec::register(registry, &format!("{base}-value"), text).await?)
}

/// A scratch database `<prefix>_<suffix>` with `migrations/<prefix>` applied: (name, URL).
pub async fn private_database(
    topology: &Topology,
    env: &runtime::StackEnv,
    prefix: &str,
    suffix: &str,
) -> Result<(String, String)> {
    let migrations = stack::migrations_dir(topology).join(prefix);
    Ok(wiring::private_database(&env.postgres_url, &migrations, prefix, suffix).await?)
}
