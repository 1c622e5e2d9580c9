//! The runtime's pieces for a processor that keeps its own input positions instead of a
//! consumer group's committed offsets: the search index stores the offsets a commit covers
//! in the commit itself, so on restart it seeks to exactly where its index stands. Such a
//! processor assigns itself partitions (no group membership: every replica reads every
//! partition) and uses this for the rest, so its records are decoded, dead-lettered and
//! produced exactly as the drivers do it: the same codecs, the same [`crate::policy`], the same
//! dead-letter record.

use std::collections::HashMap;
use std::time::Duration;

use codec::{RegistryClient, TopicCodec};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use topology::{Topology, ValueFormat};

use crate::driver::{
    dead_letter, dead_letter_record, decode_input, formats, produce, register_codecs,
};
use crate::policy::{decide, Action, Failure};
use crate::{kafka, DeadLetterErrorKind, Input, Metrics, RuntimeConfig, RuntimeError, Topic};

pub struct Source {
    config: RuntimeConfig,
    formats: HashMap<String, ValueFormat>,
    codecs: HashMap<String, TopicCodec>,
    producer: FutureProducer,
    metrics: Metrics,
}

impl Source {
    /// Registers the processor's schemas (waiting out a registry that is starting) and opens
    /// its producer. `None` if `shutdown` came first.
    pub async fn start(
        config: RuntimeConfig,
        topology: &Topology,
        metrics: Metrics,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, RuntimeError> {
        let registry = RegistryClient::new(&config.stack.registry_url);
        let Some(codecs) = register_codecs(&config, topology, &registry, shutdown).await? else {
            return Ok(None);
        };
        let producer: FutureProducer = kafka::processor_producer_config(&config).create()?;
        Ok(Some(Self {
            formats: formats(topology),
            codecs,
            producer,
            metrics,
            config,
        }))
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A consumer with the processor's settings and group id `group` (used only to publish
    /// positions for lag dashboards; it never subscribes, the caller assigns).
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer, RuntimeError> {
        let mut c = kafka::consumer_config(&self.config);
        c.set("group.id", group);
        Ok(c.create()?)
    }

    /// `message` decoded by its topic's format. A registry that cannot be reached is waited
    /// out (the record is fine); any other failure is returned for [`Source::dead_letter`].
    /// `None` if `shutdown` came while waiting.
    pub async fn decode(
        &self,
        message: &OwnedMessage,
        shutdown: &CancellationToken,
    ) -> Option<Result<Input, Failure>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match decode_input(&self.formats, &self.codecs, message).await {
                Ok(input) => return Some(Ok(input)),
                Err(failure) => match decide(&failure, attempt, &self.config.retry) {
                    Action::Retry(wait) => {
                        tokio::select! {
                            _ = shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(wait.min(Duration::from_secs(5))) => {}
                        }
                    }
                    _ => return Some(Err(failure)),
                },
            }
        }
    }

    /// Sends `message` to its input's dead-letter topic with `failure` as the reason, and
    /// waits until the broker has it (so a position past it can be committed).
    pub async fn dead_letter(
        &self,
        message: &OwnedMessage,
        failure: &Failure,
    ) -> Result<(), RuntimeError> {
        let kind = match decide(failure, u32::MAX, &self.config.retry) {
            Action::DeadLetter(kind) => kind,
            _ => DeadLetterErrorKind::Processing,
        };
        let letter = dead_letter(&self.config, message, kind, failure, 1);
        let record = dead_letter_record(
            &self.config,
            &self.codecs,
            &self.metrics,
            message.topic(),
            letter,
        )?;
        let delivery = produce(&self.producer, &record).await?;
        delivery
            .await
            .map_err(|_| RuntimeError::Config("dead-letter delivery cancelled".into()))?
            .map_err(|(e, _)| RuntimeError::from(e))?;
        Ok(())
    }

    /// Encodes `value` for `topic` and waits for the broker's acknowledgement.
    pub async fn send<T: Serialize>(
        &self,
        topic: &Topic<T>,
        key: &str,
        value: &T,
    ) -> Result<(), RuntimeError> {
        let codec = self.codecs.get(topic.name()).ok_or_else(|| {
            RuntimeError::Config(format!("topic `{}` has no Avro codec", topic.name()))
        })?;
        let record = crate::OutRecord {
            topic: topic.name().to_string(),
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            payload: Some(codec.encode(value)?),
            headers: Vec::new(),
        };
        let delivery = produce(&self.producer, &record).await?;
        delivery
            .await
            .map_err(|_| RuntimeError::Config("delivery cancelled".into()))?
            .map_err(|(e, _)| RuntimeError::from(e))?;
        self.metrics
            .records_out
            .with_label_values(&[topic.name()])
            .inc();
        Ok(())
    }
}
