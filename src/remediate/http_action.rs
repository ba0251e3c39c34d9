//! HTTP calls described as data (the rule YAML's `verify`/`revoke`, the
//! Tatum management templates) and the one HTTP client every provider call
//! goes through: explicit timeouts, the per-provider rate limit, and errors
//! that never carry a URL, header or body (any of which may hold a key).

use super::retry::{parse_retry_after, RateLimiter};
use crate::rules::template::{self, Clock, EvalError, Expr, Piece, SyntaxError};
use crate::rules::HttpTemplate;
use crate::scan::Secret;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use std::sync::Arc;
use std::time::Duration;

/// What a template may refer to.
pub struct Vars<'a> {
    pub secret: &'a Secret,
    /// `{{api_url}}`, without a trailing `/`.
    pub api_url: &'a str,
    /// `allow_insecure_http` from the config: plain http:// to a host that
    /// is not loopback is refused without it.
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("{what}: unknown placeholder `{{{{{name}}}}}`; use {{{{secret}}}}, {{{{pair}}}}, {{{{api_url}}}}, {{{{env.NAME}}}}, a timestamp or a function (see the rule format in README.md)")]
    Unknown { what: String, name: String },
    #[error("{what}: environment variable {name} is not set; set it in keysentry's environment (e.g. the systemd unit's EnvironmentFile)")]
    MissingEnv { what: String, name: String },
    #[error("{what}: `{{{{` without a closing `}}}}`")]
    Unclosed { what: String },
    #[error("{what}: {message}")]
    Syntax { what: String, message: String },
    #[error("{what}: uses {{{{pair}}}} but the scan found no partner key (the rule's `pair:`) near this key; it cannot be checked alone: check it in the provider's console")]
    NoPair { what: String },
    #[error("{what}: uses {{{{api_url}}}} but the provider has no default API URL; set providers.<name>.api_url in the config or api_url in the template")]
    NoApiUrl { what: String },
    #[error("{what}: `{value}` is not a valid {part}")]
    Invalid {
        what: String,
        part: &'static str,
        value: String,
    },
    /// The expanded URL is plain http:// to a remote host.
    #[error("{0}")]
    Insecure(String),
}

/// Where a template value lands, which decides how it is escaped: a key
/// with `&`, `"` or a line break must arrive as the same bytes, not change
/// the request around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// A URL: values are percent-encoded, except `{{api_url}}` and a value
    /// that starts the URL (its base).
    Url,
    /// A JSON body: values are JSON string-escaped (the template supplies
    /// the quotes).
    Json,
    /// A form body (`application/x-www-form-urlencoded`): percent-encoded.
    Form,
    /// Headers and other bodies: as is (a header value cannot hold a
    /// control character; the HTTP stack refuses it).
    Raw,
}

/// Bytes left alone in a percent-encoded value: RFC 3986 unreserved.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn escaped(value: &str, escape: Escape, at_start: bool, out: &mut String) {
    match escape {
        Escape::Url if at_start => out.push_str(value),
        Escape::Url | Escape::Form => {
            out.extend(percent_encoding::utf8_percent_encode(value, COMPONENT))
        }
        Escape::Json => {
            let quoted = serde_json::Value::String(value.to_string()).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
        Escape::Raw => out.push_str(value),
    }
}

/// Everything a template string may refer to while one request is built.
struct Scope<'a> {
    vars: &'a Vars<'a>,
    /// `{{api_url}}`: the configured base, else the template's own.
    api_url: &'a str,
    clock: Clock,
    /// The request so far (headers and `query_signature` only).
    request: Option<Parts>,
    /// What earlier steps of a multi-step revoke extracted (ids, checked
    /// to be plain identifiers before they get here).
    extra: &'a std::collections::BTreeMap<String, String>,
}

