//! The counter through the testkit only: no broker, no registry, no sleeping.

use std::path::Path;

use counter::{Counter, Increment, Window, WindowCount};
use runtime::Topic;
use testkit::{decoded, Builder, Testkit, TestkitError};

const INCREMENTS: &str = "counter.increments.v1";
const COUNTS: &str = "counter.window-counts.v1";
const WINDOW_MS: i64 = 10_000;

fn kit() -> Testkit<Counter> {
    let topology =
        topology::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/topology.yaml")).unwrap();
    Builder::topics(&topology, &[INCREMENTS], &[COUNTS])
        .unwrap()
        .starting_at(1_000_000)
        .stateful(|clock| Counter {
            output: Topic::new(COUNTS),
            window_ms: WINDOW_MS,
            clock,
        })
        .unwrap()
}

fn increment(n: u32, amount: i64) -> Increment {
    Increment {
        event_id: format!("00000000-0000-4000-8000-{n:012}"),
        amount,
    }
}

#[tokio::test]
async fn a_window_counts_its_key_and_reports_when_its_timer_fires() {
    let mut kit = kit();
    assert!(kit
        .send(INCREMENTS, "a", &increment(1, 5))
        .await
        .unwrap()
        .is_empty());
    kit.advance(4_000).await.unwrap();
    kit.send(INCREMENTS, "a", &increment(2, 7)).await.unwrap();
    kit.send(INCREMENTS, "b", &increment(3, 1)).await.unwrap();
    assert_eq!(
        kit.state("a"),
        Some(&Window {
            start: 1_000_000,
            increments: 2,
            total: 12
        })
    );
    assert_eq!(kit.timer("a").map(|t| t.at_ms), Some(1_000_000 + WINDOW_MS));
    assert_eq!(kit.timer("b").map(|t| t.at_ms), Some(1_004_000 + WINDOW_MS));

    // a's window closes 10 s after it opened; b's is still open.
    let out = kit.advance(6_000).await.unwrap();
    let counts: Vec<WindowCount> = decoded(&out, COUNTS).unwrap();
    assert_eq!(
        counts,
        [WindowCount {
            key: "a".into(),
            window_start: 1_000_000,
            window_end: 1_010_000,
            increments: 2,
            total: 12
        }]
    );
    assert_eq!(out[0].key_str(), Some("a"));
    assert!(kit.state("a").is_none());
    assert!(kit.state("b").is_some());

    // The next increment of a opens a new window.
    kit.send(INCREMENTS, "a", &increment(4, 100)).await.unwrap();
    let out = kit.advance(WINDOW_MS).await.unwrap();
    let counts: Vec<WindowCount> = decoded(&out, COUNTS).unwrap();
    let summary: Vec<(&str, i64, i64)> = counts
        .iter()
        .map(|c| (c.key.as_str(), c.window_end, c.total))
        .collect();
    assert_eq!(summary, [("b", 1_014_000, 1), ("a", 1_020_000, 100)]);
}

#[tokio::test]
async fn a_redelivered_increment_counts_once() {
    let mut kit = kit();
    kit.send(INCREMENTS, "k", &increment(1, 3)).await.unwrap();
    kit.send(INCREMENTS, "k", &increment(2, 4)).await.unwrap();
    assert!(kit.redeliver(INCREMENTS, 0, 0).await.unwrap().is_empty());
    assert_eq!(kit.state("k").map(|w| w.total), Some(7));
    // Another partition has its own store and offsets.
    kit.send_to(INCREMENTS, 1, "k", &increment(3, 10))
        .await
        .unwrap();
    assert_eq!(
        kit.store(1).and_then(|s| s.get("k")).map(|w| w.total),
        Some(10)
    );
    assert_eq!(
        kit.store(0).and_then(|s| s.get("k")).map(|w| w.total),
        Some(7)
    );
}

#[tokio::test]
async fn a_record_that_does_not_fit_is_refused_before_the_handler() {
    let mut kit = kit();
    // Not a uuid: the schema's logical type refuses it when the test encodes it.
    let bad = Increment {
        event_id: "not-a-uuid".into(),
        amount: 1,
    };
    assert!(matches!(
        kit.send(INCREMENTS, "k", &bad).await,
        Err(TestkitError::Codec(_))
    ));
    // Without a key the handler refuses it; nothing is stored.
    let framed = kit.encode(INCREMENTS, &increment(9, 1)).unwrap();
    let refused = kit
        .send_raw(INCREMENTS, 0, None, Some(framed), Vec::new())
        .await;
    assert!(matches!(refused, Err(TestkitError::Handler(_))));
    assert!(kit.store(0).is_some_and(|s| s.is_empty()));
    assert!(kit.timer("k").is_none());
}
