//! The manifests of deploy/kubernetes/ as YAML values, and the few lookups
//! the tests make in them.

use super::{read_repo_file, repo_root};
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeSet;

pub(super) const DIR: &str = "deploy/kubernetes";
/// Filled in by the deployer and applied once, so kept out of the kustomization.
pub(super) const SECRET_TEMPLATE: &str = "secret.example.yaml";
pub(super) const NAMESPACE: &str = "keysentry";

/// One object of one manifest file.
pub(super) struct Object {
    pub(super) file: String,
    pub(super) value: Value,
}

impl Object {
    pub(super) fn kind(&self) -> &str {
        str_at(&self.value, "kind").unwrap_or("")
    }

    pub(super) fn name(&self) -> &str {
        str_at(&self.value, "metadata.name").unwrap_or("")
    }

    pub(super) fn at(&self, path: &str) -> &Value {
        at(&self.value, path)
            .unwrap_or_else(|| panic!("{} {} has no `{path}`", self.file, self.name()))
    }
}

/// Every object in every manifest (multi-document files included), the
/// kustomization itself left out.
pub(super) fn objects() -> Vec<Object> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join(DIR))
        .expect("deploy/kubernetes exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = read_repo_file(&format!("{DIR}/{file}"));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                out.push(Object {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    out
}

pub(super) fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|k| !k.is_empty())
        .try_fold(v, |v, k| v.get(k))
}

pub(super) fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub(super) fn seq<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(super) fn one<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    let found: Vec<&Object> = objects
        .iter()
        .filter(|o| o.kind() == kind && o.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name}");
    found[0]
}

/// The DaemonSet and the Deployment: what runs keysentry.
pub(super) fn workloads(objects: &[Object]) -> Vec<&Object> {
    let w: Vec<&Object> = objects
        .iter()
        .filter(|o| matches!(o.kind(), "DaemonSet" | "Deployment"))
        .collect();
    assert_eq!(w.len(), 2, "one DaemonSet and one Deployment");
    w
}

/// `50m` → 0.05, `1` → 1, `64Mi` → 67108864: enough of Kubernetes'
/// quantities to compare a request with its limit.
pub(super) fn quantity(q: &Value) -> f64 {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a quantity: {other:?}"),
    };
    let units = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (suffix, factor) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().expect("a number") * factor;
        }
    }
    s.parse().unwrap_or_else(|_| panic!("not a quantity: {s}"))
}

/// Every `*_env` name and `{{env.NAME}}` in a config.
pub(super) fn env_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                if let (Some(k), Some(name)) = (k.as_str(), v.as_str()) {
                    if k.ends_with("_env") {
                        out.insert(name.to_string());
                    }
                }
                env_refs(v, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| env_refs(v, out)),
        Value::String(s) => {
            for part in s.split("{{env.").skip(1) {
                if let Some((name, _)) = part.split_once("}}") {
                    out.insert(name.trim().to_string());
                }
            }
        }
        _ => {}
    }
}
