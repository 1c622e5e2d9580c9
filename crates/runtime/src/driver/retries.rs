//! The one routine both drivers run when handling a record fails: count the failure, ask
//! the policy ([`decide`]) what it means, and do that answer's bookkeeping: a retry's metric
//! and log line, the dead-letter record, or the fatal error that stops the processor.
//!
//! Waiting before a retry stays with each driver: the sequential one sleeps (shutdown
//! abandons the record), the pipelined one also gives up when the record's partition is
//! revoked. Both then try again and report the next failure here.

use std::collections::HashMap;
use std::time::Duration;

use codec::TopicCodec;
use rdkafka::message::{Message, OwnedMessage};
use tracing::{error, warn};

use super::{dead_letter, dead_letter_record};
use crate::policy::{decide, Action, Failure};
use crate::processor::OutRecord;
use crate::{Metrics, RuntimeConfig, RuntimeError};

/// What to do after a failed attempt. (Stopping is the `Err` of [`Attempts::failed`].)
#[derive(Debug)]
pub(crate) enum Next {
    /// Try the record again after this wait.
    Retry(Duration),
    /// Give up on it: this record for its input's dead-letter topic is its only output.
    DeadLetter(OutRecord),
}

/// One input record's failed attempts so far.
pub(crate) struct Attempts<'a> {
    message: &'a OwnedMessage,
    attempt: u32,
}

impl<'a> Attempts<'a> {
    pub fn new(message: &'a OwnedMessage) -> Self {
        Self {
            message,
            attempt: 0,
        }
    }

    /// Notes one more failed attempt and says what comes next; `Err` stops the processor
    /// (the policy says stop, or the dead letter cannot be built).
    pub fn failed(
        &mut self,
        failure: Failure,
        config: &RuntimeConfig,
        codecs: &HashMap<String, TopicCodec>,
        metrics: &Metrics,
    ) -> Result<Next, RuntimeError> {
        self.attempt += 1;
        let (message, attempt) = (self.message, self.attempt);
        metrics.failures.with_label_values(&[failure.kind()]).inc();
        match decide(&failure, attempt, &config.retry) {
            Action::Retry(delay) => {
                metrics.retries.with_label_values(&[failure.kind()]).inc();
                warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), attempt, ?delay, error = %failure, "retrying record");
                Ok(Next::Retry(delay))
            }
            Action::DeadLetter(kind) => {
                warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error_kind = kind.as_str(), error = %failure, "dead-lettering record");
                let letter = dead_letter(config, message, kind, &failure, attempt);
                dead_letter_record(config, codecs, metrics, message.topic(), letter)
                    .map(Next::DeadLetter)
            }
            Action::Stop => {
                error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %failure, "stopping processor");
                Err(RuntimeError::Fatal(failure.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;
    use crate::{HandlerError, RetryPolicy};

    fn config(max_attempts: u32) -> RuntimeConfig {
        let mut config = RuntimeConfig::for_tests("orders");
        config.retry = RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        };
        config
    }

    fn message() -> OwnedMessage {
        OwnedMessage::new(
            Some(b"bytes".to_vec()),
            Some(b"key".to_vec()),
            "orders".into(),
            Timestamp::CreateTime(1),
            0,
            7,
            None,
        )
    }

    fn transient() -> Failure {
        Failure::Handler(HandlerError::transient("database", "db down"))
    }

    /// The dead-letter path ends in building the record for `orders.dlq`; with no codec for
    /// it (none is registered here) that is the error that proves the path was taken.
    fn is_dead_letter_attempt(outcome: &Result<Next, RuntimeError>) -> bool {
        matches!(outcome, Err(RuntimeError::Config(m)) if m.contains("orders.dlq"))
    }

    #[test]
    fn transient_failures_are_retried_and_counted_then_dead_lettered() {
        let (config, metrics, message) = (config(3), Metrics::new("shipping", 0), message());
        let codecs = HashMap::new();
        let mut attempts = Attempts::new(&message);
        for _ in 0..2 {
            match attempts.failed(transient(), &config, &codecs, &metrics) {
                Ok(Next::Retry(delay)) => assert!(delay <= Duration::from_millis(20)),
                other => panic!("expected a retry, got {other:?}"),
            }
        }
        let last = attempts.failed(transient(), &config, &codecs, &metrics);
        assert!(is_dead_letter_attempt(&last), "{last:?}");
        assert_eq!(metrics.failures.with_label_values(&["transient"]).get(), 3);
        assert_eq!(metrics.retries.with_label_values(&["transient"]).get(), 2);
    }

    #[test]
    fn an_invalid_record_is_dead_lettered_at_once_and_a_fatal_one_stops() {
        let (config, metrics, message) = (config(5), Metrics::new("shipping", 0), message());
        let codecs = HashMap::new();
        let invalid = Failure::Handler(HandlerError::invalid("qty 0"));
        let outcome = Attempts::new(&message).failed(invalid, &config, &codecs, &metrics);
        assert!(is_dead_letter_attempt(&outcome), "{outcome:?}");
        let fatal = Failure::Handler(HandlerError::fatal("bug"));
        let outcome = Attempts::new(&message).failed(fatal, &config, &codecs, &metrics);
        assert!(matches!(outcome, Err(RuntimeError::Fatal(m)) if m.contains("bug")));
        assert_eq!(metrics.failures.with_label_values(&["invalid"]).get(), 1);
        assert_eq!(metrics.failures.with_label_values(&["fatal"]).get(), 1);
        assert_eq!(metrics.retries.with_label_values(&["fatal"]).get(), 0);
    }
}
