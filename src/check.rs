//! The one validation of a config, shared by `config check`, `scan
//! --config` and the daemon (load, reload): every problem the runtime would hit, each with
//! its YAML path. [`ProblemKind::Config`] problems are in the file and every
//! command refuses them; [`ProblemKind::Machine`] ones are about this
//! machine (an unset variable, a missing file) and only `config check`, run
//! against the service's environment, insists on them.
//!
//! Messages never quote a value that may be a key: regexes, URLs and
//! variants are named by their path and the cause only.
//!
//! It sits above the stages whose sections it checks (alert channels,
//! remediation consumers and URLs, the daemon's watch settings), which all
//! read `config`; inside `config` it would close a circle with each of them.

mod consumers;

use crate::alert::{AlertError, Alerter};
use crate::config::{
    read, schema_parse_all, Config, ConfigError, Env, GitHubConfig, Problem, ProblemKind,
    TatumConfig,
};
use crate::mask::regex_cause;
use crate::mask::without_key_like_runs;
use crate::remediate::http_action::env_refs;
use crate::rules::{validate_template, HttpTemplate, RuleError, RuleSet};
use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;

/// What [`check_text`] found: the config and rules when the file parses,
/// and every problem.
pub struct Checked {
    /// `None` when the file is not YAML at all; otherwise the config with
    /// schema-invalid nodes left out.
    pub config: Option<Config>,
    /// `None` when the rules do not load (a problem says why).
    pub rules: Option<RuleSet>,
    pub problems: Vec<Problem>,
}

/// Every problem in a config's text: all schema errors, then [`check`]
/// against the rules (built-ins, `scan.rules`, then `extra_rules`) and `env`.
/// Paths name the file as written.
pub fn check_text(text: &str, extra_rules: &[PathBuf], env: &Env) -> Checked {
    if let Err(e) = crate::limits::check_depth(text, "config") {
        return Checked {
            config: None,
            rules: None,
            problems: vec![Problem::config("", e.to_string())],
        };
    }
    let (config, mut problems, cut) = schema_parse_all(text);
    let Some(config) = config else {
        return Checked {
            config: None,
            rules: None,
            problems,
        };
    };
    let mut dirs = config.scan.rules.clone();
    dirs.extend(extra_rules.iter().cloned());
    let rules = match RuleSet::load(&dirs) {
        Ok(r) => Some(r),
        Err(e) => {
            let at = match (&e, extra_rules.is_empty()) {
                (RuleError::Io { .. } | RuleError::Empty(_), true) => "scan.rules",
                _ => "",
            };
            problems.push(Problem::config(at, e.to_string()));
            None
        }
    };
    // Provider and rule names are checked against what loads; if nothing
    // extra loads, against the built-ins.
    let builtin;
    let against = match &rules {
        Some(r) => r,
        None => {
            builtin = RuleSet::builtin().unwrap_or_default();
            &builtin
        }
    };
    for mut p in check(&config, against, env) {
        p.path = cut.map(&p.path);
        problems.push(p);
    }
    // Whatever a check quotes from the file, no key-like word comes out.
    for p in &mut problems {
        p.message = without_key_like_runs(&p.message);
        p.path = without_key_like_runs(&p.path);
    }
    Checked {
        config: Some(config),
        rules,
        problems,
    }
}

/// A config the way `scan --config` and the daemon load it: refused with
/// every [`ProblemKind::Config`] problem at once; problems of this machine
/// are returned for the caller to warn about.
pub fn load_checked(
    path: &Path,
    extra_rules: &[PathBuf],
    env: &Env,
) -> Result<(Config, RuleSet, Vec<Problem>), ConfigError> {
    let text = read(path)?;
    let checked = check_text(&text, extra_rules, env);
    let (fatal, machine): (Vec<Problem>, Vec<Problem>) = checked
        .problems
        .into_iter()
        .partition(|p| p.kind == ProblemKind::Config);
    match (checked.config, checked.rules) {
        (Some(config), Some(rules)) if fatal.is_empty() => Ok((config, rules, machine)),
        _ => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: fatal,
        }),
    }
}

