//! librdkafka settings, in one place so every client of the fleet is configured alike.

use rdkafka::ClientConfig;

use crate::RuntimeConfig;

/// Consumer: manual offset storage and commits (the runtime commits only acknowledged work),
/// short session timeout so a killed member's partitions move within seconds.
pub fn consumer_config(config: &RuntimeConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.stack.bootstrap_servers)
        .set("group.id", &config.group)
        .set(
            "client.id",
            format!("{}-{}", config.processor, config.instance),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", config.offset_reset.kafka_value())
        .set("session.timeout.ms", "10000")
        // Every heartbeat is a write on nisshi (docs/broker-conformance.md): three a session.
        .set("heartbeat.interval.ms", "3000")
        .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
        // Never read outputs of aborted (or still open) transactions; without transactions
        // this reads exactly what read_uncommitted would.
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "10000")
        // Incremental rebalancing: a member joining or leaving moves only the partitions
        // that change owner; the others keep processing (no stop-the-world revoke).
        .set("partition.assignment.strategy", "cooperative-sticky");
    c
}

/// Producer: idempotent (no duplicates or reordering from librdkafka's own retries), acks from
/// all replicas, and a long delivery timeout so a broker restart is ridden out rather than
/// turned into a failed delivery.
pub fn producer_config(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers)
        .set("client.id", client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The Java client's partitioner: a key lands on the same partition whichever client
        // wrote it, which processors with several inputs keyed alike (co-partitioning) need.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "300000")
        .set("queue.buffering.max.messages", "200000");
    c
}

/// The producer of a processor instance: transactional (stable `transactional.id` per
/// instance, so a restart fences its predecessor) in exactly-once mode.
pub fn processor_producer_config(config: &RuntimeConfig) -> ClientConfig {
    let client_id = format!("{}-{}", config.processor, config.instance);
    let mut c = producer_config(&config.stack.bootstrap_servers, &client_id);
    if config.guarantee == topology::Guarantee::ExactlyOnce {
        c.set(
            "transactional.id",
            format!("{}-{}", config.group, config.instance),
        )
        .set("transaction.timeout.ms", "60000")
        // librdkafka requires deliveries to give up within the transaction's timeout.
        .set("message.timeout.ms", "60000");
    }
    c
}
