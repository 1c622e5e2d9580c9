//! Whole-file validation: every problem, each with its path, in one run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use serde::de::DeserializeOwned;

use crate::model::{ConnectorSpec, KeyFormat, ProcessorSpec, TopicSpec, ValueFormat};
use crate::params::{PostgresCdcParams, ProcessorParams};
use crate::DEAD_LETTER_RECORD;

/// One thing wrong with the file, located by its path (`processors[0].inputs[1].topic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in the topology:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A validated topology. Schemas are parsed and held by topic name.
#[derive(Debug, Clone)]
pub struct Topology {
    pub version: u32,
    pub topics: Vec<TopicSpec>,
    pub processors: Vec<(ProcessorSpec, ProcessorParams)>,
    pub connectors: Vec<(ConnectorSpec, PostgresCdcParams)>,
    /// Folder the schema paths are relative to.
    pub schema_dir: PathBuf,
    value_schemas: HashMap<String, Schema>,
    key_schemas: HashMap<String, Schema>,
    schema_texts: HashMap<PathBuf, String>,
}

impl Topology {
    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn processor(&self, name: &str) -> Option<&(ProcessorSpec, ProcessorParams)> {
        self.processors.iter().find(|(p, _)| p.name == name)
    }

    /// The parsed Avro value schema of an `avro` topic.
    pub fn value_schema(&self, topic: &str) -> Option<&Schema> {
        self.value_schemas.get(topic)
    }

    pub fn key_schema(&self, topic: &str) -> Option<&Schema> {
        self.key_schemas.get(topic)
    }

    /// The schema file's text as written (what gets registered), by path relative to `schemas/`.
    pub fn schema_text(&self, relative: &Path) -> Option<&str> {
        self.schema_texts.get(relative).map(String::as_str)
    }

    /// A copy in which every topic `processor` reads or writes (dead letters included) is
    /// renamed `<name>.<suffix>`, so a test or benchmark runs the processor on private topics
    /// of the same shape, beside the real ones, on one broker.
    pub fn isolated(&self, processor: &str, suffix: &str) -> Option<Topology> {
        self.isolated_all(&[processor], suffix)
    }

    /// [`Topology::isolated`] for several processors that talk to each other: the topics any
    /// of them touches are renamed, and each gets its own consumer group.
    pub fn isolated_all(&self, processors: &[&str], suffix: &str) -> Option<Topology> {
        let mut touched: Vec<String> = Vec::new();
        for processor in processors {
            let (spec, _) = self.processor(processor)?;
            touched.extend(spec.outputs.values().cloned());
            for input in spec.inputs.values() {
                touched.push(input.topic.clone());
                touched.push(input.dead_letter.clone());
            }
        }
        let mut copy = self.with_renamed(&touched, suffix)?;
        for (p, _) in &mut copy.processors {
            p.group = format!("{}.{suffix}", p.group);
        }
        Some(copy)
    }

    /// A copy in which connector `name` writes its own renamed topics (`<topic>.<suffix>`),
    /// reads `database`, and uses its own slot and publication: what tests run side by side.
    pub fn isolated_connector(&self, name: &str, suffix: &str, database: &str) -> Option<Topology> {
        let (spec, _) = self.connectors.iter().find(|(c, _)| c.name == name)?;
        let mut copy = self.with_renamed(&spec.outputs, suffix)?;
        let ident: String = suffix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        for (c, params) in &mut copy.connectors {
            if c.name != name {
                continue;
            }
            params.database = database.to_string();
            params.slot = format!("{}_{ident}", params.slot);
            params.publication = format!("{}_{ident}", params.publication);
            c.params = serde_yaml::to_value(&*params).ok()?;
        }
        Some(copy)
    }

    /// A copy in which the `touched` topics are `<topic>.<suffix>` everywhere: the topic
    /// list, every processor's inputs, dead letters and outputs, and every connector's
    /// outputs and tables (a writer or reader of a renamed topic uses the renamed copy).
    fn with_renamed(&self, touched: &[String], suffix: &str) -> Option<Topology> {
        let rename = |name: &str| {
            if touched.iter().any(|t| t == name) {
                format!("{name}.{suffix}")
            } else {
                name.to_string()
            }
        };
        let mut copy = self.clone();
        copy.rename_topics(&rename);
        for (p, _) in &mut copy.processors {
            for input in p.inputs.values_mut() {
                input.topic = rename(&input.topic);
                input.dead_letter = rename(&input.dead_letter);
            }
            for output in p.outputs.values_mut() {
                *output = rename(output);
            }
        }
        for (c, params) in &mut copy.connectors {
            for output in &mut c.outputs {
                *output = rename(output);
            }
            params.dead_letter = rename(&params.dead_letter);
            for table in &mut params.tables {
                table.topic = rename(&table.topic);
            }
            c.params = serde_yaml::to_value(&*params).ok()?;
        }
        Some(copy)
    }

