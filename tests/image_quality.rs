//! The image-quality processor (and its retry instance) as real `fleet` processes on the real
//! stack, isolated topics and a private database, checking real photos (scikit-image's and
//! Debian opencv-doc's, `scripts/fetch-photos.sh`) served by a real HTTP server in this test:
//! sharp and blurred copies, a slow host, a host that fails twice then succeeds, one that
//! always fails, one that never finishes its body, a missing image, and malformed and hostile
//! files. Checked from outside: the verdicts topic (decoded through the registry), the retry
//! and dead-letter topics, and the verdicts table.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use events::images::{
    ImageCheckRequested, ImageCheckResult, ImageCheckRetry, ImageCheckStatus, ImageErrorKind,
    ImageRejectReason,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PROCESSOR: &str = "image-quality";
const RETRY: &str = "image-quality-retry";

fn photos() -> PathBuf {
    let dir = std::env::var_os("STOREFLEET_PHOTOS").map(PathBuf::from).expect(
        "STOREFLEET_PHOTOS names the photo folder (scripts/fetch-photos.sh; scripts/test.sh sets it)",
    );
    assert!(
        dir.join("sharp").is_dir(),
        "{} has no sharp/",
        dir.display()
    );
    dir
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg") || n.ends_with(".png"))
        .collect();
    names.sort();
    names
}

#[derive(Clone)]
struct Host {
    photos: PathBuf,
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

fn mime(name: &str) -> &'static str {
    if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

/// A PNG signature and IHDR declaring 60000 x 60000 pixels, then a few bytes of IDAT: a
/// decompression bomb's header (what matters is that nothing allocates 3.6 G pixels).
fn png_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&ihdr);
    let crc = crc32(&chunk);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 4, b'I', b'D', b'A', b'T', 0x78, 0x9c, 0x03, 0x00]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

async fn serve(
    State(host): State<Host>,
    UrlPath((kind, name)): UrlPath<(String, String)>,
) -> Response {
    let hits = {
        let mut all = host.hits.lock().unwrap();
        let n = all.entry(format!("{kind}/{name}")).or_default();
        *n += 1;
        *n
    };
    let read = |sub: &str| std::fs::read(host.photos.join(sub).join(&name));
    let photo = |sub: &str| match read(sub) {
        Ok(bytes) => ([(header::CONTENT_TYPE, mime(&name))], bytes).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    };
    match kind.as_str() {
        "sharp" | "blurred" => photo(&kind),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(700)).await;
            photo("sharp")
        }
        "flaky" if hits <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
        "flaky" => photo("sharp"),
        "down" => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        "truncated" => {
            let bytes = read("sharp").unwrap();
            (
                [(header::CONTENT_TYPE, mime(&name))],
                bytes[..bytes.len() / 2].to_vec(),
            )
                .into_response()
        }
        "html" => ([(header::CONTENT_TYPE, "text/html")], "<html>sorry</html>").into_response(),
        "bomb" => ([(header::CONTENT_TYPE, "image/png")], png_bomb()).into_response(),
        "huge" => (
            [(header::CONTENT_TYPE, "image/jpeg")],
            vec![0xffu8; 3 * 1024 * 1024],
        )
            .into_response(),
        "never-ends" => {
            // The status and headers at once, then a byte every 300 ms, forever.
            let body = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((Ok::<_, std::io::Error>(vec![0xffu8]), ()))
            });
            (
                [(header::CONTENT_TYPE, "image/jpeg")],
                Body::from_stream(body),
            )
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_host(photos: PathBuf) -> (String, Host) {
    let host = Host {
        photos,
        hits: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/{kind}/{name}", get(serve))
        .with_state(host.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), host)
}

fn run(file: &std::path::Path, processor: &str) -> tokio::process::Child {
    let mut command = fleet_command();
    if let Ok(level) = std::env::var("STOREFLEET_TEST_LOG") {
        command.env("RUST_LOG", level);
    }
    command
        .env("STOREFLEET_POSTGRES", env().postgres_url)
        .arg("--topology")
        .arg(file)
        .args(["run", processor, "--instance", "0"])
        .spawn()
        .expect("fleet starts")
}

/// What each image must come to: status, reasons, attempts.
struct Expect {
    status: ImageCheckStatus,
    reasons: Vec<ImageRejectReason>,
    /// Reasons that must not be given.
    absent: Vec<ImageRejectReason>,
    attempts: Option<i32>,
    error_kind: Option<ImageErrorKind>,
}

