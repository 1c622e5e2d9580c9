//! The storefront API as a real `fleet run storefront` process on the real stack (broker,
//! registry, PostgreSQL, Redis), with a private catalog and key database per test: API keys,
//! validation, carts with versions, idempotent checkout onto the topic, the order status
//! projection, rate limits with Retry-After, degradation when search or recommendations
//! are down, and product images shown only once image-quality passed them.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use events::checkout::{
    CheckoutRequested, OrderStatusCode, SagaState, SagaTransition, SagaTrigger,
};
use loadgen::kafka::{drain, produce_all, producer, reader};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Front {
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    topology: topology::Topology,
    keys_url: String,
    catalog_url: String,
    /// (id, title) of the private catalog's products.
    products: Vec<(String, String)>,
    base: String,
    child: tokio::process::Child,
    http: reqwest::Client,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A storefront on its own topics, catalog and key database, with `params` over the
/// topology's; waits until it answers.
async fn front(label: &str, params: &[(&str, serde_yaml::Value)]) -> Front {
    front_on(label, params, &env().redis_url).await
}

/// [`front`] on the Redis at `redis_url` (a database of the test's own).
async fn front_on(label: &str, params: &[(&str, serde_yaml::Value)], redis_url: &str) -> Front {
    let suffix = unique(label);
    let mut t = topology().isolated_all(&["storefront"], &suffix).unwrap();
    t.processors.retain(|(p, _)| p.name == "storefront");
    t.connectors.clear();
    // Checkout, inventory and image-quality do not run here: the test writes their
    // projections' topics itself.
    for topic in &mut t.topics {
        if topic.name.starts_with("checkout.saga-transitions")
            || topic.name.starts_with("inventory.availability")
            || topic.name.starts_with("images.check-results")
        {
            topic.external_writers.push("test".into());
        }
    }
    let keys_url = private_database("storefront", &suffix, "storefront").await;
    let catalog_url = private_database("catalog", &suffix, "catalog").await;
    let (db, connection) = tokio_postgres::connect(&catalog_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let titles = [
        "Red Office Chair",
        "Blue Desk Lamp",
        "Green Stapler",
        "Oak Bookcase",
    ];
    let mut products = Vec::new();
    for (i, title) in titles.iter().enumerate() {
        let id = uuid::Uuid::new_v4().to_string();
        db.execute(
            "INSERT INTO products (id, sku, title, price, seller) VALUES ($1::text::uuid, $2, $3, $4::text::numeric, 'acme')",
            &[&id, &format!("SKU-{suffix}-{i}"), title, &format!("{}.99", 10 + i)],
        )
        .await
        .unwrap();
        products.push((id, title.to_string()));
    }
    let port = free_port_pair();
    set_params(
        &mut t,
        "storefront",
        &[
            ("database", database_name(&keys_url).into()),
            ("catalog_database", database_name(&catalog_url).into()),
            ("http_port", port.into()),
        ],
    );
    set_params(&mut t, "storefront", params);
    let (file, dir) = deploy_avoiding(&mut t, &[port, port + 1]).await;
    let child = start(&file, redis_url);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "storefront did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Front {
        file,
        _dir: dir,
        topology: t,
        keys_url,
        catalog_url,
        products,
        base,
        child,
        http,
    }
}

fn start(file: &std::path::Path, redis_url: &str) -> tokio::process::Child {
    fleet_command()
        .env("STOREFLEET_POSTGRES", env().postgres_url)
        .env("STOREFLEET_REDIS", redis_url)
        .arg("--topology")
        .arg(file)
        .args(["run", "storefront"])
        .spawn()
        .unwrap()
}

impl Front {
    fn topic(&self, prefix: &str) -> String {
        self.topology
            .topics
            .iter()
            .find(|t| t.name.starts_with(prefix))
            .unwrap()
            .name
            .clone()
    }

    /// A new key through the operator command, as an operator would make it.
    async fn key(&self, client: &str) -> String {
        let out = fleet_command()
            .env("STOREFLEET_POSTGRES", env().postgres_url)
            .arg("--topology")
            .arg(&self.file)
            .args(["keys", "create", client])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let (s, b, _) = self.call(reqwest::Method::GET, path, Some(key), None).await;
        (s, b)
    }

    async fn put_line(
        &self,
        key: &str,
        user: &str,
        product: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let path = format!("/v1/carts/{user}/lines/{product}");
        let (s, b, _) = self
            .call(reqwest::Method::PUT, &path, Some(key), Some(body))
            .await;
        (s, b)
    }

    async fn checkout(
        &self,
        key: &str,
        idempotency: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/checkout", self.base))
            .header("x-api-key", key)
            .json(body);
        if let Some(k) = idempotency {
            request = request.header("idempotency-key", k);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn checkout_body(user: &str) -> Value {
    json!({
        "user_id": user,
        "shipping_address": {"recipient_name": "Ada", "line1": "1 Loop Rd", "city": "Springfield",
                             "region": "IL", "postal_code": "62701", "country_code": "US"},
        "payment": {"token": "tok_visa", "kind": "CARD", "last4": "4242"}
    })
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_validation_carts_and_an_idempotent_checkout() {
    let f = front("sf-api", &[]).await;
    let (p0, p1) = (f.products[0].0.clone(), f.products[1].0.clone());
    let user = unique("user").replace('-', "_");

    // Auth: no key, a wrong key, then a real one.
    let (s, b, _) = f
        .call(
            reqwest::Method::GET,
            &format!("/v1/products/{p0}"),
            None,
            None,
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "missing_api_key"));
    let (s, b) = f.get(&format!("/v1/products/{p0}"), "sf_not_a_key").await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "invalid_api_key"));
    let key = f.key(&unique("web").replace('-', "_")).await;
    assert!(key.starts_with("sf_"));
    let (s, b) = f.get(&format!("/v1/products/{p0}"), &key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["product"]["title"], "Red Office Chair");
    assert_eq!(b["product"]["price_minor"], 1099);
    // The key is stored hashed, never in clear.
    let (db, c) = tokio_postgres::connect(&f.keys_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(c);
    let stored: Vec<String> = db
        .query("SELECT key_hash FROM api_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!stored.contains(&key) && stored.contains(&storefront::keys::hash(&key)));

    // Validation: clear 4xx codes, nothing internal in the body.
    let (s, b) = f.get("/v1/products/not-a-uuid", &key).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_id"));
    let (s, b) = f
        .get(&format!("/v1/products/{}", uuid::Uuid::new_v4()), &key)
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "unknown_product"));
    let (s, b) = f.put_line(&key, &user, &p0, json!({"quantity": 999})).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_quantity"));
    let (s, b) = f
        .put_line(&key, &user, &p0, json!({"quantity": "two"}))
        .await;
    assert!(s.is_client_error() && code(&b) == "invalid_body", "{s} {b}");
    let (s, b) = f
        .put_line(&key, "bad user!", &p0, json!({"quantity": 1}))
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_id"));
    let huge = json!({"quantity": 1, "pad": "x".repeat(40_000)});
    let (s, b) = f.put_line(&key, &user, &p0, huge).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let (s, b) = f
        .put_line(
            &key,
            &user,
            &uuid::Uuid::new_v4().to_string(),
            json!({"quantity": 1}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "unknown_product"));
    let (s, b, _) = f
        .call(
            reqwest::Method::GET,
            "/v1/orders/x?user_id=u",
            Some(&key),
            None,
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_id"));
    let text = b.to_string().to_lowercase();
    assert!(
        !text.contains("redis") && !text.contains("postgres") && !text.contains("panic"),
        "{text}"
    );

    // Carts: versions per line, conditional updates, last writer wins without one.
    let (s, b) = f.put_line(&key, &user, &p0, json!({"quantity": 2})).await;
    assert_eq!((s, b["version"].as_u64()), (StatusCode::OK, Some(1)), "{b}");
    let (s, b) = f
        .put_line(
            &key,
            &user,
            &p0,
            json!({"quantity": 3, "expected_version": 1}),
        )
        .await;
    assert_eq!((s, b["version"].as_u64()), (StatusCode::OK, Some(2)));
    let (s, b) = f
        .put_line(
            &key,
            &user,
            &p0,
            json!({"quantity": 5, "expected_version": 1}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "version_conflict"));
    assert_eq!(b["error"]["current_version"], 2);
    let (s, _) = f
        .put_line(
            &key,
            &user,
            &p1,
            json!({"quantity": 1, "expected_version": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "expected_version 0 creates");
    let (s, b) = f
        .put_line(
            &key,
            &user,
            &p1,
            json!({"quantity": 4, "expected_version": 0}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "expected_version 0 does not overwrite: {b}"
    );
    let p2 = f.products[2].0.clone();
    f.put_line(&key, &user, &p2, json!({"quantity": 1})).await;
    let (s, _, _) = f
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/carts/{user}/lines/{p2}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, cart) = f.get(&format!("/v1/carts/{user}"), &key).await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<(String, u64)> = cart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["product_id"].as_str().unwrap().to_string(),
                l["quantity"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = vec![(p0.clone(), 3), (p1.clone(), 1)];
    want.sort();
    assert_eq!(lines, want);

    // Checkout: the header and body are checked, then one order per idempotency key.
    let body = checkout_body(&user);
    let (s, b) = f.checkout(&key, None, &body).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "missing_idempotency_key")
    );
    let mut bad_address = body.clone();
    bad_address["shipping_address"]["country_code"] = json!("USA");
    let (s, b) = f.checkout(&key, Some("k-1"), &bad_address).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "invalid_field"));
    let mut card_number = body.clone();
    card_number["payment"]["token"] = json!("4111 1111 1111 1111");
    let (s, _) = f.checkout(&key, Some("k-1"), &card_number).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a card number never reaches a topic"
    );
    let (s, b) = f
        .checkout(&key, Some("k-empty"), &checkout_body("nobody"))
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "cart_empty")
    );

    let requests = reader(
        &env().bootstrap_servers,
        &f.topic("orders.checkout-requested"),
        &unique("r"),
    )
    .unwrap();
    let (s, first) = f.checkout(&key, Some("k-1"), &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let order = first["order_id"].as_str().unwrap().to_string();
    assert_eq!(first["total_minor"], 3 * 1099 + 1199);
    // The cart's ordered lines are gone; a retry (or double click) is the same order even
    // though the cart is now empty.
    let (_, cart) = f.get(&format!("/v1/carts/{user}"), &key).await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 0);
    let (s, again) = f.checkout(&key, Some("k-1"), &body).await;
    assert_eq!(
        (s, again["order_id"].as_str()),
        (StatusCode::OK, Some(order.as_str()))
    );
    assert_eq!(again["replayed"], true);
    let codec = codec_for(&f.topology, &f.topic("orders.checkout-requested")).await;
    let seen = drain(&requests, 2, Duration::from_secs(15)).await;
    assert_eq!(seen.len(), 2, "published, and re-published by the retry");
    let mut published = Vec::new();
    for record in &seen {
        let r: CheckoutRequested = codec::from_value(
            &codec
                .decode(record.payload.as_ref().unwrap())
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record.key.as_deref(), Some(order.as_bytes()));
        published.push(r);
    }
    assert_eq!(
        published[0], published[1],
        "the retry re-publishes the identical request"
    );
    let r = &published[0];
    assert_eq!(
        (r.order_id.as_str(), r.user_id.as_str()),
        (order.as_str(), user.as_str())
    );
    assert_eq!(r.lines.len(), 2);
    assert_eq!(
        r.subtotal_minor,
        r.lines
            .iter()
            .map(|l| l.unit_price_minor * i64::from(l.quantity))
            .sum::<i64>()
    );
    let (s, b) = f
        .checkout(&key, Some("k-1"), &checkout_body("someone_else"))
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );

    // Order status: ACCEPTED at once, then the saga's projection (newer sequence wins; a
    // poison record is dead-lettered and the partition moves on).
    let (s, b) = f.get(&format!("/v1/orders/{order}"), &key).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "missing_user_id"));
    let (s, b) = f
        .get(&format!("/v1/orders/{order}?user_id=someone_else"), &key)
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::NOT_FOUND, "unknown_order"),
        "another user's order is not shown"
    );
    let (s, b) = f
        .get(&format!("/v1/orders/{order}?user_id={user}"), &key)
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("ACCEPTED"))
    );
    let status_topic = f.topic("checkout.saga-transitions");
    let status_codec = codec_for(&f.topology, &status_topic).await;
    let status = |seq: i64, code: OrderStatusCode, state: SagaState| SagaTransition {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: 1,
        correlation_id: order.clone(),
        causation_id: None,
        order_id: order.clone(),
        sequence: seq,
        from_state: None,
        to_state: state,
        trigger: SagaTrigger::PaymentCaptured,
        compensating: false,
        attempt: 1,
        step_deadline: None,
        failure_code: None,
        reason: None,
        status: Some(code),
        user_id: Some(user.clone()),
        currency: Some("USD".into()),
        total_minor: Some(4496),
        created_at: Some(1),
        placed_at: None,
    };
    let kafka = producer(&env().bootstrap_servers).unwrap();
    let records = vec![
        (order.clone(), b"not avro".to_vec()),
        (
            order.clone(),
            status_codec
                .encode(&status(5, OrderStatusCode::Placed, SagaState::Placed))
                .unwrap(),
        ),
        (
            order.clone(),
            status_codec
                .encode(&status(
                    3,
                    OrderStatusCode::Processing,
                    SagaState::AuthorizingPayment,
                ))
                .unwrap(),
        ),
    ];
    produce_all(&kafka, &status_topic, records).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = f
            .get(&format!("/v1/orders/{order}?user_id={user}"), &key)
            .await;
        if b["status"] == "PLACED" {
            break;
        }
        assert!(Instant::now() < deadline, "projection not applied: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let letters = reader(
        &env().bootstrap_servers,
        &f.topic("dlq.storefront.saga-transitions"),
        &unique("d"),
    )
    .unwrap();
    assert_eq!(
        drain(&letters, 1, Duration::from_secs(15)).await.len(),
        1,
        "the poison record is a dead letter"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, b) = f
        .get(&format!("/v1/orders/{order}?user_id={user}"), &key)
        .await;
    assert_eq!(
        b["status"], "PLACED",
        "an older sequence does not move the status back"
    );

    // Revocation takes effect within the reload interval.
    let prefix = &key[..10];
    let out = fleet_command()
        .env("STOREFLEET_POSTGRES", env().postgres_url)
        .arg("--topology")
        .arg(&f.file)
        .args(["keys", "revoke", prefix])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _) = f.get(&format!("/v1/products/{p0}"), &key).await;
        if s == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "revoked key still works");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_answer_429_with_retry_after() {
    let f = front(
        "sf-limits",
        &[
            ("key_rate_per_sec", 2.into()),
            ("key_burst", 5.into()),
            ("ip_rate_per_sec", 1000.into()),
            ("ip_burst", 1000.into()),
        ],
    )
    .await;
    let a = f.key("client_a").await;
    let b = f.key("client_b").await;
    let path = format!("/v1/products/{}", f.products[0].0);
    let mut ok = 0;
    let mut limited = None;
    for _ in 0..20 {
        let (s, body, headers) = f.call(reqwest::Method::GET, &path, Some(&a), None).await;
        match s {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited = Some((body, headers)),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (5..=7).contains(&ok),
        "a burst of 5 (plus what refilled): {ok}"
    );
    let (body, headers) = limited.expect("the key was limited");
    assert_eq!(code(&body), "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another key is not limited by the first one's traffic.
    let (s, _) = f.get(&path, &b).await;
    assert_eq!(s, StatusCode::OK);
    // After Retry-After the key works again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (s, _) = f.get(&path, &a).await;
    assert_eq!(s, StatusCode::OK);

    // Per client address: whatever the keys, one address gets its quota, keyless requests
    // included (so key guessing is limited too).
    let g = front(
        "sf-ip",
        &[("ip_rate_per_sec", 1.into()), ("ip_burst", 4.into())],
    )
    .await;
    let k1 = g.key("client_c").await;
    let k2 = g.key("client_d").await;
    let path = format!("/v1/products/{}", g.products[0].0);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let key = [Some(k1.as_str()), Some(k2.as_str()), None][i % 3];
        let (s, body, headers) = g.call(reqwest::Method::GET, &path, key, None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.contains_key("retry-after"));
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("client address"));
        }
        statuses.push(s);
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited >= 3, "the address was limited: {statuses:?}");
}

