//! The two admin APIs as calls: list every key the admin key can see (all
//! pages; for OpenAI, every project's keys) and delete or disable one by
//! id.
//!
//! The admin key is read from the configured variable at each pass and goes
//! only into a header; ids and page cursors from the answers are untrusted:
//! only plain identifiers are taken, percent-encoded into the URL.

use super::super::ctx::{Accept, Ctx};
use super::super::http_action::{Reply, Request, Vars};
use super::super::template_call::api_url;
use super::super::StepError;
use super::hint;
use crate::config::Config;
use crate::rules::HttpTemplate;
use crate::scan::Secret;
use serde_json::Value;
use std::collections::BTreeMap;

/// List pages one search reads at most, over every list it walks: an
/// organisation with more keys than this is searched by hand.
const MAX_PAGES: usize = 200;

/// The page size asked for (both APIs' documented maximum is 100 or more).
const LIMIT: u32 = 100;

/// The longest id or cursor taken (theirs are far shorter).
const MAX_ID: usize = 128;

/// Which admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAi,
    Anthropic,
}

/// Where a leaked key is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    /// OpenAI: every project's API keys (project, service-account and
    /// legacy user keys).
    Projects,
    /// OpenAI: the organisation's admin keys.
    Admins,
    /// Anthropic: the organisation's API keys.
    Organization,
}

/// A listed key whose redacted form matches the leaked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    /// `None` when the listed id is not a plain identifier: such a match
    /// cannot be acted on, but it still counts (the owner must look).
    pub id: Option<String>,
    pub name: String,
    /// The OpenAI project it belongs to: (id, name).
    pub project: Option<(String, String)>,
}

impl Candidate {
    /// How the owner recognises it: id, name, project. Never the key.
    pub fn describe(&self) -> String {
        let own = self.id.as_deref().unwrap_or("(no usable id)");
        match &self.project {
            Some((id, name)) => format!("{own} \"{}\" in project {id} \"{name}\"", self.name),
            None => format!("{own} \"{}\"", self.name),
        }
    }
}

/// What a search found.
pub(super) struct Found {
    pub matches: Vec<Candidate>,
    /// Keys looked at.
    pub listed: usize,
}

impl Found {
    /// Counts `items` and keeps those whose redacted form (at `field`)
    /// matches `key`. A key a list marks other than active (Anthropic's
    /// inactive or archived) is not a candidate: it cannot be used.
    fn take(
        &mut self,
        items: &[Value],
        field: &str,
        project: Option<(String, String)>,
        key: &Secret,
    ) {
        for item in items {
            self.listed += 1;
            let hint = item.get(field).and_then(Value::as_str).unwrap_or_default();
            let active = item
                .get("status")
                .and_then(Value::as_str)
                .map_or(true, |s| s == "active");
            if active && hint::matches(hint, key.expose()) {
                self.matches.push(Candidate {
                    id: identifier(item.get("id")),
                    name: display_name(item.get("name")),
                    project: project.clone(),
                });
            }
        }
    }
}

impl Api {
    pub const fn provider(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Api::OpenAi => "OpenAI",
            Api::Anthropic => "Anthropic",
        }
    }

    /// What an admin key looks like and where the owner makes one.
    pub fn admin_key_help(self) -> &'static str {
        match self {
            Api::OpenAi => "an admin key (sk-admin-…, platform.openai.com → Settings → Organization → Admin keys)",
            Api::Anthropic => "an Admin API key (sk-ant-admin01-…, console.anthropic.com → Settings → Admin keys)",
        }
    }

    /// Where the leaked key is listed; `None` when the admin API cannot
    /// manage it (Anthropic admin keys and Claude OAuth tokens).
    pub(super) fn listing(self, rule_id: &str, key: &Secret) -> Option<Listing> {
        match self {
            Api::OpenAi if key.expose().starts_with("sk-admin-") => Some(Listing::Admins),
            Api::OpenAi => Some(Listing::Projects),
            Api::Anthropic if rule_id == "anthropic.api-key" => Some(Listing::Organization),
            Api::Anthropic => None,
        }
    }

    /// The journal step of the change.
    pub fn change_step(self) -> &'static str {
        match self {
            Api::OpenAi => "delete-key",
            Api::Anthropic => "disable-key",
        }
    }

    /// What the change did, for notes and alerts.
    pub fn changed(self) -> &'static str {
        match self {
            Api::OpenAi => "deleted",
            Api::Anthropic => "disabled (set inactive)",
        }
    }

    fn headers(self, write: bool) -> BTreeMap<String, String> {
        let mut h = BTreeMap::new();
        match self {
            Api::OpenAi => {
                h.insert("authorization".into(), "Bearer {{secret}}".into());
            }
            Api::Anthropic => {
                h.insert("x-api-key".into(), "{{secret}}".into());
                h.insert("anthropic-version".into(), "2023-06-01".into());
            }
        }
        if write {
            h.insert("content-type".into(), "application/json".into());
        }
        h
    }
}

