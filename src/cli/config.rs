//! `keysentry config check FILE`: every problem in a config file, each with
//! its path in the YAML (`providers.tatum.consumers[0].env_file`), not just
//! the first one. Exit 2 when there is any.
//!
//! Schema errors (unknown keys, wrong types) come from deserializing; after
//! each one the offending node is cut out and deserializing is retried, so
//! one typo does not hide the next. Then the parsed config is checked against
//! the machine: URLs, environment variables named by `*_env` and
//! `{{env.NAME}}`, consumer files, restart commands.

use anyhow::{Context, Result};
use clap::Subcommand;
use keysentry::alert::Alerter;
use keysentry::config::{Config, GitHubConfig, TatumConfig};
use keysentry::remediate::http_action::env_refs;
use keysentry::rules::{validate_template, HttpTemplate};
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Report every problem in a config file (exit 2 if any).
    Check {
        /// [default: $KEYSENTRY_CONFIG, else /etc/keysentry/keysentry.yaml]
        file: Option<PathBuf>,
    },
}

pub fn run(cmd: ConfigCommand) -> Result<ExitCode> {
    let ConfigCommand::Check { file } = cmd;
    let (file, _) = super::incidents::config_path(file.as_deref());
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read config {}", file.display()))?;
    let problems = check_text(&text);
    for (path, message) in &problems {
        if path.is_empty() {
            println!("{}: {message}", file.display());
        } else {
            println!("{}: {path}: {message}", file.display());
        }
    }
    if problems.is_empty() {
        println!("{}: OK", file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} problem{} in {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            file.display()
        );
        Ok(ExitCode::from(2))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

type Problems = Vec<(String, String)>;

fn show(path: &[Seg]) -> String {
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

/// Sequence elements cut out so far, so that later paths still name the
/// element's index in the file as written.
#[derive(Default)]
struct Cut {
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

    fn record(&mut self, original: &[Seg]) {
        if let Some((Seg::Index(i), parent)) = original.split_last() {
            self.removed.entry(show(parent)).or_default().push(*i);
        }
    }
}

fn check_text(text: &str) -> Problems {
    let mut problems = Problems::new();
    if text.trim().is_empty() {
        return problems;
    }
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("line {}", l.line()))
                .unwrap_or_default();
            let e = keysentry::scan::without_quoted_values(&e.to_string());
            problems.push((at, format!("not valid YAML: {e}")));
            return problems;
        }
    };
    let mut cut = Cut::default();
    let mut config = None;
    for _ in 0..200 {
        match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let path = segments(e.path());
                let message = keysentry::scan::without_quoted_values(&e.inner().to_string());
                let (target, shown) = locate(&value, &path, &message);
                let original = cut.original(&target);
                problems.push((show(&cut.original(&shown)), message));
                if !remove(&mut value, &target) {
                    break;
                }
                cut.record(&original);
            }
        }
    }
    if let Some(config) = config {
        let mut found = Vec::new();
        check_config(&config, &mut found);
        for (path, message) in found {
            problems.push((show(&cut.original(&path)), message));
        }
    }
    problems
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

type Found = Vec<(Vec<Seg>, String)>;

fn key(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

/// Checks a schema-valid config against the machine it will run on.
fn check_config(c: &Config, out: &mut Found) {
    if let Some(t) = &c.providers.tatum {
        check_tatum(t, out);
    }
    for (name, p) in &c.providers.others {
        if let Some(u) = &p.api_url {
            check_url(out, vec![key("providers"), key(name), key("api_url")], u);
        }
    }
    // The alert channels validate themselves (and the owners globs); their
    // messages already start with the YAML path.
    for problem in Alerter::problems(c, &|var| std::env::var(var).ok()) {
        out.push((Vec::new(), problem.to_string()));
    }
    if let Some(g) = &c.github {
        check_github(g, out);
    }
    // Consumer files keysentry refuses and plain http:// URLs (messages
    // start with their YAML path).
    out.extend(
        keysentry::remediate::consumer_check::problems(c)
            .into_iter()
            .map(|p| (Vec::new(), p)),
    );
    // The daemon's own fields (watch.*, http.listen), as `daemon` reads them.
    if let Err(problems) = keysentry::daemon::Settings::check(c) {
        for (at, message) in problems {
            out.push((Vec::new(), format!("{at}: {message}")));
        }
    }
    for (i, r) in c.watch.repos.iter().enumerate() {
        let git = r.path.join(".git").exists() || r.path.join("objects").is_dir();
        if !git {
            let at = vec![key("watch"), key("repos"), Seg::Index(i), key("path")];
            let why = if r.path.exists() {
                "is not a git repository (no .git)"
            } else {
                "does not exist"
            };
            out.push((at, format!("{} {why}", r.path.display())));
        }
    }
    for (i, dir) in c.scan.rules.iter().enumerate() {
        if !dir.exists() {
            let at = vec![key("scan"), key("rules"), Seg::Index(i)];
            out.push((at, format!("{} does not exist", dir.display())));
        }
    }
    let tatum_rate = c.providers.tatum.as_ref().and_then(|t| t.rate_limit);
    let rates = [
        (
            vec![key("remediation"), key("rate_limit")],
            c.remediation.rate_limit,
        ),
        (
            vec![key("providers"), key("tatum"), key("rate_limit")],
            tatum_rate,
        ),
    ]
    .into_iter()
    .chain(c.providers.others.iter().map(|(name, p)| {
        (
            vec![key("providers"), key(name), key("rate_limit")],
            p.rate_limit,
        )
    }));
    for (at, rate) in rates {
        if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            out.push((at, "must be a positive number of calls per second".into()));
        }
    }
    for (i, o) in c.owners.iter().enumerate() {
        if !o.email.contains('@') {
            let at = vec![key("owners"), Seg::Index(i), key("email")];
            out.push((at, format!("`{}` is not an email address", o.email)));
        }
    }
}

