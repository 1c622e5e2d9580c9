//! Schema evolution rules, as Confluent's Java registry applies them.
//!
//! [`can_read`] follows Avro Java's `SchemaCompatibility` reader/writer check (which
//! Confluent's `AvroSchema` delegates to): names match by unqualified name or reader alias,
//! fields by name or reader field alias, a reader field the writer lacks needs a default,
//! int→long→float→double and string↔bytes promote, a writer enum symbol the reader lacks is
//! fatal unless the reader enum has a default, a writer union must be readable branch by
//! branch and a reader union needs one branch that reads the writer. Logical types are
//! ignored, as in Java. There is no "partial" verdict: anything not fully readable is
//! incompatible. [`check`] applies a [`CompatibilityLevel`] to a list of earlier versions.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use crate::avro::{NamedKind, Node, ParsedSchema};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// The new schema must read data written with the old one.
    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// The old schema must read data written with the new one.
    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compatibility level: {0}")]
pub struct InvalidLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "BACKWARD" => Self::Backward,
            "BACKWARD_TRANSITIVE" => Self::BackwardTransitive,
            "FORWARD" => Self::Forward,
            "FORWARD_TRANSITIVE" => Self::ForwardTransitive,
            "FULL" => Self::Full,
            "FULL_TRANSITIVE" => Self::FullTransitive,
            _ => return Err(InvalidLevel(text.to_string())),
        })
    }
}

/// Java's `SchemaIncompatibilityType` names, used verbatim in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncompatibilityKind {
    NameMismatch,
    FixedSizeMismatch,
    MissingEnumSymbols,
    ReaderFieldMissingDefaultValue,
    TypeMismatch,
    MissingUnionBranch,
}

impl IncompatibilityKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::NameMismatch => "NAME_MISMATCH",
            Self::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            Self::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            Self::ReaderFieldMissingDefaultValue => "READER_FIELD_MISSING_DEFAULT_VALUE",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::MissingUnionBranch => "MISSING_UNION_BRANCH",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub kind: IncompatibilityKind,
    /// JSON-pointer-like path in the reader schema, e.g. `/fields/1/type`.
    pub location: String,
    pub info: String,
}

impl Incompatibility {
    /// Confluent's message shape; `reader`/`writer` are "new" or "old".
    pub fn describe(&self, reader: &str, writer: &str) -> String {
        let location = &self.location;
        let description = match self.kind {
            IncompatibilityKind::NameMismatch => {
                format!("The name of the schema has changed (path '{location}')")
            }
            IncompatibilityKind::FixedSizeMismatch => format!(
                "The size of FIXED type field at path '{location}' in the {reader} schema does not match with the {writer} schema"
            ),
            IncompatibilityKind::MissingEnumSymbols => format!(
                "The {reader} schema is missing enum symbols '{}' at path '{location}' in the {writer} schema",
                self.info
            ),
            IncompatibilityKind::ReaderFieldMissingDefaultValue => format!(
                "The field '{}' at path '{location}' in the {reader} schema has no default value and is missing in the {writer} schema",
                self.info
            ),
            IncompatibilityKind::TypeMismatch => format!(
                "The type (path '{location}') of a field in the {reader} schema does not match with the {writer} schema"
            ),
            IncompatibilityKind::MissingUnionBranch => format!(
                "The {reader} schema is missing a type inside a union field at path '{location}' in the {writer} schema"
            ),
        };
        format!(
            "{{errorType:'{}', description:'{description}', additionalInfo:'{}'}}",
            self.kind.as_str(),
            self.info
        )
    }
}

/// Every reason `reader` cannot decode data written with `writer`; empty means compatible.
pub fn can_read(reader: &ParsedSchema, writer: &ParsedSchema) -> Vec<Incompatibility> {
    let mut checker = Checker {
        reader,
        writer,
        memo: HashMap::new(),
        location: Vec::new(),
    };
    checker.check(&reader.root, &writer.root)
}

/// One earlier version for [`check`].
pub struct Previous<'a> {
    pub version: u32,
    pub schema_text: &'a str,
    pub schema: &'a ParsedSchema,
}

