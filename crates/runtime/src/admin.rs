//! The admin HTTP port of every process: `/metrics` (Prometheus) and `/health`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

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

#[derive(Clone)]
struct AdminState {
    name: String,
    metrics: Metrics,
    phase: Phase,
}

/// Serves the admin endpoints on `addr` until `shutdown`. Returns once bound.
pub async fn serve_admin(
    addr: SocketAddr,
    name: String,
    metrics: Metrics,
    phase: Phase,
    shutdown: CancellationToken,
) -> Result<SocketAddr, RuntimeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(RuntimeError::Admin)?;
    let bound = listener.local_addr().map_err(RuntimeError::Admin)?;
    let state = AdminState {
        name,
        metrics,
        phase,
    };
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(state);
    tokio::spawn(async move {
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