/// Every problem in `c`, checked against `rules` (provider names, rule ids)
/// and `env` (the variables the service will see).
pub fn check(c: &Config, rules: &RuleSet, env: &Env) -> Vec<Problem> {
    let mut out = Vec::new();
    check_scan(c, &mut out);
    check_store(c, env, &mut out);
    check_names(c, rules, &mut out);
    if let Some(t) = &c.providers.tatum {
        check_tatum(t, env, &mut out);
    }
    for (name, p) in &c.providers.others {
        if let Some(u) = &p.api_url {
            check_url(&mut out, format!("providers.{name}.api_url"), u);
        }
        // An administrator's credential for containment (OpenAI, Anthropic,
        // AWS): named in the file, held in the environment.
        for (field, var) in [
            ("admin_key_env", &p.admin_key_env),
            ("admin_key_id_env", &p.admin_key_id_env),
        ] {
            if let Some(var) = var {
                check_env(&mut out, &format!("providers.{name}.{field}"), var, env);
            }
        }
    }
    consumers::check(c, env, &mut out);
    let lookup = |var: &str| env.get(var);
    for problem in Alerter::problems(c, &lookup) {
        out.push(alert_problem(problem, env));
    }
    if let Some(g) = &c.github {
        check_github(g, env, &mut out);
    }
    if let Some(ui) = c.http.as_ref().and_then(|h| h.ui.as_ref()) {
        check_token(
            "http.ui.token_env",
            "the dashboard token",
            &ui.token_env,
            env,
            &mut out,
        );
    }
    if let Some(ingest) = &c.watch.http_ingest {
        let at = "watch.http_ingest.token_env";
        check_token(at, "the ingest token", &ingest.token_env, env, &mut out);
    }
    // Plain http:// URLs to remote hosts are the file's fault; consumer
    // files keysentry refuses to write are the machine's (each message
    // starts with its YAML path).
    use crate::remediate::consumer_check::{consumer_problems, url_problems};
    let split = |m: &str| match m.split_once(": ") {
        Some((at, why)) => (at.to_string(), why.to_string()),
        None => (String::new(), m.to_string()),
    };
    for m in url_problems(c) {
        let (at, why) = split(&m);
        out.push(Problem::config(at, why));
    }
    for m in consumer_problems(c) {
        let (at, why) = split(&m);
        out.push(Problem::machine(at, why));
    }
    // The daemon's own fields (watch.*, http.listen), as `daemon` reads them.
    if let Err(problems) = crate::settings::Settings::check(c) {
        out.extend(problems.into_iter().map(|(at, m)| Problem::config(at, m)));
    }
    for (i, r) in c.watch.repos.iter().enumerate() {
        let git = r.path.join(".git").exists() || r.path.join("objects").is_dir();
        if !git {
            let why = match r.path.exists() {
                true => "is not a git repository (no .git)",
                false => "does not exist",
            };
            let at = format!("watch.repos[{i}].path");
            out.push(Problem::machine(at, format!("{} {why}", r.path.display())));
        }
    }
    for (i, s) in c.watch.syslog.iter().enumerate() {
        for (field, path) in [("tls_cert", &s.tls_cert), ("tls_key", &s.tls_key)] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                let at = format!("watch.syslog[{i}].{field}");
                let why = format!("{} does not exist; point it at a PEM file", path.display());
                out.push(Problem::machine(at, why));
            }
        }
    }
    check_rates(c, &mut out);
    out.extend(crate::remediate::escrow::problems(c));
    for (i, o) in c.owners.iter().enumerate() {
        if !o.email.contains('@') {
            let at = format!("owners[{i}].email");
            out.push(Problem::config(at, "is not an email address"));
        }
    }
    out
}

fn check_scan(c: &Config, out: &mut Vec<Problem>) {
    for (i, dir) in c.scan.rules.iter().enumerate() {
        if !dir.exists() {
            let at = format!("scan.rules[{i}]");
            out.push(Problem::machine(
                at,
                format!("{} does not exist", dir.display()),
            ));
        }
    }
    for (i, g) in c.scan.allowlist.paths.iter().enumerate() {
        if let Err(e) = globset::Glob::new(g) {
            let at = format!("scan.allowlist.paths[{i}]");
            let why = format!("`{g}` is not a valid glob ({}); fix its syntax", e.kind());
            out.push(Problem::config(at, why));
        }
    }
    for (i, p) in c.scan.allowlist.secrets.iter().enumerate() {
        if let Err(e) = regex::Regex::new(p) {
            // The pattern is not quoted: allowlist regexes are often a key
            // written out in full.
            let at = format!("scan.allowlist.secrets[{i}]");
            let why = format!("invalid regex: {}; fix the regex", regex_cause(p, &e));
            out.push(Problem::config(at, why));
        }
    }
    let a = &c.scan.archives;
    if let Some(d) = a.max_depth.filter(|d| !(1..=32).contains(d)) {
        let why = format!(
            "{d} is out of range: give 1 to 32 levels (set `enabled: false` to skip archives)"
        );
        out.push(Problem::config("scan.archives.max_depth", why));
    }
    for (field, value) in [("max_size", a.max_size), ("max_entries", a.max_entries)] {
        if value == Some(0) {
            let why = "0 would expand nothing: give a positive limit (or `enabled: false`)";
            out.push(Problem::config(format!("scan.archives.{field}"), why));
        }
    }
}