    /// Renames topics (and their schema entries) by `rename`.
    fn rename_topics(&mut self, rename: &impl Fn(&str) -> String) {
        for topic in &mut self.topics {
            let new = rename(&topic.name);
            if let Some(s) = self.value_schemas.remove(&topic.name) {
                self.value_schemas.insert(new.clone(), s);
            }
            if let Some(s) = self.key_schemas.remove(&topic.name) {
                self.key_schemas.insert(new.clone(), s);
            }
            topic.name = new;
        }
    }

    /// Overrides some of processor `name`'s parameters (over the file's own) and checks the
    /// result against its kind: what tests use to point a processor at their own database or
    /// gateway. The raw and the typed parameters change together, so a copy written with
    /// [`Topology::to_yaml`] carries the overrides. Returns false if there is no such processor.
    pub fn set_params(
        &mut self,
        name: &str,
        overrides: &[(&str, serde_yaml::Value)],
    ) -> Result<bool, serde_yaml::Error> {
        let Some((spec, params)) = self.processors.iter_mut().find(|(p, _)| p.name == name) else {
            return Ok(false);
        };
        let mut raw = match &spec.params {
            serde_yaml::Value::Mapping(map) => map.clone(),
            _ => serde_yaml::Mapping::new(),
        };
        for (key, value) in overrides {
            raw.insert((*key).into(), value.clone());
        }
        let raw = serde_yaml::Value::Mapping(raw);
        *params = ProcessorParams::parse(spec.kind, &raw)?;
        spec.params = raw;
        Ok(true)
    }

    /// The topology as YAML again (schema paths unchanged): what `isolated` copies are
    /// written as, so a separate `fleet` process can run on them.
    pub fn to_yaml(&self) -> String {
        #[derive(serde::Serialize)]
        struct File<'a> {
            version: u32,
            topics: &'a [TopicSpec],
            processors: Vec<ProcessorSpec>,
            connectors: Vec<ConnectorSpec>,
        }
        // Parameters are written from the typed values, never the raw YAML they were read
        // from: callers (benches, isolated test copies) change the typed parameters, and a
        // child process started on this file must see those changes.
        let processors = self
            .processors
            .iter()
            .map(|(spec, params)| {
                let mut spec = spec.clone();
                // Plain derived structs always serialize; falling back to the raw YAML here
                // would silently bring back the stale parameters this writes over.
                spec.params = params.to_value().expect("typed parameters serialize");
                spec
            })
            .collect();
        let connectors = self
            .connectors
            .iter()
            .map(|(spec, params)| {
                let mut spec = spec.clone();
                spec.params = serde_yaml::to_value(params).expect("typed parameters serialize");
                spec
            })
            .collect();
        let file = File {
            version: self.version,
            topics: &self.topics,
            processors,
            connectors,
        };
        serde_yaml::to_string(&file).unwrap_or_default()
    }

    /// Writes the topology as `topology.yaml` in `dir`, with `schemas/` there linked to this
    /// topology's schema folder, so a separate `fleet --topology` process loads the same
    /// thing. Returns the file's path.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let link = dir.join("schemas");
        if !link.exists() {
            let target = std::fs::canonicalize(&self.schema_dir)?;
            std::os::unix::fs::symlink(target, &link)?;
        }
        let path = dir.join("topology.yaml");
        std::fs::write(&path, self.to_yaml())?;
        Ok(path)
    }

    /// Every (subject, schema text) pair under Confluent's TopicNameStrategy.
    pub fn subjects(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for topic in &self.topics {
            for (suffix, path) in [("key", &topic.key_schema), ("value", &topic.value_schema)] {
                if let Some(text) = path.as_ref().and_then(|p| self.schema_text(p)) {
                    out.push((format!("{}-{suffix}", topic.name), text.to_string()));
                }
            }
        }
        out
    }
}

/// Reads and validates `path`; schema files are resolved against `schemas/` beside it.
pub fn load(path: &Path) -> Result<Topology, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    load_str(&text, &dir.join("schemas"))
}

/// Validates topology text against the schema files under `schema_dir`.
pub fn load_str(text: &str, schema_dir: &Path) -> Result<Topology, TopologyError> {
    let mut v = Validator {
        problems: Vec::new(),
        schema_dir: schema_dir.to_path_buf(),
        schema_texts: HashMap::new(),
    };
    let topology = v.run(text);
    match topology {
        Some(t) if v.problems.is_empty() => Ok(t),
        _ => Err(TopologyError::Invalid(v.problems)),
    }
}

