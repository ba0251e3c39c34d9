//! The generic JSON webhook and the Slack incoming webhook: one HTTP POST
//! each, differing only in the body.
//!
//! A webhook URL is often itself a credential (Slack's is), so errors name
//! where the URL came from (`SLACK_WEBHOOK_URL (alerts[1].url_env)`) and its
//! host, never the URL.

use super::render::{self, one_line};
use super::{Alert, AlertError, EnvLookup};
use reqwest::Url;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The `Alert` as JSON plus a `text` summary.
    Generic,
    /// `{"text": ..., "blocks": [...]}`, Slack's incoming-webhook body.
    Slack,
}

pub(crate) struct Webhook {
    url: Url,
    shape: Shape,
    /// Where the URL came from, for error messages.
    source: String,
}

impl Webhook {
    /// `at` is the channel's YAML path (`alerts[1]`).
    pub(crate) fn new(
        at: &str,
        shape: Shape,
        url: Option<&str>,
        url_env: Option<&str>,
        env: &EnvLookup<'_>,
        allow_insecure_http: bool,
    ) -> Result<Webhook, AlertError> {
        let (value, source) = match (url, url_env) {
            (Some(_), Some(_)) => {
                return Err(AlertError::Invalid {
                    at: at.to_string(),
                    reason: "both `url` and `url_env` are set; keep one".into(),
                })
            }
            (None, None) => {
                return Err(AlertError::Invalid {
                    at: at.to_string(),
                    reason: "no webhook URL; set `url` or `url_env` (the name of an \
                             environment variable holding the URL)"
                        .into(),
                })
            }
            (Some(url), None) => (url.to_string(), format!("{at}.url")),
            (None, Some(var)) => {
                let value = env(var).ok_or_else(|| AlertError::MissingEnv {
                    at: format!("{at}.url_env"),
                    var: var.to_string(),
                })?;
                (value, format!("{var} ({at}.url_env)"))
            }
        };
        let url = parse_http_url(&value).map_err(|reason| AlertError::Invalid {
            at: source.clone(),
            reason,
        })?;
        // The alert carries incident details; a Slack URL is itself a secret.
        if let Some(reason) = crate::urls::insecure_reason(url.as_str(), allow_insecure_http) {
            return Err(AlertError::Invalid { at: source, reason });
        }
        Ok(Webhook { url, shape, source })
    }

    pub(crate) fn body(&self, alert: &Alert) -> Value {
        match self.shape {
            Shape::Generic => generic_payload(alert),
            Shape::Slack => slack_payload(alert),
        }
    }

    /// On failure, says what happened and what to change; never the URL.
    pub(crate) async fn deliver(
        &self,
        http: &reqwest::Client,
        alert: &Alert,
    ) -> Result<(), String> {
        let host = host_port(&self.url);
        let response = http
            .post(self.url.clone())
            .json(&self.body(alert))
            .send()
            .await
            .map_err(|e| {
                let connect = e.is_connect();
                let cause = error_chain(&e.without_url());
                if connect {
                    format!(
                        "cannot connect to {host}: {cause}; check the host and port in {} \
                         and that the receiver is running",
                        self.source
                    )
                } else {
                    format!("request to {host} failed: {cause}; check {}", self.source)
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!(
            "{host} answered {status}{}; {}",
            snippet(&text),
            status_hint(status.as_u16(), &self.source)
        ))
    }
}

/// The generic webhook body: every `Alert` field, plus `text`.
pub fn generic_payload(alert: &Alert) -> Value {
    let mut body = serde_json::to_value(alert).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("text".into(), Value::String(render::summary(alert)));
    }
    body
}

// Slack's documented limits: header text 150 characters, section text 3000,
// section field 2000.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;

/// Slack's incoming-webhook body: a `text` fallback for notifications and
/// `blocks` with the same facts as the email.
pub fn slack_payload(alert: &Alert) -> Value {
    let fields: Vec<Value> = render::facts(alert)
        .into_iter()
        .map(|(label, value)| {
            let text = format!("*{label}*\n{}", slack_code(&value));
            json!({"type": "mrkdwn", "text": truncate(&text, SLACK_FIELD_MAX)})
        })
        .collect();
    let locations = alert
        .locations
        .iter()
        .map(|l| format!("• {}", slack_code(l)));
    let actions = alert.actions.iter().map(|a| {
        format!(
            "• {}: {}",
            slack_code(&a.action),
            slack_escape(&one_line(&a.result))
        )
    });
    let steps = alert
        .next_steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {}", i + 1, slack_escape(&one_line(s))));
    json!({
        "text": slack_escape(&render::summary(alert)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text",
                "text": truncate(&render::headline(alert), SLACK_HEADER_MAX)}},
            {"type": "section", "fields": fields},
            section("Seen at", locations, "• none recorded"),
            section("What keysentry did", actions, "• nothing yet"),
            section("Next steps", steps, "None: keysentry has handled this incident."),
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": slack_escape(&render::footer(alert))}]},
        ],
    })
}

