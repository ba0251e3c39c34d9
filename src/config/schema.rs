//! Every schema error in a config file, not only the first: after each one
//! the offending node is cut out and deserializing is retried, so one typo
//! does not hide the next. [`Cut`] maps paths in the cut-down config back to
//! the file as written (`alerts[1]` stays `alerts[1]` when `alerts[0]` was
//! cut).

use super::{Config, Problem, ProblemKind};
use crate::mask::safe_message;
use serde_yaml::Value;
use std::collections::HashMap;

/// Deserialization retries: one per schema problem reported.
const MAX_SCHEMA_PROBLEMS: usize = 200;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) fn show(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// `alerts[1].url_env` back into segments. Keys holding `.` or `[` are not
/// told apart from nesting; a path that does not parse is kept as written.
fn parse_path(path: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let (n, after) = r.split_once(']')?;
            out.push(Seg::Index(n.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Sequence elements cut out so far.
#[derive(Default)]
pub(crate) struct Cut {
    /// Original path of a sequence → original indices removed from it.
    removed: HashMap<String, Vec<usize>>,
}

impl Cut {
    fn original(&self, path: &[Seg]) -> Vec<Seg> {
        let mut out = Vec::with_capacity(path.len());
        for seg in path {
            match seg {
                Seg::Key(k) => out.push(Seg::Key(k.clone())),
                Seg::Index(cur) => {
                    let gone = self.removed.get(&show(&out));
                    let mut orig = 0;
                    let mut seen = 0;
                    loop {
                        if !gone.is_some_and(|g| g.contains(&orig)) {
                            if seen == *cur {
                                break;
                            }
                            seen += 1;
                        }
                        orig += 1;
                    }
                    out.push(Seg::Index(orig));
                }
            }
        }
        out
    }

    /// A path in the cut-down config as a path in the file.
    pub(crate) fn map(&self, path: &str) -> String {
        match parse_path(path) {
            Some(segs) if !self.removed.is_empty() => show(&self.original(&segs)),
            _ => path.to_string(),
        }
    }

    fn record(&mut self, original: &[Seg]) {
        if let Some((Seg::Index(i), parent)) = original.split_last() {
            self.removed.entry(show(parent)).or_default().push(*i);
        }
    }
}

/// The config with every schema-invalid node cut out (`None` when the text
/// is not YAML at all), and one problem per cut.
pub(crate) fn parse_all(text: &str) -> (Option<Config>, Vec<Problem>, Cut) {
    let mut problems = Vec::new();
    let mut cut = Cut::default();
    if text.trim().is_empty() {
        return (Some(Config::default()), problems, cut);
    }
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("line {}", l.line()))
                .unwrap_or_default();
            let e = safe_message(&e.to_string());
            problems.push(Problem::config(at, format!("not valid YAML: {e}")));
            return (None, problems, cut);
        }
    };
    for _ in 0..MAX_SCHEMA_PROBLEMS {
        match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
            Ok(c) => return (Some(c), problems, cut),
            Err(e) => {
                let path = segments(e.path());
                let message = safe_message(&e.inner().to_string());
                let (target, shown) = locate(&value, &path, &message);
                let original = cut.original(&target);
                problems.push(Problem {
                    path: show(&cut.original(&shown)),
                    message,
                    kind: ProblemKind::Config,
                });
                if !remove(&mut value, &target) {
                    break;
                }
                cut.record(&original);
            }
        }
    }
    (None, problems, cut)
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// The node to cut for an error at `path`, and the path to report. An
/// unknown key is cut alone; anything else takes its node with it.
fn locate(value: &Value, path: &[Seg], message: &str) -> (Vec<Seg>, Vec<Seg>) {
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next());
    if let Some(key) = unknown {
        if path.last() != Some(&Seg::Key(key.to_string())) {
            if let Some(Value::Mapping(m)) = node(value, path) {
                if m.contains_key(key) {
                    let mut p = path.to_vec();
                    p.push(Seg::Key(key.to_string()));
                    return (p.clone(), p);
                }
            }
        }
    }
    let mut target = path.to_vec();
    // A path that names nothing in the file (a missing field) cuts its parent.
    while !target.is_empty() && node(value, &target).is_none() {
        target.pop();
    }
    (target, path.to_vec())
}

fn node<'a>(value: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.as_mapping()?.get(k.as_str()),
        Seg::Index(i) => v.as_sequence()?.get(*i),
    })
}

fn remove(value: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut v = value;
    for seg in parent {
        let next = match seg {
            Seg::Key(k) => v.as_mapping_mut().and_then(|m| m.get_mut(k.as_str())),
            Seg::Index(i) => v.as_sequence_mut().and_then(|s| s.get_mut(*i)),
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match last {
        Seg::Key(k) => v
            .as_mapping_mut()
            .and_then(|m| m.remove(k.as_str()))
            .is_some(),
        Seg::Index(i) => match v.as_sequence_mut() {
            Some(s) if *i < s.len() => {
                s.remove(*i);
                true
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::without_key_like_runs;

    #[test]
    fn reports_every_schema_problem_with_its_original_path() {
        let text = "
remediation:
  mode: sometimes
  bogus: 1
providers:
  tatum:
    consumers:
      - {name: a, env_file: /x, variable: V, colour: red}
      - {env_file: /y, variable: V}
      - {name: c, env_file: /z, variable: V, shape: round}
alerts:
  - {type: webhook, url: 'https://h.example/x', urll: 1}
";
        let (config, problems, cut) = parse_all(text);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "remediation.mode",
            "remediation.bogus",
            "providers.tatum.consumers[0].colour",
            "providers.tatum.consumers[1]",
            "providers.tatum.consumers[2].shape",
        ] {
            assert!(paths.contains(&want), "{want} missing from {problems:#?}");
        }
        assert!(
            paths.iter().any(|p| p.starts_with("alerts[0]")),
            "{problems:#?}"
        );
        // consumers[1] was cut: the config's [1] is the file's [2].
        let config = config.unwrap();
        assert_eq!(config.providers.tatum.unwrap().consumers[1].name, "c");
        assert_eq!(
            cut.map("providers.tatum.consumers[1].env_file"),
            "providers.tatum.consumers[2].env_file"
        );
    }

    #[test]
    fn paths_round_trip() {
        for p in ["alerts[1].url_env", "a.b[0][2].c", "x", ""] {
            assert_eq!(show(&parse_path(p).unwrap()), p);
        }
        assert_eq!(parse_path("a[x]"), None);
    }

    #[test]
    fn key_like_runs_are_cut() {
        assert_eq!(
            without_key_like_runs("`ksq_3f9c2a7e81d64b05c9e1f7a2d8b34c6e` is not a duration"),
            "`ksq_…` is not a duration"
        );
        let keep = "alerts[1].url_env: SLACK_WEBHOOK_URL is not set; /tmp/.tmpMTyzBi/k.yaml";
        assert_eq!(without_key_like_runs(keep), keep);
    }

    #[test]
    fn variants_are_not_echoed() {
        let m = "unknown variant `t-66a8f1c2e4b0a1d2c3e4`, expected one of `auto`, `off`";
        assert_eq!(
            safe_message(m),
            "unknown variant, expected one of `auto`, `off`"
        );
    }
}