/// No extracted values: every template outside multi-step revokes.
static NO_EXTRA: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// `{{method}}`, `{{host}}`, `{{path}}`, `{{query}}`, `{{body}}`: as sent.
struct Parts {
    method: String,
    host: String,
    path: String,
    query: String,
    body: String,
}

// Any part but the method may hold the key (`/v3/<key>`, `?apikey=`).
impl Drop for Parts {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.host);
        zeroize::Zeroize::zeroize(&mut self.path);
        zeroize::Zeroize::zeroize(&mut self.query);
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

impl Parts {
    fn of(method: &Method, url: &str, body: Option<&str>) -> Option<Parts> {
        let u = reqwest::Url::parse(url).ok()?;
        let host = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str()?),
            None => u.host_str()?.to_string(),
        };
        Some(Parts {
            method: method.to_string(),
            host,
            path: u.path().to_string(),
            query: u.query().unwrap_or_default().to_string(),
            body: body.unwrap_or_default().to_string(),
        })
    }
}

/// Expands the placeholders of `text` ([`crate::rules::template`]), each
/// value escaped for where it lands (`escape`). `what` names the template
/// in errors (`rule github.pat verify url`); errors never include the
/// expanded text.
pub fn render(
    text: &str,
    vars: &Vars<'_>,
    what: &str,
    escape: Escape,
) -> Result<String, TemplateError> {
    render_with(text, vars, &NO_EXTRA, what, escape)
}

/// [`render`] with the values earlier steps extracted.
pub fn render_with(
    text: &str,
    vars: &Vars<'_>,
    extra: &std::collections::BTreeMap<String, String>,
    what: &str,
    escape: Escape,
) -> Result<String, TemplateError> {
    let scope = Scope {
        vars,
        api_url: vars.api_url,
        clock: Clock::now(),
        request: None,
        extra,
    };
    render_in(text, &scope, what, escape)
}

fn syntax(what: &str, e: SyntaxError) -> TemplateError {
    let what = what.to_string();
    match e {
        SyntaxError::Unknown(name) => TemplateError::Unknown { what, name },
        SyntaxError::Unclosed => TemplateError::Unclosed { what },
        e => TemplateError::Syntax {
            what,
            message: e.to_string(),
        },
    }
}

fn render_in(
    text: &str,
    scope: &Scope<'_>,
    what: &str,
    escape: Escape,
) -> Result<String, TemplateError> {
    let names: Vec<&str> = scope.extra.keys().map(String::as_str).collect();
    let pieces =
        template::parse_with(text, scope.request.is_some(), &names).map_err(|e| syntax(what, e))?;
    let mut out = String::with_capacity(text.len() + 64);
    for piece in pieces {
        let expr = match piece {
            Piece::Text(t) => {
                out.push_str(&t);
                continue;
            }
            Piece::Expr(e) => e,
        };
        let at_start = out.is_empty();
        if expr == Expr::Var("api_url".into()) {
            if scope.api_url.is_empty() {
                return Err(TemplateError::NoApiUrl {
                    what: what.to_string(),
                });
            }
            out.push_str(scope.api_url.trim_end_matches('/'));
            continue;
        }
        // A variable's own error (an unset env var, no partner) is the one
        // to report, not the evaluator's.
        let mut failed: Option<TemplateError> = None;
        let mut var = |name: &str| match variable(scope, name, what) {
            Ok(v) => Ok(v),
            Err(e) => {
                failed = Some(e);
                Err(EvalError::Variable(String::new()))
            }
        };
        let value = template::eval(&expr, &mut var);
        if let Some(e) = failed {
            return Err(e);
        }
        let value = value
            .and_then(|v| String::from_utf8(v).map_err(|_| EvalError::Binary))
            .map_err(|e| TemplateError::Syntax {
                what: what.to_string(),
                message: e.to_string(),
            })?;
        let value = zeroize::Zeroizing::new(value);
        escaped(&value, escape, at_start, &mut out);
    }
    Ok(out)
}

