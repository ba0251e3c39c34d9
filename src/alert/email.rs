//! Email over SMTP (lettre): a plain-text message to the owner, or to the
//! channel's `to` list when the owner has no email address.

use super::webhook::error_chain;
use super::{render, Alert, AlertError};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub(crate) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    fallback: Vec<Mailbox>,
    /// `host:port` of the server, for error messages: the `smtp` URL may
    /// carry a password.
    server: String,
    /// The channel's YAML path (`alerts[2]`).
    at: String,
}

impl Email {
    pub(crate) fn new(
        at: &str,
        smtp: &str,
        from: &str,
        to: &[String],
        timeout: Duration,
    ) -> Result<Email, AlertError> {
        let invalid = |field: &str, reason: String| AlertError::Invalid {
            at: format!("{at}.{field}"),
            reason,
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp)
            .map_err(|e| {
                invalid(
                    "smtp",
                    format!(
                        "not a usable SMTP URL ({}); write e.g. smtp://host:25, \
                         smtp://host:587?tls=required or smtps://user:pass@host:465",
                        error_chain(&e)
                    ),
                )
            })?
            .timeout(Some(timeout))
            .build();
        let from = from.parse::<Mailbox>().map_err(|e| {
            invalid(
                "from",
                format!("{from:?} is not an email address ({e}); write e.g. keysentry@example.com"),
            )
        })?;
        let fallback = to
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                addr.parse::<Mailbox>().map_err(|e| {
                    invalid(
                        &format!("to[{i}]"),
                        format!("{addr:?} is not an email address ({e})"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let server = reqwest::Url::parse(smtp)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_string();
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| "the SMTP server".into());
        Ok(Email {
            transport,
            from,
            fallback,
            server,
            at: at.to_string(),
        })
    }

    /// The owner when it is an email address, else the fallback list.
    fn recipients(&self, owner: Option<&str>) -> Result<Vec<Mailbox>, String> {
        if let Some(mailbox) = owner.and_then(|o| o.parse::<Mailbox>().ok()) {
            return Ok(vec![mailbox]);
        }
        if self.fallback.is_empty() {
            let who = match owner {
                Some(o) => format!(
                    "the owner {:?} is not an email address",
                    render::one_line(o)
                ),
                None => "the incident has no owner".into(),
            };
            return Err(format!(
                "no recipient: {who} and {}.to is empty; add fallback addresses under `to:` \
                 or an `owners` entry (or `default_owner`) with an email",
                self.at
            ));
        }
        Ok(self.fallback.clone())
    }

    pub(crate) fn message(&self, alert: &Alert) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(render::subject(alert));
        for to in self.recipients(alert.owner.as_deref())? {
            builder = builder.to(to);
        }
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(render::text_body(alert))
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    pub(crate) async fn deliver(&self, alert: &Alert) -> Result<(), String> {
        let message = self.message(alert)?;
        self.transport.send(message).await.map(drop).map_err(|e| {
            let cause = error_chain(&e);
            if e.is_permanent() {
                format!(
                    "{} refused the message: {cause}; check {}.from and the recipients \
                     with the mail server's administrator",
                    self.server, self.at
                )
            } else {
                format!(
                    "sending through {} failed: {cause}; check {}.smtp (host, port, TLS, \
                     credentials) and that the server is running",
                    self.server, self.at
                )
            }
        })
    }
}
