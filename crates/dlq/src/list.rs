//! `fleet dlq list [TOPIC]`.

use runtime::StackEnv;
use topology::Topology;

use crate::decode::Decoder;
use crate::render::{self, TopicCounts};
use crate::request::{check_dead_letter_topic, dead_letter_topics};
use crate::{kafka, Coordinates};

/// Every dead-letter topic of the topology with its record and redrive counts.
pub async fn every_topic(env: &StackEnv, topology: &Topology) -> crate::Result<()> {
    let topics: Vec<String> = dead_letter_topics(topology)
        .into_iter()
        .map(String::from)
        .collect();
    let mut marks = kafka::watermarks(&env.bootstrap_servers, topics.clone()).await?;
    let history = kafka::read_history(&env.bootstrap_servers).await?;
    let rows: Vec<(String, Option<TopicCounts>)> = topics
        .into_iter()
        .map(|topic| {
            let counts = marks
                .remove(&topic)
                .flatten()
                .map(|m| TopicCounts::new(&topic, &m, &history));
            (topic, counts)
        })
        .collect();
    print!("{}", render::topics_table(&rows));
    Ok(())
}

/// One line per dead letter of `topic`, the `limit` newest.
pub async fn one_topic(
    env: &StackEnv,
    topology: &Topology,
    topic: &str,
    limit: usize,
) -> crate::Result<()> {
    check_dead_letter_topic(topology, topic).map_err(crate::Error::Invalid)?;
    let marks = kafka::topic_watermarks(&env.bootstrap_servers, topic).await?;
    let history = kafka::read_history(&env.bootstrap_servers).await?;
    // The newest `limit` overall are among the newest `limit` of each partition.
    let ranges = marks.iter().map(|m| m.newest(limit)).collect();
    let records = kafka::read(&env.bootstrap_servers, topic, ranges).await?;
    let decoder = Decoder::new(&env.registry_url, topology.value_schema(topic));
    let mut lines = Vec::with_capacity(records.len());
    for record in records {
        let at = Coordinates::new(topic, record.partition, record.offset);
        let (time, line) = match decoder.dead_letter(record.value.as_deref()).await? {
            Ok(letter) => (
                letter.failed_at,
                render::letter_line(&at, &letter, history.count(&at)),
            ),
            Err(reason) => (
                record.timestamp.unwrap_or_default(),
                render::undecodable_line(&at, &reason),
            ),
        };
        lines.push((time, at, line));
    }
    let lines = render::newest(lines, limit);
    let counts = TopicCounts::new(topic, &marks, &history);
    println!("{}", render::topic_heading(topic, &counts, lines.len()));
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