fn variable(scope: &Scope<'_>, name: &str, what: &str) -> Result<Vec<u8>, TemplateError> {
    let secret = scope.vars.secret;
    let bytes = |s: &str| Ok(s.as_bytes().to_vec());
    match name {
        "secret" => bytes(secret.expose()),
        "pair" => match secret.pair() {
            Some(p) => bytes(p.expose()),
            None => Err(TemplateError::NoPair {
                what: what.to_string(),
            }),
        },
        "api_url" => bytes(scope.api_url.trim_end_matches('/')),
        _ => {
            if let Some(v) = scope.extra.get(name) {
                return bytes(v);
            }
            if let Some(v) = scope.clock.var(name) {
                return bytes(&v);
            }
            if let Some(var) = name.strip_prefix("env.") {
                return std::env::var(var).map(String::into_bytes).map_err(|_| {
                    TemplateError::MissingEnv {
                        what: what.to_string(),
                        name: var.to_string(),
                    }
                });
            }
            let r = scope.request.as_ref();
            let part = match name {
                "method" => r.map(|r| &r.method),
                "host" => r.map(|r| &r.host),
                "path" => r.map(|r| &r.path),
                "query" => r.map(|r| &r.query),
                "body" => r.map(|r| &r.body),
                _ => None,
            };
            part.map(|p| p.as_bytes().to_vec())
                .ok_or_else(|| TemplateError::Unknown {
                    what: what.to_string(),
                    name: name.to_string(),
                })
        }
    }
}

/// How a template's body is escaped: by its `content-type` header, else
/// JSON when it looks like JSON.
fn body_escape(t: &HttpTemplate, body: &str) -> Escape {
    let content_type = t
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase());
    match content_type {
        Some(ct) if ct.contains("json") => Escape::Json,
        Some(ct) if ct.contains("x-www-form-urlencoded") => Escape::Form,
        Some(_) => Escape::Raw,
        None if body.trim_start().starts_with(['{', '[']) => Escape::Json,
        None => Escape::Raw,
    }
}

/// The `{{env.NAME}}` variables a template string refers to (for `config
/// check`), wherever they sit in an expression.
pub fn env_refs(text: &str) -> Vec<String> {
    fn walk(e: &Expr, refs: &mut Vec<String>) {
        match e {
            Expr::Var(v) => {
                if let Some(var) = v.strip_prefix("env.") {
                    refs.push(var.to_string());
                }
            }
            Expr::Text(_) => {}
            Expr::Call(_, args) => args.iter().for_each(|a| walk(a, refs)),
        }
    }
    let mut refs = Vec::new();
    for piece in template::parse(text, true).unwrap_or_default() {
        if let Piece::Expr(e) = piece {
            walk(&e, &mut refs);
        }
    }
    refs
}

/// A ready-to-send request. It may hold a key in its URL, headers or body,
/// so `Debug` shows only its label.
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<String>,
    /// `METHOD url-template`: what logs and errors may show.
    pub label: String,
}

// The URL and body may hold the key (`{{secret}}`): wiped when the request
// is dropped. Copies inside the HTTP stack are out of reach.
impl Drop for Request {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.url);
        if let Some(body) = self.body.as_mut() {
            zeroize::Zeroize::zeroize(body);
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request({})", self.label)
    }
}

impl Request {
    /// A request to a URL that holds no key (the key goes in a header).
    pub fn new(method: Method, url: String) -> Request {
        let label = format!("{method} {url}");
        Request {
            method,
            url,
            headers: Vec::new(),
            body: None,
            label,
        }
    }

