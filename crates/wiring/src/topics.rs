//! A topic's Avro values as they are now, read without a consumer group and decoded with
//! each record's writer schema from the registry (`fleet orders stuck`, the load
//! generator's report).

use codec::RegistryClient;

use crate::{Result, WiringError};

/// Every Avro value of `topic` as it is now (start to end, no group), decoded with its writer
/// schema from the registry. A record that is not Confluent-framed Avro is an error.
pub async fn read_values<T: serde::de::DeserializeOwned>(
    env: &runtime::StackEnv,
    topic: &str,
) -> Result<Vec<T>> {
    let marks = dlq::kafka::topic_watermarks(&env.bootstrap_servers, topic)
        .await
        .map_err(|e| unreadable(topic, e))?;
    let ranges = marks.iter().map(|m| m.everything()).collect();
    read_values_in(env, topic, ranges).await
}

/// The Avro values of `topic` in `ranges` (no group), decoded as [`read_values`] does.
pub async fn read_values_in<T: serde::de::DeserializeOwned>(
    env: &runtime::StackEnv,
    topic: &str,
    ranges: Vec<dlq::kafka::PartitionRange>,
) -> Result<Vec<T>> {
    let records = dlq::kafka::read(&env.bootstrap_servers, topic, ranges)
        .await
        .map_err(|e| unreadable(topic, e))?;
    let registry = RegistryClient::new(&env.registry_url);
    let mut values = Vec::with_capacity(records.len());
    for record in records {
        let Some(bytes) = record.value else { continue };
        let decoded = async {
            let (id, body) = codec::unframe(&bytes)?;
            let schema = registry.schema_by_id(id).await?;
            let value = codec::decode_body(&schema, None, body)?;
            codec::from_value(&value)
        };
        values.push(decoded.await.map_err(|source| WiringError::Decode {
            topic: topic.to_string(),
            source,
        })?);
    }
    Ok(values)
}

fn unreadable(topic: &str, source: dlq::kafka::KafkaIoError) -> WiringError {
    WiringError::ReadTopic {
        topic: topic.to_string(),
        source: Box::new(source),
    }
}
