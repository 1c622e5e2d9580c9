//! Topics from the topology (pre-created: auto-creation would hide typos) and schema
//! registration (`fleet schemas push`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use topology::Topology;
use tracing::info;

use crate::{StackConfig, StackError};

/// Creates every topology topic that does not exist yet. Returns how many were created.
pub async fn create_topics(config: &StackConfig, topology: &Topology) -> Result<usize, StackError> {
    create_topics_at(&config.bootstrap_servers(), topology).await
}

pub async fn create_topics_at(bootstrap: &str, topology: &Topology) -> Result<usize, StackError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let retention: Vec<String> = topology
        .topics
        .iter()
        .map(|t| t.retention_ms.to_string())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = topology
        .topics
        .iter()
        .zip(&retention)
        .map(|(t, retention)| {
            NewTopic::new(&t.name, t.partitions as i32, TopicReplication::Fixed(1))
                .set("cleanup.policy", t.cleanup_policy.kafka_value())
                .set("retention.ms", retention)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let mut created = 0;
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(name) => {
                created += 1;
                info!(topic = %name, "topic created");
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => failures.push(format!("{name}: {code}")),
        }
    }
    if failures.is_empty() {
        Ok(created)
    } else {
        Err(StackError::Failed(format!(
            "topic creation failed: {}",
            failures.join("; ")
        )))
    }
}

/// Registers every schema of the topology under TopicNameStrategy subjects.
pub async fn push_schemas(config: &StackConfig, topology: &Topology) -> Result<usize, StackError> {
    let client = codec::RegistryClient::new(&config.registry_url());
    let subjects = topology.subjects();
    for (subject, schema) in &subjects {
        client.register(subject, schema).await?;
    }
    Ok(subjects.len())
}
