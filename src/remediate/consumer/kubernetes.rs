//! A key of a Kubernetes Secret, through the API server with a bearer
//! token: `GET /api/v1/namespaces/{ns}/secrets/{name}` (the key's base64
//! value compared by fingerprint, `metadata.resourceVersion` noted), `PUT`
//! of the same object with the key replaced and the resourceVersion read
//! (409 Conflict: someone wrote in between; read again, and write only while
//! it still holds the leaked key), read back. A rollout restart patches the
//! deployment's pod template annotation `kubectl.kubernetes.io/restartedAt`,
//! as `kubectl rollout restart` does.

use super::http::{self, Answer};
use super::{ConsumerError, Reach, Seen};
use crate::config::{Consumer, ConsumerKind, KubernetesConsumer};
use crate::scan::{Fingerprint, Secret};
use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;
use zeroize::Zeroizing;

const KIND: ConsumerKind = ConsumerKind::Kubernetes;
const CONFLICT_ATTEMPTS: u32 = 3;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn cfg(c: &Consumer) -> Result<&KubernetesConsumer, ConsumerError> {
    c.kubernetes.as_ref().ok_or_else(|| ConsumerError::Config {
        consumer: c.name.clone(),
        why: "has no `kubernetes` settings".into(),
    })
}

fn err(c: &Consumer, why: impl Into<String>) -> ConsumerError {
    ConsumerError::remote(c, KIND, why)
}

fn token(c: &Consumer, k: &KubernetesConsumer) -> Result<Zeroizing<String>, ConsumerError> {
    if let Some(path) = &k.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                c,
                format!("cannot read kubernetes.token_file {}: {e}", path.display()),
            )
        })?;
        let token = Zeroizing::new(text.trim().to_string());
        if token.is_empty() {
            return Err(err(
                c,
                format!("kubernetes.token_file {} is empty", path.display()),
            ));
        }
        return Ok(token);
    }
    match &k.token_env {
        Some(name) => http::token_from_env(name, "kubernetes.token_env").map_err(|e| err(c, e)),
        None => Err(err(
            c,
            "names neither kubernetes.token_env nor kubernetes.token_file",
        )),
    }
}

async fn call(
    c: &Consumer,
    k: &KubernetesConsumer,
    reach: &Reach,
    method: Method,
    path: &str,
    content_type: &str,
    body: Option<Zeroizing<String>>,
) -> Result<Answer, ConsumerError> {
    let token = token(c, k)?;
    let bearer = Zeroizing::new(format!("Bearer {}", token.as_str()));
    let client = http::client(reach, k.ca_file.as_deref()).map_err(|e| err(c, e))?;
    let url = format!("{}{path}", k.api_url.trim_end_matches('/'));
    let headers = [
        ("authorization", bearer.as_str()),
        ("accept", "application/json"),
        ("content-type", content_type),
    ];
    http::send(
        &client,
        reach,
        "kubernetes.api_url",
        method,
        &url,
        &headers,
        body,
    )
    .await
    .map_err(|f| {
        err(
            c,
            f.describe("the Kubernetes API server", "kubernetes.api_url"),
        )
    })
}

/// A status the API server refused with, and the fix. The answer's
/// `message` is not quoted (it may echo the object); its `reason` is a
/// fixed word (`Forbidden`, `NotFound`).
fn refused(
    c: &Consumer,
    k: &KubernetesConsumer,
    answer: &Answer,
    doing: &str,
    what: &str,
) -> ConsumerError {
    let reason = answer
        .json()
        .and_then(|j| j.get("reason")?.as_str().map(str::to_string))
        .filter(|r| r.len() < 40 && r.chars().all(|ch| ch.is_ascii_alphabetic()))
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let why = match answer.status {
        401 => format!("the API server answered 401{reason} to the {doing}: the bearer token is not valid (check kubernetes.token_env / token_file)"),
        403 => format!(
            "the API server answered 403{reason} to the {doing}: the token's service account may not {} {what} in namespace {} (grant it in a Role)",
            if doing == "read" { "get" } else { "update" },
            k.namespace
        ),
        404 => format!("the API server answered 404{reason}: no {what} in namespace {}", k.namespace),
        s => format!("the API server answered {s}{reason} to the {doing} of {what}"),
    };
    err(c, why)
}

fn secret_path(k: &KubernetesConsumer) -> String {
    format!("/api/v1/namespaces/{}/secrets/{}", k.namespace, k.secret)
}

