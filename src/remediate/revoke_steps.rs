//! Multi-step revokes (`revoke: {steps: [...]}` in the rule YAML): look the
//! key's id up, then delete exactly that key.
//!
//! Every step that changes state (anything but GET and HEAD) goes through
//! [`Ctx::call`], journaled as `revoke:<name>` before it is sent. After an
//! interruption the key is verified before anything is sent again: dead
//! means the earlier call took effect; a step the provider accepted is
//! never sent twice. Reads are repeated freely (a restart looks the id up
//! again). A `find:` that matches no entry or several stops and asks the
//! owner: a key that only looks similar is never deleted.
//!
//! Extracted values are identifiers from the provider's answer, not keys;
//! they are still untrusted: only plain identifier characters are taken,
//! and they are percent-encoded where they land in a URL.

use super::ctx::{Accept, Ctx};
use super::http_action::{render_with, Escape, Reply, Request};
use super::template_call::{verify, with_vars, Liveness};
use super::StepError;
use crate::config::Config;
use crate::rules::{HttpTemplate, Step};
use crate::scan::Secret;
use crate::store::State;
use std::collections::BTreeMap;

/// Pages of a list followed at most: a provider that keeps answering with
/// a next link is not followed forever.
const MAX_PAGES: usize = 50;

/// The longest extracted value taken (ids are far shorter).
const MAX_VALUE: usize = 128;

type Values = BTreeMap<String, String>;

/// The step's name in the journal.
pub(super) fn journal_name(step: &Step) -> String {
    format!("revoke:{}", step.name)
}

/// Whether the step changes state at the provider.
pub(super) fn changes(step: &Step) -> bool {
    !matches!(step.method.to_ascii_uppercase().as_str(), "GET" | "HEAD")
}

/// The step's `ok:` statuses; a read without them accepts any 2xx.
fn ok_statuses(step: &Step) -> Vec<u16> {
    match step.ok.is_empty() {
        true => (200..300).collect(),
        false => step.ok.clone(),
    }
}

fn as_template(step: &Step, url: &str) -> HttpTemplate {
    HttpTemplate {
        method: step.method.clone(),
        url: url.to_string(),
        api_url: step.api_url.clone(),
        headers: step.headers.clone(),
        body: step.body.clone(),
        ok: step.ok.clone(),
        dead: step.dead.clone(),
        ..HttpTemplate::default()
    }
}

/// An extracted value, when it is a plain identifier (a string or a number
/// of `[A-Za-z0-9._:~-]`, at most [`MAX_VALUE`] bytes).
fn identifier(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:~-".contains(&b));
    (!s.is_empty() && s.len() <= MAX_VALUE && plain).then_some(s)
}

/// How a step ended.
enum End {
    /// On to the next step.
    Next,
    /// The provider says the key is already dead (`dead:` status), or an
    /// uncertain call turned out to have taken effect.
    Dead(String),
    /// The incident waits for its owner.
    Stop,
}

