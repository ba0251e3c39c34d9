//! `rules check` for multi-step revokes: every name a step uses is a
//! built-in variable or extracted by an earlier step, every pointer is an
//! RFC 6901 pointer, and every step that changes state says which statuses
//! mean done.

use super::schema::{HttpTemplate, Step, HTTP_METHODS};
use super::template;

/// The most steps a revoke may have.
const MAX_STEPS: usize = 8;

/// What is wrong with `steps`, naming the step; never quotes a value.
pub fn validate_steps(steps: &[Step]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("steps is empty; give at least one step, or use a single call".into());
    }
    if steps.len() > MAX_STEPS {
        return Err(format!("at most {MAX_STEPS} steps"));
    }
    let mut names: Vec<String> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let at = match plain_name(&step.name) {
            true => format!("step {}", step.name),
            false => {
                return Err(format!(
                    "steps[{i}]: name must be 1-40 letters, digits, `-` or `_`"
                ))
            }
        };
        if names.contains(&step.name) {
            return Err(format!("{at}: two steps have this name"));
        }
        names.push(step.name.clone());
        let method = step.method.to_ascii_uppercase();
        if !HTTP_METHODS.contains(&method.as_str()) {
            return Err(format!(
                "{at}: method is not one of {}",
                HTTP_METHODS.join(", ")
            ));
        }
        let changes = !matches!(method.as_str(), "GET" | "HEAD");
        if changes && step.ok.is_empty() {
            return Err(format!(
                "{at}: a {method} changes state at the provider and needs `ok:` (the statuses that mean it was done)"
            ));
        }
        for status in step.ok.iter().chain(&step.dead).chain(&step.retry) {
            if !(100..=599).contains(status) {
                return Err(format!("{at}: {status} is not an HTTP status code"));
            }
        }
        if let Some(s) = step.ok.iter().find(|s| step.dead.contains(s)) {
            return Err(format!("{at}: {s} is in both ok and dead"));
        }
        let t = HttpTemplate {
            method: step.method.clone(),
            url: step.url.clone(),
            api_url: step.api_url.clone(),
            headers: step.headers.clone(),
            body: step.body.clone(),
            ..HttpTemplate::default()
        };
        // api_url as for any template; the placeholders below, with the
        // names earlier steps extract.
        super::validate_template(&HttpTemplate {
            method: step.method.clone(),
            url: "{{api_url}}".into(),
            api_url: step.api_url.clone(),
            ..HttpTemplate::default()
        })
        .map_err(|m| format!("{at}: {m}"))?;
        let url_ok = ["http://", "https://", "{{"]
            .iter()
            .any(|p| t.url.starts_with(p));
        if !url_ok {
            return Err(format!(
                "{at}: url must start with http://, https:// or a {{{{setting}}}}"
            ));
        }
        let extra: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut fields: Vec<(String, &str, bool)> = vec![("url".into(), &t.url, false)];
        fields.extend(t.body.as_deref().map(|b| ("body".to_string(), b, false)));
        for (name, value) in &t.headers {
            fields.push((format!("header {name}"), value, true));
        }
        if let Some(find) = &step.find {
            for (pointer, value) in &find.matches {
                fields.push((format!("find.where {pointer}"), value, false));
            }
        }
        for (field, text, request_vars) in fields {
            template::parse_with(text, request_vars, &extra).map_err(|e| {
                let hint = match e {
                    template::SyntaxError::Unknown(_) => " (or a name an earlier step extracts)",
                    _ => "",
                };
                format!("{at}: {field}: {e}{hint}")
            })?;
        }
        let mut extracted: Vec<(&String, &String)> = step.extract.iter().collect();
        if let Some(find) = &step.find {
            if changes {
                return Err(format!("{at}: find: reads a list; use it on a GET step"));
            }
            if find.matches.is_empty() {
                return Err(format!(
                    "{at}: find needs `where:` (what the key's own entry has); without it any entry would do"
                ));
            }
            pointer(&find.list).map_err(|m| format!("{at}: find.list: {m}"))?;
            for p in find.matches.keys() {
                pointer(p).map_err(|m| format!("{at}: find.where: {m}"))?;
            }
            if let Some(next) = &find.next {
                pointer(next).map_err(|m| format!("{at}: find.next: {m}"))?;
            }
            extracted.extend(find.extract.iter());
        }
        for (name, p) in extracted {
            pointer(p).map_err(|m| format!("{at}: extract {name}: {m}"))?;
            let builtin = template::VARIABLES.contains(&name.as_str())
                || template::REQUEST_VARIABLES.contains(&name.as_str());
            if !plain_name(name) || name.contains('-') || builtin {
                return Err(format!(
                    "{at}: extract: `{}` must be a new name of letters, digits and `_`",
                    shown(name)
                ));
            }
            known.push(name.clone());
        }
    }
    Ok(())
}

