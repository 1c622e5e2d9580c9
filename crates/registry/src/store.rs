//! The registry's state machine: pure, no I/O.
//!
//! State changes only through [`Store::apply`] of journal [`Record`]s, so replaying the
//! journal rebuilds exactly the state that served requests. Writes are planned first
//! (`plan_*`, read-only: validation, compatibility, id and version assignment) and the
//! planned records are applied only once they are durable. Ids are global and never reused
//! while the process lives; a schema text (normalised) with the same references gets the
//! same id under every subject.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::avro::{self, ParsedSchema};
use crate::canonical;
use crate::compat::{self, CompatibilityLevel, Previous};
use crate::error::ApiError;
use crate::records::{Record, Reference, SchemaValue};

pub const AVRO: &str = "AVRO";

/// What a schema id stands for: its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Content {
    pub schema_type: String,
    /// Normalised text (see [`canonical`]).
    pub schema: String,
    pub references: Vec<Reference>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub id: u32,
    pub deleted: bool,
}

/// One version of a subject, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub content: Content,
}

/// `latest` (or -1) or a version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        if text == "latest" || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<i64>() {
            Ok(number) if (1..=i64::from(i32::MAX)).contains(&number) => {
                Ok(Self::Number(number as u32))
            }
            _ => Err(ApiError::invalid_version(text)),
        }
    }
}

/// A schema as submitted for registration, lookup or a compatibility test.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub schema: String,
    pub schema_type: Option<String>,
    pub references: Vec<Reference>,
}

/// The outcome of planning a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Already registered under this subject: nothing to write.
    Existing { id: u32, version: u32 },
    /// Write `record`; the schema gets `id` as `version`.
    New {
        id: u32,
        version: u32,
        record: Record,
    },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Store {
    contents: BTreeMap<u32, Content>,
    ids: HashMap<Content, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
    max_id: u32,
}

impl Store {
    /// Applies one journal record. Total: odd records (from a foreign or damaged journal)
    /// change what they name and nothing else.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Schema {
                subject,
                version,
                value: Some(value),
            } => self.put_version(subject, *version, value),
            Record::Schema {
                subject,
                version,
                value: None,
            } => {
                let removed = self
                    .subjects
                    .get_mut(subject)
                    .and_then(|v| v.remove(version));
                if self.subjects.get(subject).is_some_and(BTreeMap::is_empty) {
                    self.subjects.remove(subject);
                }
                if let Some(removed) = removed {
                    self.forget_if_unused(removed.id);
                }
            }
            Record::Config {
                subject: None,
                level,
            } => self.global_level = *level,
            Record::Config {
                subject: Some(subject),
                level: Some(level),
            } => {
                self.subject_levels.insert(subject.clone(), *level);
            }
            Record::Config {
                subject: Some(subject),
                level: None,
            } => {
                self.subject_levels.remove(subject);
            }
            Record::DeleteSubject { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    for (_, entry) in versions.range_mut(..=*version) {
                        entry.deleted = true;
                    }
                }
            }
        }
    }

    fn put_version(&mut self, subject: &str, version: u32, value: &SchemaValue) {
        let schema_type = value
            .schema_type
            .clone()
            .unwrap_or_else(|| AVRO.to_string());
        // Records written by another registry may hold unnormalised text.
        let schema = match serde_json::from_str::<Value>(&value.schema) {
            Ok(json) if schema_type == AVRO => canonical::normalise(&json),
            _ => value.schema.clone(),
        };
        let content = Content {
            schema_type,
            schema,
            references: value.references.clone(),
        };
        let entry = Version {
            id: value.id,
            deleted: value.deleted,
        };
        let replaced = self
            .subjects
            .entry(subject.to_string())
            .or_default()
            .insert(version, entry);
        self.ids.entry(content.clone()).or_insert(value.id);
        self.contents.entry(value.id).or_insert(content);
        self.max_id = self.max_id.max(value.id);
        if let Some(replaced) = replaced.filter(|replaced| replaced.id != value.id) {
            self.forget_if_unused(replaced.id);
        }
    }

    fn forget_if_unused(&mut self, id: u32) {
        let used = self
            .subjects
            .values()
            .any(|versions| versions.values().any(|entry| entry.id == id));
        if !used {
            if let Some(content) = self.contents.remove(&id) {
                if self.ids.get(&content) == Some(&id) {
                    self.ids.remove(&content);
                }
            }
        }
    }

    // ---- reads ----

    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| deleted || versions.values().any(|v| !v.deleted))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    /// Versions visible with the `deleted` flag; `Subject not found` when there are none.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, ApiError> {
        let visible: Vec<u32> = self
            .subjects
            .get(subject)
            .map(|versions| {
                versions
                    .iter()
                    .filter(|(_, entry)| deleted || !entry.deleted)
                    .map(|(version, _)| *version)
                    .collect()
            })
            .unwrap_or_default();
        if visible.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        Ok(visible)
    }

    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectVersion, ApiError> {
        let visible = self.versions(subject, deleted)?;
        let version = match spec {
            VersionSpec::Latest => visible.last().copied(),
            VersionSpec::Number(number) => visible.contains(&number).then_some(number),
        }
        .ok_or_else(|| match spec {
            VersionSpec::Latest => ApiError::version_not_found("latest"),
            VersionSpec::Number(number) => ApiError::version_not_found(number),
        })?;
        self.subject_version(subject, version)
    }

    fn subject_version(&self, subject: &str, version: u32) -> Result<SubjectVersion, ApiError> {
        let entry = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.get(&version))
            .ok_or_else(|| ApiError::version_not_found(version))?;
        let content = self
            .contents
            .get(&entry.id)
            .ok_or_else(|| ApiError::store(format!("schema {} is missing", entry.id)))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version,
            id: entry.id,
            content: content.clone(),
        })
    }

    /// Schemas stay readable by id while any version, even soft-deleted, uses them:
    /// consumers still need them to decode old records.
    pub fn schema(&self, id: u32) -> Result<&Content, ApiError> {
        self.contents
            .get(&id)
            .ok_or_else(|| ApiError::schema_not_found(id))
    }

    /// (subject, version) pairs using `id`.
    pub fn id_versions(&self, id: u32, deleted: bool) -> Result<Vec<(String, u32)>, ApiError> {
        self.schema(id)?;
        Ok(self
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, entry)| entry.id == id && (deleted || !entry.deleted))
                    .map(move |(version, _)| (subject.clone(), *version))
            })
            .collect())
    }

    /// Ids of the schemas that reference `subject` `version`.
    pub fn referenced_by(&self, subject: &str, version: u32, deleted: bool) -> Vec<u32> {
        let mut ids = BTreeSet::new();
        for versions in self.subjects.values() {
            for entry in versions.values().filter(|entry| deleted || !entry.deleted) {
                let refers = self.contents.get(&entry.id).is_some_and(|content| {
                    content.references.iter().any(|reference| {
                        reference.subject == subject && reference.version == version as i32
                    })
                });
                if refers {
                    ids.insert(entry.id);
                }
            }
        }
        ids.into_iter().collect()
    }

    /// The highest id ever assigned (ids are never handed out twice).
    pub fn max_id(&self) -> u32 {
        self.max_id
    }

    pub fn global_level(&self) -> CompatibilityLevel {
        self.global_level.unwrap_or_default()
    }

    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    pub fn level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .unwrap_or_else(|| self.global_level())
    }
}