/// Runs `steps` for the leaked `key`: `Some(result)` when the key is
/// revoked (the caller moves the incident on), `None` when the incident
/// waits for its owner, an error when a step could not finish (failed,
/// retried on a later run).
pub(super) async fn run(
    config: &Config,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    steps: &[Step],
    verify_t: Option<&HttpTemplate>,
) -> Result<Option<String>, StepError> {
    let (mut done, mut uncertain) = (false, false);
    for step in steps.iter().filter(|s| changes(s)) {
        done |= ctx.step_done(&journal_name(step))?;
        uncertain |= ctx.step_uncertain(&journal_name(step))?;
    }
    if done || uncertain {
        let Some(v) = verify_t else {
            let reason = format!(
                "an earlier revoke call may have taken effect and rule {} has no verify to tell; check in {}'s settings that the key is gone",
                ctx.row().rule_id,
                ctx.row().provider
            );
            ctx.wait(State::WaitingManual, reason)?;
            return Ok(None);
        };
        if let Liveness::Dead = verify(config, ctx, v, key, "verify").await? {
            return Ok(Some(
                "an earlier call took effect (the key no longer works)".into(),
            ));
        }
        if done {
            // Accepted once: never sent twice. Confirm checks again.
            return Ok(Some("the provider accepted the revoke earlier".into()));
        }
    }
    let mut values = Values::new();
    for step in steps {
        match one(config, ctx, key, step, &mut values, verify_t).await? {
            End::Next => {}
            End::Dead(why) => return Ok(Some(why)),
            End::Stop => return Ok(None),
        }
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    Ok(Some(format!("ok (steps {})", names.join(", "))))
}

fn build(
    config: &Config,
    ctx: &Ctx<'_>,
    t: &HttpTemplate,
    key: &Secret,
    values: &Values,
    what: &str,
) -> Result<Request, StepError> {
    Ok(with_vars(config, ctx, key, |vars| {
        Request::from_template_with(t, vars, values, what)
    })?)
}

async fn one(
    config: &Config,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &Step,
    values: &mut Values,
    verify_t: Option<&HttpTemplate>,
) -> Result<End, StepError> {
    let what = format!("rule {} revoke step {}", ctx.row().rule_id, step.name);
    let journal = journal_name(step);
    let ok = ok_statuses(step);
    let wanted = match &step.find {
        Some(find) => wanted_values(config, ctx, key, &find.matches, values, &what)?,
        None => Vec::new(),
    };
    let mut url = step.url.clone();
    let mut found: Vec<serde_json::Value> = Vec::new();
    for page in 1.. {
        let req = build(config, ctx, &as_template(step, &url), key, values, &what)?;
        let reply = match send(config, ctx, key, step, &req, verify_t).await? {
            Some(reply) => reply,
            None => {
                return Ok(End::Dead(format!(
                    "step {} took effect although the answer was lost",
                    step.name
                )))
            }
        };
        if step.dead.contains(&reply.status) {
            return Ok(End::Dead(format!(
                "the key was already dead (step {} answered {})",
                step.name, reply.status
            )));
        }
        if !ok.contains(&reply.status) {
            let hint = match reply.status {
                403 => format!(
                    "; the key may lack the permission to revoke itself: revoke it in {}'s settings",
                    ctx.row().provider
                ),
                _ => String::new(),
            };
            return Err(ctx.provider_error(
                &journal,
                format!(
                    "answered {}; the rule expects ok {:?} or dead {:?}{hint}",
                    reply.status, step.ok, step.dead
                ),
            ));
        }
        let json = reply.json().unwrap_or(serde_json::Value::Null);
        extract(ctx, &journal, &json, &step.extract, values)?;
        let Some(find) = &step.find else {
            return Ok(End::Next);
        };
        let items = json.pointer(&find.list).and_then(|l| l.as_array());
        let Some(items) = items else {
            return Err(
                ctx.provider_error(&journal, format!("the answer has no list at {}", find.list))
            );
        };
        found.extend(
            items
                .iter()
                .filter(|item| matches(item, &find.matches, &wanted))
                .cloned(),
        );
        let next = find
            .next
            .as_deref()
            .and_then(|n| json.pointer(n))
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty());
        match next {
            Some(next) if page < MAX_PAGES => url = next_page(ctx, &journal, &req, next)?,
            Some(_) => {
                return Err(ctx.provider_error(
                    &journal,
                    format!("the list runs past {MAX_PAGES} pages; revoke the key in the provider's settings"),
                ))
            }
            None => break,
        }
    }
    let Some(find) = &step.find else {
        return Ok(End::Next);
    };
    if found.len() != 1 {
        let provider = ctx.row().provider.clone();
        let reason = format!(
            "step {} found {} entries at {provider} matching this key where exactly one was expected; keysentry deletes only an exact match: revoke the key in {provider}'s settings",
            step.name,
            found.len()
        );
        ctx.note(&journal, format!("stopped: {} candidates", found.len()));
        ctx.wait(State::WaitingManual, reason)?;
        return Ok(End::Stop);
    }
    extract(ctx, &journal, &found[0], &find.extract, values)?;
    Ok(End::Next)
}

/// The rendered `where:` values (they may derive from the key, e.g. its
/// hash: compared, never shown).
fn wanted_values(
    config: &Config,
    ctx: &Ctx<'_>,
    key: &Secret,
    matches: &BTreeMap<String, String>,
    values: &Values,
    what: &str,
) -> Result<Vec<zeroize::Zeroizing<String>>, StepError> {
    with_vars(config, ctx, key, |vars| {
        matches
            .values()
            .map(|t| {
                render_with(t, vars, values, &format!("{what} find"), Escape::Raw)
                    .map(zeroize::Zeroizing::new)
                    .map_err(StepError::from)
            })
            .collect()
    })
}