/// A mrkdwn section of lines under a bold title, cut to Slack's limit with a
/// count of what was left out.
fn section(title: &str, lines: impl ExactSizeIterator<Item = String>, empty: &str) -> Value {
    let total = lines.len();
    let mut text = format!("*{title}*");
    if total == 0 {
        text.push('\n');
        text.push_str(empty);
    }
    let reserve = 40;
    for (shown, line) in lines.enumerate() {
        if shown == render::MAX_LISTED || text.len() + line.len() + 1 > SLACK_SECTION_MAX - reserve
        {
            text.push_str(&format!("\n… and {} more", total - shown));
            break;
        }
        text.push('\n');
        text.push_str(&line);
    }
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Slack reads `&`, `<` and `>` as markup (links, mentions); everything else
/// is literal.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack has no escape for a backtick inside inline code: show a look-alike.
fn slack_code(s: &str) -> String {
    format!("`{}`", slack_escape(&one_line(s)).replace('`', "ˋ"))
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars - 1).collect();
    out.push('…');
    out
}

pub(crate) fn parse_http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err("not an http:// or https:// URL".into()),
    }
}

pub(crate) fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// An error and its causes, `a: b: c`, which is where reqwest and hyper keep
/// the useful part (`Connection refused`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// The start of a response body, for a receiver's own explanation
/// (`no_service`, `invalid_payload`).
pub(crate) fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(" ({})", truncate(&one_line(body), 200))
    }
}

pub(crate) fn status_hint(status: u16, source: &str) -> String {
    match status {
        300..=399 => format!("the receiver redirects; put the final URL in {source}"),
        401 | 403 => format!("the receiver refused the credentials in {source}; check them"),
        404 | 410 => format!("no webhook at that URL any more; create one and update {source}"),
        400 | 422 => format!(
            "the receiver rejected the body; check that {source} is the right kind of webhook"
        ),
        429 => "the receiver is rate limiting; wait, or send fewer alerts to it".into(),
        _ => "the receiver failed; check its logs and status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_escapes_markup_and_backticks() {
        assert_eq!(
            slack_code("<!channel> `x` & y"),
            "`&lt;!channel&gt; ˋxˋ &amp; y`"
        );
    }

    #[test]
    fn long_sections_are_cut_under_slacks_limit() {
        let lines: Vec<String> = (0..40).map(|i| format!("{i:0>100}")).collect();
        let v = section("Seen at", lines.into_iter(), "none");
        let text = v["text"]["text"].as_str().unwrap_or_default();
        assert!(text.len() <= SLACK_SECTION_MAX, "{}", text.len());
        assert!(text.ends_with("more"), "{text}");
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(parse_http_url("https://hooks.example.internal/x").is_ok());
        assert!(parse_http_url("ftp://hooks.example.internal/x").is_err());
        assert!(parse_http_url("hooks.example.internal/x").is_err());
    }
}
