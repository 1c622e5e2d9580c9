//! A small Confluent Schema Registry client: register, look up, fetch by id. Ids are
//! immutable, so fetched schemas are cached for the life of the process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use serde::Deserialize;
use serde_json::json;

use crate::CodecError;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    by_id: Arc<RwLock<HashMap<u32, Arc<Schema>>>>,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

impl RegistryClient {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            by_id: Arc::default(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Registers `schema` under `subject` (idempotent in the registry) and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, CodecError> {
        let url = format!("{}/subjects/{}/versions", self.base, subject);
        let body: IdBody = self.post(&url, json!({ "schema": schema })).await?;
        if let Ok(parsed) = Schema::parse_str(schema) {
            self.cache().insert(body.id, Arc::new(parsed));
        }
        Ok(body.id)
    }

    /// The schema with global id `id`, from the cache or the registry.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, CodecError> {
        if let Some(found) = self.cached(id) {
            return Ok(found);
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let response = self
            .http
            .get(&url)
            .header("Accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(CodecError::RegistryUnreachable)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(CodecError::UnknownSchemaId(id));
        }
        let body: SchemaBody = read_json(response).await?;
        let schema = Arc::new(Schema::parse_str(&body.schema)?);
        self.cache().insert(id, schema.clone());
        Ok(schema)
    }

    /// Looks up the id of a schema cached by an earlier call, without I/O.
    pub fn cached(&self, id: u32) -> Option<Arc<Schema>> {
        self.by_id
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned()
    }

    fn cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Arc<Schema>>> {
        self.by_id
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        body: serde_json::Value,
    ) -> Result<T, CodecError> {
        let response = self
            .http
            .post(url)
            .header("Content-Type", CONTENT_TYPE)
            .header("Accept", CONTENT_TYPE)
            .json(&body)
            .send()
            .await
            .map_err(CodecError::RegistryUnreachable)?;
        read_json(response).await
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    response: reqwest::Response,
) -> Result<T, CodecError> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(CodecError::RegistryUnreachable)?;
    if !status.is_success() {
        return Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => CodecError::Registry(format!("{} (error_code {})", e.message, e.error_code)),
            Err(_) => CodecError::Registry(format!("HTTP {status}: {text}")),
        });
    }
    serde_json::from_str(&text)
        .map_err(|e| CodecError::Registry(format!("unexpected response {text:?}: {e}")))
}
