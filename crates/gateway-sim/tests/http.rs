//! The simulator over real HTTP on 127.0.0.1:0, driven the way the payment processor drives
//! it; every test ends by auditing the ledger, not by trusting the answers it got.

use std::time::{Duration, Instant};

use gateway_sim::{serve, GatewayConfig};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Gateway {
    base: String,
    client: Client,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    async fn start(config: GatewayConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, config, shutdown.clone()));
        Self {
            base: format!("http://{address}"),
            client: Client::new(),
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve did not stop")
            .expect("join")
            .expect("serve");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn authorize(&self, key: &str, amount_cents: i64) -> (StatusCode, Value) {
        let body = json!({ "amount_cents": amount_cents, "currency": "USD" });
        self.send(
            self.client
                .post(self.url(&format!("/v1/payments/{key}/authorize")))
                .json(&body),
        )
        .await
    }

    async fn call(&self, key: &str, operation: &str) -> (StatusCode, Value) {
        self.send(
            self.client
                .post(self.url(&format!("/v1/payments/{key}/{operation}"))),
        )
        .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    async fn put_faults(&self, faults: Value) -> (StatusCode, Value) {
        self.send(self.client.put(self.url("/v1/faults")).json(&faults))
            .await
    }

    async fn ledger(&self) -> Value {
        let (status, ledger) = self.get("/v1/ledger").await;
        assert_eq!(status, StatusCode::OK);
        ledger
    }
}

#[tokio::test]
async fn authorize_capture_refund_is_audited() {
    let gateway = Gateway::start(GatewayConfig::default()).await;
    assert_eq!(gateway.get("/health").await, (StatusCode::OK, json!("ok")));

    let (status, payment) = gateway.authorize("order-1", 4_200).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payment["status"], "authorized");
    assert_eq!(payment["key"], "order-1");
    assert_eq!(payment["amount_cents"], 4_200);
    assert_eq!(payment["currency"], "USD");
    assert!(payment["gateway_ref"].as_str().unwrap().starts_with("gw_"));
    assert!(payment.get("decline_reason").is_none());

    for _ in 0..2 {
        let (status, payment) = gateway.call("order-1", "capture").await;
        assert_eq!(
            (status, &payment["status"]),
            (StatusCode::OK, &json!("captured"))
        );
    }
    let (status, payment) = gateway.call("order-1", "void").await;
    assert_eq!(status, StatusCode::CONFLICT, "{payment}");
    assert!(payment["error"].as_str().unwrap().contains("refund"));
    let (status, payment) = gateway.call("order-1", "refund").await;
    assert_eq!(
        (status, &payment["status"]),
        (StatusCode::OK, &json!("refunded"))
    );

    // A retried authorize answers the payment as it is now; another amount conflicts.
    let (status, payment) = gateway.authorize("order-1", 4_200).await;
    assert_eq!(
        (status, &payment["status"]),
        (StatusCode::OK, &json!("refunded"))
    );
    let (status, conflict) = gateway.authorize("order-1", 4_201).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(conflict["error"].is_string());

    let (status, payment) = gateway.get("/v1/payments/order-1").await;
    assert_eq!(
        (status, &payment["status"]),
        (StatusCode::OK, &json!("refunded"))
    );
    assert_eq!(
        gateway.get("/v1/payments/nope").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gateway.call("nope", "capture").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gateway.call("nope", "refund").await.0,
        StatusCode::NOT_FOUND
    );

    let ledger = gateway.ledger().await;
    assert_eq!(
        ledger["totals"],
        json!({"captured_cents": 4_200, "refunded_cents": 4_200, "net_cents": 0, "payments": 1})
    );
    let entry = &ledger["payments"][0];
    assert_eq!(entry["captured_cents"], 4_200);
    assert_eq!(entry["authorize_calls"], 3);
    assert_eq!(entry["capture_calls"], 2);
    gateway.stop().await;
}

