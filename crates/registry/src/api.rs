//! HTTP routes, Confluent's REST API shape: subjects, versions, schemas by id.
//!
//! Handlers translate HTTP to [`Store`] reads and [`Writer`] submissions and nothing more.
//! Every error leaves as `{"error_code": N, "message": "..."}` with Confluent's codes, even
//! those raised by the framework (unknown route, body too large): see [`json_errors`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::records::Reference;
use crate::store::{Registration, Store, SubjectVersion, Submission, VersionSpec, AVRO};
use crate::writer::{read_lock, SharedStore, Writer};

#[path = "api_config.rs"]
mod config;

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Larger bodies are refused with HTTP 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub writer: Writer,
}

impl AppState {
    fn read<T>(&self, read: impl FnOnce(&Store) -> T) -> T {
        read(&read_lock(&self.store))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas/types", get(|| async { reply(json!([AVRO])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/contexts", get(|| async { reply(json!(["."])) }))
        .merge(config::routes())
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

fn flag(params: &Params, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// A JSON response with Confluent's content type.
pub fn reply(body: impl Serialize) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = reply(json!({"error_code": self.code, "message": self.message}));
        *response.status_mut() = self.status;
        response
    }
}

/// Rewrites the framework's plain-text errors (404, 405, 413, bad path) into Confluent's
/// JSON error shape, so clients always get an `error_code` to read.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == CONTENT_TYPE);
    if ours || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
    } else {
        text
    };
    ApiError::from_status(status, message).into_response()
}

/// Reads a JSON body: syntax errors are HTTP 400, a wrong shape HTTP 422 (as Confluent).
pub fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::from_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Unrecognized field or value: {error}"),
        ),
        _ => ApiError::bad_request(format!("Malformed JSON: {error}")),
    })
}

#[derive(Deserialize)]
struct SchemaRequest {
    #[serde(default)]
    schema: Option<String>,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
}

fn submission(bytes: &Bytes) -> Result<Submission, ApiError> {
    let request: SchemaRequest = body(bytes)?;
    Ok(Submission {
        schema: request
            .schema
            .ok_or_else(|| ApiError::invalid_schema("Empty schema"))?,
        schema_type: request.schema_type,
        references: request.references.unwrap_or_default(),
    })
}

fn schema_json(schema_type: &str, schema: &str, references: &[Reference]) -> Value {
    let mut body = json!({ "schema": schema });
    if schema_type != AVRO {
        body["schemaType"] = json!(schema_type);
    }
    if !references.is_empty() {
        body["references"] = json!(references);
    }
    body
}

fn version_json(found: &SubjectVersion) -> Value {
    let mut body = schema_json(
        &found.content.schema_type,
        &found.content.schema,
        &found.content.references,
    );
    body["subject"] = json!(found.subject);
    body["version"] = json!(found.version);
    body["id"] = json!(found.id);
    body
}

fn parse_id(text: &str) -> Result<u32, ApiError> {
    text.parse::<u32>()
        .map_err(|_| ApiError::schema_not_found(text))
}

async fn list_subjects(State(state): State<AppState>, params: Params) -> Response {
    let deleted_only = flag(&params, "deletedOnly");
    let prefix = params.get("subjectPrefix").cloned().unwrap_or_default();
    let subjects = state.read(|store| {
        let live = store.subjects(false);
        let all = store.subjects(deleted_only || flag(&params, "deleted"));
        all.into_iter()
            .filter(|subject| subject.starts_with(&prefix))
            .filter(|subject| !deleted_only || !live.contains(subject))
            .collect::<Vec<_>>()
    });
    reply(subjects)
}

async fn list_versions(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let deleted_only = flag(&params, "deletedOnly");
    let versions = state.read(|store| {
        let all = store.versions(&subject, deleted_only || flag(&params, "deleted"))?;
        if !deleted_only {
            return Ok(all);
        }
        let live = store.versions(&subject, false).unwrap_or_default();
        Ok::<_, ApiError>(all.into_iter().filter(|v| !live.contains(v)).collect())
    })?;
    Ok(reply(versions))
}

async fn register(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let submission = submission(&bytes)?;
    let id = state
        .writer
        .submit(
            move |store| match store.plan_register(&subject, &submission)? {
                Registration::Existing { id, .. } => Ok((Vec::new(), id)),
                Registration::New { id, record, .. } => Ok((vec![record], id)),
            },
        )
        .await?;
    Ok(reply(json!({ "id": id })))
}

async fn get_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let found = state.read(|store| store.version(&subject, spec, flag(&params, "deleted")))?;
    Ok(reply(version_json(&found)))
}

async fn get_version_schema(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let found = state.read(|store| store.version(&subject, spec, flag(&params, "deleted")))?;
    Ok(raw_schema(found.content.schema))
}

fn raw_schema(schema: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], schema).into_response()
}

async fn referenced_by(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let ids = state.read(|store| {
        let found = store.version(&subject, spec, true)?;
        Ok::<_, ApiError>(store.referenced_by(&subject, found.version, false))
    })?;
    Ok(reply(ids))
}

async fn delete_version(
    State(state): State<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let permanent = flag(&params, "permanent");
    let deleted = state
        .writer
        .submit(move |store| {
            let (record, version) = store.plan_delete_version(&subject, spec, permanent)?;
            Ok((vec![record], version))
        })
        .await?;
    Ok(reply(deleted))
}

async fn lookup(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let submission = submission(&bytes)?;
    let found =
        state.read(|store| store.lookup(&subject, &submission, flag(&params, "deleted")))?;
    Ok(reply(version_json(&found)))
}

async fn delete_subject(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let permanent = flag(&params, "permanent");
    let versions = state
        .writer
        .submit(move |store| store.plan_delete_subject(&subject, permanent))
        .await?;
    Ok(reply(versions))
}

async fn schema_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let body = state.read(|store| {
        let content = store.schema(id)?;
        let mut body = schema_json(&content.schema_type, &content.schema, &content.references);
        if flag(&params, "fetchMaxId") {
            body["maxId"] = json!(store.max_id());
        }
        Ok::<_, ApiError>(body)
    })?;
    Ok(reply(body))
}

async fn schema_text_by_id(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let schema = state.read(|store| store.schema(id).map(|content| content.schema.clone()))?;
    Ok(raw_schema(schema))
}

async fn schema_subjects(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let mut subjects: Vec<String> = state
        .read(|store| store.id_versions(id, flag(&params, "deleted")))?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    Ok(reply(subjects))
}

async fn schema_versions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let versions: Vec<Value> = state
        .read(|store| store.id_versions(id, flag(&params, "deleted")))?
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(reply(versions))
}
