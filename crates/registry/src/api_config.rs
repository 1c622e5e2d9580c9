//! Routes for compatibility settings, compatibility tests and the (fixed) mode.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::{body, flag, reply, submission, AppState, Params};
use crate::compat::CompatibilityLevel;
use crate::error::ApiError;
use crate::store::VersionSpec;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/config",
            get(get_global).put(put_global).delete(delete_global),
        )
        .route(
            "/config/{subject}",
            get(get_subject).put(put_subject).delete(delete_subject),
        )
        .route("/compatibility/subjects/{subject}/versions", post(test_all))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_version),
        )
        .route("/mode", get(get_mode).put(put_mode))
        .route("/mode/{subject}", get(get_mode).put(put_mode))
}

#[derive(Deserialize)]
struct ConfigRequest {
    #[serde(default)]
    compatibility: Option<String>,
    /// Accepted too: some clients echo back what GET returned.
    #[serde(rename = "compatibilityLevel", default)]
    compatibility_level: Option<String>,
}

fn requested_level(bytes: &Bytes) -> Result<CompatibilityLevel, ApiError> {
    let request: ConfigRequest = body(bytes)?;
    let text = request
        .compatibility
        .or(request.compatibility_level)
        .unwrap_or_default();
    text.parse()
        .map_err(|_| ApiError::invalid_compatibility_level(&text))
}

fn level_json(level: CompatibilityLevel) -> Response {
    reply(json!({ "compatibilityLevel": level.as_str() }))
}

async fn get_global(State(state): State<AppState>) -> Response {
    level_json(state.read(|store| store.global_level()))
}

async fn put_global(State(state): State<AppState>, bytes: Bytes) -> Result<Response, ApiError> {
    set_level(state, None, &bytes).await
}

async fn delete_global(State(state): State<AppState>) -> Result<Response, ApiError> {
    remove_level(state, None).await
}

async fn get_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let level = state.read(|store| match store.subject_level(&subject) {
        Some(level) => Ok(level),
        None if flag(&params, "defaultToGlobal") => Ok(store.global_level()),
        None => Err(ApiError::subject_config_not_found(&subject)),
    })?;
    Ok(level_json(level))
}

async fn put_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    set_level(state, Some(subject), &bytes).await
}

async fn delete_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    remove_level(state, Some(subject)).await
}

async fn set_level(
    state: AppState,
    subject: Option<String>,
    bytes: &Bytes,
) -> Result<Response, ApiError> {
    let level = requested_level(bytes)?;
    state
        .writer
        .submit(move |store| Ok((vec![store.plan_set_config(subject.as_deref(), level)], ())))
        .await?;
    Ok(reply(json!({ "compatibility": level.as_str() })))
}

async fn remove_level(state: AppState, subject: Option<String>) -> Result<Response, ApiError> {
    let previous = state
        .writer
        .submit(move |store| {
            let (record, previous) = store.plan_delete_config(subject.as_deref())?;
            Ok((vec![record], previous))
        })
        .await?;
    Ok(level_json(previous))
}

fn verdict(messages: Vec<String>, params: &Params) -> Response {
    let mut body = json!({ "is_compatible": messages.is_empty() });
    if flag(params, "verbose") {
        body["messages"] = json!(messages);
    }
    reply(body)
}

/// Against the versions the subject's level names (latest, or all for transitive levels).
async fn test_all(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let submission = submission(&bytes)?;
    let messages = state.read(|store| {
        let prepared = store.prepare(&submission)?;
        store.compatibility_messages(&subject, &prepared.parsed, None)
    })?;
    Ok(verdict(messages, &params))
}

/// Against one version, in the direction(s) the subject's level names.
async fn test_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let submission = submission(&bytes)?;
    let messages = state.read(|store| {
        let target = store.version(&subject, spec, false)?;
        let prepared = store.prepare(&submission)?;
        store.compatibility_messages(&subject, &prepared.parsed, Some(target.version))
    })?;
    Ok(verdict(messages, &params))
}

#[derive(Deserialize)]
struct ModeRequest {
    #[serde(default)]
    mode: Option<String>,
}

async fn get_mode() -> Response {
    reply(json!({ "mode": "READWRITE" }))
}

/// Only READWRITE exists here (no IMPORT/READONLY); setting it is accepted as a no-op.
async fn put_mode(bytes: Bytes) -> Result<Response, ApiError> {
    let request: ModeRequest = body(&bytes)?;
    let mode = request.mode.unwrap_or_default();
    if !mode.eq_ignore_ascii_case("READWRITE") {
        return Err(ApiError::invalid_mode(&mode));
    }
    Ok(reply(json!({ "mode": "READWRITE" })))
}