/// `policy`, `rule_policy`, `providers` and `owners` name providers and
/// rules; a misspelt one would silently never apply.
fn check_names(c: &Config, rules: &RuleSet, out: &mut Vec<Problem>) {
    let mut providers: BTreeSet<&str> = rules
        .rules()
        .iter()
        .map(|r| r.spec.provider.as_str())
        .collect();
    providers.extend(crate::remediate::Registry::own_providers());
    let known = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
    let unknown_provider = |name: &str| {
        format!(
            "`{name}` is not a provider of any loaded rule; use one of {}",
            known(&providers)
        )
    };
    for name in c.remediation.policy.keys() {
        if !providers.contains(name.as_str()) {
            let at = format!("remediation.policy.{name}");
            out.push(Problem::config(at, unknown_provider(name)));
        }
    }
    for name in c.providers.others.keys() {
        if !providers.contains(name.as_str()) {
            out.push(Problem::config(
                format!("providers.{name}"),
                unknown_provider(name),
            ));
        }
    }
    for id in c.remediation.rule_policy.keys() {
        if rules.get(id).is_none() {
            let at = format!("remediation.rule_policy.{id}");
            let why = format!(
                "`{id}` is not the id of any loaded rule; `keysentry rules list` shows them"
            );
            out.push(Problem::config(at, why));
        }
    }
    for (i, o) in c.owners.iter().enumerate() {
        if let Some(p) = &o.matcher.provider {
            if !providers.contains(p.as_str()) {
                let at = format!("owners[{i}].match.provider");
                out.push(Problem::config(at, unknown_provider(p)));
            }
        }
        if let Some(id) = &o.matcher.rule {
            if rules.get(id).is_none() {
                let at = format!("owners[{i}].match.rule");
                let why = format!("`{id}` is not the id of any loaded rule");
                out.push(Problem::config(at, why));
            }
        }
    }
}

fn check_rates(c: &Config, out: &mut Vec<Problem>) {
    let tatum_rate = c.providers.tatum.as_ref().and_then(|t| t.rate_limit);
    let rates = [
        (
            "remediation.rate_limit".to_string(),
            c.remediation.rate_limit,
        ),
        ("providers.tatum.rate_limit".to_string(), tatum_rate),
    ]
    .into_iter()
    .chain(
        c.providers
            .others
            .iter()
            .map(|(name, p)| (format!("providers.{name}.rate_limit"), p.rate_limit)),
    );
    for (at, rate) in rates {
        if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            out.push(Problem::config(
                at,
                "must be a positive number of calls per second",
            ));
        }
    }
}

/// An alert channel's error as a problem at its YAML path. Channel errors
/// say `alerts[1].url_env`, or `NAME (alerts[1].url_env)` when a variable's
/// value is at fault.
fn alert_problem(e: AlertError, env: &Env) -> Problem {
    match e {
        AlertError::MissingEnv { at, var } => {
            let (path, note) = split_at(&at);
            let default = match note.is_empty() {
                true => "",
                false => " (the default name)",
            };
            let why = format!(
                "environment variable {var}{default} is not set; set it in {} or remove the channel",
                env.where_to_set()
            );
            Problem::machine(path, why)
        }
        AlertError::Invalid { at, reason } => {
            // Channel errors quote some values (`"acme" is not owner/name`).
            let reason = crate::mask::without_quoted_values(&reason);
            if let Some((var, rest)) = at.split_once(" (") {
                // The value came from the environment: the machine is wrong.
                let path = rest.trim_end_matches(')');
                return Problem::machine(path, format!("the value of {var}: {reason}"));
            }
            let (path, note) = split_at(&at);
            Problem::config(path, format!("{}{reason}", note.trim_start()))
        }
        AlertError::OwnerGlob {
            index,
            glob,
            reason,
        } => Problem::config(
            format!("owners[{index}].match.path"),
            format!("`{glob}` is not a valid glob ({reason}); fix its syntax"),
        ),
    }
}

/// `alerts[0].token_env (default)` → (`alerts[0].token_env`, ` (default)`).
fn split_at(at: &str) -> (String, String) {
    match at.split_once(' ') {
        Some((path, note)) => (path.to_string(), format!(" {note}")),
        None => (at.to_string(), String::new()),
    }
}

fn check_tatum(t: &TatumConfig, env: &Env, out: &mut Vec<Problem>) {
    let base = "providers.tatum";
    if let Some(u) = &t.api_url {
        check_url(out, format!("{base}.api_url"), u);
    }
    for (name, tmpl) in [
        ("regenerate", &t.management.regenerate),
        ("expire", &t.management.expire),
    ] {
        if let Some(tmpl) = tmpl {
            check_template(out, &format!("{base}.management.{name}"), tmpl, env);
        }
    }
}