/// An identifier from an answer, when it is plain (`[A-Za-z0-9._:~-]`).
fn identifier(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?;
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:~-".contains(&b));
    (!s.is_empty() && s.len() <= MAX_ID && plain).then(|| s.to_string())
}

/// A name from an answer, as shown to the owner: printable, short.
fn display_name(v: Option<&Value>) -> String {
    v.and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(64)
        .collect()
}

/// The admin key and what calls with it need.
pub(super) struct Admin<'c> {
    pub api: Api,
    pub config: &'c Config,
    pub key: Secret,
    /// The variable it came from, for messages.
    pub env: String,
    pages_left: usize,
}

impl<'c> Admin<'c> {
    pub fn new(api: Api, config: &'c Config, key: Secret, env: String) -> Admin<'c> {
        Admin {
            api,
            config,
            key,
            env,
            pages_left: MAX_PAGES,
        }
    }

    /// The message of a refused admin key (401/403).
    pub fn refused(&self, ctx: &Ctx<'_>, step: &str, status: u16) -> StepError {
        ctx.provider_error(
            step,
            format!(
                "the admin key in ${} (providers.{}.admin_key_env) was refused ({status}): set that variable to {} with permission to manage API keys",
                self.env,
                self.api.provider(),
                self.api.admin_key_help()
            ),
        )
    }

    async fn send(
        &self,
        ctx: &mut Ctx<'_>,
        step: &str,
        t: &HttpTemplate,
        values: &BTreeMap<String, String>,
        accept: Accept<'_>,
    ) -> Result<Reply, StepError> {
        let api = api_url(self.config, self.api.provider());
        let vars = Vars {
            secret: &self.key,
            api_url: &api,
            allow_insecure_http: self.config.allow_insecure_http,
        };
        let what = format!("{} admin API {step}", self.api.title());
        let req = Request::from_template_with(t, &vars, values, &what)?;
        ctx.call(step, &req, accept).await
    }

    /// Every entry of a paged list (`data`, `has_more`, `last_id`; the next
    /// page is asked for with `cursor`).
    async fn list(
        &mut self,
        ctx: &mut Ctx<'_>,
        step: &str,
        url: &str,
        cursor: &str,
        mut values: BTreeMap<String, String>,
    ) -> Result<Vec<Value>, StepError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            if self.pages_left == 0 {
                return Err(ctx.provider_error(
                    step,
                    format!(
                        "the lists run past {MAX_PAGES} pages; find and remove the key in {}'s console",
                        self.api.title()
                    ),
                ));
            }
            self.pages_left -= 1;
            let mut t = HttpTemplate {
                method: "GET".into(),
                url: url.to_string(),
                headers: self.api.headers(false),
                ..HttpTemplate::default()
            };
            if let Some(a) = &after {
                t.url.push_str(&format!("&{cursor}={{{{after}}}}"));
                values.insert("after".into(), a.clone());
            }
            let reply = self.send(ctx, step, &t, &values, Accept::READ).await?;
            match reply.status {
                200..=299 => {}
                401 | 403 => return Err(self.refused(ctx, step, reply.status)),
                s => return Err(ctx.provider_error(step, format!("answered {s}"))),
            }
            let json = reply.json().unwrap_or(Value::Null);
            let Some(data) = json.get("data").and_then(Value::as_array) else {
                return Err(ctx.provider_error(step, "the answer has no `data` list"));
            };
            items.extend(data.iter().cloned());
            if json.get("has_more").and_then(Value::as_bool) != Some(true) {
                return Ok(items);
            }
            let next = identifier(json.get("last_id"));
            if next.is_none() || next == after {
                return Err(ctx.provider_error(
                    step,
                    "the answer says there is more but gives no new `last_id` to continue from",
                ));
            }
            after = next;
        }
    }

    /// The listed keys whose redacted form matches `key`.
    pub async fn search(
        &mut self,
        ctx: &mut Ctx<'_>,
        listing: Listing,
        key: &Secret,
    ) -> Result<Found, StepError> {
        let limit = format!("limit={LIMIT}");
        let mut found = Found {
            matches: Vec::new(),
            listed: 0,
        };
        match listing {
            Listing::Projects => {
                let url = format!("{{{{api_url}}}}/v1/organization/projects?{limit}");
                let projects = self
                    .list(ctx, "list-projects", &url, "after", BTreeMap::new())
                    .await?;
                for p in &projects {
                    if p.get("status").and_then(Value::as_str) == Some("archived") {
                        continue;
                    }
                    let Some(id) = identifier(p.get("id")) else {
                        return Err(ctx.provider_error(
                            "list-projects",
                            "a project has no plain identifier as its id",
                        ));
                    };
                    let url = format!(
                        "{{{{api_url}}}}/v1/organization/projects/{{{{project_id}}}}/api_keys?{limit}"
                    );
                    let values = BTreeMap::from([("project_id".to_string(), id.clone())]);
                    let keys = self.list(ctx, "list-keys", &url, "after", values).await?;
                    let project = Some((id, display_name(p.get("name"))));
                    found.take(&keys, "redacted_value", project, key);
                }
            }
            Listing::Admins => {
                let url = format!("{{{{api_url}}}}/v1/organization/admin_api_keys?{limit}");
                let keys = self
                    .list(ctx, "list-admin-keys", &url, "after", BTreeMap::new())
                    .await?;
                found.take(&keys, "redacted_value", None, key);
            }
            Listing::Organization => {
                let url =
                    format!("{{{{api_url}}}}/v1/organizations/api_keys?{limit}&status=active");
                let keys = self
                    .list(ctx, "list-keys", &url, "after_id", BTreeMap::new())
                    .await?;
                found.take(&keys, "partial_key_hint", None, key);
            }
        }
        Ok(found)
    }

    /// One attempt at deleting (OpenAI) or disabling (Anthropic) `c`,
    /// journaled as a state-changing call.
    pub async fn change(
        &self,
        ctx: &mut Ctx<'_>,
        listing: Listing,
        c: &Candidate,
    ) -> Result<Reply, StepError> {
        let Some(id) = &c.id else {
            return Err(ctx.provider_error(self.api.change_step(), "the key has no usable id"));
        };
        let mut values = BTreeMap::from([("key_id".to_string(), id.clone())]);
        let (method, url, body) = match listing {
            Listing::Projects => {
                let Some((project, _)) = &c.project else {
                    return Err(ctx.provider_error(self.api.change_step(), "no project"));
                };
                values.insert("project_id".into(), project.clone());
                (
                    "DELETE",
                    "{{api_url}}/v1/organization/projects/{{project_id}}/api_keys/{{key_id}}",
                    None,
                )
            }
            Listing::Admins => (
                "DELETE",
                "{{api_url}}/v1/organization/admin_api_keys/{{key_id}}",
                None,
            ),
            Listing::Organization => (
                "POST",
                "{{api_url}}/v1/organizations/api_keys/{{key_id}}",
                Some(r#"{"status":"inactive"}"#.to_string()),
            ),
        };
        let t = HttpTemplate {
            method: method.into(),
            url: url.into(),
            headers: self.api.headers(body.is_some()),
            body,
            ..HttpTemplate::default()
        };
        self.send(ctx, self.api.change_step(), &t, &values, Accept::CHANGE)
            .await
    }

    /// Whether a 2xx answer to the change says it happened.
    pub fn change_confirmed(&self, reply: &Reply) -> bool {
        let json = reply.json().unwrap_or(Value::Null);
        match self.api {
            Api::OpenAi => json.get("deleted").and_then(Value::as_bool) == Some(true),
            Api::Anthropic => json.get("status").and_then(Value::as_str) == Some("inactive"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_plain_ids_are_taken_and_names_are_tamed() {
        assert_eq!(
            identifier(Some(&json!("key_abc-1"))).as_deref(),
            Some("key_abc-1")
        );
        for bad in [
            json!("../x"),
            json!("a/b"),
            json!(""),
            json!(7),
            json!("a b"),
        ] {
            assert_eq!(identifier(Some(&bad)), None, "{bad}");
        }
        assert_eq!(display_name(Some(&json!("ci \"bot\"\n"))), "ci bot");
    }

    #[test]
    fn which_keys_each_api_can_manage() {
        let openai = Secret::new("sk-proj-abc");
        let admin = Secret::new("sk-admin-abc");
        let ant = Secret::new("sk-ant-api03-abc");
        assert_eq!(
            Api::OpenAi.listing("openai.project-key", &openai),
            Some(Listing::Projects)
        );
        assert_eq!(
            Api::OpenAi.listing("openai.api-key", &admin),
            Some(Listing::Admins)
        );
        assert_eq!(
            Api::Anthropic.listing("anthropic.api-key", &ant),
            Some(Listing::Organization)
        );
        assert_eq!(Api::Anthropic.listing("anthropic.admin-key", &ant), None);
    }
}
