//! A small model of an Avro schema for compatibility checks: the shape Java's Avro sees.
//!
//! Logical types are annotations and are dropped here, like Java's `SchemaCompatibility`
//! ignores them: a `uuid` is a `string`, a `timestamp-millis` a `long`. Named types live in
//! one table so recursive types are plain indices, and referenced schemas (Confluent
//! `references`) are parsed first into the same table, so the main schema may name their
//! types. Validation of defaults and other details is left to `apache_avro` (see
//! [`validate`]); this parser checks structure only.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

/// One schema position: a primitive, a container, or an index into [`ParsedSchema::named`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Named(usize),
}

#[derive(Debug, Clone)]
pub struct NamedType {
    /// Unqualified name: Java compares these, not full names, when matching named types.
    pub name: String,
    pub fullname: String,
    /// Full names.
    pub aliases: Vec<String>,
    pub kind: NamedKind,
}

#[derive(Debug, Clone)]
pub enum NamedKind {
    Record(Vec<Field>),
    Enum {
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed {
        size: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub aliases: Vec<String>,
    pub has_default: bool,
    pub node: Node,
}

#[derive(Debug, Clone)]
pub struct ParsedSchema {
    pub root: Node,
    pub named: Vec<NamedType>,
}

impl ParsedSchema {
    pub fn named(&self, index: usize) -> &NamedType {
        &self.named[index]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AvroError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, AvroError> {
    Err(AvroError(message.into()))
}

/// Parses `main` after `references` (schema texts, dependencies first), all into one name table.
pub fn parse(main: &Value, references: &[Value]) -> Result<ParsedSchema, AvroError> {
    let mut parser = Parser::default();
    for reference in references {
        parser.node(reference, "")?;
    }
    let root = parser.node(main, "")?;
    let named = parser
        .named
        .into_iter()
        .map(|slot| slot.ok_or_else(|| AvroError("named type left undefined".into())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParsedSchema { root, named })
}

/// Full validation by `apache_avro` (defaults, logical types), the library the fleet's
/// clients decode with: a schema it cannot parse must not be registered.
pub fn validate(main: &str, references: &[String]) -> Result<(), AvroError> {
    let outcome = if references.is_empty() {
        apache_avro::Schema::parse_str(main).map(|_| ())
    } else {
        apache_avro::Schema::parse_str_with_list(main, references).map(|_| ())
    };
    outcome.map_err(|error| AvroError(error.to_string()))
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_fullname(name: &str) -> bool {
    name.split('.').all(valid_identifier)
}

fn qualify(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

#[derive(Default)]
struct Parser {
    /// `None` while a named type's body is being parsed (recursion points at its index).
    named: Vec<Option<NamedType>>,
    index: HashMap<String, usize>,
}

impl Parser {
    fn node(&mut self, value: &Value, namespace: &str) -> Result<Node, AvroError> {
        match value {
            Value::String(name) => self.reference(name, namespace),
            Value::Array(branches) => self.union(branches, namespace),
            Value::Object(object) => self.object(object, namespace),
            other => fail(format!("not a schema: {other}")),
        }
    }

    fn reference(&self, name: &str, namespace: &str) -> Result<Node, AvroError> {
        if let Some(node) = primitive(name) {
            return Ok(node);
        }
        // Java's lookup: the name in the enclosing namespace, else as written.
        let found = self
            .index
            .get(&qualify(name, namespace))
            .or_else(|| self.index.get(name));
        match found {
            Some(&index) => Ok(Node::Named(index)),
            None => fail(format!("unknown type: {name}")),
        }
    }

    fn union(&mut self, branches: &[Value], namespace: &str) -> Result<Node, AvroError> {
        let mut nodes = Vec::with_capacity(branches.len());
        let mut seen = BTreeSet::new();
        for branch in branches {
            let node = self.node(branch, namespace)?;
            let identity = match &node {
                Node::Union(_) => return fail("unions may not immediately contain other unions"),
                Node::Named(index) => self.fullname(*index),
                Node::Array(_) => "array".to_string(),
                Node::Map(_) => "map".to_string(),
                primitive => format!("{primitive:?}"),
            };
            if !seen.insert(identity.clone()) {
                return fail(format!("duplicate in union: {identity}"));
            }
            nodes.push(node);
        }
        Ok(Node::Union(nodes))
    }

    fn fullname(&self, index: usize) -> String {
        let defined = self.named.get(index).and_then(Option::as_ref);
        let pending = self.index.iter().find(|(_, &i)| i == index);
        match (defined, pending) {
            (Some(named), _) => named.fullname.clone(),
            (None, Some((name, _))) => name.clone(),
            (None, None) => format!("#{index}"),
        }
    }

    fn object(&mut self, object: &Map<String, Value>, namespace: &str) -> Result<Node, AvroError> {
        let type_name = match object.get("type") {
            Some(Value::String(type_name)) => type_name.as_str(),
            Some(nested @ (Value::Object(_) | Value::Array(_))) => {
                return self.node(nested, namespace)
            }
            Some(other) => return fail(format!("type must be a string: {other}")),
            None => return fail("no type"),
        };
        match type_name {
            "record" | "error" | "enum" | "fixed" => self.named_type(type_name, object, namespace),
            "array" => match object.get("items") {
                Some(items) => Ok(Node::Array(Box::new(self.node(items, namespace)?))),
                None => fail("array has no items"),
            },
            "map" => match object.get("values") {
                Some(values) => Ok(Node::Map(Box::new(self.node(values, namespace)?))),
                None => fail("map has no values"),
            },
            other => self.reference(other, namespace),
        }
    }

    fn named_type(
        &mut self,
        type_name: &str,
        object: &Map<String, Value>,
        enclosing: &str,
    ) -> Result<Node, AvroError> {
        let name = match object.get("name") {
            Some(Value::String(name)) => name.as_str(),
            _ => return fail(format!("{type_name} has no name")),
        };
        let namespace = match (name.rsplit_once('.'), object.get("namespace")) {
            (Some((prefix, _)), _) => prefix.to_string(),
            (None, Some(Value::String(namespace))) => namespace.clone(),
            (None, Some(Value::Null) | None) => enclosing.to_string(),
            (None, Some(other)) => return fail(format!("namespace must be a string: {other}")),
        };
        let simple = name.rsplit('.').next().unwrap_or(name).to_string();
        let fullname = qualify(&simple, &namespace);
        if !valid_fullname(&fullname) {
            return fail(format!("invalid name: {fullname}"));
        }
        if PRIMITIVES.contains(&fullname.as_str()) {
            return fail(format!("a named type may not be called {fullname}"));
        }
        if self.index.contains_key(&fullname) {
            return fail(format!("can't redefine: {fullname}"));
        }
        let aliases = match object.get("aliases") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(aliases)) => aliases
                .iter()
                .map(|alias| match alias {
                    Value::String(alias) if valid_fullname(alias) => Ok(qualify(alias, &namespace)),
                    other => fail(format!("invalid alias: {other}")),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return fail(format!("aliases must be an array: {other}")),
        };
        let index = self.named.len();
        self.named.push(None);
        self.index.insert(fullname.clone(), index);
        let kind = match type_name {
            "enum" => enum_kind(object)?,
            "fixed" => match object.get("size").and_then(Value::as_u64) {
                Some(size) => NamedKind::Fixed { size },
                None => {
                    return fail(format!(
                        "fixed {fullname} needs a non-negative integer size"
                    ))
                }
            },
            _ => NamedKind::Record(self.fields(object, &fullname, &namespace)?),
        };
        self.named[index] = Some(NamedType {
            name: simple,
            fullname,
            aliases,
            kind,
        });
        Ok(Node::Named(index))
    }

    fn fields(
        &mut self,
        object: &Map<String, Value>,
        record: &str,
        namespace: &str,
    ) -> Result<Vec<Field>, AvroError> {
        let Some(Value::Array(fields)) = object.get("fields") else {
            return fail(format!("record {record} has no fields array"));
        };
        let mut parsed: Vec<Field> = Vec::with_capacity(fields.len());
        for field in fields {
            let Value::Object(field) = field else {
                return fail(format!("a field of {record} is not an object"));
            };
            let name = match field.get("name") {
                Some(Value::String(name)) if valid_identifier(name) => name.clone(),
                other => return fail(format!("invalid field name in {record}: {other:?}")),
            };
            if parsed.iter().any(|existing| existing.name == name) {
                return fail(format!("duplicate field {name} in {record}"));
            }
            let Some(field_type) = field.get("type") else {
                return fail(format!("field {name} of {record} has no type"));
            };
            let node = self.node(field_type, namespace)?;
            let aliases = match field.get("aliases") {
                Some(Value::Array(aliases)) => aliases
                    .iter()
                    .filter_map(|alias| alias.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            parsed.push(Field {
                name,
                aliases,
                has_default: field.contains_key("default"),
                node,
            });
        }
        Ok(parsed)
    }
}

fn enum_kind(object: &Map<String, Value>) -> Result<NamedKind, AvroError> {
    let Some(Value::Array(values)) = object.get("symbols") else {
        return fail("enum has no symbols array");
    };
    let mut symbols: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        match value {
            Value::String(symbol) if valid_identifier(symbol) => {
                if symbols.contains(symbol) {
                    return fail(format!("duplicate enum symbol: {symbol}"));
                }
                symbols.push(symbol.clone());
            }
            other => return fail(format!("invalid enum symbol: {other}")),
        }
    }
    let default = match object.get("default") {
        None | Some(Value::Null) => None,
        Some(Value::String(default)) if symbols.contains(default) => Some(default.clone()),
        Some(other) => return fail(format!("enum default {other} is not one of its symbols")),
    };
    Ok(NamedKind::Enum { symbols, default })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_one(value: Value) -> Result<ParsedSchema, AvroError> {
        parse(&value, &[])
    }

    #[test]
    fn logical_types_are_their_underlying_types() {
        let schema = parse_one(json!({"type": "record", "name": "R", "fields": [
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}}
        ]}))
        .unwrap();
        let NamedKind::Record(fields) = &schema.named(0).kind else {
            panic!("not a record")
        };
        let nodes: Vec<_> = fields.iter().map(|f| f.node.clone()).collect();
        assert_eq!(nodes, vec![Node::String, Node::Long, Node::Bytes]);
    }

    #[test]
    fn namespaces_and_recursion_resolve() {
        let schema = parse_one(json!({"type": "record", "name": "Node", "namespace": "a.b",
            "fields": [{"name": "next", "type": ["null", "Node"]},
                       {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["X"]}},
                       {"name": "again", "type": "a.b.Kind"}]}))
        .unwrap();
        assert_eq!(schema.named(0).fullname, "a.b.Node");
        assert_eq!(schema.named(1).fullname, "a.b.Kind");
    }

    #[test]
    fn references_define_names_for_the_main_schema() {
        let address = json!({"type": "record", "name": "Address", "namespace": "shop",
            "fields": [{"name": "city", "type": "string"}]});
        let main = json!({"type": "record", "name": "Order", "namespace": "shop",
            "fields": [{"name": "ship_to", "type": "Address"}]});
        let schema = parse(&main, &[address]).unwrap();
        assert_eq!(schema.root, Node::Named(1));
        assert!(parse_one(main).is_err());
    }

    #[test]
    fn structural_errors_are_reported() {
        for bad in [
            json!("nope"),
            json!({"type": "record", "name": "R"}),
            json!({"type": "record", "name": "1R", "fields": []}),
            json!({"type": "enum", "name": "E", "symbols": ["A", "A"]}),
            json!({"type": "enum", "name": "E", "symbols": ["A"], "default": "B"}),
            json!({"type": "fixed", "name": "F", "size": -1}),
            json!(["int", "int"]),
            json!(["null", ["int"]]),
            json!({"type": "record", "name": "R", "fields": [
                {"name": "a", "type": "int"}, {"name": "a", "type": "long"}]}),
            json!(12),
        ] {
            assert!(parse_one(bad.clone()).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn apache_avro_rejects_bad_defaults() {
        let bad =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#;
        assert!(validate(bad, &[]).is_err());
        let good =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}"#;
        assert!(validate(good, &[]).is_ok());
    }
}
