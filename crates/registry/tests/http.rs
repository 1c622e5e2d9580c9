//! The registry over HTTP, as Confluent's clients call it: in-memory storage, port 0.

use std::net::SocketAddr;

use registry::{serve, RegistryConfig, Storage};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

struct Registry {
    base: String,
    client: Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), registry::RegistryError>>,
}

impl Registry {
    async fn start() -> Self {
        let shutdown = CancellationToken::new();
        let (ready, address) = oneshot::channel::<SocketAddr>();
        let config = RegistryConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            storage: Storage::Memory,
        };
        let task = tokio::spawn(serve(config, shutdown.clone(), Some(ready)));
        let address = address.await.expect("registry did not start");
        Self {
            base: format!("http://{address}"),
            client: Client::new(),
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("join").expect("serve");
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Accept", CONTENT_TYPE);
        if let Some(body) = body {
            request = request
                .header("Content-Type", CONTENT_TYPE)
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn register(&self, subject: &str, schema: &Value) -> (StatusCode, Value) {
        self.post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": schema.to_string()}),
        )
        .await
    }
}

fn order(extra_fields: Value) -> Value {
    let mut fields = vec![
        json!({"name": "order_id", "type": {"type": "string", "logicalType": "uuid"}}),
        json!({"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}}),
        json!({"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}),
    ];
    if let Value::Array(extra) = extra_fields {
        fields.extend(extra);
    }
    json!({"type": "record", "name": "OrderPlaced", "namespace": "orders", "fields": fields})
}

fn error_code(body: &Value) -> i64 {
    body["error_code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error_code in {body}"))
}

#[tokio::test]
async fn register_then_read_back_every_way_clients_do() {
    let registry = Registry::start().await;
    let schema = order(json!([]));
    assert_eq!(
        registry.register("orders-value", &schema).await,
        (StatusCode::OK, json!({"id": 1}))
    );
    // Idempotent, whatever the formatting.
    let pretty = serde_json::to_string_pretty(&schema).unwrap();
    let again = registry
        .post(
            "/subjects/orders-value/versions",
            json!({"schema": pretty, "schemaType": "AVRO"}),
        )
        .await;
    assert_eq!(again, (StatusCode::OK, json!({"id": 1})));
    assert_eq!(registry.get("/subjects").await.1, json!(["orders-value"]));
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await.1,
        json!([1])
    );

    let (status, latest) = registry.get("/subjects/orders-value/versions/latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            latest["subject"].clone(),
            latest["version"].clone(),
            latest["id"].clone()
        ),
        (json!("orders-value"), json!(1), json!(1))
    );
    let stored: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored, schema, "logical types, names and fields survive");
    assert_eq!(
        registry.get("/subjects/orders-value/versions/1").await.1,
        latest
    );

    let (_, raw) = registry
        .get("/subjects/orders-value/versions/1/schema")
        .await;
    assert_eq!(raw, schema);
    let (_, by_id) = registry
        .get("/schemas/ids/1?deleted=true&subject=orders-value")
        .await;
    assert_eq!(by_id, json!({"schema": latest["schema"]}));
    assert_eq!(
        registry.get("/schemas/ids/1/versions").await.1,
        json!([{"subject": "orders-value", "version": 1}])
    );
    assert_eq!(
        registry.get("/schemas/ids/1/subjects").await.1,
        json!(["orders-value"])
    );

    let (status, found) = registry
        .post(
            "/subjects/orders-value",
            json!({"schema": schema.to_string()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (found["id"].clone(), found["version"].clone()),
        (json!(1), json!(1))
    );

    // The same schema under another subject keeps its global id.
    assert_eq!(
        registry.register("audit-value", &schema).await.1,
        json!({"id": 1})
    );
    let evolved = order(json!([{"name": "note", "type": ["null", "string"], "default": null}]));
    assert_eq!(
        registry.register("orders-value", &evolved).await,
        (StatusCode::OK, json!({"id": 2}))
    );
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await.1,
        json!([1, 2])
    );
    registry.stop().await;
}

#[tokio::test]
async fn responses_carry_the_schema_registry_content_type() {
    let registry = Registry::start().await;
    for path in [
        "/subjects",
        "/subjects/none/versions",
        "/associations/resources/x",
    ] {
        let response = reqwest::get(format!("{}{path}", registry.base))
            .await
            .unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(content_type, CONTENT_TYPE, "{path}");
    }
    // Plain JSON requests are accepted as well.
    let response = registry
        .client
        .post(format!("{}/subjects/plain/versions", registry.base))
        .json(&json!({"schema": "\"string\""}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    registry.stop().await;
}

#[tokio::test]
async fn errors_use_confluent_codes() {
    let registry = Registry::start().await;
    registry.register("s", &order(json!([]))).await;
    let cases: Vec<(&str, (StatusCode, Value), StatusCode, i64)> = vec![
        (
            "unknown subject",
            registry.get("/subjects/nope/versions").await,
            StatusCode::NOT_FOUND,
            40401,
        ),
        (
            "unknown version",
            registry.get("/subjects/s/versions/7").await,
            StatusCode::NOT_FOUND,
            40402,
        ),
        (
            "unknown id",
            registry.get("/schemas/ids/99").await,
            StatusCode::NOT_FOUND,
            40403,
        ),
        (
            "lookup of an unregistered schema",
            registry
                .post("/subjects/s", json!({"schema": "\"int\""}))
                .await,
            StatusCode::NOT_FOUND,
            40403,
        ),
        (
            "lookup under an unknown subject",
            registry
                .post("/subjects/nope", json!({"schema": "\"int\""}))
                .await,
            StatusCode::NOT_FOUND,
            40401,
        ),
        (
            "invalid version",
            registry.get("/subjects/s/versions/zero").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
        ),
        (
            "invalid schema",
            registry
                .post(
                    "/subjects/s/versions",
                    json!({"schema": "{\"type\":\"record\"}"}),
                )
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        ),
        (
            "schema that is not JSON",
            registry
                .post("/subjects/s/versions", json!({"schema": "{oops"}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        ),
        (
            "missing schema",
            registry.post("/subjects/s/versions", json!({})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        ),
        (
            "protobuf",
            registry
                .post(
                    "/subjects/p/versions",
                    json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}),
                )
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        ),
        (
            "invalid level",
            registry
                .put("/config", json!({"compatibility": "SIDEWAYS"}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
        ),
        (
            "no subject level",
            registry.get("/config/s").await,
            StatusCode::NOT_FOUND,
            40408,
        ),
        (
            "associations probe",
            registry
                .get("/associations/resources/topic?resourceType=topic")
                .await,
            StatusCode::NOT_FOUND,
            404,
        ),
        (
            "unknown route",
            registry.get("/nowhere").await,
            StatusCode::NOT_FOUND,
            404,
        ),
        (
            "wrong method",
            registry
                .send(reqwest::Method::PATCH, "/subjects", None)
                .await,
            StatusCode::METHOD_NOT_ALLOWED,
            405,
        ),
    ];
    for (name, (status, body), expected_status, expected_code) in cases {
        assert_eq!(status, expected_status, "{name}: {body}");
        assert_eq!(error_code(&body), expected_code, "{name}: {body}");
        assert!(body["message"].is_string(), "{name}: {body}");
    }
    let incompatible = order(json!([{"name": "required", "type": "string"}]));
    let (status, body) = registry.register("s", &incompatible).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, 409));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{body}"
    );
    assert_eq!(registry.get("/subjects/s/versions").await.1, json!([1]));
    registry.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_without_effect() {
    let registry = Registry::start().await;
    let url = format!("{}/subjects/s/versions", registry.base);
    for junk in [
        &b"{not json"[..],
        &b"\xff\xfe\x00"[..],
        &b""[..],
        &b"[1,2,3]"[..],
        &b"{\"schema\": 5}"[..],
    ] {
        let response = registry
            .client
            .post(&url)
            .header("Content-Type", CONTENT_TYPE)
            .body(junk.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{junk:?}: {status} {body}"
        );
        assert!(body["error_code"].is_i64(), "{body}");
    }
    let huge = json!({"schema": format!("\"{}\"", "x".repeat(5 * 1024 * 1024))}).to_string();
    let response = registry
        .client
        .post(&url)
        .header("Content-Type", CONTENT_TYPE)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), 413);
    assert_eq!(registry.get("/subjects").await.1, json!([]));
    // And the server is still fine.
    assert_eq!(
        registry.register("s", &json!("string")).await.1,
        json!({"id": 1})
    );
    registry.stop().await;
}

#[tokio::test]
async fn compatibility_endpoint_reports_verdicts_and_messages() {
    let registry = Registry::start().await;
    registry.register("s", &order(json!([]))).await;
    let optional = order(json!([{"name": "coupon", "type": ["null", "string"], "default": null}]));
    let required = order(json!([{"name": "coupon", "type": "string"}]));
    let check = |version: &'static str, schema: Value, verbose: bool| {
        let path = format!("/compatibility/subjects/s/versions{version}?verbose={verbose}");
        let registry = &registry;
        async move {
            registry
                .post(&path, json!({"schema": schema.to_string()}))
                .await
        }
    };
    assert_eq!(
        check("/latest", optional.clone(), false).await,
        (StatusCode::OK, json!({"is_compatible": true}))
    );
    assert_eq!(
        check("", optional.clone(), false).await.1,
        json!({"is_compatible": true})
    );
    let (status, verdict) = check("/1", required.clone(), true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["is_compatible"], json!(false));
    let messages = verdict["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m.as_str().unwrap().contains("'coupon'")),
        "{verdict}"
    );
    assert!(
        messages.iter().any(|m| m == "{compatibility: 'BACKWARD'}"),
        "{verdict}"
    );
    // A subject with no versions accepts anything; an unknown version is 40402.
    let (_, fresh) = registry
        .post(
            "/compatibility/subjects/new/versions",
            json!({"schema": "\"int\""}),
        )
        .await;
    assert_eq!(fresh, json!({"is_compatible": true}));
    let (status, body) = check("/9", optional, false).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, 40402));
    // Removing an enum symbol is not backward compatible.
    let color = |symbols: Value| json!({"type": "enum", "name": "Color", "symbols": symbols});
    registry
        .register("colors", &color(json!(["RED", "GREEN"])))
        .await;
    let (_, verdict) = registry
        .post(
            "/compatibility/subjects/colors/versions/latest",
            json!({"schema": color(json!(["RED"])).to_string()}),
        )
        .await;
    assert_eq!(verdict, json!({"is_compatible": false}));
    registry.stop().await;
}