/// The Secret object, or `None` when there is none.
async fn get(
    c: &Consumer,
    k: &KubernetesConsumer,
    reach: &Reach,
) -> Result<Option<Object>, ConsumerError> {
    let answer = call(
        c,
        k,
        reach,
        Method::GET,
        &secret_path(k),
        "application/json",
        None,
    )
    .await?;
    match answer.status {
        200 => {}
        404 => return Ok(None),
        _ => {
            return Err(refused(
                c,
                k,
                &answer,
                "read",
                &format!("secret {}", k.secret),
            ))
        }
    }
    let json = answer
        .json()
        .filter(|j| j.get("kind").and_then(Value::as_str) == Some("Secret"))
        .ok_or_else(|| {
            err(
                c,
                "the answer is not a Kubernetes Secret; check kubernetes.api_url",
            )
        })?;
    Ok(Some(Object(json)))
}

/// A Secret as the API server gave it; wiped when dropped.
struct Object(Value);

impl Drop for Object {
    fn drop(&mut self) {
        super::wipe_json(&mut self.0);
    }
}

impl Object {
    fn version(&self) -> String {
        self.0
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// The decoded value of `key`, if set.
    fn value(&self, key: &str) -> Option<Secret> {
        let b64 = self.0.get("data")?.get(key)?.as_str()?;
        let bytes = Zeroizing::new(B64.decode(b64).ok()?);
        let text = std::str::from_utf8(&bytes).ok()?;
        Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
    }

    fn holds(&self, key: &str, fp: &Fingerprint) -> bool {
        self.value(key).is_some_and(|v| v.fingerprint() == *fp)
    }
}

pub(super) async fn read(c: &Consumer, reach: &Reach) -> Result<Option<Seen>, ConsumerError> {
    let k = cfg(c)?;
    Ok(get(c, k, reach).await?.and_then(|o| {
        Some(Seen {
            value: o.value(&k.key)?,
            version: o.version(),
        })
    }))
}

pub(super) async fn write(
    c: &Consumer,
    reach: &Reach,
    old: &Fingerprint,
    new: &Secret,
    _version: Option<String>,
) -> Result<bool, ConsumerError> {
    let k = cfg(c)?;
    let mut current = get(c, k, reach).await?;
    for _ in 0..CONFLICT_ATTEMPTS {
        let Some(object) = current.as_mut() else {
            return Ok(false);
        };
        if object.holds(&k.key, &new.fingerprint()) {
            return Ok(true);
        }
        if !object.holds(&k.key, old) {
            return Err(ConsumerError::Changed {
                consumer: c.name.clone(),
                kind: KIND,
            });
        }
        // The object as read, resourceVersion included: the API server
        // answers 409 if it changed since.
        let Some(data) = object.0.get_mut("data").and_then(Value::as_object_mut) else {
            return Ok(false);
        };
        data.insert(k.key.clone(), Value::String(B64.encode(new.expose())));
        let body = Zeroizing::new(object.0.to_string());
        let answer = call(
            c,
            k,
            reach,
            Method::PUT,
            &secret_path(k),
            "application/json",
            Some(body),
        )
        .await?;
        match answer.status {
            200 | 201 => return Ok(true),
            409 => {
                tracing::info!(consumer = %c.name, "Kubernetes 409 Conflict: the Secret changed since it was read; reading it again");
                current = get(c, k, reach).await?;
            }
            _ => {
                return Err(refused(
                    c,
                    k,
                    &answer,
                    "write",
                    &format!("secret {}", k.secret),
                ))
            }
        }
    }
    Err(err(
        c,
        format!("the Secret kept changing between keysentry's read and its write ({CONFLICT_ATTEMPTS} conflicts); nothing was overwritten, keysentry retries on the next run"),
    ))
}

/// `kubectl rollout restart deployment/NAME`: a new pod template
/// annotation makes the deployment replace its pods.
pub(super) async fn rollout_restart(
    c: &Consumer,
    k: &KubernetesConsumer,
    deployment: &str,
    reach: &Reach,
) -> Result<(), ConsumerError> {
    let now = crate::rules::template::Clock::now()
        .var("timestamp_iso")
        .unwrap_or_default();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now
    }}}}});
    let path = format!(
        "/apis/apps/v1/namespaces/{}/deployments/{deployment}",
        k.namespace
    );
    let answer = call(
        c,
        k,
        reach,
        Method::PATCH,
        &path,
        "application/strategic-merge-patch+json",
        Some(Zeroizing::new(patch.to_string())),
    )
    .await?;
    match answer.status {
        200 | 201 => Ok(()),
        _ => Err(refused(
            c,
            k,
            &answer,
            "rollout restart",
            &format!("deployment {deployment}"),
        )),
    }
}
