//! Planning writes: everything a change needs decided (validity, compatibility, id, version)
//! is decided here, read-only, before the change is journalled.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Content, Registration, Store, SubjectVersion, Submission, VersionSpec, AVRO};
use crate::avro::{self, ParsedSchema};
use crate::canonical;
use crate::compat::CompatibilityLevel;
use crate::error::ApiError;
use crate::records::{Record, Reference, SchemaValue};

/// A submission that passed validation: its identity and its parsed form.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub content: Content,
    pub parsed: ParsedSchema,
}

/// Referenced schemas, dependencies first, as JSON values and as texts.
pub(super) struct Dependencies {
    pub values: Vec<Value>,
    pub texts: Vec<String>,
}

/// How deep references may nest; they cannot form cycles (a reference names an existing
/// version), this only bounds work.
const MAX_REFERENCE_DEPTH: usize = 32;

impl Store {
    pub(super) fn dependencies(&self, references: &[Reference]) -> Result<Dependencies, ApiError> {
        let mut found = Dependencies {
            values: Vec::new(),
            texts: Vec::new(),
        };
        let mut seen = BTreeSet::new();
        self.collect_dependencies(references, 0, &mut seen, &mut found)?;
        Ok(found)
    }

    fn collect_dependencies(
        &self,
        references: &[Reference],
        depth: usize,
        seen: &mut BTreeSet<(String, u32)>,
        found: &mut Dependencies,
    ) -> Result<(), ApiError> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(ApiError::invalid_schema("references nest too deeply"));
        }
        for reference in references {
            let target = self.resolve_reference(reference)?;
            if !seen.insert((target.subject.clone(), target.version)) {
                continue;
            }
            self.collect_dependencies(&target.content.references, depth + 1, seen, found)?;
            let value = serde_json::from_str(&target.content.schema).map_err(|error| {
                ApiError::store(format!("referenced schema is not JSON: {error}"))
            })?;
            found.values.push(value);
            found.texts.push(target.content.schema);
        }
        Ok(())
    }

    fn resolve_reference(&self, reference: &Reference) -> Result<SubjectVersion, ApiError> {
        let spec = if reference.version == -1 {
            VersionSpec::Latest
        } else {
            u32::try_from(reference.version)
                .ok()
                .filter(|version| *version > 0)
                .map(VersionSpec::Number)
                .ok_or_else(|| ApiError::invalid_version(&reference.version.to_string()))?
        };
        // A referenced version may be soft-deleted: it still exists for the schemas using it.
        self.version(&reference.subject, spec, true).map_err(|_| {
            ApiError::invalid_schema(format!(
                "Invalid schema: reference '{}' to subject '{}' version {} not found",
                reference.name, reference.subject, reference.version
            ))
        })
    }

    /// Validates a submission and computes its identity.
    pub fn prepare(&self, submission: &Submission) -> Result<Prepared, ApiError> {
        let schema_type = submission
            .schema_type
            .clone()
            .unwrap_or_else(|| AVRO.to_string())
            .to_ascii_uppercase();
        if schema_type != AVRO {
            return Err(ApiError::invalid_schema(format!(
                "Invalid schema: schema type {schema_type} is not supported by this registry (only AVRO)"
            )));
        }
        if submission.schema.trim().is_empty() {
            return Err(ApiError::invalid_schema("Empty schema"));
        }
        let references = submission
            .references
            .iter()
            .map(|reference| {
                self.resolve_reference(reference).map(|target| Reference {
                    version: target.version as i32,
                    ..reference.clone()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dependencies = self.dependencies(&references)?;
        let json: Value = serde_json::from_str(&submission.schema).map_err(|error| {
            ApiError::invalid_schema(format!("Invalid schema: not JSON: {error}"))
        })?;
        let parsed = avro::parse(&json, &dependencies.values)
            .map_err(|error| ApiError::invalid_schema(format!("Invalid schema: {error}")))?;
        avro::validate(&submission.schema, &dependencies.texts)
            .map_err(|error| ApiError::invalid_schema(format!("Invalid schema: {error}")))?;
        Ok(Prepared {
            content: Content {
                schema_type,
                schema: canonical::normalise(&json),
                references,
            },
            parsed,
        })
    }

    /// The live version of `subject` holding exactly `content`, newest first.
    fn find_in_subject(
        &self,
        subject: &str,
        content: &Content,
        deleted: bool,
    ) -> Option<(u32, u32)> {
        let id = *self.ids.get(content)?;
        self.subjects
            .get(subject)?
            .iter()
            .rev()
            .find(|(_, entry)| entry.id == id && (deleted || !entry.deleted))
            .map(|(version, entry)| (*version, entry.id))
    }

    pub fn plan_register(
        &self,
        subject: &str,
        submission: &Submission,
    ) -> Result<Registration, ApiError> {
        let prepared = self.prepare(submission)?;
        if let Some((version, id)) = self.find_in_subject(subject, &prepared.content, false) {
            return Ok(Registration::Existing { id, version });
        }
        let messages = self.compatibility_messages(subject, &prepared.parsed, None)?;
        if !messages.is_empty() {
            return Err(ApiError::incompatible(format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                messages.join(", ")
            )));
        }
        let id = match self.ids.get(&prepared.content) {
            Some(id) => *id,
            None => self
                .max_id
                .checked_add(1)
                .filter(|id| *id <= i32::MAX as u32)
                .ok_or_else(|| ApiError::store("schema ids exhausted"))?,
        };
        let version = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.keys().next_back())
            .map_or(1, |latest| latest + 1);
        let Content {
            schema_type,
            schema,
            references,
        } = prepared.content;
        let record = Record::Schema {
            subject: subject.to_string(),
            version,
            value: Some(SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema,
                schema_type: (schema_type != AVRO).then_some(schema_type),
                references,
                deleted: false,
            }),
        };
        Ok(Registration::New {
            id,
            version,
            record,
        })
    }

    /// `POST /subjects/{s}`: which version of the subject holds this schema.
    pub fn lookup(
        &self,
        subject: &str,
        submission: &Submission,
        deleted: bool,
    ) -> Result<SubjectVersion, ApiError> {
        self.versions(subject, deleted)?;
        let prepared = self.prepare(submission)?;
        let (version, _) = self
            .find_in_subject(subject, &prepared.content, deleted)
            .ok_or_else(ApiError::schema_not_under_subject)?;
        self.subject_version(subject, version)
    }

    /// Soft (one `DELETE_SUBJECT` record) or hard (a tombstone per version) subject delete;
    /// returns the records and the versions deleted.
    pub fn plan_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<Record>, Vec<u32>), ApiError> {
        let versions = self
            .subjects
            .get(subject)
            .ok_or_else(|| ApiError::subject_not_found(subject))?;
        let live: Vec<u32> = versions
            .iter()
            .filter(|(_, entry)| !entry.deleted)
            .map(|(version, _)| *version)
            .collect();
        let targets: Vec<u32> = if permanent {
            if !live.is_empty() {
                return Err(ApiError::subject_not_soft_deleted(subject));
            }
            versions.keys().copied().collect()
        } else {
            if live.is_empty() {
                return Err(ApiError::subject_soft_deleted(subject));
            }
            live
        };
        for version in &targets {
            self.ensure_unreferenced(subject, *version, permanent)?;
        }
        let records = if permanent {
            targets
                .iter()
                .map(|version| Record::Schema {
                    subject: subject.to_string(),
                    version: *version,
                    value: None,
                })
                .collect()
        } else {
            let latest = versions.keys().next_back().copied().unwrap_or_default();
            vec![Record::DeleteSubject {
                subject: subject.to_string(),
                version: latest,
            }]
        };
        Ok((records, targets))
    }

    pub fn plan_delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<(Record, u32), ApiError> {
        // `latest` means the newest live version for a soft delete, the newest of all for a
        // hard one (hard deletes apply to soft-deleted versions). A numbered version is
        // found either way, so deleting it twice says so (40406) rather than "not found".
        let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
        let target = self.version(subject, spec, include_deleted)?;
        let entry = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.get(&target.version))
            .copied()
            .ok_or_else(|| ApiError::version_not_found(target.version))?;
        match (permanent, entry.deleted) {
            (false, true) => return Err(ApiError::version_soft_deleted(subject, target.version)),
            (true, false) => {
                return Err(ApiError::version_not_soft_deleted(subject, target.version))
            }
            _ => {}
        }
        self.ensure_unreferenced(subject, target.version, permanent)?;
        let value = (!permanent).then(|| SchemaValue {
            subject: subject.to_string(),
            version: target.version,
            id: target.id,
            schema: target.content.schema.clone(),
            schema_type: (target.content.schema_type != AVRO)
                .then(|| target.content.schema_type.clone()),
            references: target.content.references.clone(),
            deleted: true,
        });
        let record = Record::Schema {
            subject: subject.to_string(),
            version: target.version,
            value,
        };
        Ok((record, target.version))
    }

    /// A version other schemas reference cannot go: soft-deleting it is refused while a live
    /// schema uses it, hard-deleting while any schema does.
    fn ensure_unreferenced(
        &self,
        subject: &str,
        version: u32,
        permanent: bool,
    ) -> Result<(), ApiError> {
        if self.referenced_by(subject, version, permanent).is_empty() {
            Ok(())
        } else {
            Err(ApiError::referenced(subject, version))
        }
    }

    pub fn plan_set_config(&self, subject: Option<&str>, level: CompatibilityLevel) -> Record {
        Record::Config {
            subject: subject.map(str::to_string),
            level: Some(level),
        }
    }

    /// Removes a subject's level (falls back to global) or resets the global one to BACKWARD.
    /// Returns the record and the level that was in force.
    pub fn plan_delete_config(
        &self,
        subject: Option<&str>,
    ) -> Result<(Record, CompatibilityLevel), ApiError> {
        let previous = match subject {
            Some(subject) => self
                .subject_level(subject)
                .ok_or_else(|| ApiError::subject_config_not_found(subject))?,
            None => self.global_level(),
        };
        let record = Record::Config {
            subject: subject.map(str::to_string),
            level: None,
        };
        Ok((record, previous))
    }
}
