//! The admin HTTP port of every process: `/metrics` (Prometheus) and `/health`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tasks::Tasks;
use tokio::sync::{mpsc, oneshot};

use crate::{Metrics, RuntimeError};

/// Lifecycle phase reported by `/health`.
#[derive(Clone, Default)]
pub struct Phase(Arc<AtomicU8>);

impl Phase {
    pub const STARTING: u8 = 0;
    pub const RUNNING: u8 = 1;
    pub const STOPPING: u8 = 2;

    pub fn set(&self, phase: u8) {
        self.0.store(phase, Ordering::Relaxed);
    }

    fn label(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::RUNNING => "running",
            Self::STOPPING => "stopping",
            _ => "starting",
        }
    }
}

/// An interactive query: the state under a key, answered by the driver between records.
pub type StateQuery = (String, oneshot::Sender<Option<serde_json::Value>>);

#[derive(Clone)]
struct AdminState {
    name: String,
    metrics: Metrics,
    phase: Phase,
    queries: Option<mpsc::Sender<StateQuery>>,
}

/// Serves the admin endpoints on `addr`, as one of `tasks`, until their token is cancelled
/// (their owner drains them once its own work has stopped: `/health` says `stopping` until
/// then). Returns once bound.
pub async fn serve_admin(
    addr: SocketAddr,
    name: String,
    metrics: Metrics,
    phase: Phase,
    queries: Option<mpsc::Sender<StateQuery>>,
    tasks: &Tasks,
) -> Result<SocketAddr, RuntimeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(RuntimeError::Admin)?;
    let bound = listener.local_addr().map_err(RuntimeError::Admin)?;
    let state = AdminState {
        name,
        metrics,
        phase,
        queries,
    };
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .route("/state/{key}", get(state_handler))
        .with_state(state);
    let shutdown = tasks.token().clone();
    tasks.spawn("admin server", async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(bound)
}

async fn metrics_handler(State(state): State<AdminState>) -> String {
    state.metrics.render()
}

async fn health_handler(State(state): State<AdminState>) -> (StatusCode, Json<serde_json::Value>) {
    let phase = state.phase.label();
    let code = if phase == "running" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "name": state.name,
        "pid": std::process::id(),
        "status": phase,
        "assigned_partitions": state.metrics.assigned_partitions.get(),
        "in_flight_records": state.metrics.in_flight.get(),
    });
    (code, Json(body))
}

/// `GET /state/{key}`: the processor's state for `key` if this instance owns its partition
/// (404 otherwise: ask the instance that owns it), 501 for a stateless processor.
async fn state_handler(
    State(state): State<AdminState>,
    Path(key): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    let Some(queries) = state.queries else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            Json(json!({"error": "stateless processor"})),
        );
    };
    let (reply, answer) = oneshot::channel();
    if queries.send((key.clone(), reply)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "not running"})),
        );
    }
    match answer.await {
        Ok(Some(value)) => (StatusCode::OK, Json(json!({"key": key, "value": value}))),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"key": key, "error": "no state for this key on this instance"})),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "not running"})),
        ),
    }
}
