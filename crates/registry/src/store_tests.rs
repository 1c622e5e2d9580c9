use serde_json::json;

use super::*;

/// A store that remembers every record it applied, to check replay.
#[derive(Default)]
struct Harness {
    store: Store,
    journal: Vec<Record>,
}

impl Harness {
    fn write(&mut self, records: Vec<Record>) {
        for record in records {
            self.store.apply(&record);
            self.journal.push(record);
        }
    }

    fn register_with(
        &mut self,
        subject: &str,
        submission: Submission,
    ) -> Result<(u32, u32), ApiError> {
        match self.store.plan_register(subject, &submission)? {
            Registration::Existing { id, version } => Ok((id, version)),
            Registration::New {
                id,
                version,
                record,
            } => {
                self.write(vec![record]);
                Ok((id, version))
            }
        }
    }

    fn register(&mut self, subject: &str, schema: &Value) -> Result<(u32, u32), ApiError> {
        self.register_with(subject, submit(&schema.to_string()))
    }

    fn set_level(&mut self, subject: Option<&str>, level: CompatibilityLevel) {
        let record = self.store.plan_set_config(subject, level);
        self.write(vec![record]);
    }

    fn delete_subject(&mut self, subject: &str, permanent: bool) -> Result<Vec<u32>, ApiError> {
        let (records, versions) = self.store.plan_delete_subject(subject, permanent)?;
        self.write(records);
        Ok(versions)
    }

    fn delete_version(
        &mut self,
        subject: &str,
        version: u32,
        permanent: bool,
    ) -> Result<u32, ApiError> {
        let (record, version) =
            self.store
                .plan_delete_version(subject, VersionSpec::Number(version), permanent)?;
        self.write(vec![record]);
        Ok(version)
    }

    fn replayed(&self) -> Store {
        let mut fresh = Store::default();
        for record in &self.journal {
            // Through the wire format, as a restart would.
            let (key, value) = record.encode();
            if let Ok(Some(decoded)) = Record::decode(&key, value.as_deref()) {
                fresh.apply(&decoded);
            }
        }
        fresh
    }
}

fn submit(schema: &str) -> Submission {
    Submission {
        schema: schema.to_string(),
        ..Submission::default()
    }
}

fn user(fields: Value) -> Value {
    json!({"type": "record", "name": "User", "namespace": "shop", "fields": fields})
}

fn v1() -> Value {
    user(json!([{"name": "id", "type": "long"}]))
}

fn v2() -> Value {
    user(
        json!([{"name": "id", "type": "long"}, {"name": "email", "type": ["null", "string"], "default": null}]),
    )
}

#[test]
fn ids_start_at_one_and_registration_is_idempotent() {
    let mut harness = Harness::default();
    assert_eq!(harness.register("users-value", &v1()), Ok((1, 1)));
    // Same schema, other formatting and key order: same id, no new version.
    let reformatted = "{ \"fields\": [ {\"type\": \"long\", \"name\": \"id\"} ],\n \"namespace\": \"shop\", \"type\": \"record\", \"name\": \"User\" }";
    assert_eq!(
        harness.register_with("users-value", submit(reformatted)),
        Ok((1, 1))
    );
    assert_eq!(harness.register("users-value", &v2()), Ok((2, 2)));
    assert_eq!(harness.store.versions("users-value", false), Ok(vec![1, 2]));
    assert_eq!(harness.journal.len(), 2);
}

#[test]
fn the_same_schema_under_another_subject_reuses_its_id() {
    let mut harness = Harness::default();
    harness.register("a", &v1()).unwrap();
    harness.register("a", &v2()).unwrap();
    assert_eq!(harness.register("b", &v2()), Ok((2, 1)));
    assert_eq!(
        harness.store.id_versions(2, false),
        Ok(vec![("a".to_string(), 2), ("b".to_string(), 1)])
    );
    assert_eq!(harness.store.subjects(false), vec!["a", "b"]);
}

