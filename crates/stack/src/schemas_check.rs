//! `fleet schemas check`: are the working tree's schemas compatible with the registered ones?
//!
//! The gate a CI job runs before a schema change ships. For every subject of the topology
//! (TopicNameStrategy, `<topic>-key|value`) it asks the registry, under the subject's own
//! compatibility level, whether the schema in `schemas/` would be accepted:
//! already registered (fine), not registered yet ("new": a first version is always
//! accepted), compatible (would become the next version) or incompatible (with the
//! registry's reasons). Nothing is registered or changed.

use std::fmt;

use codec::CodecError;
use serde::Deserialize;
use serde_json::json;
use topology::Topology;

use crate::StackError;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Confluent's "subject not found".
const SUBJECT_NOT_FOUND: u32 = 40401;
/// Confluent's "schema not found" (under this subject).
const SCHEMA_NOT_FOUND: u32 = 40403;
/// Longer registry messages are cut when printed.
const MESSAGE_CHARS: usize = 240;

/// One subject's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVerdict {
    pub subject: String,
    /// The level the registry applies to the subject (its own, else the global one).
    pub level: String,
    pub status: SchemaStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// The subject does not exist yet: the first registration is always accepted.
    New,
    /// This very schema is already registered under the subject.
    Registered { version: u32 },
    /// Would be accepted as the subject's next version.
    Compatible,
    /// Would be refused; the registry's reasons (Confluent's verbose messages).
    Incompatible { messages: Vec<String> },
}

impl SubjectVerdict {
    pub fn is_incompatible(&self) -> bool {
        matches!(self.status, SchemaStatus::Incompatible { .. })
    }
}

impl fmt::Display for SubjectVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match &self.status {
            SchemaStatus::New => "new (not registered yet)".to_string(),
            SchemaStatus::Registered { version } => format!("registered (version {version})"),
            SchemaStatus::Compatible => "compatible (would be the next version)".to_string(),
            SchemaStatus::Incompatible { .. } => "INCOMPATIBLE".to_string(),
        };
        write!(f, "{:<56} {:<20} {status}", self.subject, self.level)?;
        if let SchemaStatus::Incompatible { messages } = &self.status {
            for message in messages {
                // The old schema's full text is one of them: a line, not a page.
                let shown: String = message.chars().take(MESSAGE_CHARS).collect();
                let more = message.chars().count().saturating_sub(MESSAGE_CHARS);
                write!(f, "\n    {shown}")?;
                if more > 0 {
                    write!(f, "... ({more} more characters)")?;
                }
            }
        }
        Ok(())
    }
}

/// Checks every subject of `topology` against the registry at `registry_url`, in the
/// topology's order. An unreachable registry or an unexpected answer is an error, never a
/// verdict: a gate must not pass because it could not look.
pub async fn check_schemas(
    registry_url: &str,
    topology: &Topology,
) -> Result<Vec<SubjectVerdict>, StackError> {
    let client = Client::new(registry_url)?;
    let mut verdicts = Vec::new();
    for (subject, schema) in topology.subjects() {
        let level = client.level(&subject).await?;
        let status = client.status(&subject, &schema, &level).await?;
        verdicts.push(SubjectVerdict {
            subject,
            level,
            status,
        });
    }
    Ok(verdicts)
}

struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
}

/// A registry answer: the status and the body, parsed as JSON when it is JSON.
struct Answer {
    status: u16,
    body: serde_json::Value,
}

impl Answer {
    fn error_code(&self) -> Option<u32> {
        self.body["error_code"]
            .as_u64()
            .and_then(|code| u32::try_from(code).ok())
    }

    fn parse<T: for<'de> Deserialize<'de>>(self, what: &str) -> Result<T, StackError> {
        if self.status != 200 {
            return Err(unexpected(what, &self));
        }
        serde_json::from_value(self.body.clone()).map_err(|_| unexpected(what, &self))
    }
}

fn unexpected(what: &str, answer: &Answer) -> StackError {
    StackError::Codec(CodecError::Registry(format!(
        "{what}: HTTP {} {}",
        answer.status, answer.body
    )))
}