    /// The URL as sent: it may hold the key, so it is for parsing (a next
    /// page's origin), never for showing.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a header; its value is marked sensitive so that no debug output
    /// of the HTTP stack prints it.
    pub fn header(mut self, name: &'static str, value: &str) -> Request {
        if let Ok(mut v) = HeaderValue::from_str(value) {
            v.set_sensitive(true);
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    /// Sets the body (wiped on drop, like the rest of the request).
    pub fn body(mut self, body: String) -> Request {
        self.body = Some(body);
        self
    }

    pub fn from_template(
        t: &HttpTemplate,
        vars: &Vars<'_>,
        what: &str,
    ) -> Result<Request, TemplateError> {
        Request::from_template_with(t, vars, &NO_EXTRA, what)
    }

    /// [`Request::from_template`] for a step of a multi-step revoke:
    /// `extra` holds what the earlier steps extracted.
    pub fn from_template_with(
        t: &HttpTemplate,
        vars: &Vars<'_>,
        extra: &std::collections::BTreeMap<String, String>,
        what: &str,
    ) -> Result<Request, TemplateError> {
        let invalid = |part, value: &str| TemplateError::Invalid {
            what: what.to_string(),
            part,
            value: value.to_string(),
        };
        let method = Method::from_bytes(t.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid("HTTP method", &t.method))?;
        // The configured base, else the provider's public API the template
        // names.
        let api_url = match (vars.api_url.is_empty(), &t.api_url) {
            (true, Some(own)) => own.as_str(),
            _ => vars.api_url,
        };
        let mut scope = Scope {
            vars,
            api_url,
            clock: Clock::now(),
            request: None,
            extra,
        };
        let mut url = render_in(&t.url, &scope, &format!("{what} url"), Escape::Url)?;
        let body = match &t.body {
            Some(b) => Some(render_in(
                b,
                &scope,
                &format!("{what} body"),
                body_escape(t, b),
            )?),
            None => None,
        };
        let parts = |url: &str| {
            Parts::of(&method, url, body.as_deref()).ok_or_else(|| TemplateError::Invalid {
                what: what.to_string(),
                part: "URL (after expansion)",
                value: t.url.clone(),
            })
        };
        scope.request = Some(parts(&url)?);
        if let Some(sig) = &t.query_signature {
            let value = render_in(
                &sig.value,
                &scope,
                &format!("{what} query_signature"),
                Escape::Form,
            )?;
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{sep}{}={value}", sig.param);
            scope.request = Some(parts(&url)?);
        }
        // `{{env.NAME}}` may have changed the base since the config check.
        if let Some(why) = crate::urls::insecure_http(&url, vars.allow_insecure_http, what) {
            return Err(TemplateError::Insecure(why));
        }
        let mut headers = Vec::with_capacity(t.headers.len());
        for (name, value) in &t.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("header name", name))?;
            let rendered = render_in(value, &scope, &format!("{what} header {name}"), Escape::Raw)?;
            let rendered = zeroize::Zeroizing::new(rendered);
            // The rendered value may hold the key: never echo it.
            let mut value = HeaderValue::from_str(&rendered)
                .map_err(|_| invalid("header value (after expansion)", name))?;
            value.set_sensitive(true);
            headers.push((header, value));
        }
        Ok(Request {
            label: format!("{method} {}", t.url),
            method,
            url,
            headers,
            body,
        })
    }
}

/// A provider's answer. The body is kept for parsing, never for logging.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<Duration>,
}

