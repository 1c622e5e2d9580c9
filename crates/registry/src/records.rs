//! The registry's journal records, in the key/value JSON shape Confluent writes to `_schemas`.
//!
//! Every state change is one [`Record`]; [`crate::store::Store::apply`] replays them. Keys
//! are serialised with a fixed field order so log compaction keeps exactly the latest record
//! per key. A `None` value is a tombstone (hard delete). Records of key types this registry
//! does not use (`NOOP`, `MODE`, ...) decode to `None` and are skipped on replay.

use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityLevel;

/// A Confluent schema reference: `name` is how the referencing schema names the type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// The value of a `SCHEMA` record: one version of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A registered (or soft-deleted) version; `value: None` hard-deletes it.
    Schema {
        subject: String,
        version: u32,
        value: Option<SchemaValue>,
    },
    /// Compatibility for a subject, or the global one when `subject` is `None`;
    /// `level: None` removes the setting.
    Config {
        subject: Option<String>,
        level: Option<CompatibilityLevel>,
    },
    /// Soft-deletes every version of `subject` up to and including `version`.
    DeleteSubject { subject: String, version: u32 },
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable journal record: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

#[derive(Serialize)]
struct SchemaKey<'a> {
    keytype: &'static str,
    subject: &'a str,
    version: u32,
    magic: u8,
}

#[derive(Serialize)]
struct SubjectKey<'a> {
    keytype: &'static str,
    subject: Option<&'a str>,
    magic: u8,
}

#[derive(Deserialize)]
struct AnyKey {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel", default)]
    compatibility_level: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DeleteSubjectValue {
    subject: String,
    version: u32,
}

impl Record {
    /// Kafka key and value (None = tombstone).
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            Record::Schema {
                subject,
                version,
                value,
            } => {
                let key = SchemaKey {
                    keytype: "SCHEMA",
                    subject,
                    version: *version,
                    magic: 1,
                };
                (json(&key), value.as_ref().map(json))
            }
            Record::Config { subject, level } => {
                let key = SubjectKey {
                    keytype: "CONFIG",
                    subject: subject.as_deref(),
                    magic: 0,
                };
                let value = level.map(|level| ConfigValue {
                    compatibility_level: Some(level.as_str().to_string()),
                });
                (json(&key), value.as_ref().map(json))
            }
            Record::DeleteSubject { subject, version } => {
                let key = SubjectKey {
                    keytype: "DELETE_SUBJECT",
                    subject: Some(subject),
                    magic: 0,
                };
                let value = DeleteSubjectValue {
                    subject: subject.clone(),
                    version: *version,
                };
                (json(&key), Some(json(&value)))
            }
        }
    }

    /// Reads a record back; `Ok(None)` for key types this registry ignores.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Record>, DecodeError> {
        let key: AnyKey = serde_json::from_slice(key)?;
        let record = match (key.keytype.as_str(), key.subject, key.version) {
            ("SCHEMA", Some(subject), Some(version)) => Record::Schema {
                subject,
                version,
                value: value.map(serde_json::from_slice).transpose()?,
            },
            ("CONFIG", subject, _) => {
                let value: Option<ConfigValue> = value.map(serde_json::from_slice).transpose()?;
                Record::Config {
                    subject,
                    level: value
                        .and_then(|value| value.compatibility_level)
                        .and_then(|level| level.parse().ok()),
                }
            }
            ("DELETE_SUBJECT", Some(subject), _) => match value {
                Some(value) => {
                    let value: DeleteSubjectValue = serde_json::from_slice(value)?;
                    Record::DeleteSubject {
                        subject,
                        version: value.version,
                    }
                }
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(record))
    }
}

/// Serialising these plain structs cannot fail; an empty fallback avoids a panic path.
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record: Record) {
        let (key, value) = record.encode();
        let decoded = Record::decode(&key, value.as_deref()).unwrap();
        assert_eq!(decoded, Some(record));
    }

    #[test]
    fn records_round_trip() {
        round_trip(Record::Schema {
            subject: "orders-value".into(),
            version: 2,
            value: Some(SchemaValue {
                subject: "orders-value".into(),
                version: 2,
                id: 7,
                schema: "\"string\"".into(),
                schema_type: None,
                references: vec![Reference {
                    name: "shop.Address".into(),
                    subject: "address".into(),
                    version: 1,
                }],
                deleted: false,
            }),
        });
        round_trip(Record::Schema {
            subject: "s".into(),
            version: 1,
            value: None,
        });
        round_trip(Record::Config {
            subject: None,
            level: Some(CompatibilityLevel::Full),
        });
        round_trip(Record::Config {
            subject: Some("s".into()),
            level: None,
        });
        round_trip(Record::DeleteSubject {
            subject: "s".into(),
            version: 3,
        });
    }

    #[test]
    fn keys_have_confluent_shape() {
        let (key, _) = Record::Schema {
            subject: "t".into(),
            version: 1,
            value: None,
        }
        .encode();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"SCHEMA","subject":"t","version":1,"magic":1}"#
        );
        let (key, value) = Record::Config {
            subject: Some("t".into()),
            level: Some(CompatibilityLevel::Forward),
        }
        .encode();
        assert_eq!(
            String::from_utf8(key).unwrap(),
            r#"{"keytype":"CONFIG","subject":"t","magic":0}"#
        );
        assert_eq!(
            String::from_utf8(value.unwrap()).unwrap(),
            r#"{"compatibilityLevel":"FORWARD"}"#
        );
    }

    #[test]
    fn foreign_records_are_skipped_or_read_leniently() {
        let noop = Record::decode(br#"{"keytype":"NOOP","magic":0}"#, None).unwrap();
        assert_eq!(noop, None);
        // Confluent's own value without schemaType/references/deleted.
        let value = br#"{"subject":"s","version":1,"id":3,"schema":"\"int\""}"#;
        let record = Record::decode(
            br#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#,
            Some(value),
        )
        .unwrap();
        assert!(matches!(
            record,
            Some(Record::Schema {
                value: Some(SchemaValue { id: 3, .. }),
                ..
            })
        ));
        assert!(Record::decode(b"not json", None).is_err());
    }
}