#[test]
fn incompatible_versions_are_refused_per_level() {
    let mut harness = Harness::default();
    harness.register("s", &v1()).unwrap();
    let required = user(json!([{"name": "id", "type": "long"}, {"name": "age", "type": "int"}]));
    let refused = harness.register("s", &required).unwrap_err();
    assert_eq!(refused.code, 409);
    assert!(
        refused
            .message
            .contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{}",
        refused.message
    );
    assert!(refused.message.contains("{oldSchemaVersion: 1}"));
    assert_eq!(
        harness.journal.len(),
        1,
        "nothing written for a refused schema"
    );
    harness.set_level(Some("s"), CompatibilityLevel::None);
    assert_eq!(harness.register("s", &required), Ok((2, 2)));
    // The global level still applies elsewhere.
    harness.register("t", &v1()).unwrap();
    assert_eq!(harness.register("t", &required).unwrap_err().code, 409);
}

#[test]
fn forward_level_checks_the_other_direction() {
    let mut harness = Harness::default();
    harness.set_level(None, CompatibilityLevel::Forward);
    harness.register("s", &v2()).unwrap();
    // Dropping a field that has a default is forward compatible...
    assert!(harness.register("s", &v1()).is_ok());
    // ...adding a field without one is too (old readers ignore it), removing `id` is not.
    let no_id = user(json!([{"name": "email", "type": ["null", "string"], "default": null}]));
    assert_eq!(harness.register("s", &no_id).unwrap_err().code, 409);
}

#[test]
fn soft_delete_hides_but_keeps_numbering_and_ids() {
    let mut harness = Harness::default();
    harness.register("s", &v1()).unwrap();
    harness.register("s", &v2()).unwrap();
    assert_eq!(harness.delete_subject("s", false), Ok(vec![1, 2]));
    assert!(harness.store.subjects(false).is_empty());
    assert_eq!(harness.store.subjects(true), vec!["s"]);
    assert_eq!(harness.store.versions("s", false).unwrap_err().code, 40401);
    assert_eq!(harness.delete_subject("s", false).unwrap_err().code, 40404);
    // Still readable by id: consumers need it for old records.
    assert!(harness.store.schema(1).is_ok());
    // Registering again continues the numbering and reuses the id.
    assert_eq!(harness.register("s", &v1()), Ok((1, 3)));
}

#[test]
fn hard_delete_needs_a_soft_delete_first_and_never_reuses_ids() {
    let mut harness = Harness::default();
    harness.register("s", &v1()).unwrap();
    harness.register("s", &v2()).unwrap();
    assert_eq!(harness.delete_subject("s", true).unwrap_err().code, 40405);
    harness.delete_subject("s", false).unwrap();
    assert_eq!(harness.delete_subject("s", true), Ok(vec![1, 2]));
    assert!(harness.store.subjects(true).is_empty());
    assert_eq!(harness.store.schema(1).unwrap_err().code, 40403);
    let other = user(json!([{"name": "name", "type": "string"}]));
    assert_eq!(harness.register("s", &other), Ok((3, 1)));
}

#[test]
fn version_deletes_report_confluent_codes() {
    let mut harness = Harness::default();
    harness.register("s", &v1()).unwrap();
    harness.register("s", &v2()).unwrap();
    assert_eq!(
        harness.delete_version("s", 2, true).unwrap_err().code,
        40407
    );
    assert_eq!(harness.delete_version("s", 2, false), Ok(2));
    assert_eq!(
        harness.delete_version("s", 2, false).unwrap_err().code,
        40406
    );
    assert_eq!(
        harness
            .store
            .version("s", VersionSpec::Latest, false)
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        harness
            .store
            .version("s", VersionSpec::Number(2), false)
            .unwrap_err()
            .code,
        40402
    );
    assert_eq!(
        harness
            .store
            .version("s", VersionSpec::Number(2), true)
            .unwrap()
            .id,
        2
    );
    assert_eq!(harness.delete_version("s", 2, true), Ok(2));
    assert_eq!(
        harness.delete_version("s", 9, false).unwrap_err().code,
        40402
    );
    assert_eq!(
        harness.delete_version("nope", 1, false).unwrap_err().code,
        40401
    );
}