/// A real HTTP server standing in for one search service replica: it answers every query
/// with one hit, except `q=refuse-me`, which it refuses as the service refuses a bad request.
async fn search_service() -> (String, tokio_util::sync::CancellationToken) {
    use axum::extract::Query;
    use axum::http::StatusCode as Status;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use std::collections::HashMap;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let app = axum::Router::new().route(
        "/search",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            if q.get("q").map(String::as_str) == Some("refuse-me") {
                let refusal =
                    json!({"error": {"code": "invalid_parameter", "message": "not that"}});
                return (Status::BAD_REQUEST, axum::Json(refusal)).into_response();
            }
            axum::Json(json!({
                "query": q.get("q"), "total": 1,
                "page": q.get("page").and_then(|p| p.parse::<u32>().ok()),
                "per_page": q.get("per_page").and_then(|p| p.parse::<u32>().ok()),
                "hits": [{"id": "from-search-service", "price": "1.00", "price_minor": 100}],
                "facets": {"category": {}, "brand": {}, "in_stock": {}},
                "degraded": [], "took_ms": 0.1, "cached": false,
            }))
            .into_response()
        }),
    );
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
    });
    (url, stop)
}

/// A search replica that always fails with a 500.
async fn failing_search_service() -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/search",
        get(|| async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "index unavailable",
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_and_checkout_work_when_search_and_recommendations_are_down() {
    let (search_url, stop_search) = search_service().await;
    let failing_url = failing_search_service().await;
    // Nothing listens on one search replica's port; no recommendations version is current in
    // this Redis database (the recommendations tests use their own).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let replicas: Vec<serde_yaml::Value> = vec![
        dead_url.into(),
        failing_url.into(),
        search_url.clone().into(),
    ];
    let f = front(
        "sf-degrade",
        &[("search_urls", serde_yaml::Value::Sequence(replicas))],
    )
    .await;
    let key = f.key(&unique("web").replace('-', "_")).await;
    let user = unique("u").replace('-', "_");

    // Whichever replica a request starts at, the live one answers: a refused connection and
    // a 500 each send the request on to the next replica.
    for _ in 0..4 {
        let (s, b) = f.get("/v1/search?q=chair&page=2&limit=5", &key).await;
        assert_eq!(
            (s, b["source"].as_str()),
            (StatusCode::OK, Some("search")),
            "{b}"
        );
        assert_eq!(b["hits"][0]["id"], "from-search-service");
        assert_eq!(
            (b["page"].as_u64(), b["per_page"].as_u64()),
            (Some(2), Some(5))
        );
        assert_eq!(b["degraded"], json!([]));
    }
    // The service's refusal of the request is the shopper's answer, not a fallback.
    let (s, b) = f.get("/v1/search?q=refuse-me", &key).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "invalid_parameter"),
        "{b}"
    );
    // The storefront's own checks need no replica.
    for (path, expected) in [
        ("/v1/search?q=", "empty_query"),
        ("/v1/search?q=%FF", "invalid_parameter"),
        ("/v1/search?q=chair&sort=cheapest", "invalid_parameter"),
        (
            "/v1/search?q=chair&page=11&per_page=100",
            "page_out_of_range",
        ),
    ] {
        let (s, b) = f.get(path, &key).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::BAD_REQUEST, expected),
            "{path}: {b}"
        );
    }

    stop_search.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (s, b) = f.get("/v1/search?q=office%20chair", &key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["source"], "catalog");
    assert_eq!(b["degraded"], json!(["search"]));
    let titles = |field: &str| -> HashSet<String> {
        b[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        titles("results"),
        HashSet::from(["Red Office Chair".to_string()])
    );
    assert_eq!(titles("hits"), titles("results"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "degrades within the upstream timeout"
    );

    let p0 = &f.products[0].0;
    let (s, b) = f
        .get(&format!("/v1/products/{p0}?user_id={user}"), &key)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["product"]["title"], "Red Office Chair");
    assert_eq!(b["degraded"], json!(["recommendations"]));
    assert!(b["recommendations"].is_null());
    assert!(b["bought_together"].is_null());
    let (s, b) = f.get(&format!("/v1/recommendations/{user}"), &key).await;
    assert_eq!(
        (s, b["source"].as_str()),
        (StatusCode::OK, Some("popular")),
        "{b}"
    );

    // No checkout processor runs here at all: the storefront still takes the order (it is
    // queued on the topic for the saga).
    f.put_line(&key, &user, p0, json!({"quantity": 1})).await;
    let (s, b) = f.checkout(&key, Some("deg-1"), &checkout_body(&user)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

/// The recommendations' precomputed lists through the storefront: the user's list of the
/// current version, popular items for a user without one, and a product sold out since the
/// list was computed left out (the availability projection). Redis database 6 is this test's
/// own (the degradation test above expects no current version in its database).
#[tokio::test(flavor = "multi_thread")]
async fn precomputed_recommendations_are_served_without_what_sold_out_since() {
    let base = env().redis_url;
    let redis_url = format!("{}/6", base.trim_end_matches('/').trim_end_matches("/0"));
    let mut redis =
        redis::aio::ConnectionManager::new(redis::Client::open(redis_url.as_str()).unwrap())
            .await
            .unwrap();
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();
    let f = front_on("sf-recs", &[], &redis_url).await;
    let key = f.key(&unique("web").replace('-', "_")).await;
    let user = unique("u").replace('-', "_");
    let (p0, p1, p2) = (&f.products[0].0, &f.products[1].0, &f.products[2].0);
    let item = |p: &str| recommendations::lists::Item {
        product_id: p.to_string(),
        score: 1.0,
        reason: "cf",
    };
    // What a training run writes (the same functions), then the swap.
    let version = "vtest1";
    let lists = vec![
        (
            recommendations::published::user_key(version, &user),
            recommendations::published::encode(version, &[item(p0), item(p1)]),
        ),
        (
            recommendations::published::popular_key(version),
            recommendations::published::encode(version, &[item(p2)]),
        ),
    ];
    recommendations::published::write_version(&mut redis, version, lists.into_iter(), 3600)
        .await
        .unwrap();
    recommendations::published::swap(&mut redis, version, 3600)
        .await
        .unwrap();

    let ids = |b: &Value| -> Vec<String> {
        b["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["product_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, b) = f.get(&format!("/v1/recommendations/{user}"), &key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["source"].as_str(), b["list"].as_str()),
        (Some("recommendations"), Some("user")),
        "{b}"
    );
    assert_eq!(ids(&b), vec![p0.clone(), p1.clone()]);
    assert_eq!(b["degraded"], json!([]));
    let (_, b) = f.get("/v1/recommendations/someone_new", &key).await;
    assert_eq!(
        (b["list"].as_str(), ids(&b)),
        (Some("popular"), vec![p2.clone()]),
        "{b}"
    );

    // p1 sells out after the run: the ledger's availability reaches the projection.
    let topic = f.topic("inventory.availability");
    let codec = codec_for(&f.topology, &topic).await;
    let sold_out = events::inventory::ProductAvailability {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: 1,
        correlation_id: p1.clone(),
        causation_id: None,
        product_id: p1.clone(),
        in_stock: false,
        available_quantity: 0,
        fulfillment_centers: vec![],
        sequence: 7,
    };
    let kafka = producer(&env().bootstrap_servers).unwrap();
    produce_all(
        &kafka,
        &topic,
        vec![(p1.clone(), codec.encode(&sold_out).unwrap())],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = f.get(&format!("/v1/products/{p1}"), &key).await;
        if b["availability"]["in_stock"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "availability not projected: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, b) = f.get(&format!("/v1/recommendations/{user}"), &key).await;
    assert_eq!(
        ids(&b),
        vec![p0.clone()],
        "the sold-out product is left out: {b}"
    );
    let (_, b) = f
        .get(&format!("/v1/products/{p2}?user_id={user}"), &key)
        .await;
    assert_eq!(b["recommendations"]["list"], "user", "{b}");
    assert_eq!(
        b["recommendations"]["items"].as_array().unwrap().len(),
        1,
        "{b}"
    );
    assert!(
        b["bought_together"]["items"].as_array().unwrap().is_empty(),
        "{b}"
    );
    assert_eq!(b["degraded"], json!([]), "{b}");
}

/// A search replica whose one hit is the product the query names, with the index's image URL
/// (from `products.image_urls`, never checked).
async fn echoing_search_service() -> (String, tokio_util::sync::CancellationToken) {
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let app = axum::Router::new().route(
        "/search",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            axum::Json(json!({
                "query": q.get("q"), "total": 1, "page": 1, "per_page": 20,
                "hits": [{"id": q.get("q"), "price": "1.00", "price_minor": 100,
                          "image_url": "https://index.test/unchecked.jpg"}],
                "facets": {}, "degraded": [], "took_ms": 0.1, "cached": false,
            }))
        }),
    );
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
    });
    (url, stop)
}

