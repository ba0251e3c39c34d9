//! The HTTP calls of remote consumers (Vault, GitHub, Kubernetes): no
//! redirects (they could carry the token elsewhere), plain http only to
//! loopback or with `allow_insecure_http` ([`crate::urls`]), answers capped
//! like providers' ([`MAX_BODY`]), bodies wiped when dropped. Errors name
//! the cause and never the URL's query, a header or a body.

use super::super::http_action::MAX_BODY;
use super::Reach;
use reqwest::Method;
use std::path::Path;
use zeroize::Zeroizing;

/// An answer; the body may hold keys (a secret read), so it is wiped.
pub(super) struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why a call got no answer, for the consumer's error (no key, no URL).
pub(super) enum Failure {
    /// The request never left: the address is wrong or the service down.
    Connect(String),
    Other(String),
}

impl Failure {
    pub fn describe(&self, what: &str, setting: &str) -> String {
        match self {
            Failure::Connect(e) => format!(
                "cannot connect to {what} ({e}); check `{setting}` and that the service runs"
            ),
            Failure::Other(e) => format!("the call to {what} failed ({e})"),
        }
    }
}

/// A client for one consumer: `ca_file` adds a CA (a cluster's own).
pub(super) fn client(reach: &Reach, ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(reach.timeout.min(std::time::Duration::from_secs(10)))
        .timeout(reach.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keysentry/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|_| format!("ca_file {} is not a PEM certificate", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client ({e})"))
}

/// One call. `at` names the URL's setting for the plain-http refusal.
pub(super) async fn send(
    client: &reqwest::Client,
    reach: &Reach,
    at: &str,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Zeroizing<String>>,
) -> Result<Answer, Failure> {
    if let Some(why) = crate::urls::insecure_http(url, reach.allow_insecure_http, at) {
        return Err(Failure::Other(why));
    }
    let mut b = client.request(method, url);
    for (name, value) in headers {
        let Ok(mut v) = reqwest::header::HeaderValue::from_str(value) else {
            return Err(Failure::Other(format!(
                "the {name} header's value is not valid in HTTP (check the token)"
            )));
        };
        v.set_sensitive(true);
        b = b.header(*name, v);
    }
    if let Some(body) = body {
        b = b.body(body.as_bytes().to_vec());
    }
    let mut resp = b.send().await.map_err(|e| failure(e.without_url()))?;
    let status = resp.status().as_u16();
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(|e| failure(e.without_url()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Failure::Other(
                "the answer is larger than 1 MiB; check that the URL points at the service's API"
                    .into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

fn failure(e: reqwest::Error) -> Failure {
    if e.is_connect() {
        // The innermost cause says "Connection refused" or the DNS error.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        Failure::Connect(cause.to_string())
    } else if e.is_timeout() {
        Failure::Other("no answer in time (remediation.timeout_secs)".into())
    } else {
        Failure::Other(e.to_string())
    }
}

/// The token in environment variable `name`, or why not.
pub(super) fn token_from_env(name: &str, setting: &str) -> Result<Zeroizing<String>, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(Zeroizing::new(v.trim().to_string())),
        _ => Err(format!(
            "environment variable {name} (`{setting}`) is not set in keysentry's environment; set it to the token"
        )),
    }
}
