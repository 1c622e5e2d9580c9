//! The monitor's HTTP routes. Handlers only read the board the sampler publishes (and, for
//! `/metrics/fleet`, ask the instances); they never change anything.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the dashboard (one self-contained page) |
//! | `GET /api/overview[?seq=N]` | [`Overview`] of the latest sample, or of sample N while kept |
//! | `GET /api/groups/{group}[?seq=N]` | [`GroupDetail`](crate::model::GroupDetail): the group's partition table |
//! | `GET /api/history[?group=G]` | [`GroupHistory`] of G, or of every group (a list) |
//! | `GET /metrics` | the monitor's gauges (Prometheus text) |
//! | `GET /metrics/fleet` | every reachable instance's `/metrics`, merged and labelled |
//! | `GET /health` | 200 once the first sample is published, 503 before |

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::model::{GroupHistory, Overview};
use crate::plan::Target;
use crate::sampler::Board;
use crate::scrape;

const DASHBOARD: &str = include_str!("dashboard.html");
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Routes {
    board: Arc<Board>,
    targets: Arc<Vec<Target>>,
    http: reqwest::Client,
}

pub fn router(board: Arc<Board>, targets: Vec<Target>, http: reqwest::Client) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/overview", get(overview))
        .route("/api/groups/{group}", get(group))
        .route("/api/history", get(history))
        .route("/metrics", get(metrics))
        .route("/metrics/fleet", get(fleet_metrics))
        .route("/health", get(health))
        .with_state(Routes {
            board,
            targets: Arc::new(targets),
            http,
        })
}

#[derive(Debug, Deserialize)]
struct SeqQuery {
    seq: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct GroupQuery {
    group: Option<String>,
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

fn no_sample_yet() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "no sample taken yet" })),
    )
        .into_response()
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn overview(State(routes): State<Routes>, Query(query): Query<SeqQuery>) -> Response {
    match routes.board.frame(query.seq) {
        Some(frame) => Json::<&Overview>(&frame.overview).into_response(),
        None if query.seq.is_some() => not_found(format!(
            "sample {} is no longer (or not yet) kept",
            query.seq.unwrap_or_default()
        )),
        None => no_sample_yet(),
    }
}

async fn group(
    State(routes): State<Routes>,
    Path(group): Path<String>,
    Query(query): Query<SeqQuery>,
) -> Response {
    let Some(frame) = routes.board.frame(query.seq) else {
        return match query.seq {
            Some(seq) => not_found(format!("sample {seq} is no longer (or not yet) kept")),
            None => no_sample_yet(),
        };
    };
    match frame.groups.get(&group) {
        Some(detail) => Json(detail).into_response(),
        None => not_found(format!("no watched group `{group}`")),
    }
}

async fn history(State(routes): State<Routes>, Query(query): Query<GroupQuery>) -> Response {
    let series = routes.board.history();
    let one = |group: &String, points: &Vec<_>| GroupHistory {
        group: group.clone(),
        points: Clone::clone(points),
    };
    match query.group {
        Some(group) => match series.get(&group) {
            Some(points) => Json(one(&group, points)).into_response(),
            None => not_found(format!("no history for group `{group}`")),
        },
        None => Json(series.iter().map(|(g, p)| one(g, p)).collect::<Vec<_>>()).into_response(),
    }
}

async fn metrics(State(routes): State<Routes>) -> Response {
    let text = routes.board.metrics();
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        text.as_str().to_owned(),
    )
        .into_response()
}

async fn fleet_metrics(State(routes): State<Routes>) -> Response {
    let text = scrape::federate(&routes.http, &routes.targets).await;
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response()
}

async fn health(State(routes): State<Routes>) -> Response {
    match routes.board.frame(None) {
        Some(frame) => Json(json!({
            "status": "running",
            "seq": frame.overview.seq,
            "broker_reachable": frame.overview.broker.reachable,
        }))
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting" })),
        )
            .into_response(),
    }
}
