//! docs/CONFIG.md is complete: its full example parses (unknown keys are
//! errors), holds every field of every config struct, and the tables above
//! it name each one. The field lists come from the parser itself: an unknown
//! key planted in each section makes serde list the section's fields.

use keysentry::config::Config;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const DOC: &str = include_str!("../docs/CONFIG.md");

fn full_example() -> &'static str {
    let start = DOC
        .find("## A full example")
        .expect("the doc has a full example");
    let block = &DOC[start..];
    let yaml = block.split("```yaml\n").nth(1).expect("a yaml block");
    yaml.split("\n```").next().expect("a closed yaml block")
}

/// The fields serde expects in the mapping at `path`, or `None` when that
/// mapping is a free map (policy, headers) rather than a struct.
fn fields_at(root: &Value, path: &[Value]) -> Option<Vec<String>> {
    let mut probe = root.clone();
    let mut node = &mut probe;
    for key in path {
        node = match key {
            Value::Number(n) => node.get_mut(n.as_u64()? as usize)?,
            k => node.get_mut(k)?,
        };
    }
    node.as_mapping_mut()?
        .insert(Value::from("zz_probe"), Value::from(1));
    let text = serde_yaml::to_string(&probe).ok()?;
    let e = Config::parse(Path::new("probe.yaml"), &text)
        .err()?
        .to_string();
    let expected = e.split("unknown field `zz_probe`, expected ").nth(1)?;
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Struct (named by its field list) → the keys the example gives it
/// anywhere: `expire` need not repeat what `regenerate` shows, and `url` and
/// `url_env` live in different channels.
type Seen = BTreeMap<Vec<String>, (String, BTreeSet<String>)>;

fn walk(root: &Value, node: &Value, path: &mut Vec<Value>, out: &mut Seen) {
    match node {
        Value::Mapping(m) => {
            if let Some(fields) = fields_at(root, path) {
                let entry = out
                    .entry(fields)
                    .or_insert_with(|| (show(path), BTreeSet::new()));
                entry
                    .1
                    .extend(m.keys().filter_map(|k| k.as_str()).map(str::to_string));
            }
            for (k, v) in m {
                path.push(k.clone());
                walk(root, v, path, out);
                path.pop();
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                path.push(Value::from(i as u64));
                walk(root, v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn show(path: &[Value]) -> String {
    path.iter()
        .map(|k| match k {
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn the_reference_example_holds_every_config_field() {
    let yaml = full_example();
    let config = Config::parse(Path::new("docs/CONFIG.md"), yaml);
    assert!(
        config.is_ok(),
        "{}",
        config.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let root: Value = serde_yaml::from_str(yaml).unwrap();
    let mut seen = Seen::new();
    walk(&root, &root, &mut Vec::new(), &mut seen);
    let missing: Vec<(String, &String)> = seen
        .iter()
        .flat_map(|(fields, (at, keys))| {
            fields
                .iter()
                .filter(|f| !keys.contains(*f))
                .map(move |f| (at.clone(), f))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "fields missing from the full example: {missing:?}"
    );
    // And the probe sees real field lists (not a probe that never fires).
    let top = fields_at(&root, &[]).expect("the top level is a struct");
    assert!(top.contains(&"remediation".to_string()), "{top:?}");
    let alert = fields_at(&root, &[Value::from("alerts"), Value::from(2u64)]).unwrap();
    assert!(alert.contains(&"smtp".to_string()), "{alert:?}");
    assert!(fields_at(&root, &[Value::from("remediation"), Value::from("policy")]).is_none());
}

#[test]
fn the_reference_tables_name_every_field() {
    let root: Value = serde_yaml::from_str(full_example()).unwrap();
    let tables = &DOC[..DOC.find("## A full example").unwrap()];
    let mut names = Vec::new();
    collect_keys(&root, &mut names);
    let free_maps = ["policy", "rule_policy", "headers", "providers"];
    for name in names {
        if free_maps.iter().any(|m| name.starts_with(&format!("{m}."))) {
            continue;
        }
        let leaf = name.rsplit('.').next().unwrap_or(&name);
        assert!(
            [
                format!("`{leaf}"),
                format!(".{leaf}`"),
                format!(".{leaf}."),
                format!(".{leaf}[")
            ]
            .iter()
            .any(|n| tables.contains(n.as_str())),
            "`{leaf}` ({name}) is not in the reference tables"
        );
    }
}

/// Field names as `parent.leaf`, skipping the values of free maps.
fn collect_keys(node: &Value, out: &mut Vec<String>) {
    fn go(node: &Value, parent: &str, out: &mut Vec<String>) {
        match node {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    out.push(format!("{parent}.{k}"));
                    if !["policy", "rule_policy", "headers"].contains(&k) {
                        go(v, k, out);
                    }
                }
            }
            Value::Sequence(s) => s.iter().for_each(|v| go(v, parent, out)),
            _ => {}
        }
    }
    go(node, "", out);
}
