//! The runtime proven with the real shipping processor on the real broker and registry:
//! a record end to end, poison records dead-lettered while the partition keeps flowing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use events::shipping::{ShipmentEvent, ShipmentEventKind};
use loadgen::kafka::{drain, produce_all, producer, reader};
use loadgen::orders::OrderGenerator;
use runtime::DeadLetter;
use tokio_util::sync::CancellationToken;
use topology::{ProcessorParams, Topology};

/// Runs shipping in-process on `t` until the returned token is cancelled.
fn start_shipping(
    t: &Topology,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), runtime::RuntimeError>>,
) {
    let (spec, params) = t.processor("shipping").unwrap();
    let ProcessorParams::Shipping(params) = params else {
        panic!("the shipping processor has shipping parameters")
    };
    let mut config = runtime::RuntimeConfig::from_spec(spec, 0, env()).unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    let processor = shipping::Shipping::from_spec(params.clone(), spec).unwrap();
    let token = CancellationToken::new();
    let topology = t.clone();
    let run_token = token.clone();
    let task =
        tokio::spawn(async move { runtime::run(config, &topology, processor, run_token).await });
    (token, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_through_shipping_end_to_end() {
    let t = isolated_shipping("e2e", 3).await;
    let (input, output, _) = shipping_names(&t);
    let order_codec = codec_for(&t, &input).await;
    let out_codec = codec_for(&t, &output).await;
    let mut order = OrderGenerator::new("e2e", 1, 50).next_order(1_000);
    order.lines.truncate(2);
    order.lines[0].fulfillment_center = Some("FC-A".into());
    order.lines[1].fulfillment_center = Some("FC-B".into());

    let (token, task) = start_shipping(&t);
    let p = producer(&env().bootstrap_servers).unwrap();
    produce_all(
        &p,
        &input,
        [(order.order_id.clone(), order_codec.encode(&order).unwrap())],
    )
    .await
    .unwrap();

    let out = reader(&env().bootstrap_servers, &output, &unique("e2e-reader")).unwrap();
    let seen = drain(&out, 4, Duration::from_secs(30)).await;
    token.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(seen.len(), 4, "two shipments, each requested and labelled");
    let mut events = Vec::new();
    for record in &seen {
        assert_eq!(
            record.key.as_deref(),
            Some(order.order_id.as_bytes()),
            "keyed by order id"
        );
        let value = out_codec
            .decode(record.payload.as_ref().unwrap())
            .await
            .unwrap();
        events.push(codec::from_value::<ShipmentEvent>(&value).unwrap());
    }
    let mut by_center: HashMap<String, Vec<ShipmentEventKind>> = HashMap::new();
    for e in &events {
        assert_eq!(e.order_id, order.order_id);
        assert_eq!(e.causation_id.as_deref(), Some(order.event_id.as_str()));
        by_center
            .entry(e.fulfillment_center.clone())
            .or_default()
            .push(e.kind);
    }
    // One partition per key: each center's events arrive in the order they were decided.
    for center in ["FC-A", "FC-B"] {
        assert_eq!(
            by_center[center],
            vec![
                ShipmentEventKind::ShipmentRequested,
                ShipmentEventKind::LabelCreated
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_with_their_reason_and_the_partition_keeps_flowing() {
    // One partition, so the poison sits in front of the good records it must not stall.
    let t = isolated_shipping("poison", 1).await;
    let (input, output, dead_letters) = shipping_names(&t);
    let order_codec = codec_for(&t, &input).await;
    let dlq_codec = codec_for(&t, &dead_letters).await;
    let mut generator = OrderGenerator::new("poison", 2, 50);
    let good: Vec<_> = (0..3).map(|_| generator.next_order(5)).collect();
    let mut invalid = generator.next_order(5);
    invalid.lines[0].quantity = 0;
    let garbage = b"{\"order_id\": \"not avro\"}".to_vec();
    let unknown_schema = codec::frame(999_999, &[1, 2, 3]);
    let records = vec![
        ("bad-bytes".to_string(), garbage.clone()),
        (
            good[0].order_id.clone(),
            order_codec.encode(&good[0]).unwrap(),
        ),
        (
            invalid.order_id.clone(),
            order_codec.encode(&invalid).unwrap(),
        ),
        (
            good[1].order_id.clone(),
            order_codec.encode(&good[1]).unwrap(),
        ),
        ("unknown-schema".to_string(), unknown_schema.clone()),
        (
            good[2].order_id.clone(),
            order_codec.encode(&good[2]).unwrap(),
        ),
    ];
    let p = producer(&env().bootstrap_servers).unwrap();
    produce_all(&p, &input, records).await.unwrap();

    let (token, task) = start_shipping(&t);
    let expected_outputs: usize = good
        .iter()
        .map(|o| 2 * loadgen::orders::shipments_of(o))
        .sum();
    let out = reader(&env().bootstrap_servers, &output, &unique("poison-out")).unwrap();
    let dlq = reader(
        &env().bootstrap_servers,
        &dead_letters,
        &unique("poison-dlq"),
    )
    .unwrap();
    let outputs = drain(&out, expected_outputs, Duration::from_secs(30)).await;
    let letters = drain(&dlq, 3, Duration::from_secs(30)).await;
    token.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(
        outputs.len(),
        expected_outputs,
        "every good order after the poison was shipped"
    );
    assert_eq!(letters.len(), 3);
    let mut by_offset = HashMap::new();
    for record in &letters {
        let letter: DeadLetter = codec::from_value(
            &dlq_codec
                .decode(record.payload.as_ref().unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(letter.source_topic, input);
        assert_eq!(letter.processor, "shipping");
        assert_eq!(
            record.headers["dlq.source.offset"],
            letter.source_offset.to_string()
        );
        assert_eq!(record.headers["dlq.error.kind"], letter.error_kind.as_str());
        assert!(!record.headers["dlq.error.reason"].is_empty());
        by_offset.insert(letter.source_offset, letter);
    }
    let bad = &by_offset[&0];
    assert_eq!(bad.error_kind, runtime::DeadLetterErrorKind::Decode);
    assert_eq!(
        bad.original_value.as_deref(),
        Some(&garbage[..]),
        "original bytes kept"
    );
    assert_eq!(bad.original_key.as_deref(), Some(&b"bad-bytes"[..]));
    assert!(bad.reason.contains("magic byte"), "{}", bad.reason);
    let invalid_letter = &by_offset[&2];
    assert_eq!(
        invalid_letter.error_kind,
        runtime::DeadLetterErrorKind::Validation
    );
    assert!(
        invalid_letter.reason.contains("quantity 0"),
        "{}",
        invalid_letter.reason
    );
    let schema_letter = &by_offset[&4];
    assert_eq!(
        schema_letter.error_kind,
        runtime::DeadLetterErrorKind::Schema
    );
    assert_eq!(schema_letter.original_schema_id, Some(999_999));
    assert_eq!(
        schema_letter.original_value.as_deref(),
        Some(&unknown_schema[..])
    );
}