fn check_github(g: &GitHubConfig, env: &Env, out: &mut Vec<Problem>) {
    if let Some(u) = &g.api_url {
        check_url(out, "github.api_url".into(), u);
    }
    if let Some(v) = &g.token_env {
        check_env(out, "github.token_env", v, env);
    }
    if let Some(w) = &g.webhook {
        check_env(out, "github.webhook.secret_env", &w.secret_env, env);
        if w.listen.parse::<std::net::SocketAddr>().is_err() {
            let why = format!("`{}` is not an address:port, e.g. 127.0.0.1:8080", w.listen);
            out.push(Problem::config("github.webhook.listen", why));
        }
        if w.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            out.push(Problem::config(
                "github.webhook.path",
                "must start with `/`",
            ));
        }
    }
    if let Some(app) = &g.app {
        if let Err(e) = std::fs::File::open(&app.private_key_path) {
            let why = format!("cannot read {}: {e}", app.private_key_path.display());
            out.push(Problem::machine("github.app.private_key_path", why));
        }
    }
}

/// The URL itself is not quoted: a base URL may carry a token
/// (`https://user:key@host`, `?key=`).
/// `store:`: one URL, from the file or the environment, that parses as a
/// PostgreSQL URL (never quoted: it may hold a password).
fn check_store(c: &Config, env: &Env, out: &mut Vec<Problem>) {
    let Some(s) = &c.store else { return };
    let url = match (&s.url, &s.url_env) {
        (Some(_), Some(_)) => {
            out.push(Problem::config("store", "set `url` or `url_env`, not both"));
            return;
        }
        (None, None) => {
            out.push(Problem::config(
                "store",
                "names no store: set `url` (postgres://USER@HOST:PORT/DATABASE) or `url_env`, or drop `store:` for SQLite in `state_dir`",
            ));
            return;
        }
        (Some(u), None) => ("store.url", u.clone()),
        (None, Some(name)) => match env.get(name) {
            Some(u) => ("store.url_env", u.to_string()),
            None => {
                check_env(out, "store.url_env", name, env);
                return;
            }
        },
    };
    if let Err(why) = crate::store::pg::PgTarget::parse(&url.1) {
        out.push(Problem::config(url.0, why));
    }
    if s.max_connections == Some(0) {
        out.push(Problem::config(
            "store.max_connections",
            "must be at least 1",
        ));
    }
}

fn check_url(out: &mut Vec<Problem>, at: String, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => out.push(Problem::config(
            at,
            "must be an http:// or https:// URL with a host",
        )),
        Err(e) => out.push(Problem::config(at, format!("is not a valid URL ({e})"))),
    }
}

/// A bearer token's variable: set, and long enough not to be guessed (the
/// dashboard's guards every incident and the hand-over of new keys; the
/// ingest token, what reaches the scanner and the provider calls).
fn check_token(at: &str, what: &str, name: &str, env: &Env, out: &mut Vec<Problem>) {
    match env.get(name) {
        None => check_env(out, at, name, env),
        Some(v) if v.chars().count() < crate::config::UI_TOKEN_MIN_CHARS => {
            let why = format!(
                "environment variable {name} holds {} characters; {what} needs at \
                 least {}: set it to a random one, e.g. the output of `openssl rand -hex 32`, in {}",
                v.chars().count(),
                crate::config::UI_TOKEN_MIN_CHARS,
                env.where_to_set()
            );
            out.push(Problem::machine(at, why));
        }
        Some(_) => {}
    }
}

fn check_env(out: &mut Vec<Problem>, at: &str, name: &str, env: &Env) {
    if env.get(name).is_none() {
        let why = format!(
            "environment variable {name} is not set; set it in {}",
            env.where_to_set()
        );
        out.push(Problem::machine(at, why));
    }
}

fn check_template(out: &mut Vec<Problem>, at: &str, t: &HttpTemplate, env: &Env) {
    if let Err(e) = validate_template(t) {
        out.push(Problem::config(at, e));
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
        check_url(out, format!("{at}.url"), &stand_in);
    }
    let mut fields = vec![(format!("{at}.url"), t.url.as_str())];
    for (name, value) in &t.headers {
        fields.push((format!("{at}.headers.{name}"), value.as_str()));
    }
    if let Some(b) = &t.body {
        fields.push((format!("{at}.body"), b.as_str()));
    }
    for (p, text) in fields {
        for var in env_refs(text) {
            if env.get(&var).is_none() {
                let why = format!(
                    "uses {{{{env.{var}}}}} but environment variable {var} is not set in {}",
                    env.where_to_set()
                );
                out.push(Problem::machine(p.clone(), why));
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