#[tokio::test]
async fn config_endpoints_follow_confluent() {
    let registry = Registry::start().await;
    assert_eq!(
        registry.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        registry
            .put("/config", json!({"compatibility": "full"}))
            .await
            .1,
        json!({"compatibility": "FULL"})
    );
    assert_eq!(
        registry.get("/config/s?defaultToGlobal=true").await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        registry
            .put("/config/s", json!({"compatibility": "NONE"}))
            .await
            .1,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        registry.get("/config/s").await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    // NONE lets an incompatible change through for that subject only.
    registry.register("s", &json!("int")).await;
    assert_eq!(
        registry.register("s", &json!("string")).await.0,
        StatusCode::OK
    );
    registry.register("t", &json!("int")).await;
    assert_eq!(
        registry.register("t", &json!("string")).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        registry.delete("/config/s").await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(error_code(&registry.delete("/config/s").await.1), 40408);
    assert_eq!(
        registry.delete("/config").await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        registry.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(registry.get("/mode").await.1, json!({"mode": "READWRITE"}));
    assert_eq!(
        registry.put("/mode", json!({"mode": "READWRITE"})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        error_code(&registry.put("/mode", json!({"mode": "IMPORT"})).await.1),
        42204
    );
    assert_eq!(registry.get("/schemas/types").await.1, json!(["AVRO"]));
    registry.stop().await;
}

#[tokio::test]
async fn deletes_soft_then_permanent() {
    let registry = Registry::start().await;
    registry.register("s", &json!("int")).await;
    registry.register("s", &json!(["null", "int"])).await;
    assert_eq!(
        error_code(
            &registry
                .delete("/subjects/s/versions/2?permanent=true")
                .await
                .1
        ),
        40407
    );
    assert_eq!(
        registry.delete("/subjects/s/versions/2").await,
        (StatusCode::OK, json!(2))
    );
    assert_eq!(
        error_code(&registry.delete("/subjects/s/versions/2").await.1),
        40406
    );
    assert_eq!(registry.get("/subjects/s/versions").await.1, json!([1]));
    assert_eq!(
        registry.get("/subjects/s/versions?deleted=true").await.1,
        json!([1, 2])
    );
    assert_eq!(
        registry
            .delete("/subjects/s/versions/2?permanent=true")
            .await
            .1,
        json!(2)
    );
    assert_eq!(
        error_code(&registry.delete("/subjects/s?permanent=true").await.1),
        40405
    );
    assert_eq!(registry.delete("/subjects/s").await.1, json!([1]));
    assert_eq!(error_code(&registry.delete("/subjects/s").await.1), 40404);
    assert_eq!(registry.get("/subjects").await.1, json!([]));
    assert_eq!(registry.get("/subjects?deleted=true").await.1, json!(["s"]));
    // Consumers can still read old records by id after a soft delete.
    assert_eq!(registry.get("/schemas/ids/1").await.0, StatusCode::OK);
    assert_eq!(
        registry.delete("/subjects/s?permanent=true").await.1,
        json!([1])
    );
    assert_eq!(error_code(&registry.get("/schemas/ids/1").await.1), 40403);
    assert_eq!(error_code(&registry.delete("/subjects/s").await.1), 40401);
    // Ids are not handed out again.
    assert_eq!(
        registry.register("s", &json!("long")).await.1,
        json!({"id": 3})
    );
    registry.stop().await;
}

#[tokio::test]
async fn references_resolve_named_types_from_other_subjects() {
    let registry = Registry::start().await;
    let address = json!({"type": "record", "name": "Address", "namespace": "shop",
        "fields": [{"name": "city", "type": "string"}]});
    assert_eq!(
        registry.register("shop.Address", &address).await.1,
        json!({"id": 1})
    );
    let customer = json!({"type": "record", "name": "Customer", "namespace": "shop",
        "fields": [{"name": "home", "type": "Address"}]});
    let references = json!([{"name": "shop.Address", "subject": "shop.Address", "version": 1}]);
    let body = json!({"schema": customer.to_string(), "references": references});
    assert_eq!(
        registry
            .post("/subjects/customers-value/versions", body.clone())
            .await
            .1,
        json!({"id": 2})
    );
    let (_, latest) = registry
        .get("/subjects/customers-value/versions/latest")
        .await;
    assert_eq!(latest["references"], references);
    assert_eq!(
        registry.get("/schemas/ids/2").await.1["references"],
        references
    );
    assert_eq!(
        registry.post("/subjects/customers-value", body).await.1["id"],
        json!(2)
    );
    assert_eq!(
        registry
            .get("/subjects/shop.Address/versions/1/referencedby")
            .await
            .1,
        json!([2])
    );
    assert_eq!(
        error_code(&registry.delete("/subjects/shop.Address").await.1),
        42206
    );
    let unresolved = registry.register("other", &customer).await;
    assert_eq!(error_code(&unresolved.1), 42201);
    registry.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_get_distinct_ids() {
    let registry = Registry::start().await;
    let mut tasks = Vec::new();
    for n in 0..24 {
        let client = registry.client.clone();
        // Schemas 0..12 are distinct; 12..24 repeat them under other subjects.
        let subject = if n < 12 {
            format!("first-{n}")
        } else {
            format!("second-{}", n % 12)
        };
        let url = format!("{}/subjects/{subject}/versions", registry.base);
        let schema = json!({"type": "record", "name": format!("R{}", n % 12), "fields": []});
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"schema": schema.to_string()}))
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            (
                n % 12,
                body["id"].as_u64().unwrap_or_else(|| panic!("{body}")),
            )
        }));
    }
    let mut ids = std::collections::BTreeMap::new();
    for task in tasks {
        let (schema, id) = task.await.unwrap();
        let previous = ids.insert(schema, id);
        assert!(
            previous.is_none() || previous == Some(id),
            "schema {schema} got two ids"
        );
    }
    let mut distinct: Vec<u64> = ids.values().copied().collect();
    distinct.sort();
    assert_eq!(distinct, (1..=12).collect::<Vec<_>>());
    registry.stop().await;
}

#[tokio::test]
async fn subjects_with_url_special_characters() {
    let registry = Registry::start().await;
    let (status, _) = registry
        .register("team%2Forders.v1-value", &json!("string"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        registry.get("/subjects").await.1,
        json!(["team/orders.v1-value"])
    );
    assert_eq!(
        registry
            .get("/subjects/team%2Forders.v1-value/versions")
            .await
            .1,
        json!([1])
    );
    registry.stop().await;
}