/// Checks `candidate` against `previous` (oldest first) under `level`; returns Confluent-style
/// messages, empty when compatible. Non-transitive levels look at the newest version only;
/// checking stops at the newest version that fails, as Confluent's does.
pub fn check(
    level: CompatibilityLevel,
    candidate: &ParsedSchema,
    previous: &[Previous<'_>],
) -> Vec<String> {
    let against: Vec<&Previous<'_>> = if level.transitive() {
        previous.iter().rev().collect()
    } else {
        previous.iter().rev().take(1).collect()
    };
    for old in against {
        let mut messages = Vec::new();
        if level.backward() {
            for problem in can_read(candidate, old.schema) {
                messages.push(problem.describe("new", "old"));
            }
        }
        if level.forward() {
            for problem in can_read(old.schema, candidate) {
                messages.push(problem.describe("old", "new"));
            }
        }
        if !messages.is_empty() {
            messages.push(format!("{{oldSchemaVersion: {}}}", old.version));
            messages.push(format!("{{oldSchema: '{}'}}", old.schema_text));
            messages.push(format!("{{compatibility: '{level}'}}"));
            return messages;
        }
    }
    Vec::new()
}

struct Checker<'a> {
    reader: &'a ParsedSchema,
    writer: &'a ParsedSchema,
    /// Results per (reader, writer) named-type pair; an entry is inserted empty before the
    /// pair is checked, so a recursive type meeting itself counts as compatible (as in Java).
    memo: HashMap<(usize, usize), Vec<Incompatibility>>,
    location: Vec<String>,
}

#[derive(PartialEq, Eq)]
enum Kind {
    Primitive(&'static str),
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

impl Checker<'_> {
    fn kind(schema: &ParsedSchema, node: &Node) -> Kind {
        match node {
            Node::Null => Kind::Primitive("null"),
            Node::Boolean => Kind::Primitive("boolean"),
            Node::Int => Kind::Primitive("int"),
            Node::Long => Kind::Primitive("long"),
            Node::Float => Kind::Primitive("float"),
            Node::Double => Kind::Primitive("double"),
            Node::Bytes => Kind::Primitive("bytes"),
            Node::String => Kind::Primitive("string"),
            Node::Array(_) => Kind::Array,
            Node::Map(_) => Kind::Map,
            Node::Union(_) => Kind::Union,
            Node::Named(index) => match schema.named(*index).kind {
                NamedKind::Record(_) => Kind::Record,
                NamedKind::Enum { .. } => Kind::Enum,
                NamedKind::Fixed { .. } => Kind::Fixed,
            },
        }
    }

    fn type_name(schema: &ParsedSchema, node: &Node) -> &'static str {
        match Self::kind(schema, node) {
            Kind::Primitive(name) => name,
            Kind::Array => "array",
            Kind::Map => "map",
            Kind::Union => "union",
            Kind::Record => "record",
            Kind::Enum => "enum",
            Kind::Fixed => "fixed",
        }
    }

    fn here(&self) -> String {
        if self.location.is_empty() {
            "/".to_string()
        } else {
            format!("/{}", self.location.join("/"))
        }
    }

    fn incompatible(&self, kind: IncompatibilityKind, info: String) -> Vec<Incompatibility> {
        vec![Incompatibility {
            kind,
            location: self.here(),
            info,
        }]
    }

    fn within(
        &mut self,
        step: impl Into<String>,
        reader: &Node,
        writer: &Node,
    ) -> Vec<Incompatibility> {
        self.location.push(step.into());
        let found = self.check(reader, writer);
        self.location.pop();
        found
    }

    fn check(&mut self, reader: &Node, writer: &Node) -> Vec<Incompatibility> {
        if let (Node::Named(r), Node::Named(w)) = (reader, writer) {
            if let Some(known) = self.memo.get(&(*r, *w)) {
                return known.clone();
            }
            self.memo.insert((*r, *w), Vec::new());
            let found = self.check_uncached(reader, writer);
            self.memo.insert((*r, *w), found.clone());
            return found;
        }
        self.check_uncached(reader, writer)
    }

