use thiserror::Error;

/// Why a processor stopped. Bad records never produce one of these: they are dead-lettered.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("an output was not acknowledged by the broker ({topic}): {reason}")]
    Delivery { topic: String, reason: String },
    #[error("the handler asked to stop: {0}")]
    Fatal(String),
    #[error("changelog record {at}")]
    Changelog {
        at: String,
        #[source]
        source: crate::state::ChangelogError,
    },
    #[error("a deferred effect failed")]
    Effect(#[source] crate::processor::BoxError),
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),
}

/// `error` and its causes as one line ("reading the orders table: db error: …"), for dead
/// letters and logs. A cause whose text its parent already shows (errors that print their
/// source in their own message) is not repeated; line breaks inside a message (PostgreSQL's
/// DETAIL and HINT) become "; ".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string().replace('\n', "; ");
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string().replace('\n', "; ");
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::HandlerError;

    #[test]
    fn the_chain_shows_every_cause_once() {
        let io = std::io::Error::other("ERROR: deadlock detected\nDETAIL: process 7 waits");
        let error = HandlerError::transient("reading the orders table", io);
        assert_eq!(
            error_chain(&error),
            "transient failure: reading the orders table: ERROR: deadlock detected; DETAIL: process 7 waits"
        );
        // CodecError prints its source in its own message: shown once.
        let avro = codec::from_value::<i32>(&codec::Value::String("x".into())).unwrap_err();
        let shown = avro.to_string();
        let error = HandlerError::invalid("value shape").caused_by(avro);
        assert_eq!(
            error_chain(&error),
            format!("invalid record: value shape: {shown}")
        );
    }
}
