//! The monitor's errors, and the one place that decides what a sampling error means.
//!
//! Sampling never fails as a whole: a broker that does not answer makes every group
//! UNKNOWN, a group whose offsets cannot be read makes that group UNKNOWN, an unreadable
//! membership falls back to the instances' health, an unreadable record leaves its time lag
//! unknown, an instance that does not answer is down. [`Problems`] collects them for the
//! overview and logs each once when it appears (not at every sample while it lasts).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use rdkafka::error::KafkaError;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("creating a Kafka client for {bootstrap}")]
    Client {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading topic metadata from {bootstrap}")]
    Metadata {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading watermarks")]
    Watermarks(#[source] KafkaError),
    #[error("reading the committed offsets of group {group}")]
    Committed {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("describing group {group}")]
    Members {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading the oldest unconsumed records")]
    OldestRecords(#[source] KafkaError),
    #[error("the Kafka sampling task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
    #[error("binding the monitor's HTTP port {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    #[error("building an HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error("{url} answered {status}: {body}")]
    Answered {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("asking {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl MonitorError {
    /// The message with its causes, one line.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// The problems of the current sample, and of the previous one (to log changes only).
#[derive(Debug, Default)]
pub struct Problems {
    current: Vec<String>,
    previous: BTreeSet<String>,
}

impl Problems {
    /// Records one sampling error: its meaning for the sample is decided by the caller's
    /// fallback; here it is made visible (overview, log).
    pub fn report(&mut self, error: &MonitorError) {
        let line = error.chain();
        if !self.previous.contains(&line) {
            warn!(error = %line, "monitor sampling problem");
        }
        if !self.current.contains(&line) {
            self.current.push(line);
        }
    }

    /// Closes the sample: returns its problems and remembers them for the next one.
    pub fn finish(&mut self) -> Vec<String> {
        let current = std::mem::take(&mut self.current);
        let now: BTreeSet<String> = current.iter().cloned().collect();
        for gone in self.previous.difference(&now) {
            info!(error = %gone, "monitor sampling problem cleared");
        }
        self.previous = now;
        current
    }
}