/// Image-quality's verdicts, produced on their topic through the registry, reach the product
/// page through the storefront's projection: a page shows exactly the images whose newest
/// verdict passed them at the URL their catalog row holds now, in position order; an older
/// verdict arriving later changes nothing; a product whose images all failed is still shown,
/// marked pending review; search thumbnails follow the same rule; poison verdicts are dead
/// letters.
#[tokio::test(flavor = "multi_thread")]
async fn product_pages_show_only_images_passed_at_their_current_url() {
    use events::images::{ImageCheckResult, ImageCheckStatus, TierVerdict};
    let (search_url, stop_search) = echoing_search_service().await;
    let f = front(
        "sf-images",
        &[(
            "search_urls",
            serde_yaml::Value::Sequence(vec![search_url.into()]),
        )],
    )
    .await;
    let key = f.key(&unique("web").replace('-', "_")).await;
    let (p0, p1, p2) = (&f.products[0].0, &f.products[1].0, &f.products[2].0);
    let base = format!("https://img.test/{}", unique("i"));
    let url = |name: &str| format!("{base}/{name}.jpg");

    // p0: a passed; b passed at the URL it had before (the row now holds b-new); c rejected;
    // d not checked yet. p1: its only image rejected. p2: no images.
    let (db, connection) = tokio_postgres::connect(&f.catalog_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let [a, b, c, d, e] = [(); 5].map(|()| uuid::Uuid::new_v4().to_string());
    for (id, product, name, position) in [
        (&d, p0, "d", 3),
        (&b, p0, "b-new", 1),
        (&a, p0, "a", 0),
        (&c, p0, "c", 2),
        (&e, p1, "e", 0),
    ] {
        db.execute(
            "INSERT INTO product_images (id, product_id, url, position, seller)
             VALUES ($1::text::uuid, $2::text::uuid, $3, $4, 'acme')",
            &[id, product, &url(name), &position],
        )
        .await
        .unwrap();
    }

    let topic = f.topic("images.check-results");
    let codec = codec_for(&f.topology, &topic).await;
    let verdict = |image: &str, product: &str, name: &str, status: ImageCheckStatus, at: i64| {
        let passed = status == ImageCheckStatus::Ok;
        ImageCheckResult {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: at,
            correlation_id: image.to_string(),
            causation_id: None,
            image_id: image.to_string(),
            product_id: product.to_string(),
            url: url(name),
            status,
            dimensions: None,
            content_type: Some("image/jpeg".into()),
            size_bytes: Some(50_000),
            blur_score: Some(300.0),
            tiers: Some(TierVerdict {
                thumbnail: passed,
                zoom: passed,
                print: false,
            }),
            rejection_reasons: vec![],
            attempts: 1,
            error_kind: None,
            error: None,
            checker_version: Some("test".into()),
            requested_at: None,
        }
    };
    let encoded = |v: ImageCheckResult| (v.image_id.clone(), codec.encode(&v).unwrap());
    let (ok, rejected, review) = (
        ImageCheckStatus::Ok,
        ImageCheckStatus::Rejected,
        ImageCheckStatus::NeedsManualReview,
    );
    let now = 1_700_000_000_000;
    let records = vec![
        (a.clone(), b"not avro".to_vec()),
        encoded(verdict(&a, p0, "a", ok, now)),
        // Older than the OK before it (a late retry's): it must not hide a.
        encoded(verdict(&a, p0, "a", rejected, now - 1_000)),
        // Malformed: its product id is no UUID. After a's records on a's partition, so its
        // dead letter says they were all applied.
        encoded(verdict(&a, "not-a-product", "a", ok, now)),
        encoded(verdict(&b, p0, "b-old", ok, now)),
        encoded(verdict(&c, p0, "c", rejected, now)),
        encoded(verdict(&e, p1, "e", review, now)),
    ];
    let kafka = producer(&env().bootstrap_servers).unwrap();
    produce_all(&kafka, &topic, records).await.unwrap();
    let letters = reader(
        &env().bootstrap_servers,
        &f.topic("dlq.storefront.image-results"),
        &unique("d"),
    )
    .unwrap();
    assert_eq!(
        drain(&letters, 2, Duration::from_secs(30)).await.len(),
        2,
        "the undecodable and the malformed verdict are dead letters"
    );
    // b, c and e are on other partitions: wait until the projection holds their verdicts.
    let mut redis =
        redis::aio::ConnectionManager::new(redis::Client::open(env().redis_url.as_str()).unwrap())
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let on_p0: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("img:{p0}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        let on_p1: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("img:{p1}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        if on_p0.len() == 3 && on_p1.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "verdicts not projected: {on_p0:?} {on_p1:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let page = async |product: &str| {
        let (s, b) = f.get(&format!("/v1/products/{product}"), &key).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    };
    let b0 = page(p0).await;
    assert_eq!(
        b0["product"]["images"],
        json!([{"image_id": a, "url": url("a"), "zoom": true}]),
        "{b0}"
    );
    assert_eq!(b0["product"]["image_urls"], json!([url("a")]));
    assert_eq!(b0["product"]["images_pending_review"], false);
    assert!(!b0.to_string().contains("b-old") && !b0.to_string().contains("b-new"));
    let b1 = page(p1).await;
    assert_eq!(b1["product"]["title"], f.products[1].1, "still shown: {b1}");
    assert_eq!(
        (
            &b1["product"]["images"],
            &b1["product"]["image_urls"],
            &b1["product"]["images_pending_review"]
        ),
        (&json!([]), &json!([]), &json!(true))
    );
    let b2 = page(p2).await;
    assert_eq!(
        (
            &b2["product"]["images"],
            &b2["product"]["images_pending_review"]
        ),
        (&json!([]), &json!(false))
    );

    // b's verdict on its current URL: shown on the next read, in position order (verdicts
    // are not behind the product cache).
    produce_all(
        &kafka,
        &topic,
        vec![encoded(verdict(&b, p0, "b-new", ok, now + 1))],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b0 = page(p0).await;
        if b0["product"]["image_urls"] == json!([url("a"), url("b-new")]) {
            break;
        }
        assert!(Instant::now() < deadline, "b's new verdict not shown: {b0}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Search thumbnails: the first shown image, never the index's URL.
    let (s, hits) = f.get(&format!("/v1/search?q={p0}"), &key).await;
    assert_eq!(s, StatusCode::OK, "{hits}");
    assert_eq!(
        (&hits["hits"][0]["image_url"], &hits["degraded"]),
        (&json!(url("a")), &json!([])),
        "{hits}"
    );
    let (_, hits) = f.get(&format!("/v1/search?q={p1}"), &key).await;
    assert!(hits["hits"][0]["image_url"].is_null(), "{hits}");
    stop_search.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, fallback) = f.get("/v1/search?q=office%20chair", &key).await;
    assert_eq!(fallback["source"], "catalog", "{fallback}");
    assert_eq!(
        fallback["results"][0]["image_urls"],
        json!([url("a"), url("b-new")])
    );
    assert_eq!(fallback["hits"][0]["image_url"], json!(url("a")));
}