fn check_tatum(t: &TatumConfig, out: &mut Found) {
    let base = vec![key("providers"), key("tatum")];
    if let Some(u) = &t.api_url {
        check_url(out, path(&base, &["api_url"]), u);
    }
    for (name, tmpl) in [
        ("regenerate", &t.management.regenerate),
        ("expire", &t.management.expire),
    ] {
        if let Some(tmpl) = tmpl {
            check_template(out, path(&base, &["management", name]), tmpl);
        }
    }
    for (i, consumer) in t.consumers.iter().enumerate() {
        let mut p = path(&base, &["consumers"]);
        p.push(Seg::Index(i));
        if let Err(e) = std::fs::File::open(&consumer.env_file) {
            let why = format!("cannot read {}: {e}", consumer.env_file.display());
            out.push((path(&p, &["env_file"]), why));
        }
        if consumer.variable.trim().is_empty() {
            let why = "must name the variable, e.g. TATUM_API_KEY".to_string();
            out.push((path(&p, &["variable"]), why));
        }
        if let Some(program) = consumer.restart.first() {
            if !command_exists(program) {
                let why =
                    format!("command `{program}` not found (not an executable path, not in PATH)");
                out.push((path(&p, &["restart"]), why));
            }
        }
    }
}

fn check_github(g: &GitHubConfig, out: &mut Found) {
    let base = vec![key("github")];
    if let Some(u) = &g.api_url {
        check_url(out, path(&base, &["api_url"]), u);
    }
    if let Some(v) = &g.token_env {
        check_env(out, path(&base, &["token_env"]), v);
    }
    if let Some(w) = &g.webhook {
        check_env(out, path(&base, &["webhook", "secret_env"]), &w.secret_env);
        check_listen(out, path(&base, &["webhook", "listen"]), &w.listen);
    }
    if let Some(app) = &g.app {
        if let Err(e) = std::fs::File::open(&app.private_key_path) {
            let why = format!("cannot read {}: {e}", app.private_key_path.display());
            out.push((path(&base, &["app", "private_key_path"]), why));
        }
    }
}

fn path(base: &[Seg], keys: &[&str]) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.extend(keys.iter().map(|s| Seg::Key(s.to_string())));
    p
}

fn check_url(out: &mut Vec<(Vec<Seg>, String)>, at: Vec<Seg>, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => out.push((
            at,
            format!("`{url}` must be an http:// or https:// URL with a host"),
        )),
        Err(e) => out.push((at, format!("`{url}` is not a valid URL ({e})"))),
    }
}

fn check_env(out: &mut Vec<(Vec<Seg>, String)>, at: Vec<Seg>, name: &str) {
    if std::env::var_os(name).map_or(true, |v| v.is_empty()) {
        out.push((at, format!("environment variable {name} is not set")));
    }
}

fn check_listen(out: &mut Vec<(Vec<Seg>, String)>, at: Vec<Seg>, listen: &str) {
    if listen.parse::<std::net::SocketAddr>().is_err() {
        out.push((
            at,
            format!("`{listen}` is not an address:port, e.g. 127.0.0.1:8080"),
        ));
    }
}

fn check_template(out: &mut Vec<(Vec<Seg>, String)>, at: Vec<Seg>, t: &HttpTemplate) {
    if let Err(e) = validate_template(t) {
        out.push((at.clone(), e));
    }
    // The URL with placeholders filled by stand-ins must still be a URL.
    let stand_in = t
        .url
        .replace("{{api_url}}", "https://api.example")
        .replace("{{secret}}", "x");
    let stand_in = env_refs(&stand_in).iter().fold(stand_in.clone(), |u, v| {
        u.replace(&format!("{{{{env.{v}}}}}"), "x")
    });
    if !stand_in.contains("{{") {
        check_url(out, path(&at, &["url"]), &stand_in);
    }
    let mut fields = vec![(path(&at, &["url"]), t.url.as_str())];
    for (name, value) in &t.headers {
        fields.push((path(&at, &["headers", name]), value.as_str()));
    }
    if let Some(b) = &t.body {
        fields.push((path(&at, &["body"]), b.as_str()));
    }
    for (p, text) in fields {
        for var in env_refs(text) {
            if std::env::var_os(&var).is_none() {
                out.push((
                    p.clone(),
                    format!("uses {{{{env.{var}}}}} but environment variable {var} is not set"),
                ));
            }
        }
    }
}

fn command_exists(program: &str) -> bool {
    let p = Path::new(program);
    if p.components().count() > 1 {
        return p.is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

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
      - {name: b, env_file: /y}
      - {name: c, env_file: /z, variable: V, shape: round}
alerts:
  - {type: webhook, url: 'https://h.example/x', urll: 1}
";
        let problems = check_text(text);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "remediation.mode",
            "remediation.bogus",
            "providers.tatum.consumers[0].colour",
            "providers.tatum.consumers[1]",
            "providers.tatum.consumers[2].shape",
            "providers.tatum.consumers[0].env_file",
            "providers.tatum.consumers[2].env_file",
        ] {
            assert!(paths.contains(&want), "{want} missing from {problems:#?}");
        }
        assert!(
            paths.iter().any(|p| p.starts_with("alerts[0]")),
            "{problems:#?}"
        );
    }
}
