//! `fleet dlq inspect TOPIC PARTITION OFFSET`.

use runtime::StackEnv;
use topology::Topology;

use crate::decode::Decoder;
use crate::kafka::{self, PartitionRange, RawRecord};
use crate::request::{check_dead_letter_topic, check_position};
use crate::{render, Coordinates, Error, Result};

pub async fn run(
    env: &StackEnv,
    topology: &Topology,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<()> {
    check_dead_letter_topic(topology, topic).map_err(Error::Invalid)?;
    check_position(topology, topic, partition, offset).map_err(Error::Invalid)?;
    let at = Coordinates::new(topic, partition, offset);
    let record = read_one(env, &at).await?;
    let decoder = Decoder::new(&env.registry_url, topology.value_schema(topic));
    let letter = decoder
        .dead_letter(record.value.as_deref())
        .await?
        .map_err(|reason| Error::NotADeadLetter {
            at: at.clone(),
            reason,
        })?;
    let key = decoder.original(letter.original_key.as_deref()).await;
    let value = decoder.original(letter.original_value.as_deref()).await;
    let history = kafka::read_history(&env.bootstrap_servers).await?;
    let document = render::inspect_document(&at, &letter, key, value, history.latest(&at));
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// The record at exactly `at`, or why there is none.
pub async fn read_one(env: &StackEnv, at: &Coordinates) -> Result<RawRecord> {
    let marks = kafka::topic_watermarks(&env.bootstrap_servers, &at.topic).await?;
    let Some(m) = marks.iter().find(|m| m.partition == at.partition) else {
        return Err(Error::NoPartition {
            topic: at.topic.clone(),
            partition: at.partition,
        });
    };
    if !(m.low..m.high).contains(&at.offset) {
        return Err(Error::OutOfRange {
            at: at.clone(),
            low: m.low,
            high: m.high,
        });
    }
    let range = PartitionRange {
        partition: at.partition,
        start: at.offset,
        end: at.offset + 1,
    };
    kafka::read(&env.bootstrap_servers, &at.topic, vec![range])
        .await?
        .into_iter()
        .find(|r| r.offset == at.offset)
        .ok_or_else(|| Error::NoRecord(at.clone()))
}