struct Validator {
    problems: Vec<Problem>,
    schema_dir: PathBuf,
    schema_texts: HashMap<PathBuf, String>,
}

impl Validator {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn run(&mut self, text: &str) -> Option<Topology> {
        let root: serde_yaml::Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.problem("<file>", format!("not valid YAML: {e}"));
                return None;
            }
        };
        let Some(map) = root.as_mapping() else {
            self.problem("<file>", "the top level must be a mapping");
            return None;
        };
        for key in map.keys() {
            let known = ["version", "topics", "processors", "connectors"];
            if !key.as_str().is_some_and(|k| known.contains(&k)) {
                self.problem(
                    yaml_key(key),
                    format!("unknown top-level key (expected one of {known:?})"),
                );
            }
        }
        let version = match map.get("version").and_then(|v| v.as_u64()) {
            Some(1) => 1,
            Some(other) => {
                self.problem(
                    "version",
                    format!("unsupported version {other}; this fleet reads version 1"),
                );
                1
            }
            None => {
                self.problem("version", "missing `version: 1`");
                1
            }
        };
        let topics: Vec<TopicSpec> = self.items(map.get("topics"), "topics", true);
        let processors: Vec<ProcessorSpec> = self.items(map.get("processors"), "processors", false);
        let connectors: Vec<ConnectorSpec> = self.items(map.get("connectors"), "connectors", false);

        let (value_schemas, key_schemas) = self.check_topics(&topics);
        let processors = self.check_processors(&topics, processors, &value_schemas);
        let connectors = self.check_connectors(&topics, connectors);
        self.check_writers(&topics, &processors, &connectors);

        Some(Topology {
            version,
            topics,
            processors,
            connectors,
            schema_dir: self.schema_dir.clone(),
            value_schemas,
            key_schemas,
            schema_texts: std::mem::take(&mut self.schema_texts),
        })
    }

    /// Deserializes each list item on its own so one bad item does not hide the others.
    fn items<T: DeserializeOwned>(
        &mut self,
        value: Option<&serde_yaml::Value>,
        section: &str,
        required: bool,
    ) -> Vec<T> {
        let Some(value) = value else {
            if required {
                self.problem(section, "missing section");
            }
            return Vec::new();
        };
        let Some(seq) = value.as_sequence() else {
            if !value.is_null() {
                self.problem(section, "must be a list");
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in seq.iter().enumerate() {
            let label = item
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!("{section}[{i}] ({n})"))
                .unwrap_or_else(|| format!("{section}[{i}]"));
            match serde_yaml::from_value::<T>(item.clone()) {
                Ok(t) => out.push(t),
                Err(e) => self.problem(label, e.to_string()),
            }
        }
        out
    }

    fn check_topics(
        &mut self,
        topics: &[TopicSpec],
    ) -> (HashMap<String, Schema>, HashMap<String, Schema>) {
        let mut seen = HashSet::new();
        let mut values = HashMap::new();
        let mut keys = HashMap::new();
        for (i, t) in topics.iter().enumerate() {
            let at = format!("topics[{i}] ({})", t.name);
            if !seen.insert(t.name.as_str()) {
                self.problem(&at, "duplicate topic name");
            }
            if !valid_topic_name(&t.name) {
                self.problem(
                    format!("{at}.name"),
                    "topic names use letters, digits, '.', '_' and '-' (at most 249)",
                );
            }
            if t.partitions == 0 {
                self.problem(format!("{at}.partitions"), "must be at least 1");
            }
            if t.retention_ms < -1 || t.retention_ms == 0 {
                self.problem(
                    format!("{at}.retention_ms"),
                    "must be positive, or -1 for forever",
                );
            }
            let key_avro = t.key == KeyFormat::Avro;
            if let Some(s) =
                self.check_schema_field(&at, "key_schema", key_avro, t.key_schema.as_deref())
            {
                keys.insert(t.name.clone(), s);
            }
            let value_avro = t.value == ValueFormat::Avro;
            if let Some(s) =
                self.check_schema_field(&at, "value_schema", value_avro, t.value_schema.as_deref())
            {
                values.insert(t.name.clone(), s);
            }
        }
        (values, keys)
    }

    fn check_schema_field(
        &mut self,
        at: &str,
        field: &str,
        avro: bool,
        path: Option<&Path>,
    ) -> Option<Schema> {
        match (avro, path) {
            (true, None) => {
                self.problem(format!("{at}.{field}"), "required when the format is avro");
                None
            }
            (false, Some(_)) => {
                self.problem(
                    format!("{at}.{field}"),
                    "only allowed when the format is avro",
                );
                None
            }
            (false, None) => None,
            (true, Some(rel)) => self.parse_schema(&format!("{at}.{field}"), rel),
        }
    }

    fn parse_schema(&mut self, at: &str, rel: &Path) -> Option<Schema> {
        let full = self.schema_dir.join(rel);
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                self.problem(at, format!("cannot read schema {}: {e}", full.display()));
                return None;
            }
        };
        match Schema::parse_str(&text) {
            Ok(schema) => {
                self.schema_texts.insert(rel.to_path_buf(), text);
                Some(schema)
            }
            Err(e) => {
                self.problem(
                    at,
                    format!("{} is not a valid Avro schema: {e}", rel.display()),
                );
                None
            }
        }
    }

    fn check_topic_ref(&mut self, topics: &[TopicSpec], at: String, name: &str) -> bool {
        if topics.iter().any(|t| t.name == name) {
            true
        } else {
            self.problem(at, format!("unknown topic `{name}`"));
            false
        }
    }

    fn check_processors(
        &mut self,
        topics: &[TopicSpec],
        processors: Vec<ProcessorSpec>,
        values: &HashMap<String, Schema>,
    ) -> Vec<(ProcessorSpec, ProcessorParams)> {
        let mut names = HashSet::new();
        let mut groups = HashSet::new();
        let mut ports: BTreeMap<u16, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, p) in processors.into_iter().enumerate() {
            let at = format!("processors[{i}] ({})", p.name);
            if !names.insert(p.name.clone()) {
                self.problem(&at, "duplicate processor name");
            }
            if !groups.insert(p.group.clone()) {
                self.problem(
                    format!("{at}.group"),
                    "consumer group shared with another processor",
                );
            }
            if p.fetch_wait_ms == 0 || p.fetch_wait_ms > 5_000 {
                self.problem(
                    format!("{at}.fetch_wait_ms"),
                    format!(
                        "{} is out of range 1..=5000 (0 makes nisshi answer a fetch with nothing)",
                        p.fetch_wait_ms
                    ),
                );
            }
            if p.state_flush_ms > 10_000 {
                self.problem(
                    format!("{at}.state_flush_ms"),
                    format!(
                        "{} is over 10000: a crash would redo too much",
                        p.state_flush_ms
                    ),
                );
            }
            if p.instances == 0 {
                self.problem(format!("{at}.instances"), "must be at least 1");
            }
            if p.inputs.is_empty() {
                self.problem(
                    format!("{at}.inputs"),
                    "a processor needs at least one input",
                );
            }
            for port in p.admin_port..p.admin_port.saturating_add(p.instances) {
                if let Some(other) = ports.insert(port, p.name.clone()) {
                    self.problem(
                        format!("{at}.admin_port"),
                        format!("port {port} also used by `{other}`"),
                    );
                }
            }
            self.check_ports(&at, &p, values);
            for (port, input) in &p.inputs {
                let ip = format!("{at}.inputs.{port}");
                self.check_topic_ref(topics, format!("{ip}.topic"), &input.topic);
                if self.check_topic_ref(topics, format!("{ip}.dead_letter"), &input.dead_letter) {
                    let is_dlq = values
                        .get(&input.dead_letter)
                        .is_some_and(|s| record_name(s).as_deref() == Some(DEAD_LETTER_RECORD));
                    if !is_dlq {
                        self.problem(
                            format!("{ip}.dead_letter"),
                            format!(
                                "`{}` must carry {DEAD_LETTER_RECORD} values",
                                input.dead_letter
                            ),
                        );
                    }
                }
            }
            for (port, output) in &p.outputs {
                self.check_topic_ref(topics, format!("{at}.outputs.{port}"), output);
            }
            match ProcessorParams::parse(p.kind, &p.params) {
                Ok(ProcessorParams::Payment(params)) if params.validate().is_err() => {
                    let why = params.validate().err().unwrap_or_default();
                    self.problem(format!("{at}.params"), why);
                }
                Ok(ProcessorParams::Storefront(params)) if params.validate().is_err() => {
                    let why = params.validate().err().unwrap_or_default();
                    self.problem(format!("{at}.params"), why);
                }
                Ok(ProcessorParams::SearchIndexer(params)) if params.validate().is_err() => {
                    let why = params.validate().err().unwrap_or_default();
                    self.problem(format!("{at}.params"), why);
                }
                Ok(ProcessorParams::Recommendations(params)) if params.validate().is_err() => {
                    let why = params.validate().err().unwrap_or_default();
                    self.problem(format!("{at}.params"), why);
                }
                Ok(ProcessorParams::ImageQuality(params)) if params.validate().is_err() => {
                    let why = params.validate().err().unwrap_or_default();
                    self.problem(format!("{at}.params"), why);
                }
                Ok(params) => out.push((p, params)),
                Err(e) => self.problem(format!("{at}.params"), e.to_string()),
            }
        }
        out
    }

    /// The processor binds exactly its kind's ports (see [`crate::ports::check`]).
    fn check_ports(&mut self, at: &str, p: &ProcessorSpec, values: &HashMap<String, Schema>) {
        let record = |topic: &str| values.get(topic).and_then(record_name);
        for (path, message) in crate::ports::check(p, record) {
            self.problem(format!("{at}.{path}"), message);
        }
    }

    fn check_connectors(
        &mut self,
        topics: &[TopicSpec],
        connectors: Vec<ConnectorSpec>,
    ) -> Vec<(ConnectorSpec, PostgresCdcParams)> {
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in connectors.into_iter().enumerate() {
            let at = format!("connectors[{i}] ({})", c.name);
            if !names.insert(c.name.clone()) {
                self.problem(&at, "duplicate connector name");
            }
            for (j, output) in c.outputs.iter().enumerate() {
                self.check_topic_ref(topics, format!("{at}.outputs[{j}]"), output);
            }
            match serde_yaml::from_value::<PostgresCdcParams>(c.params.clone()) {
                Ok(params) => {
                    self.check_cdc_params(&at, &c, &params);
                    out.push((c, params));
                }
                Err(e) => self.problem(format!("{at}.params"), e.to_string()),
            }
        }
        out
    }

    /// A CDC connector writes only topics it declares, one table per topic.
    fn check_cdc_params(&mut self, at: &str, c: &ConnectorSpec, params: &PostgresCdcParams) {
        let declared = |topic: &str| c.outputs.iter().any(|o| o == topic);
        if !declared(&params.dead_letter) {
            self.problem(
                format!("{at}.params.dead_letter"),
                format!(
                    "`{}` is not among the connector's outputs",
                    params.dead_letter
                ),
            );
        }
        if params.tables.is_empty() {
            self.problem(format!("{at}.params.tables"), "no table to capture");
        }
        if params.snapshot_chunk_rows == 0 {
            self.problem(
                format!("{at}.params.snapshot_chunk_rows"),
                "must be at least 1",
            );
        }
        let mut seen = HashSet::new();
        for (k, t) in params.tables.iter().enumerate() {
            let where_ = format!("{at}.params.tables[{k}]");
            let parts: Vec<&str> = t.table.split('.').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                self.problem(format!("{where_}.table"), "must be `schema.table`");
            }
            if !declared(&t.topic) {
                self.problem(
                    format!("{where_}.topic"),
                    format!("`{}` is not among the connector's outputs", t.topic),
                );
            }
            if !seen.insert(t.topic.as_str()) {
                self.problem(format!("{where_}.topic"), "two tables cannot share a topic");
            }
            let valid_name = t
                .record
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
                && t.record
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                self.problem(
                    format!("{where_}.record"),
                    "must be an Avro name starting with an upper-case letter",
                );
            }
        }
    }

    /// Every topic a processor reads must have somebody writing it.
    fn check_writers(
        &mut self,
        topics: &[TopicSpec],
        processors: &[(ProcessorSpec, ProcessorParams)],
        connectors: &[(ConnectorSpec, PostgresCdcParams)],
    ) {
        let written: HashSet<&str> = processors
            .iter()
            .flat_map(|(p, _)| p.output_topics())
            .chain(
                connectors
                    .iter()
                    .flat_map(|(c, _)| c.outputs.iter().map(String::as_str)),
            )
            .chain(
                topics
                    .iter()
                    .filter(|t| !t.external_writers.is_empty())
                    .map(|t| t.name.as_str()),
            )
            .collect();
        for (i, (p, _)) in processors.iter().enumerate() {
            for (port, input) in &p.inputs {
                let known = topics.iter().any(|t| t.name == input.topic);
                if known && !written.contains(input.topic.as_str()) {
                    self.problem(
                        format!("processors[{i}] ({}).inputs.{port}.topic", p.name),
                        format!(
                            "`{}` is read but nobody writes it (no processor or connector output, no external_writers)",
                            input.topic
                        ),
                    );
                }
            }
        }
    }
}

fn yaml_key(key: &serde_yaml::Value) -> String {
    key.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{key:?}"))
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn record_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