// A management call's answer holds the new key.
impl Drop for Reply {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A call that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transport {
    #[error("no answer within {0} s (remediation.timeout_secs): the provider is slow or down; keysentry retries with backoff")]
    Timeout(u64),
    /// The request never left: safe to send again.
    #[error("cannot connect ({0})")]
    Connect(String),
    #[error("connection failed ({0})")]
    Other(String),
    /// The answer's body was cut off at [`MAX_BODY`].
    #[error("the answer is larger than 1 MiB, keysentry's cap on provider answers (it was cut off there); check that the URL points at the provider's API")]
    TooLarge,
    /// Refused before sending: plain http:// to a remote host.
    #[error("{0}")]
    Insecure(String),
}

/// The most of a provider's answer that is read. Answers keysentry parses
/// are small JSON documents; a larger one is not the provider's (a wrong
/// URL, a hostile endpoint) and reading it whole could exhaust memory.
pub const MAX_BODY: usize = 1 << 20;

impl Transport {
    /// True when the provider may have received and acted on the request.
    pub fn maybe_delivered(&self) -> bool {
        !matches!(self, Transport::Connect(_) | Transport::Insecure(_))
    }
}

/// The HTTP client for every provider call.
pub struct HttpClient {
    client: reqwest::Client,
    limiter: Arc<RateLimiter>,
    timeout: Duration,
    allow_insecure_http: bool,
}

impl HttpClient {
    /// `rate_per_provider` calls per second for each provider, except those
    /// in `own_rates` (`providers.<name>.rate_limit`).
    pub fn new(
        timeout: Duration,
        rate_per_provider: Option<f64>,
        own_rates: &std::collections::HashMap<String, f64>,
        allow_insecure_http: bool,
    ) -> Result<HttpClient, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // A redirect could carry the key's headers somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keysentry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpClient {
            client,
            limiter: RateLimiter::new(rate_per_provider, own_rates),
            timeout,
            allow_insecure_http,
        })
    }

    /// One attempt, after waiting for the provider's rate-limit slot.
    pub async fn send(&self, provider: &str, req: &Request) -> Result<Reply, Transport> {
        // Checked at config load too; this holds for every request however
        // its URL was built.
        if let Some(why) = crate::urls::insecure_http(&req.url, self.allow_insecure_http, provider)
        {
            return Err(Transport::Insecure(why));
        }
        self.limiter.acquire(provider).await;
        let mut builder = self.client.request(req.method.clone(), &req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let transport = |e| transport(e, self.timeout);
        let mut resp = builder.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(Transport::TooLarge);
        }
        // Read in chunks and stop at the cap: never more than MAX_BODY (plus
        // one chunk) in memory, whatever the server sends.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Transport::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }
}

