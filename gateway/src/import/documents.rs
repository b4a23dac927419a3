//! Reading manifests: multi-document YAML files split into Kubernetes objects, indexed by
//! API group, kind, namespace and name, and a small path-tracking view over YAML values.

use super::diagnostics::{Diagnostic, Origin};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// The identity of a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// API group (`gateway.networking.k8s.io`); empty for the core group.
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One Kubernetes object read from a manifest.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: ObjKey,
    pub file: String,
    pub value: Value,
}

impl Object {
    pub fn origin(&self) -> Origin {
        Origin {
            file: self.file.clone(),
            object: format!("{} {}/{}", self.key.kind, self.key.namespace, self.key.name),
        }
    }

    pub fn spec(&self) -> Option<Node<'_>> {
        Node::root(&self.value).get("spec")
    }
}

/// Splits each `(file name, text)` into documents and keeps the Kubernetes objects.
/// Returns the file's name and the parser's message when a file is not YAML.
pub fn parse(sources: &[(String, String)], diags: &mut Vec<Diagnostic>) -> Result<Vec<Object>, Diagnostic> {
    let mut objects = Vec::new();
    for (file, text) in sources {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let at = |message: String| Diagnostic {
                file: file.clone(),
                object: format!("document {}", i + 1),
                field: String::new(),
                message,
            };
            let value = Value::deserialize(doc).map_err(|e| at(format!("not YAML: {e}")))?;
            if value.is_null() {
                continue;
            }
            match object_key(&value) {
                Ok(key) => objects.push(Object { key, file: file.clone(), value }),
                Err(why) => diags.push(at(format!("skipped: {why}"))),
            }
        }
    }
    Ok(objects)
}

fn object_key(value: &Value) -> Result<ObjKey, String> {
    let root = Node::root(value);
    if !value.is_mapping() {
        return Err("not a Kubernetes object (a YAML mapping with apiVersion and kind)".to_string());
    }
    let api_version = root.get("apiVersion").and_then(|n| n.str());
    let kind = root.get("kind").and_then(|n| n.str());
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Err("not a Kubernetes object: apiVersion and kind are required".to_string());
    };
    let meta = root.get("metadata");
    let Some(name) = meta.as_ref().and_then(|m| m.get("name")).and_then(|n| n.str()) else {
        return Err(format!("{kind}: metadata.name: missing field"));
    };
    let namespace = meta.as_ref().and_then(|m| m.get("namespace")).and_then(|n| n.str()).unwrap_or("default");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    Ok(ObjKey {
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// The objects by identity. A later definition of the same object replaces an earlier one,
/// as `kubectl apply` of the files in order would; the replacement is reported.
#[derive(Default)]
pub struct Index {
    objects: BTreeMap<ObjKey, Object>,
}

impl Index {
    pub fn new(objects: Vec<Object>, diags: &mut Vec<Diagnostic>) -> Index {
        let mut index = Index::default();
        for obj in objects {
            if let Some(earlier) = index.objects.get(&obj.key) {
                diags.push(earlier.origin().diagnostic(
                    "",
                    format!(
                        "defined again in {}; the later definition replaces this one, as kubectl apply would",
                        obj.file
                    ),
                ));
            }
            index.objects.insert(obj.key.clone(), obj);
        }
        index
    }

    pub fn get(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<&Object> {
        let key = ObjKey {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.objects.get(&key)
    }

    /// Every object of one group and kind, in a stable order.
    pub fn of<'a>(&'a self, group: &'a str, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.values().filter(move |o| o.key.group == group && o.key.kind == kind)
    }

    pub fn all(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }
}

/// A YAML value with the path that leads to it, for messages.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub v: &'a Value,
    pub path: String,
}

impl<'a> Node<'a> {
    pub fn root(v: &'a Value) -> Node<'a> {
        Node { v, path: String::new() }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The field `key`, absent when missing or null.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        match self.v.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(Node { v, path: self.child_path(key) }),
        }
    }

    /// The path a missing field `key` would have.
    pub fn field(&self, key: &str) -> String {
        self.child_path(key)
    }

    pub fn str(&self) -> Option<&'a str> {
        self.v.as_str()
    }

    /// A scalar as text: strings, numbers and booleans.
    pub fn text(&self) -> Option<String> {
        match self.v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A non-negative integer, written as a number or a numeric string.
    pub fn u64(&self) -> Option<u64> {
        match self.v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The items of a sequence (empty when this is not one).
    pub fn items(&self) -> Vec<Node<'a>> {
        match self.v.as_sequence() {
            Some(seq) => seq.iter().enumerate().map(|(i, v)| Node { v, path: format!("{}[{i}]", self.path) }).collect(),
            None => Vec::new(),
        }
    }

    /// The keys of a mapping that are strings.
    pub fn keys(&self) -> Vec<&'a str> {
        match self.v.as_mapping() {
            Some(m) => m.keys().filter_map(Value::as_str).collect(),
            None => Vec::new(),
        }
    }
}
