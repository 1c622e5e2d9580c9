//! The one place that decides what a failure means: retry (with backoff), dead-letter, or stop.

use std::time::Duration;

use rand::Rng;

use crate::dead_letter::DeadLetterErrorKind;
use crate::error::error_chain;
use crate::processor::HandlerError;
use crate::RetryPolicy;

/// Something went wrong with one input record. Its `Display` is one line with every cause:
/// the reason a dead letter carries.
#[derive(Debug)]
pub enum Failure {
    /// The bytes could not be turned into the topic's type.
    Decode(codec::CodecError),
    /// The handler rejected or failed on the record.
    Handler(HandlerError),
    /// An output built by the handler does not fit its topic's schema.
    Encode(codec::CodecError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Decode(e) => write!(f, "decode: {}", error_chain(e)),
            Failure::Handler(e) => write!(f, "handler: {}", error_chain(e)),
            Failure::Encode(e) => write!(f, "encode output: {}", error_chain(e)),
        }
    }
}

impl Failure {
    /// A short label for metrics (never record data).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Decode(e) if e.is_transient() => "registry_unavailable",
            Failure::Decode(_) => "decode",
            Failure::Handler(HandlerError::Invalid { .. }) => "invalid",
            Failure::Handler(HandlerError::Transient { .. }) => "transient",
            Failure::Handler(HandlerError::Fatal { .. }) => "fatal",
            Failure::Encode(_) => "encode",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Retry(Duration),
    DeadLetter(DeadLetterErrorKind),
    Stop,
}

/// What to do after `attempt` (1-based) failed with `failure`.
///
/// Infrastructure outages (registry unreachable) are retried without limit: the record is
/// fine and dead-lettering it would only hide the outage. A handler's transient failure is
/// retried up to `max_attempts`, then dead-lettered as RETRIES_EXHAUSTED (redrivable).
/// Everything about the record itself is dead-lettered at once.
pub fn decide(failure: &Failure, attempt: u32, retry: &RetryPolicy) -> Action {
    match failure {
        Failure::Decode(e) if e.is_transient() => Action::Retry(backoff(attempt, retry)),
        Failure::Decode(codec::CodecError::UnknownSchemaId(_)) => {
            Action::DeadLetter(DeadLetterErrorKind::Schema)
        }
        Failure::Decode(codec::CodecError::Mismatch { .. }) => {
            Action::DeadLetter(DeadLetterErrorKind::Schema)
        }
        Failure::Decode(_) => Action::DeadLetter(DeadLetterErrorKind::Decode),
        Failure::Handler(HandlerError::Invalid { .. }) => {
            Action::DeadLetter(DeadLetterErrorKind::Validation)
        }
        Failure::Handler(HandlerError::Transient { .. }) if attempt < retry.max_attempts => {
            Action::Retry(backoff(attempt, retry))
        }
        Failure::Handler(HandlerError::Transient { .. }) => {
            Action::DeadLetter(DeadLetterErrorKind::RetriesExhausted)
        }
        Failure::Handler(HandlerError::Fatal { .. }) => Action::Stop,
        Failure::Encode(_) => Action::DeadLetter(DeadLetterErrorKind::Processing),
    }
}

/// Full jitter: uniform in [0, min(max, base · 2^(attempt-1))].
pub fn backoff(attempt: u32, retry: &RetryPolicy) -> Duration {
    let exp = retry
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(retry.max_delay);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        }
    }

    #[test]
    fn bad_bytes_and_invalid_records_are_dead_lettered_at_once() {
        let bad = Failure::Decode(codec::CodecError::BadMagic(7));
        assert_eq!(
            decide(&bad, 1, &retry()),
            Action::DeadLetter(DeadLetterErrorKind::Decode)
        );
        let unknown = Failure::Decode(codec::CodecError::UnknownSchemaId(9));
        assert_eq!(
            decide(&unknown, 1, &retry()),
            Action::DeadLetter(DeadLetterErrorKind::Schema)
        );
        let invalid = Failure::Handler(HandlerError::invalid("qty 0"));
        assert_eq!(
            decide(&invalid, 1, &retry()),
            Action::DeadLetter(DeadLetterErrorKind::Validation)
        );
    }

    #[test]
    fn transient_failures_retry_then_dead_letter_and_fatal_stops() {
        let t = Failure::Handler(HandlerError::transient("writing the order", "db down"));
        assert!(matches!(decide(&t, 1, &retry()), Action::Retry(_)));
        assert!(matches!(decide(&t, 2, &retry()), Action::Retry(_)));
        assert_eq!(
            decide(&t, 3, &retry()),
            Action::DeadLetter(DeadLetterErrorKind::RetriesExhausted)
        );
        let fatal = Failure::Handler(HandlerError::fatal("bug"));
        assert_eq!(decide(&fatal, 1, &retry()), Action::Stop);
    }

    #[test]
    fn backoff_is_jittered_within_the_exponential_cap() {
        for attempt in 1..40 {
            let cap = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_millis(1000));
            for _ in 0..50 {
                assert!(backoff(attempt, &retry()) <= cap);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(5, &retry())).collect();
        assert!(spread.len() > 10, "full jitter spreads delays");
    }
}