fn transport(e: reqwest::Error, timeout: Duration) -> Transport {
    // The URL may hold a key (`?token=`): drop it before anything prints.
    let e = e.without_url();
    if e.is_timeout() {
        Transport::Timeout(timeout.as_secs())
    } else if e.is_connect() {
        Transport::Connect(root_cause(&e))
    } else {
        Transport::Other(root_cause(&e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn renders_placeholders_and_names_what_is_missing() {
        let secret = Secret::new("ghp_s3cr3t");
        let vars = Vars {
            secret: &secret,
            api_url: "http://127.0.0.1:9/",
            allow_insecure_http: false,
        };
        assert_eq!(
            render(
                r#"{{api_url}}/x?k={{ secret }}&h={{env.HOME}}"#,
                &vars,
                "t",
                Escape::Raw
            )
            .unwrap(),
            format!(
                "http://127.0.0.1:9/x?k=ghp_s3cr3t&h={}",
                std::env::var("HOME").unwrap()
            )
        );
        let err = render(
            "{{env.KEYSENTRY_TEST_UNSET_VAR}}",
            &vars,
            "rule x verify url",
            Escape::Url,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("KEYSENTRY_TEST_UNSET_VAR"),
            "{err}"
        );
        let err = render("{{token}}", &vars, "t", Escape::Raw).unwrap_err();
        assert!(matches!(err, TemplateError::Unknown { .. }));
        assert!(render("{{secret", &vars, "t", Escape::Raw).is_err());
        assert_eq!(env_refs("a {{env.A}} {{secret}} {{ env.B }}"), ["A", "B"]);
    }

    #[test]
    fn a_request_never_shows_its_key() {
        let secret = Secret::new("ghp_s3cr3t");
        let vars = Vars {
            secret: &secret,
            api_url: "https://api.github.com",
            allow_insecure_http: false,
        };
        let t = HttpTemplate {
            method: "post".into(),
            url: "{{api_url}}/credentials/revoke?t={{secret}}".into(),
            headers: BTreeMap::from([("authorization".into(), "token {{secret}}".into())]),
            body: Some(r#"{"credentials":["{{secret}}"]}"#.into()),
            live: vec![],
            dead: vec![],
            ok: vec![202],
            body_contains: None,
            new_key_pointer: None,
            ..Default::default()
        };
        let req = Request::from_template(&t, &vars, "rule github.pat revoke").unwrap();
        assert_eq!(
            req.url,
            "https://api.github.com/credentials/revoke?t=ghp_s3cr3t"
        );
        let shown = format!("{req:?} {}", req.label);
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn values_are_escaped_for_where_they_land() {
        let secret = Secret::new("a\"b&c=d/e f\n");
        let vars = Vars {
            secret: &secret,
            api_url: "https://api.example",
            allow_insecure_http: false,
        };
        let t = HttpTemplate {
            method: "POST".into(),
            url: "{{api_url}}/v?key={{secret}}&x=1".into(),
            headers: BTreeMap::new(),
            body: Some(r#"{"apiKey":"{{secret}}"}"#.into()),
            live: vec![],
            dead: vec![],
            ok: vec![],
            body_contains: None,
            new_key_pointer: None,
            ..Default::default()
        };
        let req = Request::from_template(&t, &vars, "t").unwrap();
        assert_eq!(
            req.url,
            "https://api.example/v?key=a%22b%26c%3Dd%2Fe%20f%0A&x=1"
        );
        let body: serde_json::Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["apiKey"], secret.expose());
        let form = HttpTemplate {
            headers: BTreeMap::from([(
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            )]),
            body: Some("token={{secret}}".into()),
            ..t
        };
        let req = Request::from_template(&form, &vars, "t").unwrap();
        assert_eq!(req.body.as_deref(), Some("token=a%22b%26c%3Dd%2Fe%20f%0A"));
    }

    #[test]
    fn a_template_that_expands_to_remote_plain_http_is_refused() {
        let secret = Secret::new("k");
        let mut vars = Vars {
            secret: &secret,
            api_url: "http://example.invalid",
            allow_insecure_http: false,
        };
        let t = HttpTemplate {
            method: "GET".into(),
            url: "{{api_url}}/v?t={{secret}}".into(),
            headers: BTreeMap::new(),
            body: None,
            live: vec![],
            dead: vec![],
            ok: vec![],
            body_contains: None,
            new_key_pointer: None,
            ..Default::default()
        };
        let err = Request::from_template(&t, &vars, "rule x verify").unwrap_err();
        assert!(err.to_string().contains("allow_insecure_http"), "{err}");
        vars.allow_insecure_http = true;
        assert!(Request::from_template(&t, &vars, "rule x verify").is_ok());
    }

    /// A chunked answer (no length given up front) is read only up to the
    /// cap: the connection is dropped there, not drained.
    #[tokio::test]
    async fn a_streamed_answer_is_cut_off_at_the_cap() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let total = 50usize << 20;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            s.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 << 10];
            let mut sent = 0;
            while sent < total {
                let size = format!("{:x}\r\n", chunk.len());
                let ok = s.write_all(size.as_bytes()).await.is_ok()
                    && s.write_all(&chunk).await.is_ok()
                    && s.write_all(b"\r\n").await.is_ok();
                if !ok {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let client = HttpClient::new(
            Duration::from_secs(20),
            None,
            &std::collections::HashMap::new(),
            false,
        )
        .unwrap();
        let req = Request::new(Method::GET, format!("http://{addr}/v3/tatum/version"));
        let err = client.send("tatum", &req).await.err().expect("cut off");
        assert_eq!(err, Transport::TooLarge);
        assert!(err.to_string().contains("1 MiB"), "{err}");
        drop(client);
        let sent = server.await.unwrap();
        assert!(sent < total / 2, "the answer was drained: {sent} bytes");
    }
}