impl Store {
    fn parse_stored(&self, content: &Content) -> Result<ParsedSchema, ApiError> {
        let dependencies = self.dependencies(&content.references)?;
        let main: Value = serde_json::from_str(&content.schema)
            .map_err(|error| ApiError::store(format!("stored schema is not JSON: {error}")))?;
        avro::parse(&main, &dependencies.values)
            .map_err(|error| ApiError::store(format!("stored schema does not parse: {error}")))
    }

    fn previous(
        &self,
        subject: &str,
        only: Option<u32>,
    ) -> Result<Vec<(u32, Content, ParsedSchema)>, ApiError> {
        let mut previous = Vec::new();
        if let Some(versions) = self.subjects.get(subject) {
            for (version, entry) in versions.iter().filter(|(_, entry)| !entry.deleted) {
                if only.is_some_and(|only| only != *version) {
                    continue;
                }
                let content = self.schema(entry.id)?.clone();
                let parsed = self.parse_stored(&content)?;
                previous.push((*version, content, parsed));
            }
        }
        Ok(previous)
    }

    /// Confluent-style messages for `candidate` against the subject's versions (or one of
    /// them) under the subject's level; empty when compatible.
    pub fn compatibility_messages(
        &self,
        subject: &str,
        candidate: &ParsedSchema,
        only: Option<u32>,
    ) -> Result<Vec<String>, ApiError> {
        let level = self.level(subject);
        if level == CompatibilityLevel::None {
            return Ok(Vec::new());
        }
        let previous = self.previous(subject, only)?;
        let previous: Vec<Previous<'_>> = previous
            .iter()
            .map(|(version, content, parsed)| Previous {
                version: *version,
                schema_text: &content.schema,
                schema: parsed,
            })
            .collect();
        Ok(compat::check(level, candidate, &previous))
    }
}

#[path = "store_plan.rs"]
mod plan;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