#[tokio::test]
async fn void_before_authorize_fences_the_late_authorize() {
    let gateway = Gateway::start(GatewayConfig::default()).await;
    let (status, fence) = gateway.call("late", "void").await;
    assert_eq!(
        (status, &fence["status"]),
        (StatusCode::OK, &json!("voided"))
    );
    let (status, late) = gateway.authorize("late", 10_000).await;
    assert_eq!(
        (status, &late["status"]),
        (StatusCode::OK, &json!("voided"))
    );
    assert_eq!(late["amount_cents"], 0);
    assert_eq!(
        gateway.call("late", "capture").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(gateway.ledger().await["totals"]["captured_cents"], 0);
    gateway.stop().await;
}

#[tokio::test]
async fn declines_and_bad_bodies() {
    let config = GatewayConfig {
        decline_rate: 1.0,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config).await;
    let (status, payment) = gateway.authorize("a", 100).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payment["status"], "declined");
    assert_eq!(payment["decline_reason"], "card_declined");
    let (_, payment) = gateway.authorize("b", 0).await;
    assert_eq!(payment["decline_reason"], "invalid_amount");
    let (status, payment) = gateway.call("a", "void").await;
    assert_eq!(
        (status, &payment["status"]),
        (StatusCode::OK, &json!("declined"))
    );

    let (status, error) = gateway
        .send(
            gateway
                .client
                .post(gateway.url("/v1/payments/c/authorize"))
                .body("{\"amount_cents\": \"lots\"}"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"].is_string());
    assert_eq!(gateway.ledger().await["totals"]["payments"], 2);
    gateway.stop().await;
}

#[tokio::test]
async fn injected_errors_leave_the_ledger_untouched() {
    let config = GatewayConfig {
        error_rate: 1.0,
        seed: Some(1),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config).await;
    for i in 0..20 {
        let (status, body) = gateway.authorize(&format!("k{i}"), 100).await;
        assert!(
            status == StatusCode::INTERNAL_SERVER_ERROR
                || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
        assert!(body["error"].is_string());
    }
    assert!(gateway.call("k0", "void").await.0.is_server_error());
    let ledger = gateway.ledger().await;
    assert_eq!(ledger["payments"], json!([]));
    assert_eq!(ledger["totals"]["payments"], 0);

    let (_, stats) = gateway.get("/v1/stats").await;
    let faults = &stats["faults"];
    let errors = faults["error_500"].as_u64().unwrap() + faults["error_503"].as_u64().unwrap();
    assert_eq!(errors, 21);
    assert_eq!(stats["requests"]["authorize"], 20);
    assert_eq!(stats["requests"]["void"], 1);
    gateway.stop().await;
}

#[tokio::test]
async fn a_lost_response_still_charges() {
    let config = GatewayConfig {
        lost_rate: 1.0,
        hang_ms: 200,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config).await;
    let impatient = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let body = json!({ "amount_cents": 777, "currency": "USD" });
    let authorize = impatient
        .post(gateway.url("/v1/payments/lost-1/authorize"))
        .json(&body)
        .send()
        .await;
    assert!(authorize.unwrap_err().is_timeout());
    let capture = impatient
        .post(gateway.url("/v1/payments/lost-1/capture"))
        .send()
        .await;
    assert!(capture.unwrap_err().is_timeout());

    // The client saw nothing; the books show the charge.
    let (status, payment) = gateway.get("/v1/payments/lost-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["captured_cents"], 777);

    // A patient client gets 504 after the hang.
    let started = Instant::now();
    let (status, _) = gateway.call("lost-1", "capture").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // The retry, once the gateway recovers, answers the same payment: charged once.
    assert_eq!(gateway.put_faults(json!({})).await.0, StatusCode::OK);
    let (status, payment) = gateway.call("lost-1", "capture").await;
    assert_eq!(
        (status, &payment["status"]),
        (StatusCode::OK, &json!("captured"))
    );
    let ledger = gateway.ledger().await;
    assert_eq!(ledger["totals"]["captured_cents"], 777);
    assert_eq!(ledger["payments"][0]["capture_calls"], 3);
    let (_, stats) = gateway.get("/v1/stats").await;
    assert_eq!(stats["faults"]["lost"], 3);
    gateway.stop().await;
}

#[tokio::test]
async fn a_timeout_charges_nothing() {
    let config = GatewayConfig {
        timeout_rate: 1.0,
        hang_ms: 150,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config).await;
    let (status, _) = gateway.authorize("t", 500).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(gateway.get("/v1/payments/t").await.0, StatusCode::NOT_FOUND);
    assert_eq!(gateway.ledger().await["totals"]["payments"], 0);
    gateway.stop().await;
}

#[tokio::test]
async fn calls_beyond_the_rate_limit_get_429_and_change_nothing() {
    let config = GatewayConfig {
        rate_limit_per_sec: 2,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config).await;
    let (mut accepted, mut limited) = (0, 0);
    for i in 0..10 {
        let response = gateway
            .client
            .post(gateway.url(&format!("/v1/payments/r{i}/authorize")))
            .json(&json!({ "amount_cents": 100, "currency": "USD" }))
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry_after >= 1);
                let body: Value = response.json().await.unwrap();
                assert!(body["error"].is_string());
            }
            other => panic!("unexpected {other}"),
        }
    }
    // A burst of two, plus at most one refilled if the loop took over half a second.
    assert!((2..=3).contains(&accepted), "{accepted} accepted");
    assert_eq!(accepted + limited, 10);
    // Reads are never limited, and the books hold only the accepted calls.
    let ledger = gateway.ledger().await;
    assert_eq!(ledger["totals"]["payments"], accepted);
    let (_, stats) = gateway.get("/v1/stats").await;
    assert_eq!(stats["rate_limited"], limited);
    gateway.stop().await;
}

#[tokio::test]
async fn put_faults_changes_behaviour_at_runtime() {
    let gateway = Gateway::start(GatewayConfig::default()).await;
    assert_eq!(gateway.authorize("p", 100).await.0, StatusCode::OK);

    let (status, config) = gateway
        .put_faults(json!({ "error_rate": 1.0, "seed": 3 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["error_rate"], 1.0);
    assert_eq!(
        config["hang_ms"], 30_000,
        "absent fields take their defaults"
    );
    assert!(gateway.call("p", "capture").await.0.is_server_error());
    assert_eq!(gateway.get("/v1/faults").await.1["error_rate"], 1.0);
    let (_, payment) = gateway.get("/v1/payments/p").await;
    assert_eq!(payment["status"], "authorized");

    assert_eq!(gateway.put_faults(json!({})).await.0, StatusCode::OK);
    let (status, payment) = gateway.call("p", "capture").await;
    assert_eq!(
        (status, &payment["status"]),
        (StatusCode::OK, &json!("captured"))
    );
    gateway.stop().await;
}

#[tokio::test]
async fn invalid_fault_configs_are_rejected_with_400() {
    let gateway = Gateway::start(GatewayConfig::default()).await;
    for invalid in [
        json!({ "error_rate": 1.5 }),
        json!({ "error_rate": 0.6, "lost_rate": 0.6 }),
        json!({ "hang_ms": 10_000_000 }),
        json!({ "error_rat": 0.1 }),
        json!({ "error_rate": "high" }),
    ] {
        let (status, body) = gateway.put_faults(invalid.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (_, config) = gateway.get("/v1/faults").await;
    assert_eq!(
        config,
        serde_json::to_value(GatewayConfig::default()).unwrap()
    );
    gateway.stop().await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let invalid = GatewayConfig {
        timeout_rate: -1.0,
        ..GatewayConfig::default()
    };
    let refused = serve(listener, invalid, CancellationToken::new()).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn shutdown_cuts_a_hang_short() {
    let config = GatewayConfig {
        timeout_rate: 1.0,
        hang_ms: 60_000,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(config).await;
    let request = gateway
        .client
        .post(gateway.url("/v1/payments/h/capture"))
        .send();
    let hanging = tokio::spawn(request);
    // Wait until the gateway holds the call (it counts it before hanging).
    while gateway.get("/v1/stats").await.1["faults"]["timeout"] != 1 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    gateway.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let response = hanging.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}
