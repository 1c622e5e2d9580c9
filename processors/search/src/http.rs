//! The query service's HTTP API on `http_port + instance`:
//!
//! | route | answer |
//! |---|---|
//! | `GET /search?q=&category=&brand=&min_price=&max_price=&in_stock=&sort=&page=&per_page=` | hits, facets, `degraded` shards; 400 `{error:{code,message}}` for a bad request; 503 `index_not_ready` while an empty index reads the topics |
//! | `GET /health` | 200 |
//! | `GET /admin/status` | generation, commit sequence, positions, readiness, rebuild progress |
//! | `POST /admin/rebuild` | 202 and the new generation's name; 409 if one is running |
//! | `POST /admin/shards/{name}/fault?delay_ms=&fail=` | only with `fault_injection`: slows or breaks a shard |

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Engine;
use crate::indexer::{IndexMetrics, RebuildRequest, SharedStatus};
use crate::query;

#[derive(Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
    pub status: SharedStatus,
    pub rebuilds: mpsc::Sender<RebuildRequest>,
    pub metrics: IndexMetrics,
    pub fault_injection: bool,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/search", get(search))
        .route("/health", get(|| async { "ok" }))
        .route("/admin/status", get(status))
        .route("/admin/rebuild", post(rebuild))
        .route("/admin/shards/{name}/fault", post(fault))
        .with_state(api)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn search(State(api): State<Api>, RawQuery(raw): RawQuery) -> Response {
    let started = Instant::now();
    let request = match query::parse_query_string(raw.as_deref().unwrap_or_default()) {
        Ok(r) => r,
        Err(rejection) => {
            api.metrics.queries.with_label_values(&["rejected"]).inc();
            return error(StatusCode::BAD_REQUEST, rejection.code, rejection.message);
        }
    };
    let ready = api.status.lock().map(|s| s.ready).unwrap_or(false);
    if !ready {
        api.metrics.queries.with_label_values(&["not_ready"]).inc();
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "index_not_ready",
            "the index is reading the topics for the first time",
        );
    }
    let answer = api.engine.search(&request).await;
    let outcome = if !answer.degraded.is_empty() {
        "degraded"
    } else if answer.cached {
        "cached"
    } else {
        "ok"
    };
    api.metrics.queries.with_label_values(&[outcome]).inc();
    api.metrics
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    Json(answer).into_response()
}

async fn status(State(api): State<Api>) -> Response {
    let status = api.status.lock().map(|s| s.clone()).unwrap_or_default();
    let searchable = api.engine.searchable();
    let shards: serde_json::Map<String, serde_json::Value> = searchable
        .doc_counts()
        .into_iter()
        .map(|(name, docs)| (name, json!(docs)))
        .collect();
    Json(json!({"status": status, "shard_documents": shards, "cache_entries": api.engine.cache_len()})).into_response()
}

async fn rebuild(State(api): State<Api>) -> Response {
    let (tx, rx) = oneshot::channel();
    if api.rebuilds.send(tx).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the indexer is stopping",
        );
    }
    match rx.await {
        Ok(Ok(generation)) => (
            StatusCode::ACCEPTED,
            Json(json!({"generation": generation})),
        )
            .into_response(),
        Ok(Err(why)) => error(StatusCode::CONFLICT, "rebuild_running", why),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the indexer is stopping",
        ),
    }
}

async fn fault(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if !api.fault_injection {
        return error(
            StatusCode::NOT_FOUND,
            "not_enabled",
            "fault injection is off (params.fault_injection)",
        );
    }
    let searchable = api.engine.searchable();
    let Some(shard) = searchable.shard_index(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_shard",
            format!("no shard {name:?}"),
        );
    };
    let mut delay = 0;
    let mut fail = false;
    for pair in raw.as_deref().unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("delay_ms", v)) => delay = v.parse().unwrap_or(0),
            Some(("fail", v)) => fail = v == "true",
            _ => {}
        }
    }
    let f = &searchable.shards[shard].fault;
    f.delay_ms.store(delay, Ordering::Relaxed);
    f.fail.store(fail, Ordering::Relaxed);
    Json(json!({"shard": searchable.shards[shard].name, "delay_ms": delay, "fail": fail}))
        .into_response()
}