fn plain_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn shown(name: &str) -> String {
    name.chars().take(40).collect()
}

/// An RFC 6901 pointer: empty, or `/`-separated tokens where `~` is only
/// `~0` or `~1`.
fn pointer(p: &str) -> Result<(), String> {
    if !p.is_empty() && !p.starts_with('/') {
        return Err("a JSON pointer starts with `/` (e.g. /result/0/id)".into());
    }
    let b = p.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'~' && !matches!(b.get(i + 1), Some(b'0' | b'1')) {
            return Err("in a JSON pointer `~` is written ~0 and `/` inside a name ~1".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Find;
    use std::collections::BTreeMap;

    fn list() -> Step {
        Step {
            name: "find-key".into(),
            method: "GET".into(),
            url: "{{api_url}}/v3/api_keys".into(),
            find: Some(Find {
                list: "/result".into(),
                matches: BTreeMap::from([(
                    "/api_key_id".into(),
                    "{{part(secret, \".\", \"1\")}}".into(),
                )]),
                extract: BTreeMap::from([("key_id".into(), "/api_key_id".into())]),
                next: None,
            }),
            ..Step::default()
        }
    }

    fn delete() -> Step {
        Step {
            name: "delete".into(),
            method: "DELETE".into(),
            url: "{{api_url}}/v3/api_keys/{{key_id}}".into(),
            ok: vec![204],
            dead: vec![401, 404],
            ..Step::default()
        }
    }

    #[test]
    fn a_list_then_delete_is_valid() {
        validate_steps(&[list(), delete()]).unwrap();
    }

    #[test]
    fn rules_check_names_what_is_wrong_with_a_step() {
        let err = |steps: &[Step]| validate_steps(steps).unwrap_err();
        // A name used before any step extracts it.
        let e = err(&[delete(), list()]);
        assert!(e.contains("step delete") && e.contains("key_id"), "{e}");
        let e = err(&[Step {
            ok: vec![],
            ..delete()
        }]);
        assert!(e.contains("needs `ok:`"), "{e}");
        let mut bad = list();
        bad.find.as_mut().unwrap().list = "result".into();
        assert!(err(&[bad]).contains("find.list"));
        let mut bad = list();
        bad.find.as_mut().unwrap().extract = BTreeMap::from([("key_id".into(), "/a~2b".into())]);
        assert!(err(&[bad]).contains("~0"));
        let mut bad = list();
        bad.find.as_mut().unwrap().matches.clear();
        assert!(err(&[bad]).contains("where"));
        let e = err(&[
            list(),
            Step {
                name: "find-key".into(),
                ..delete()
            },
        ]);
        assert!(e.contains("two steps"), "{e}");
        let mut bad = list();
        bad.find.as_mut().unwrap().extract = BTreeMap::from([("secret".into(), "/x".into())]);
        assert!(err(&[bad]).contains("new name"));
        let e = err(&[Step {
            url: "{{api_url}}/x/{{nope}}".into(),
            ..delete()
        }]);
        assert!(e.contains("nope") && e.contains("earlier step"), "{e}");
        assert!(err(&[]).contains("empty"));
    }
}
