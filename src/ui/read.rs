//! The reads the pages and the JSON API share: the list's query and page,
//! one incident, the sources' health and counters, where a location links.

use super::html::query_value;
use super::{blocking, UiState, PAGE_SIZE};
use crate::store::{IncidentFilter, IncidentList, IncidentView, LocationRow, State};
use std::collections::{BTreeMap, HashMap};

/// The list's query: filters, order and page, as the page's form and the
/// API take them (`state`, `provider`, `owner`, `source`, `node`,
/// `sort=age|-age`, `page` from 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ListQuery {
    pub filter: IncidentFilter,
    pub node: Option<String>,
    pub page: usize,
    /// The query as given (empty fields dropped), for the paging links.
    pub raw: Vec<(String, String)>,
}

impl ListQuery {
    pub(super) fn parse(q: &HashMap<String, String>) -> Result<ListQuery, String> {
        let get = |k: &str| {
            q.get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let state = get("state")
            .map(|s| s.parse::<State>())
            .transpose()
            .map_err(|e| format!("state: {e}"))?;
        let oldest_first = match get("sort").as_deref() {
            None | Some("age") => false,
            Some("-age") => true,
            Some(other) => {
                return Err(format!(
                    "sort: `{}` is not an order; use `age` (newest first) or `-age` (oldest first)",
                    other.chars().take(32).collect::<String>()
                ))
            }
        };
        let page = match get("page") {
            None => 1,
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=1_000_000).contains(p))
                .ok_or("page: give a page number from 1")?,
        };
        let mut raw: Vec<(String, String)> =
            ["state", "provider", "owner", "source", "node", "sort"]
                .iter()
                .filter_map(|k| get(k).map(|v| (k.to_string(), v)))
                .collect();
        raw.sort();
        Ok(ListQuery {
            filter: IncidentFilter {
                state,
                provider: get("provider"),
                owner: get("owner"),
                source: get("source"),
                node: get("node"),
                oldest_first,
                human_first: true,
            },
            node: get("node"),
            page,
            raw,
        })
    }

    pub(super) fn href(&self, page: usize) -> String {
        let mut q: Vec<String> = self
            .raw
            .iter()
            .map(|(k, v)| format!("{k}={}", query_value(v)))
            .collect();
        q.push(format!("page={page}"));
        format!("/ui/?{}", q.join("&"))
    }

    pub(super) fn value(&self, key: &str) -> &str {
        self.raw
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The list and the state counts for `q`: one store read for page and API.
pub(super) async fn read_list(
    state: &UiState,
    q: ListQuery,
) -> Option<Result<(IncidentList, std::collections::BTreeMap<&'static str, u64>), String>> {
    let st = state.clone();
    blocking(move || {
        let counts = st.0.store.state_counts();
        let page = crate::store::Page {
            offset: (q.page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
        };
        let list =
            st.0.store
                .incident_list(&q.filter, page)
                .map_err(|e| e.to_string())?;
        Ok((list, counts))
    })
    .await
}

/// What a URL path segment must not hold as is.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/');

/// Where a location can be opened: GitHub's page of the file at the commit.
pub(super) fn location_link(github_web: &str, l: &LocationRow) -> Option<String> {
    let (repo, commit) = (l.repo.as_deref()?, l.commit.as_deref()?);
    let safe = |s: &str| !s.is_empty() && !s.contains("..") && !s.starts_with('/');
    if l.source != "github" || !safe(repo) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let path: Vec<String> = l
        .path
        .split('/')
        .map(|seg| percent_encoding::utf8_percent_encode(seg, PATH_SEGMENT).to_string())
        .collect();
    Some(format!(
        "{github_web}/{repo}/blob/{commit}/{}#L{}",
        path.join("/"),
        l.line
    ))
}

pub(super) async fn read_incident(
    state: &UiState,
    id: i64,
) -> Option<Result<Option<IncidentView>, String>> {
    let st = state.clone();
    blocking(move || st.0.store.incident_view(id).map_err(|e| e.to_string())).await
}

/// Whether the page offers the hand-over form: a Tatum incident waiting for
/// its owner's new key.
pub(super) fn offers_hand_over(v: &IncidentView) -> bool {
    v.incident.provider == "tatum" && v.incident.state == State::WaitingManual
}

/// One row of the sources view: a component's health and its counters.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Component {
    pub name: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub bytes: u64,
    pub lines: u64,
    pub errors: u64,
    pub polls: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct SourcesView {
    /// `/healthz`'s verdict: `ok`, `degraded` or `stuck`.
    pub status: &'static str,
    pub components: Vec<Component>,
    /// `/metrics`' `keysentry_incidents`.
    pub incidents: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_deliveries: Option<BTreeMap<String, u64>>,
}

/// What `/healthz` and `/metrics` say of the sources and components.
pub(super) async fn sources_view(state: &UiState) -> SourcesView {
    let app = &state.0.app;
    let extra = app.components.as_ref().map(|f| f()).unwrap_or_default();
    let health = app.metrics.health(extra);
    let counts: HashMap<String, crate::metrics::SourceCounts> = app
        .metrics
        .source_counts()
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let components = health
        .components
        .iter()
        .map(|(name, c)| {
            let n = counts.get(name);
            Component {
                name: name.clone(),
                status: c.status,
                reason: c.reason.clone(),
                bytes: n.map_or(0, |n| n.bytes),
                lines: n.map_or(0, |n| n.lines),
                errors: n.map_or(0, |n| n.errors),
                polls: n.map_or(0, |n| n.polls),
            }
        })
        .collect();
    let store = state.0.store.clone();
    let webhook = app.webhook;
    let (incidents, webhook_deliveries) = blocking(move || {
        (
            store.incident_counts(),
            webhook.then(|| store.webhook_delivery_counts()),
        )
    })
    .await
    .unwrap_or_default();
    SourcesView {
        status: health.status,
        components,
        incidents,
        webhook_deliveries,
    }
}
