//! A field of a Vault / OpenBao KV version 2 secret. Read with
//! `GET /v1/{mount}/data/{path}` (the field's value is compared by
//! fingerprint; `metadata.version` is noted), written as a new version with
//! `options.cas` = the version read and every other field kept, read back
//! to confirm. A check-and-set mismatch means someone wrote in between: the
//! secret is read again, and written only while it still holds the leaked
//! key.

use super::http::{self, Answer};
use super::{ConsumerError, Reach, Seen};
use crate::config::{Consumer, ConsumerKind, VaultConsumer};
use crate::scan::{Fingerprint, Secret};
use reqwest::Method;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

const KIND: ConsumerKind = ConsumerKind::Vault;
/// Check-and-set conflicts retried before giving up.
const CAS_ATTEMPTS: u32 = 3;

struct Secretv2 {
    data: Map<String, Value>,
    version: u64,
}

impl Drop for Secretv2 {
    fn drop(&mut self) {
        for v in self.data.values_mut() {
            if let Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

fn cfg(c: &Consumer) -> Result<&VaultConsumer, ConsumerError> {
    c.vault.as_ref().ok_or_else(|| ConsumerError::Config {
        consumer: c.name.clone(),
        why: "has no `vault` settings".into(),
    })
}

fn err(c: &Consumer, why: impl Into<String>) -> ConsumerError {
    ConsumerError::remote(c, KIND, why)
}

fn url(v: &VaultConsumer) -> String {
    format!(
        "{}/v1/{}/data/{}",
        v.addr.trim_end_matches('/'),
        v.mount.trim_matches('/'),
        v.path.trim_matches('/')
    )
}

async fn call(
    c: &Consumer,
    reach: &Reach,
    method: Method,
    body: Option<Zeroizing<String>>,
) -> Result<Answer, ConsumerError> {
    let v = cfg(c)?;
    let token = http::token_from_env(&v.token_env, "vault.token_env").map_err(|e| err(c, e))?;
    let client = http::client(reach, None).map_err(|e| err(c, e))?;
    let mut headers = vec![("x-vault-token", token.as_str())];
    if let Some(ns) = &v.namespace {
        headers.push(("x-vault-namespace", ns.as_str()));
    }
    http::send(
        &client,
        reach,
        "vault.addr",
        method,
        &url(v),
        &headers,
        body,
    )
    .await
    .map_err(|f| err(c, f.describe(&format!("Vault at {}", v.addr), "vault.addr")))
}

/// What a status other than success means, with the fix.
fn refused(c: &Consumer, v: &VaultConsumer, answer: &Answer, doing: &str) -> ConsumerError {
    let secret = format!(
        "{}/data/{}",
        v.mount.trim_matches('/'),
        v.path.trim_matches('/')
    );
    let why = match answer.status {
        403 => format!(
            "Vault answered 403 to the {doing}: the token in {} lacks a policy allowing {} on {secret} (or has expired)",
            v.token_env,
            if doing == "read" { "read" } else { "create and update" }
        ),
        404 => format!("Vault answered 404: no KV v2 mount `{}` (check vault.mount and that it is version 2)", v.mount),
        s => format!("Vault answered {s} to the {doing} of {secret}"),
    };
    err(c, why)
}

async fn get(c: &Consumer, reach: &Reach) -> Result<Option<Secretv2>, ConsumerError> {
    let answer = call(c, reach, Method::GET, None).await?;
    match answer.status {
        200 => {}
        // KV v2 answers 404 with no error for a path never written (or
        // destroyed); a 404 with errors is a mount or route that is not there.
        404 if !has_errors(&answer) => return Ok(None),
        _ => return Err(refused(c, cfg(c)?, &answer, "read")),
    }
    let mut json = answer
        .json()
        .ok_or_else(|| err(c, "Vault's answer is not JSON; check vault.addr"))?;
    let version = json
        .pointer("/data/metadata/version")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            err(
                c,
                "Vault's answer has no data.metadata.version: is the mount KV version 2?",
            )
        })?;
    let data = match json.pointer_mut("/data/data").map(Value::take) {
        Some(Value::Object(m)) => m,
        // A deleted latest version reads as `data: null`.
        _ => Map::new(),
    };
    super::wipe_json(&mut json);
    Ok(Some(Secretv2 { data, version }))
}

/// The configured field and the secret's version; `None` when the secret
/// or the field is not there.
pub(super) async fn read(c: &Consumer, reach: &Reach) -> Result<Option<Seen>, ConsumerError> {
    let field = &cfg(c)?.field;
    Ok(get(c, reach).await?.and_then(|s| {
        let value = s.data.get(field)?.as_str()?;
        Some(Seen {
            value: Secret::new(value),
            version: s.version.to_string(),
        })
    }))
}

pub(super) async fn write(
    c: &Consumer,
    reach: &Reach,
    old: &Fingerprint,
    new: &Secret,
    version: Option<String>,
) -> Result<bool, ConsumerError> {
    let field = cfg(c)?.field.clone();
    let mut current = get(c, reach).await?;
    let _ = version; // the version read now is the one to check against
    for _ in 0..CAS_ATTEMPTS {
        let Some(secret) = current.as_mut() else {
            return Ok(false);
        };
        let holds = |s: &Secretv2, fp: &Fingerprint| {
            s.data
                .get(&field)
                .and_then(Value::as_str)
                .is_some_and(|v| Fingerprint::of(v.as_bytes()) == *fp)
        };
        if holds(secret, &new.fingerprint()) {
            return Ok(true);
        }
        if !holds(secret, old) {
            return Err(ConsumerError::Changed {
                consumer: c.name.clone(),
                kind: KIND,
            });
        }
        let mut data = std::mem::take(&mut secret.data);
        data.insert(field.clone(), Value::String(new.expose().to_string()));
        let mut body = serde_json::json!({"options": {"cas": secret.version}, "data": data});
        let text = Zeroizing::new(body.to_string());
        super::wipe_json(&mut body);
        let answer = call(c, reach, Method::POST, Some(text)).await?;
        match answer.status {
            200 | 204 => return Ok(true),
            400 if cas_mismatch(&answer) => {
                tracing::info!(consumer = %c.name, "Vault check-and-set mismatch: the secret changed since it was read; reading it again");
                current = get(c, reach).await?;
            }
            _ => return Err(refused(c, cfg(c)?, &answer, "write")),
        }
    }
    Err(err(
        c,
        format!("the secret kept changing between keysentry's read and its check-and-set write ({CAS_ATTEMPTS} attempts); nothing was overwritten, keysentry retries on the next run"),
    ))
}

fn cas_mismatch(answer: &Answer) -> bool {
    answer
        .json()
        .and_then(|j| j.get("errors").cloned())
        .is_some_and(|e| e.to_string().contains("check-and-set"))
}

fn has_errors(answer: &Answer) -> bool {
    answer
        .json()
        .and_then(|j| j.get("errors")?.as_array().map(|a| !a.is_empty()))
        .unwrap_or(false)
}