#[test]
fn references_resolve_and_protect_their_targets() {
    let mut harness = Harness::default();
    let address = json!({"type": "record", "name": "Address", "namespace": "shop",
        "fields": [{"name": "city", "type": "string"}]});
    harness.register("address", &address).unwrap();
    let order = json!({"type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "ship_to", "type": "shop.Address"}]});
    let with_reference = Submission {
        schema: order.to_string(),
        schema_type: None,
        references: vec![Reference {
            name: "shop.Address".into(),
            subject: "address".into(),
            version: -1,
        }],
    };
    assert_eq!(
        harness.register_with("orders-value", with_reference.clone()),
        Ok((2, 1))
    );
    let stored = harness
        .store
        .version("orders-value", VersionSpec::Latest, false)
        .unwrap();
    assert_eq!(
        stored.content.references[0].version, 1,
        "latest pinned to a number"
    );
    // Without the reference the type is unknown.
    assert_eq!(harness.register("other", &order).unwrap_err().code, 42201);
    assert_eq!(harness.store.referenced_by("address", 1, false), vec![2]);
    assert_eq!(
        harness.delete_subject("address", false).unwrap_err().code,
        42206
    );
    let missing = Submission {
        references: vec![Reference {
            name: "x".into(),
            subject: "ghost".into(),
            version: 1,
        }],
        ..with_reference
    };
    assert_eq!(harness.register_with("z", missing).unwrap_err().code, 42201);
}

#[test]
fn invalid_submissions_register_nothing() {
    let mut harness = Harness::default();
    for bad in [
        "",
        "{",
        "\"nope\"",
        r#"{"type":"record","name":"R"}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#,
    ] {
        let error = harness.register_with("s", submit(bad)).unwrap_err();
        assert_eq!(error.code, 42201, "{bad}: {error:?}");
    }
    let json_schema = Submission {
        schema: "{}".into(),
        schema_type: Some("JSON".into()),
        references: Vec::new(),
    };
    let refused = harness.register_with("s", json_schema).unwrap_err();
    assert_eq!(refused.code, 42201);
    assert!(refused.message.contains("only AVRO"));
    assert!(harness.journal.is_empty());
    assert_eq!(harness.store.max_id(), 0);
}

#[test]
fn lookup_distinguishes_missing_subject_and_missing_schema() {
    let mut harness = Harness::default();
    harness.register("s", &v1()).unwrap();
    let found = harness
        .store
        .lookup("s", &submit(&v1().to_string()), false)
        .unwrap();
    assert_eq!((found.id, found.version), (1, 1));
    assert_eq!(
        harness
            .store
            .lookup("t", &submit(&v1().to_string()), false)
            .unwrap_err()
            .code,
        40401
    );
    assert_eq!(
        harness
            .store
            .lookup("s", &submit(&v2().to_string()), false)
            .unwrap_err()
            .code,
        40403
    );
}

#[test]
fn config_overrides_and_removal() {
    let mut harness = Harness::default();
    assert_eq!(harness.store.level("s"), CompatibilityLevel::Backward);
    harness.set_level(None, CompatibilityLevel::Full);
    harness.set_level(Some("s"), CompatibilityLevel::None);
    assert_eq!(harness.store.level("s"), CompatibilityLevel::None);
    assert_eq!(harness.store.level("t"), CompatibilityLevel::Full);
    let (record, previous) = harness.store.plan_delete_config(Some("s")).unwrap();
    assert_eq!(previous, CompatibilityLevel::None);
    harness.write(vec![record]);
    assert_eq!(harness.store.level("s"), CompatibilityLevel::Full);
    assert_eq!(
        harness
            .store
            .plan_delete_config(Some("s"))
            .unwrap_err()
            .code,
        40408
    );
}

#[test]
fn replaying_the_journal_rebuilds_the_same_state() {
    let mut harness = Harness::default();
    harness.register("a", &v1()).unwrap();
    harness.register("a", &v2()).unwrap();
    harness.register("b", &v1()).unwrap();
    harness.set_level(Some("b"), CompatibilityLevel::FullTransitive);
    harness.delete_version("a", 1, false).unwrap();
    harness.delete_subject("b", false).unwrap();
    harness.delete_subject("b", true).unwrap();
    harness
        .register("c", &user(json!([{"name": "x", "type": "int"}])))
        .unwrap();
    assert_eq!(harness.replayed(), harness.store);
}

#[test]
fn version_specs_follow_confluent() {
    assert_eq!(VersionSpec::parse("latest"), Ok(VersionSpec::Latest));
    assert_eq!(VersionSpec::parse("-1"), Ok(VersionSpec::Latest));
    assert_eq!(VersionSpec::parse("7"), Ok(VersionSpec::Number(7)));
    for bad in ["0", "-2", "x", "2147483648", ""] {
        assert_eq!(VersionSpec::parse(bad).unwrap_err().code, 42202, "{bad}");
    }
}