fn matches(
    item: &serde_json::Value,
    matches: &BTreeMap<String, String>,
    wanted: &[zeroize::Zeroizing<String>],
) -> bool {
    matches
        .keys()
        .zip(wanted)
        .all(|(pointer, want)| match item.pointer(pointer) {
            Some(serde_json::Value::String(s)) => s == want.as_str(),
            Some(serde_json::Value::Number(n)) => n.to_string() == want.as_str(),
            _ => false,
        })
}

fn extract(
    ctx: &Ctx<'_>,
    journal: &str,
    json: &serde_json::Value,
    pointers: &BTreeMap<String, String>,
    values: &mut Values,
) -> Result<(), StepError> {
    for (name, pointer) in pointers {
        let value = json.pointer(pointer).and_then(identifier).ok_or_else(|| {
            ctx.provider_error(
                journal,
                format!("the answer has no plain identifier at {pointer} (for {{{{{name}}}}})"),
            )
        })?;
        values.insert(name.clone(), value);
    }
    Ok(())
}

/// The next page's URL: a path on the same host, or a URL on the same
/// origin. Anything else (another host, a placeholder) is refused: the
/// request carries the key.
fn next_page(ctx: &Ctx<'_>, journal: &str, req: &Request, next: &str) -> Result<String, StepError> {
    let refuse = || {
        ctx.provider_error(
            journal,
            "the next-page link points somewhere else than the list (another host, or not a URL); keysentry does not follow it",
        )
    };
    if next.contains("{{") || next.contains("}}") {
        return Err(refuse());
    }
    let base = reqwest::Url::parse(req.url()).map_err(|_| refuse())?;
    let url = base.join(next).map_err(|_| refuse())?;
    if url.origin() != base.origin() {
        return Err(refuse());
    }
    Ok(url.to_string())
}

/// Sends one request of a step, retrying as its statuses say. `None`: the
/// call's answer was lost but verify shows the key dead (it took effect).
async fn send(
    config: &Config,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &Step,
    req: &Request,
    verify_t: Option<&HttpTemplate>,
) -> Result<Option<Reply>, StepError> {
    let journal = journal_name(step);
    let answers: Vec<u16> = step.ok.iter().chain(&step.dead).copied().collect();
    let accept = Accept {
        answers: &answers,
        retry_others: false,
        state_changing: changes(step),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (reason, retry_after) = match ctx.call(&journal, req, accept).await {
            Ok(reply) if step.retry.contains(&reply.status) && !answers.contains(&reply.status) => {
                (format!("answered {}", reply.status), reply.retry_after)
            }
            Ok(reply) => return Ok(Some(reply)),
            Err(StepError::Uncertain { reason, .. }) => (reason, None),
            Err(e) => return Err(e),
        };
        if accept.state_changing {
            if let Some(v) = verify_t {
                if let Liveness::Dead = verify(config, ctx, v, key, "verify").await? {
                    return Ok(None);
                }
            }
        }
        if attempt >= ctx.retry().max_attempts {
            return Err(ctx.provider_error(
                &journal,
                format!("{reason} ({attempt} attempts); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.retry().delay(attempt, retry_after)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_plain_identifiers_are_extracted() {
        assert_eq!(
            identifier(&json!("tok_1.a-b:c~d")).as_deref(),
            Some("tok_1.a-b:c~d")
        );
        assert_eq!(identifier(&json!(42)).as_deref(), Some("42"));
        for bad in [
            json!("../admin"),
            json!("a/b"),
            json!("id?x=1"),
            json!("{{secret}}"),
            json!(""),
            json!("a b"),
            json!(["x"]),
            json!("x".repeat(MAX_VALUE + 1)),
        ] {
            assert_eq!(identifier(&bad), None, "{bad}");
        }
    }

    #[test]
    fn an_item_matches_only_when_every_field_is_equal() {
        let want = |v: &[&str]| -> Vec<zeroize::Zeroizing<String>> {
            v.iter()
                .map(|s| zeroize::Zeroizing::new(s.to_string()))
                .collect()
        };
        let m = BTreeMap::from([
            ("/key".to_string(), String::new()),
            ("/n".to_string(), String::new()),
        ]);
        let item = json!({"key": "abc", "n": 7});
        assert!(matches(&item, &m, &want(&["abc", "7"])));
        assert!(!matches(&item, &m, &want(&["abc", "8"])));
        assert!(!matches(&json!({"key": "abc"}), &m, &want(&["abc", "7"])));
    }
}
