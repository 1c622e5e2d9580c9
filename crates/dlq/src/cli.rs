//! The `fleet dlq` command line, as clap-derive types the binary embeds.

use runtime::DeadLetterErrorKind;

#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum DlqAction {
    /// Dead-letter topics with their record and redrive counts, or one topic's dead letters.
    List {
        /// A dead-letter topic; without it, every dead-letter topic of the topology.
        topic: Option<String>,
        /// Show at most this many dead letters, the newest.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter in full, as JSON, with its original key and value decoded.
    Inspect {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// Re-produce dead letters' original bytes to their source topic, deferred.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["partition", "all"])))]
    Redrive {
        /// The dead-letter topic to redrive from.
        topic: String,
        /// With --offset: redrive one dead letter.
        #[arg(long, requires = "offset")]
        partition: Option<i32>,
        #[arg(long, requires = "partition")]
        offset: Option<i64>,
        /// Every dead letter of the topic (subject to --error-kind).
        #[arg(long)]
        all: bool,
        /// Only dead letters of this kind (decode, schema, validation, processing,
        /// retries-exhausted, unknown).
        #[arg(long, value_parser = parse_error_kind)]
        error_kind: Option<DeadLetterErrorKind>,
        /// Produce to this topology topic instead of each dead letter's source topic.
        #[arg(long)]
        to: Option<String>,
        /// Base deferral in seconds: the n-th redrive waits max(defer/2,
        /// uniform(0, min(max-defer, defer * 2^n))).
        #[arg(long, default_value_t = 30)]
        defer: u64,
        /// Cap of the deferral in seconds.
        #[arg(long, default_value_t = 300)]
        max_defer: u64,
        /// Also redrive dead letters that were redriven before.
        #[arg(long)]
        again: bool,
        /// Show what would be redriven; produce nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `retries-exhausted`, `RETRIES_EXHAUSTED`, `retries_exhausted`: any case, `-` or `_`.
pub fn parse_error_kind(text: &str) -> Result<DeadLetterErrorKind, String> {
    const KINDS: [DeadLetterErrorKind; 6] = [
        DeadLetterErrorKind::Unknown,
        DeadLetterErrorKind::Decode,
        DeadLetterErrorKind::Schema,
        DeadLetterErrorKind::Validation,
        DeadLetterErrorKind::Processing,
        DeadLetterErrorKind::RetriesExhausted,
    ];
    let wanted = text.trim().replace('-', "_").to_ascii_uppercase();
    KINDS
        .into_iter()
        .find(|kind| kind.as_str() == wanted)
        .ok_or_else(|| {
            let names: Vec<String> = KINDS
                .iter()
                .map(|k| k.as_str().to_ascii_lowercase().replace('_', "-"))
                .collect();
            format!("unknown error kind {text:?}; one of {}", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        action: DlqAction,
    }

    fn parse(args: &[&str]) -> Result<DlqAction, clap::Error> {
        Cli::try_parse_from(std::iter::once("dlq").chain(args.iter().copied())).map(|c| c.action)
    }

    #[test]
    fn error_kinds_parse_in_any_spelling() {
        for text in [
            "retries-exhausted",
            "RETRIES_EXHAUSTED",
            "Retries_Exhausted",
        ] {
            assert_eq!(
                parse_error_kind(text),
                Ok(DeadLetterErrorKind::RetriesExhausted)
            );
        }
        assert_eq!(parse_error_kind("decode"), Ok(DeadLetterErrorKind::Decode));
        let error = parse_error_kind("bogus").unwrap_err();
        assert!(error.contains("retries-exhausted"), "{error}");
    }

    #[test]
    fn list_and_inspect_parse_with_defaults() {
        assert_eq!(
            parse(&["list"]).unwrap(),
            DlqAction::List {
                topic: None,
                limit: 100
            }
        );
        assert_eq!(
            parse(&["list", "dlq.a.v1", "--limit", "5"]).unwrap(),
            DlqAction::List {
                topic: Some("dlq.a.v1".into()),
                limit: 5
            }
        );
        assert_eq!(
            parse(&["inspect", "dlq.a.v1", "2", "17"]).unwrap(),
            DlqAction::Inspect {
                topic: "dlq.a.v1".into(),
                partition: 2,
                offset: 17
            }
        );
    }

    #[test]
    fn redrive_parses_every_flag() {
        let action = parse(&[
            "redrive",
            "dlq.a.v1",
            "--all",
            "--error-kind",
            "processing",
            "--to",
            "orders.x.v1",
            "--defer",
            "5",
            "--max-defer",
            "60",
            "--again",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(
            action,
            DlqAction::Redrive {
                topic: "dlq.a.v1".into(),
                partition: None,
                offset: None,
                all: true,
                error_kind: Some(DeadLetterErrorKind::Processing),
                to: Some("orders.x.v1".into()),
                defer: 5,
                max_defer: 60,
                again: true,
                dry_run: true,
            }
        );
        let DlqAction::Redrive {
            defer, max_defer, ..
        } = parse(&["redrive", "t", "--partition", "1", "--offset", "2"]).unwrap()
        else {
            panic!("not a redrive");
        };
        assert_eq!((defer, max_defer), (30, 300));
    }

    #[test]
    fn redrive_needs_exactly_one_of_a_record_or_all() {
        for bad in [
            &["redrive", "t"][..],
            &["redrive", "t", "--partition", "1"],
            &["redrive", "t", "--offset", "1"],
            &["redrive", "t", "--all", "--partition", "1", "--offset", "2"],
            &["redrive", "t", "--all", "--error-kind", "nope"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