fn expect(status: ImageCheckStatus, reasons: &[ImageRejectReason]) -> Expect {
    Expect {
        status,
        reasons: reasons.to_vec(),
        absent: Vec::new(),
        attempts: None,
        error_kind: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_image_gets_one_verdict_through_retries_hostile_files_and_kill_9() {
    let photos = photos();
    let sharp = files(&photos.join("sharp"));
    let blurred = files(&photos.join("blurred"));
    assert!(
        sharp.len() >= 10 && blurred.len() >= 10,
        "{} sharp, {} blurred",
        sharp.len(),
        blurred.len()
    );
    let (base, host) = start_host(photos.clone()).await;

    let suffix = unique("images");
    let database = private_database("images", &suffix.replace('-', "_"), "images").await;
    let mut t = topology()
        .isolated_all(&[PROCESSOR, RETRY], &suffix)
        .unwrap();
    t.processors
        .retain(|(p, _)| p.name == PROCESSOR || p.name == RETRY);
    t.connectors.clear();
    for name in [PROCESSOR, RETRY] {
        set_params(
            &mut t,
            name,
            &[
                ("database", database_name(&database).into()),
                ("read_timeout_ms", 1_000.into()),
                ("download_timeout_ms", 2_000.into()),
                ("retry_base_ms", 200.into()),
                ("retry_max_ms", 600.into()),
                ("max_bytes", (2 * 1024 * 1024).into()),
            ],
        );
    }
    let (spec, _) = t.processor(PROCESSOR).unwrap();
    let requests = spec.inputs["requests"].topic.clone();
    let dead_letters = spec.inputs["requests"].dead_letter.clone();
    let results = spec.outputs["results"].clone();
    let retries = spec.outputs["retries"].clone();
    // This test plays the seller portal (requests); the catalog connector is not run here
    // (tests/cdc.rs covers it), so nothing writes the uploads topic but it is declared.
    let uploads = spec.inputs["images"].topic.clone();
    for topic in t
        .topics
        .iter_mut()
        .filter(|x| x.name == requests || x.name == uploads)
    {
        topic.external_writers.push("images-test".into());
    }
    let (file, _dir) = deploy(&mut t).await;
    let request_codec = codec_for(&t, &requests).await;
    let result_codec = codec_for(&t, &results).await;
    let retry_codec = codec_for(&t, &retries).await;

    // The images: every sharp photo and blurred copy, then one of each trouble.
    let mut cases: Vec<(String, String, Expect)> = Vec::new(); // (image id, url, expectation)
    let mut add =
        |id: String, path: String, e: Expect| cases.push((id, format!("{base}/{path}"), e));
    // A sharp photo passes unless it is under the thumbnail size (some of scikit-image's are):
    // then it is rejected TOO_SMALL, never TOO_BLURRY.
    let policy = imageq::Policy::default();
    for (i, name) in sharp.iter().enumerate() {
        let bytes = std::fs::read(photos.join("sharp").join(name)).unwrap();
        let header = imageq::read_header(&bytes, &policy.limits).unwrap();
        let (w, h) = header.display_size();
        let e = if w.max(h) >= policy.thumbnail_min_side {
            expect(ImageCheckStatus::Ok, &[])
        } else {
            expect(ImageCheckStatus::Rejected, &[ImageRejectReason::TooSmall])
        };
        add(
            format!("sharp-{i}"),
            format!("sharp/{name}"),
            Expect {
                absent: vec![ImageRejectReason::TooBlurry],
                ..e
            },
        );
    }
    for (i, name) in blurred.iter().enumerate() {
        add(
            format!("blurred-{i}"),
            format!("blurred/{name}"),
            expect(ImageCheckStatus::Rejected, &[ImageRejectReason::TooBlurry]),
        );
    }
    let a_sharp = &sharp[0];
    add(
        "slow".into(),
        format!("slow/{a_sharp}"),
        expect(ImageCheckStatus::Ok, &[]),
    );
    add(
        "flaky".into(),
        format!("flaky/{a_sharp}"),
        Expect {
            attempts: Some(3),
            ..expect(ImageCheckStatus::Ok, &[])
        },
    );
    add(
        "down".into(),
        format!("down/{a_sharp}"),
        Expect {
            attempts: Some(4),
            error_kind: Some(ImageErrorKind::HttpStatus),
            ..expect(ImageCheckStatus::NeedsManualReview, &[])
        },
    );
    add(
        "never-ends".into(),
        format!("never-ends/{a_sharp}"),
        Expect {
            attempts: Some(4),
            error_kind: Some(ImageErrorKind::Timeout),
            ..expect(ImageCheckStatus::NeedsManualReview, &[])
        },
    );
    add(
        "missing".into(),
        "gone/x.jpg".into(),
        Expect {
            attempts: Some(1),
            error_kind: Some(ImageErrorKind::HttpStatus),
            ..expect(ImageCheckStatus::NeedsManualReview, &[])
        },
    );
    add(
        "truncated".into(),
        format!("truncated/{a_sharp}"),
        expect(ImageCheckStatus::Rejected, &[ImageRejectReason::Corrupt]),
    );
    add(
        "html".into(),
        "html/x.jpg".into(),
        expect(
            ImageCheckStatus::Rejected,
            &[ImageRejectReason::UnsupportedFormat],
        ),
    );
    add(
        "bomb".into(),
        "bomb/x.png".into(),
        expect(ImageCheckStatus::Rejected, &[ImageRejectReason::TooLarge]),
    );
    add(
        "huge".into(),
        "huge/x.jpg".into(),
        expect(ImageCheckStatus::Rejected, &[ImageRejectReason::TooLarge]),
    );
    // Product "all-bad" has only failing images (flagged for review); "mixed" has one good.
    let product_of = |id: &str| match id {
        "truncated" | "html" | "bomb" => "all-bad".to_string(),
        "slow" | "missing" => "mixed".to_string(),
        other => format!("product-{other}"),
    };
    let mut records = Vec::new();
    for (id, url, _) in &cases {
        let r = ImageCheckRequested {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: runtime::now_ms(),
            correlation_id: id.clone(),
            causation_id: None,
            image_id: id.clone(),
            product_id: product_of(id),
            url: url.clone(),
            seller_id: Some("seller-test".into()),
        };
        records.push((id.clone(), request_codec.encode(&r).unwrap()));
    }
    // A malformed request: keyed by something else than its image id (dead-lettered).
    let bad = ImageCheckRequested {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: runtime::now_ms(),
        correlation_id: "x".into(),
        causation_id: None,
        image_id: "x".into(),
        product_id: "p".into(),
        url: format!("{base}/sharp/{a_sharp}"),
        seller_id: None,
    };
    records.push(("not-x".into(), request_codec.encode(&bad).unwrap()));
    let expected: HashMap<String, &Expect> =
        cases.iter().map(|(id, _, e)| (id.clone(), e)).collect();

    let kafka = producer(&env().bootstrap_servers).unwrap();
    let half = records.len() / 2;
    produce_all(&kafka, &requests, records[..half].to_vec())
        .await
        .unwrap();
    let mut first = run(&file, PROCESSOR);
    let mut retry = run(&file, RETRY);
    let (db, connection) = tokio_postgres::connect(&database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // kill -9 the first instance once it has written some verdicts, with work in flight.
    let started = Instant::now();
    while count(&db).await < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no verdict within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(Pid::from_raw(first.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    let at_kill = count(&db).await;
    assert!(
        at_kill < half as i64,
        "the kill landed with checks of the first half unfinished ({at_kill} of {half} done)"
    );
    let _ = first.wait().await;
    produce_all(&kafka, &requests, records[half..].to_vec())
        .await
        .unwrap();
    let _first = run(&file, PROCESSOR);

    // Wait for every image's final verdict in the table.
    let started = Instant::now();
    loop {
        let rows = db
            .query("SELECT image_id, attempts FROM image_verdicts", &[])
            .await
            .unwrap();
        let done: HashSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        if expected.keys().all(|id| done.contains(id)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "verdicts missing after 120 s: {:?}",
            expected
                .keys()
                .filter(|id| !done.contains(*id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = retry.start_kill();

    // The table: one row per image, as expected.
    let rows = db
        .query("SELECT image_id, status, reasons, attempts, error_kind, blur_score, width_px FROM image_verdicts", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per image, nothing for the malformed request"
    );
    for row in &rows {
        let id: String = row.get(0);
        let e = expected[&id];
        let status: String = row.get(1);
        let reasons: Vec<String> = row.get(2);
        assert_eq!(
            status,
            e.status.as_str(),
            "{id}: {status} {reasons:?} (error {:?})",
            row.get::<_, Option<String>>(4)
        );
        for r in &e.reasons {
            assert!(
                reasons.contains(&r.as_str().to_string()),
                "{id}: reasons {reasons:?} lack {r:?}"
            );
        }
        for r in &e.absent {
            assert!(
                !reasons.contains(&r.as_str().to_string()),
                "{id}: reasons {reasons:?} include {r:?}"
            );
        }
        if let Some(a) = e.attempts {
            assert_eq!(row.get::<_, i32>(3), a, "{id}: attempts");
        }
        if let Some(k) = e.error_kind {
            assert_eq!(
                row.get::<_, Option<String>>(4).as_deref(),
                Some(k.as_str()),
                "{id}: error kind"
            );
        }
        if e.status == ImageCheckStatus::Ok {
            assert!(
                row.get::<_, Option<f64>>(5).is_some() && row.get::<_, Option<i32>>(6).is_some(),
                "{id}: scored"
            );
        }
    }
    // The slow host answered once; the flaky one three times; the failing ones 1 + 3 retries.
    let hits = host.hits.lock().unwrap().clone();
    assert_eq!(hits.get(&format!("flaky/{a_sharp}")), Some(&3), "{hits:?}");
    assert_eq!(hits.get(&format!("down/{a_sharp}")), Some(&4), "{hits:?}");
    assert!(
        hits.get(&format!("never-ends/{a_sharp}"))
            .copied()
            .unwrap_or(0)
            >= 4,
        "{hits:?}"
    );

    // Products: every image failed → flagged for review; one good image → not flagged.
    let flagged: Vec<String> = db
        .query("SELECT product_id FROM products_for_review", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(flagged.contains(&"all-bad".to_string()), "{flagged:?}");
    assert!(!flagged.contains(&"mixed".to_string()), "{flagged:?}");

    // The topic, decoded through the registry: every image's last verdict equals its row
    // (a redelivery after the kill may have published a verdict twice, with the same id).
    let out = reader(
        &env().bootstrap_servers,
        &results,
        &unique("images-results"),
    )
    .unwrap();
    let seen = drain(&out, usize::MAX, Duration::from_secs(5)).await;
    let mut last: HashMap<String, ImageCheckResult> = HashMap::new();
    let mut ids_per_image: HashMap<String, HashSet<String>> = HashMap::new();
    for record in &seen {
        let value = result_codec
            .decode(record.payload.as_ref().unwrap())
            .await
            .unwrap();
        let v: ImageCheckResult = codec::from_value(&value).unwrap();
        assert_eq!(record.key.as_deref(), Some(v.image_id.as_bytes()));
        ids_per_image
            .entry(v.image_id.clone())
            .or_default()
            .insert(v.event_id.clone());
        last.insert(v.image_id.clone(), v);
    }
    assert_eq!(
        last.len(),
        expected.len(),
        "a verdict on the topic per image"
    );
    for (id, v) in &last {
        assert_eq!(v.status, expected[id].status, "{id} on the topic");
    }
    for (id, event_ids) in &ids_per_image {
        assert_eq!(
            event_ids.len(),
            1,
            "{id}: one verdict event (duplicates share their id)"
        );
    }

    // The retry topic: "down" went through attempts 2, 3, 4, each with a not_before.
    let r = reader(
        &env().bootstrap_servers,
        &retries,
        &unique("images-retries"),
    )
    .unwrap();
    let mut down_attempts = Vec::new();
    for record in drain(&r, usize::MAX, Duration::from_secs(3)).await {
        let value = retry_codec
            .decode(record.payload.as_ref().unwrap())
            .await
            .unwrap();
        let retry: ImageCheckRetry = codec::from_value(&value).unwrap();
        assert!(retry.not_before > retry.occurred_at, "a retry waits");
        if retry.request.image_id == "down" {
            down_attempts.push(retry.attempt);
        }
    }
    down_attempts.sort();
    down_attempts.dedup();
    assert_eq!(down_attempts, vec![2, 3, 4]);

    // The malformed request was dead-lettered with its reason.
    let dead = reader(
        &env().bootstrap_servers,
        &dead_letters,
        &unique("images-dlq"),
    )
    .unwrap();
    let letters = drain(&dead, 1, Duration::from_secs(20)).await;
    assert_eq!(letters.len(), 1, "the mis-keyed request is dead-lettered");
}

async fn count(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM image_verdicts", &[])
        .await
        .unwrap()
        .get(0)
}