#[derive(Deserialize)]
struct LevelBody {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

#[derive(Deserialize)]
struct LookupBody {
    version: u32,
}

#[derive(Deserialize)]
struct CompatibilityBody {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

impl Client {
    fn new(registry_url: &str) -> Result<Self, StackError> {
        let base = reqwest::Url::parse(registry_url).map_err(|e| {
            StackError::Failed(format!("schema registry URL {registry_url:?}: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| StackError::Codec(CodecError::RegistryUnreachable(e)))?;
        Ok(Self { base, http })
    }

    /// `base` + path segments, each percent-encoded (subjects are free text).
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, StackError> {
        let response = request
            .header("Accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| StackError::Codec(CodecError::RegistryUnreachable(e)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| StackError::Codec(CodecError::RegistryUnreachable(e)))?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok(Answer { status, body })
    }

    async fn post(
        &self,
        mut url: reqwest::Url,
        query: &str,
        schema: &str,
    ) -> Result<Answer, StackError> {
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        let request = self
            .http
            .post(url)
            .header("Content-Type", CONTENT_TYPE)
            .body(json!({ "schema": schema }).to_string());
        self.send(request).await
    }

    /// The subject's effective level: its own, else the global default.
    async fn level(&self, subject: &str) -> Result<String, StackError> {
        let mut url = self.url(&["config", subject]);
        url.set_query(Some("defaultToGlobal=true"));
        let answer = self.send(self.http.get(url)).await?;
        let body: LevelBody = answer.parse(&format!("compatibility level of {subject}"))?;
        Ok(body.compatibility_level)
    }

    async fn status(
        &self,
        subject: &str,
        schema: &str,
        level: &str,
    ) -> Result<SchemaStatus, StackError> {
        // Already registered? (`POST /subjects/{s}` looks the schema up under the subject.)
        let lookup = self
            .post(self.url(&["subjects", subject]), "", schema)
            .await?;
        match (lookup.status, lookup.error_code()) {
            (200, _) => {
                let body: LookupBody = lookup.parse(&format!("lookup under {subject}"))?;
                return Ok(SchemaStatus::Registered {
                    version: body.version,
                });
            }
            (404, Some(SUBJECT_NOT_FOUND)) => return Ok(SchemaStatus::New),
            (404, Some(SCHEMA_NOT_FOUND)) => {}
            _ => return Err(unexpected(&format!("lookup under {subject}"), &lookup)),
        }
        // Non-transitive levels compare with the latest version; transitive ones with every
        // version, which is what the subject-wide endpoint does (as registration would).
        let url = if level.ends_with("_TRANSITIVE") {
            self.url(&["compatibility", "subjects", subject, "versions"])
        } else {
            self.url(&["compatibility", "subjects", subject, "versions", "latest"])
        };
        let answer = self.post(url, "verbose=true", schema).await?;
        if answer.status == 404 && answer.error_code() == Some(SUBJECT_NOT_FOUND) {
            // Deleted between the two calls: as good as new.
            return Ok(SchemaStatus::New);
        }
        let body: CompatibilityBody = answer.parse(&format!("compatibility of {subject}"))?;
        Ok(if body.is_compatible {
            SchemaStatus::Compatible
        } else {
            SchemaStatus::Incompatible {
                messages: body.messages,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incompatible_verdict_lists_the_registry_reasons_under_the_subject() {
        let verdict = SubjectVerdict {
            subject: "orders.order-placed.v1-value".into(),
            level: "BACKWARD".into(),
            status: SchemaStatus::Incompatible {
                messages: vec!["{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'}".into()],
            },
        };
        assert!(verdict.is_incompatible());
        let text = verdict.to_string();
        assert!(text.starts_with("orders.order-placed.v1-value"));
        assert!(text.contains("INCOMPATIBLE"));
        assert!(text.contains("\n    {errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'}"));
        let long = SubjectVerdict {
            status: SchemaStatus::Incompatible {
                messages: vec![format!("{{oldSchema: '{}'}}", "é".repeat(1_000))],
            },
            ..verdict
        };
        assert!(long.to_string().ends_with("... (775 more characters)"));
    }

    #[test]
    fn subjects_are_percent_encoded_as_one_path_segment() {
        let client = Client::new("http://127.0.0.1:18081/").unwrap();
        let url = client.url(&["subjects", "a b/c-value"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:18081/subjects/a%20b%2Fc-value"
        );
        let client = Client::new("http://127.0.0.1:18081").unwrap();
        assert_eq!(
            client.url(&["config", "x"]).as_str(),
            "http://127.0.0.1:18081/config/x"
        );
    }
}