    fn check_uncached(&mut self, reader: &Node, writer: &Node) -> Vec<Incompatibility> {
        let reader_kind = Self::kind(self.reader, reader);
        let writer_kind = Self::kind(self.writer, writer);
        if reader_kind == writer_kind {
            return match (reader, writer) {
                (Node::Array(r), Node::Array(w)) => self.within("items", r, w),
                (Node::Map(r), Node::Map(w)) => self.within("values", r, w),
                (Node::Union(_), Node::Union(branches)) => self.writer_union(reader, branches),
                (Node::Named(r), Node::Named(w)) => self.named(*r, *w),
                _ => Vec::new(),
            };
        }
        if let Node::Union(branches) = writer {
            return self.writer_union(reader, branches);
        }
        use Kind::Primitive as P;
        let promotable = matches!(
            (&reader_kind, &writer_kind),
            (P("long"), P("int"))
                | (P("float"), P("int") | P("long"))
                | (P("double"), P("int") | P("long") | P("float"))
                | (P("bytes"), P("string"))
                | (P("string"), P("bytes"))
        );
        if promotable {
            return Vec::new();
        }
        if let Node::Union(branches) = reader {
            let readable = branches
                .iter()
                .any(|branch| self.check(branch, writer).is_empty());
            if readable {
                return Vec::new();
            }
            let info = format!(
                "reader union lacking writer type: {}",
                Self::type_name(self.writer, writer).to_uppercase()
            );
            return self.incompatible(IncompatibilityKind::MissingUnionBranch, info);
        }
        let info = format!(
            "reader type: {} not compatible with writer type: {}",
            Self::type_name(self.reader, reader).to_uppercase(),
            Self::type_name(self.writer, writer).to_uppercase()
        );
        self.incompatible(IncompatibilityKind::TypeMismatch, info)
    }

    fn writer_union(&mut self, reader: &Node, branches: &[Node]) -> Vec<Incompatibility> {
        let mut found = Vec::new();
        for (position, branch) in branches.iter().enumerate() {
            found.extend(self.within(position.to_string(), reader, branch));
        }
        found
    }

    fn named(&mut self, r: usize, w: usize) -> Vec<Incompatibility> {
        let reader = self.reader.named(r);
        let writer = self.writer.named(w);
        let mut found = Vec::new();
        if reader.name != writer.name && !reader.aliases.contains(&writer.fullname) {
            self.location.push("name".into());
            found.extend(self.incompatible(
                IncompatibilityKind::NameMismatch,
                format!("expected: {}", writer.fullname),
            ));
            self.location.pop();
        }
        match (&reader.kind, &writer.kind) {
            (NamedKind::Fixed { size: r_size }, NamedKind::Fixed { size: w_size })
                if r_size != w_size =>
            {
                self.location.push("size".into());
                found.extend(self.incompatible(
                    IncompatibilityKind::FixedSizeMismatch,
                    format!("expected: {w_size}, found: {r_size}"),
                ));
                self.location.pop();
            }
            (
                NamedKind::Enum {
                    symbols: r_symbols,
                    default,
                },
                NamedKind::Enum {
                    symbols: w_symbols, ..
                },
            ) => {
                let missing: BTreeSet<&String> = w_symbols
                    .iter()
                    .filter(|symbol| !r_symbols.contains(symbol))
                    .collect();
                if !missing.is_empty() && default.is_none() {
                    self.location.push("symbols".into());
                    let listed: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    found.extend(self.incompatible(
                        IncompatibilityKind::MissingEnumSymbols,
                        format!("[{}]", listed.join(", ")),
                    ));
                    self.location.pop();
                }
            }
            (NamedKind::Record(r_fields), NamedKind::Record(w_fields)) => {
                self.location.push("fields".into());
                for (position, field) in r_fields.iter().enumerate() {
                    self.location.push(position.to_string());
                    let counterpart = w_fields
                        .iter()
                        .find(|w_field| w_field.name == field.name)
                        .or_else(|| {
                            field.aliases.iter().find_map(|alias| {
                                w_fields.iter().find(|w_field| &w_field.name == alias)
                            })
                        });
                    match counterpart {
                        Some(w_field) => {
                            found.extend(self.within("type", &field.node, &w_field.node))
                        }
                        None if field.has_default => {}
                        None => found.extend(self.incompatible(
                            IncompatibilityKind::ReaderFieldMissingDefaultValue,
                            field.name.clone(),
                        )),
                    }
                    self.location.pop();
                }
                self.location.pop();
            }
            _ => {}
        }
        found
    }
}

#[cfg(test)]
#[path = "compat_tests.rs"]
mod tests;
