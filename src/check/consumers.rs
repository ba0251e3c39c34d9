//! `providers.<p>.consumers`: each entry names exactly one place for the
//! key, with the fields its kind needs, URLs keysentry may send a token to,
//! tokens set in the service's environment, files and commands present.

use super::{check_env, check_url, command_exists};
use crate::config::{Config, Consumer, ConsumerKind, Env, Problem};

pub(super) fn check(c: &Config, env: &Env, out: &mut Vec<Problem>) {
    for (base, consumers) in c.providers.all_consumers() {
        for (i, consumer) in consumers.iter().enumerate() {
            one(
                &format!("{base}[{i}]"),
                consumer,
                c.allow_insecure_http,
                env,
                out,
            );
        }
    }
}

fn url(out: &mut Vec<Problem>, at: String, u: &str, allow_insecure_http: bool) {
    let before = out.len();
    check_url(out, at.clone(), u);
    if out.len() == before {
        if let Some(why) = crate::urls::insecure_reason(u, allow_insecure_http) {
            out.push(Problem::config(at, why));
        }
    }
}

fn required(out: &mut Vec<Problem>, at: String, value: &str, example: &str) {
    if value.trim().is_empty() {
        out.push(Problem::config(
            at,
            format!("must not be empty, e.g. {example}"),
        ));
    }
}

fn readable(out: &mut Vec<Problem>, at: String, file: &std::path::Path) {
    if let Err(e) = std::fs::File::open(file) {
        let why = format!("cannot read {}: {e}", file.display());
        out.push(Problem::machine(at, why));
    }
}

fn one(at: &str, c: &Consumer, insecure: bool, env: &Env, out: &mut Vec<Problem>) {
    if c.name.trim().is_empty() {
        out.push(Problem::config(
            format!("{at}.name"),
            "must name the consumer, e.g. kms",
        ));
    }
    let kind = match c.kind() {
        Ok(k) => k,
        Err(why) => {
            out.push(Problem::config(at, why));
            return;
        }
    };
    if c.secret_variable.is_some() && kind != ConsumerKind::EnvFile {
        // Only an env file can hold the second half of a pair.
        out.push(Problem::config(
            format!("{at}.secret_variable"),
            "is only read for an env_file consumer; remove it, or hand the pair over through an env file",
        ));
    }
    match kind {
        ConsumerKind::EnvFile => match &c.env_file {
            Some(file) => {
                readable(out, format!("{at}.env_file"), file);
                if !c.variable.as_deref().is_some_and(|v| !v.trim().is_empty()) {
                    let why = "must name the variable, e.g. TATUM_API_KEY";
                    out.push(Problem::config(format!("{at}.variable"), why));
                }
            }
            None => out.push(Problem::config(
                format!("{at}.env_file"),
                "`variable` needs `env_file`, the file that holds it",
            )),
        },
        ConsumerKind::Vault => {
            let Some(v) = &c.vault else { return };
            let at = format!("{at}.vault");
            url(out, format!("{at}.addr"), &v.addr, insecure);
            required(out, format!("{at}.mount"), &v.mount, "secret");
            required(out, format!("{at}.path"), &v.path, "tatum/kms");
            required(out, format!("{at}.field"), &v.field, "api_key");
            for (name, value) in [("mount", &v.mount), ("path", &v.path)] {
                if value.contains(['?', '#']) || value.split('/').any(|s| s == "..") {
                    let why = "must be a plain path (no `?`, `#` or `..`)";
                    out.push(Problem::config(format!("{at}.{name}"), why));
                }
            }
            check_env(out, &format!("{at}.token_env"), &v.token_env, env);
        }
        ConsumerKind::GithubActions => {
            let Some(g) = &c.github_actions else { return };
            let at = format!("{at}.github_actions");
            match (&g.org, &g.repo) {
                (Some(_), Some(_)) | (None, None) => out.push(Problem::config(
                    at.clone(),
                    "needs `repo: owner/name` (optionally with `environment`) or `org`, exactly one",
                )),
                (Some(_), None) if g.environment.is_some() => out.push(Problem::config(
                    format!("{at}.environment"),
                    "an environment belongs to a repository: give `repo`, not `org`",
                )),
                (None, Some(r)) if r.split('/').count() != 2 || r.split('/').any(str::is_empty) => {
                    out.push(Problem::config(format!("{at}.repo"), "must be owner/name"))
                }
                _ => {}
            }
            let valid = !g.name.is_empty()
                && g.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                && !g.name.starts_with(|ch: char| ch.is_ascii_digit());
            if !valid {
                let why = "must be a GitHub secret name (letters, digits, `_`; not starting with a digit), e.g. TATUM_API_KEY";
                out.push(Problem::config(format!("{at}.name"), why));
            }
            if let Some(u) = &g.api_url {
                url(out, format!("{at}.api_url"), u, insecure);
            }
            check_env(out, &format!("{at}.token_env"), &g.token_env, env);
        }
        ConsumerKind::Kubernetes => {
            let Some(k) = &c.kubernetes else { return };
            let at = format!("{at}.kubernetes");
            url(out, format!("{at}.api_url"), &k.api_url, insecure);
            required(out, format!("{at}.namespace"), &k.namespace, "payments");
            required(out, format!("{at}.secret"), &k.secret, "tatum");
            required(out, format!("{at}.key"), &k.key, "api-key");
            match (&k.token_env, &k.token_file) {
                (Some(_), Some(_)) | (None, None) => out.push(Problem::config(
                    at.clone(),
                    "needs exactly one of `token_env` and `token_file` for the bearer token",
                )),
                (Some(v), None) => check_env(out, &format!("{at}.token_env"), v, env),
                (None, Some(f)) => readable(out, format!("{at}.token_file"), f),
            }
            if let Some(f) = &k.ca_file {
                readable(out, format!("{at}.ca_file"), f);
            }
        }
    }
    match c.restart.first() {
        Some(program) if !command_exists(program) => {
            let why =
                format!("command `{program}` not found (not an executable path, not in PATH)");
            out.push(Problem::machine(format!("{at}.restart"), why));
        }
        _ => {}
    }
    if let Some(unit) = &c.restart_unit {
        if unit.trim().is_empty() || unit.contains(char::is_whitespace) {
            let why = "must name one systemd unit, e.g. tatum-kms.service";
            out.push(Problem::config(format!("{at}.restart_unit"), why));
        } else if !command_exists("systemctl") {
            let why = "`systemctl` not found in PATH: restart_unit needs systemd";
            out.push(Problem::machine(format!("{at}.restart_unit"), why));
        }
    }
}
