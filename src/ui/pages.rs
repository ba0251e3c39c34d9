//! The dashboard's pages: the incident list, one incident, the sources, the
//! statistics. Each reads the same view as its `/ui/api/` twin.

use super::auth::{self, Who};
use super::html::{self, csrf_field, escape, page};
use super::read::{self, ListQuery};
use super::{UiState, PAGE_SIZE};
use crate::remediate::incident_details;
use crate::store::{IncidentView, State};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write;

pub(super) fn store_error(who: &Who, e: &str) -> Response {
    html::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        who.csrf(),
        "The store cannot be read",
        e,
        None,
    )
}

pub(super) async fn to_list() -> Response {
    auth::redirect("/ui/")
}

pub(super) async fn list(
    Extract(state): Extract<UiState>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let who = match auth::require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let q = match ListQuery::parse(&raw) {
        Ok(q) => q,
        Err(e) => {
            return html::error(
                StatusCode::BAD_REQUEST,
                who.csrf(),
                "Bad filter",
                &e,
                Some("/ui/"),
            )
        }
    };
    let (list, counts) = match read::read_list(&state, q.clone()).await {
        Some(Ok(v)) => v,
        Some(Err(e)) => return store_error(&who, &e),
        None => return store_error(&who, "the store task failed"),
    };
    let mut b = String::with_capacity(64 * 1024);
    b.push_str("<h1>Incidents</h1>\n<h2 id=\"counts-heading\">Incidents per state</h2>\n<ul id=\"counts\" aria-labelledby=\"counts-heading\">\n");
    for (s, n) in &counts {
        let _ = writeln!(
            b,
            "<li data-state=\"{s}\"><a href=\"/ui/?state={s}\">{s}</a>: <span class=\"count\">{n}</span></li>"
        );
    }
    b.push_str("</ul>\n");
    filters(&mut b, &q, &state.0.settings.node);
    let _ = writeln!(
        b,
        "<h2>Matching incidents</h2>\n<p id=\"total\">{} matching; those needing a person first.</p>",
        list.total
    );
    b.push_str(
        "<table id=\"incidents\">\n<caption>Incidents, those needing a person first</caption>\n<thead><tr>\
         <th scope=\"col\">ID</th><th scope=\"col\">State</th><th scope=\"col\">Provider</th>\
         <th scope=\"col\">Key</th><th scope=\"col\">Fingerprint</th><th scope=\"col\">First seen</th>\
         <th scope=\"col\">Where</th><th scope=\"col\">Owner</th></tr></thead>\n<tbody>\n",
    );
    for s in &list.incidents {
        let r = &s.row;
        let place = match s.locations.split_first() {
            None => "-".to_string(),
            Some((first, [])) => escape(first),
            Some((first, rest)) => format!("{} +{}", escape(first), rest.len()),
        };
        let _ = writeln!(
            b,
            "<tr data-id=\"{id}\"{human}><th scope=\"row\"><a href=\"/ui/incidents/{id}\">{id}</a></th>\
             <td class=\"state\">{state}</td><td>{provider}</td><td><code>{redacted}</code></td>\
             <td><code>{fp}</code></td><td>{created}</td><td>{place}</td><td>{owner}</td></tr>",
            id = r.id,
            human = if s.needs_a_human { " class=\"human\"" } else { "" },
            state = escape(r.state.as_str()),
            provider = escape(&r.provider),
            redacted = escape(&r.redacted),
            fp = escape(r.fingerprint.short()),
            created = escape(&r.created_at),
            owner = escape(r.owner.as_deref().unwrap_or("-")),
        );
    }
    b.push_str("</tbody>\n</table>\n");
    let pages = list.total.div_ceil(PAGE_SIZE as u64).max(1) as usize;
    b.push_str("<nav id=\"paging\" aria-label=\"Pages\">\n");
    if q.page > 1 {
        let _ = writeln!(
            b,
            "<a rel=\"prev\" href=\"{}\">Previous page</a>",
            escape(&q.href(q.page - 1))
        );
    }
    let _ = writeln!(b, "<span>Page {} of {pages}</span>", q.page);
    if q.page < pages {
        let _ = writeln!(
            b,
            "<a rel=\"next\" href=\"{}\">Next page</a>",
            escape(&q.href(q.page + 1))
        );
    }
    b.push_str("</nav>\n");
    let flash = state.0.sessions.take_flash(&who);
    Html(page("Incidents", who.csrf(), flash.as_deref(), &b)).into_response()
}

fn filters(b: &mut String, q: &ListQuery, node: &str) {
    b.push_str("<form id=\"filters\" method=\"get\" action=\"/ui/\">\n<fieldset>\n<legend>Filter and sort</legend>\n");
    b.push_str("<label for=\"f-state\">State</label>\n<select id=\"f-state\" name=\"state\">\n<option value=\"\">any</option>\n");
    for s in State::ALL {
        let sel = if q.value("state") == s.as_str() {
            " selected"
        } else {
            ""
        };
        let _ = writeln!(b, "<option value=\"{s}\"{sel}>{s}</option>", s = s.as_str());
    }
    b.push_str("</select>\n");
    for (key, label) in [("provider", "Provider"), ("owner", "Owner")] {
        let _ = writeln!(
            b,
            "<label for=\"f-{key}\">{label}</label>\n<input id=\"f-{key}\" name=\"{key}\" value=\"{}\">",
            escape(q.value(key))
        );
    }
    b.push_str("<label for=\"f-source\">Source</label>\n<select id=\"f-source\" name=\"source\">\n<option value=\"\">any</option>\n");
    for s in ["file", "git", "log", "github", "stdin", "syslog", "ingest"] {
        let sel = if q.value("source") == s {
            " selected"
        } else {
            ""
        };
        let _ = writeln!(b, "<option value=\"{s}\"{sel}>{s}</option>");
    }
    b.push_str("</select>\n");
    let _ = writeln!(
        b,
        "<label for=\"f-node\">Node</label>\n<input id=\"f-node\" name=\"node\" value=\"{}\" placeholder=\"{}\">",
        escape(q.value("node")),
        escape(node)
    );
    let oldest = q.filter.oldest_first;
    let _ = writeln!(
        b,
        "<label for=\"f-sort\">Order</label>\n<select id=\"f-sort\" name=\"sort\">\n\
         <option value=\"age\"{}>newest first</option>\n<option value=\"-age\"{}>oldest first</option>\n</select>",
        if oldest { "" } else { " selected" },
        if oldest { " selected" } else { "" }
    );
    b.push_str("<button type=\"submit\">Apply</button>\n</fieldset>\n</form>\n");
}

pub(super) async fn incident(
    Extract(state): Extract<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let who = match auth::require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return html::not_found(
            who.csrf(),
            "Incident ids are numbers; the list links to each.",
        );
    };
    let view = match read::read_incident(&state, id).await {
        Some(Ok(Some(v))) => v,
        Some(Ok(None)) => {
            return html::not_found(who.csrf(), &format!("There is no incident {id}."))
        }
        Some(Err(e)) => return store_error(&who, &e),
        None => return store_error(&who, "the store task failed"),
    };
    let b = incident_body(&state, &who, &view);
    let flash = state.0.sessions.take_flash(&who);
    Html(page(
        &format!("Incident {id}"),
        who.csrf(),
        flash.as_deref(),
        &b,
    ))
    .into_response()
}

fn incident_body(state: &UiState, who: &Who, v: &IncidentView) -> String {
    let r = &v.incident;
    let mut b = String::with_capacity(16 * 1024);
    let _ = writeln!(
        b,
        "<h1>Incident {id}: {rule}</h1>\n<dl id=\"facts\">\n\
         <dt>State</dt><dd><span id=\"state\">{state}</span>{human}</dd>\n\
         <dt>Key</dt><dd><code>{redacted}</code></dd>\n<dt>Fingerprint</dt><dd><code>{fp}</code></dd>\n\
         <dt>Rule</dt><dd>{rule} ({rule_name})</dd>\n<dt>Provider</dt><dd>{provider}</dd>\n\
         <dt>Owner</dt><dd id=\"owner\">{owner}</dd>\n<dt>Policy applied</dt><dd id=\"policy\">{policy}</dd>",
        id = r.id,
        rule = escape(&r.rule_id),
        state = escape(r.state.as_str()),
        human = if crate::store::needs_a_human(r.state) { " <strong>(needs a person)</strong>" } else { "" },
        redacted = escape(&r.redacted),
        fp = escape(r.fingerprint.as_str()),
        rule_name = escape(&r.rule_name),
        provider = escape(&r.provider),
        owner = escape(r.owner.as_deref().unwrap_or("none known")),
        policy = escape(r.action.as_deref().unwrap_or("not chosen yet")),
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(
            b,
            "<dt>Reason</dt><dd id=\"reason\">{}</dd>",
            escape(reason)
        );
    }
    for (label, value) in incident_details(r) {
        let _ = writeln!(b, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(&value));
    }
    if let Some(at) = &v.next_check {
        let _ = writeln!(b, "<dt>Next check</dt><dd>{}</dd>", escape(at));
    }
    let _ = writeln!(
        b,
        "<dt>First seen</dt><dd>{}</dd>\n<dt>Updated</dt><dd>{}</dd>\n</dl>",
        escape(&r.created_at),
        escape(&r.updated_at)
    );
    b.push_str("<h2>Where it was found</h2>\n<table id=\"locations\">\n<thead><tr><th scope=\"col\">Source</th><th scope=\"col\">Where</th><th scope=\"col\">Commit</th><th scope=\"col\">Line</th><th scope=\"col\">Author</th><th scope=\"col\">First seen</th></tr></thead>\n<tbody>\n");
    for l in &v.locations {
        let place = match read::location_link(&state.0.settings.github_web, l) {
            Some(href) => format!("<a href=\"{}\">{}</a>", escape(&href), escape(&l.display())),
            None => escape(&l.display()),
        };
        let line = if l.source == "log" {
            format!("line {} of the log", l.line)
        } else {
            l.line.to_string()
        };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><th scope=\"row\">{place}</th><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.source),
            escape(l.commit.as_deref().unwrap_or("-")),
            escape(&line),
            escape(l.author_email.as_deref().unwrap_or("-")),
            escape(&l.first_seen)
        );
    }
    b.push_str("</tbody>\n</table>\n");
    let consumers: Vec<_> = v
        .journal
        .iter()
        .filter(|e| {
            ["propagate:", "restart:", "consumer"]
                .iter()
                .any(|p| e.step.starts_with(p))
        })
        .collect();
    b.push_str("<h2>Consumers</h2>\n");
    if consumers.is_empty() {
        b.push_str("<p id=\"consumers\">No consumer was written for this incident.</p>\n");
    } else {
        b.push_str("<ul id=\"consumers\">\n");
        for e in consumers {
            let _ = writeln!(
                b,
                "<li>{}: {} — {}</li>",
                escape(&e.step),
                escape(e.outcome.as_deref().unwrap_or("in flight")),
                escape(e.detail.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</ul>\n");
    }
    b.push_str("<h2>Escrow</h2>\n");
    match &v.escrow {
        Some(e) => {
            let _ = writeln!(
                b,
                "<p id=\"escrow\">A new key (fingerprint <code>{}</code>) is sealed in escrow since {} to {} age recipient(s); its owner recovers it with <code>keysentry incidents new-key {}</code> and <code>age -d</code>.</p>",
                escape(&e.fingerprint),
                escape(&e.created_at),
                e.recipients.len(),
                v.incident.id
            );
        }
        None => b.push_str("<p id=\"escrow\">No new key is in escrow for this incident.</p>\n"),
    }
    let _ = writeln!(b, "<h2>Alerts sent</h2>\n<p id=\"alerts\">{} alert(s) and reminder(s); each is in the timeline.</p>", v.alerts.len());
    b.push_str("<h2>Timeline</h2>\n<table id=\"timeline\">\n<thead><tr><th scope=\"col\">When</th><th scope=\"col\">What</th><th scope=\"col\">Detail</th></tr></thead>\n<tbody>\n");
    for e in &v.timeline {
        let _ = writeln!(
            b,
            "<tr class=\"{kind}\"><td>{at}</td><th scope=\"row\">{kind}</th><td>{text}</td></tr>",
            at = escape(&e.at),
            kind = escape(e.kind),
            text = escape(&e.text)
        );
    }
    b.push_str("</tbody>\n</table>\n");
    actions(&mut b, who, v);
    b
}

fn actions(b: &mut String, who: &Who, v: &IncidentView) {
    let id = v.incident.id;
    let csrf = csrf_field(who.csrf());
    b.push_str("<h2>Actions</h2>\n");
    if read::offers_hand_over(v) {
        let _ = writeln!(
            b,
            "<form id=\"handover\" method=\"post\" action=\"/ui/incidents/{id}/handover\">{csrf}\n\
             <h3>Hand over the new key</h3>\n<p>Paste the key you made in the Tatum Dashboard: it goes to the engine, which writes it to every consumer; it is never stored, logged or shown again.</p>\n\
             <label for=\"new_key\">New key</label>\n\
             <input id=\"new_key\" type=\"password\" name=\"new_key\" autocomplete=\"off\" required>\n\
             <button type=\"submit\">Hand over</button>\n</form>"
        );
    }
    let _ = writeln!(
        b,
        "<form id=\"resolve\" method=\"post\" action=\"/ui/incidents/{id}/resolve\" data-confirm=\"Resolve incident {id}? keysentry makes no more provider calls for it.\">{csrf}\n\
         <h3>Resolve</h3>\n<label for=\"resolve-note\">Note</label>\n\
         <textarea id=\"resolve-note\" name=\"note\" required></textarea>\n\
         <button type=\"submit\">Resolve</button>\n</form>\n\
         <form id=\"reopen\" method=\"post\" action=\"/ui/incidents/{id}/reopen\">{csrf}\n\
         <h3>Reopen</h3>\n<label for=\"reopen-note\">Note</label>\n\
         <textarea id=\"reopen-note\" name=\"note\"></textarea>\n\
         <button type=\"submit\">Reopen</button>\n</form>\n\
         <form id=\"retry\" method=\"post\" action=\"/ui/incidents/{id}/retry\">{csrf}\n\
         <h3>Retry</h3>\n<p>Ends the wait: the engine takes the incident up on its next pass, now.</p>\n\
         <button type=\"submit\">Retry now</button>\n</form>"
    );
}

pub(super) async fn sources(Extract(state): Extract<UiState>, headers: HeaderMap) -> Response {
    let who = match auth::require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let s = read::sources_view(&state).await;
    let mut b = format!(
        "<h1>Sources</h1>\n<p>Health: <span id=\"health\">{}</span> (as <code>/healthz</code> says).</p>\n",
        escape(s.status)
    );
    b.push_str("<table id=\"sources\">\n<thead><tr><th scope=\"col\">Component</th><th scope=\"col\">Status</th><th scope=\"col\">Reason</th><th scope=\"col\">Bytes scanned</th><th scope=\"col\">Lines</th><th scope=\"col\">Errors</th><th scope=\"col\">Polls</th></tr></thead>\n<tbody>\n");
    for c in &s.components {
        let _ = writeln!(
            b,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.name),
            escape(c.status),
            escape(c.reason.as_deref().unwrap_or("")),
            c.bytes,
            c.lines,
            c.errors,
            c.polls
        );
    }
    b.push_str("</tbody>\n</table>\n<h2>Incidents per state</h2>\n<ul id=\"counts\">\n");
    for (k, n) in &s.incidents {
        let _ = writeln!(
            b,
            "<li>{}: <span class=\"count\">{n}</span></li>",
            escape(k)
        );
    }
    b.push_str("</ul>\n");
    Html(page("Sources", who.csrf(), None, &b)).into_response()
}

/// The embedded stylesheet and script: served to anyone (the login page
/// needs the stylesheet), nothing in them is private.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    html::asset(&file).unwrap_or_else(|| html::not_found(None, "No such file."))
}

pub(super) async fn not_found(Extract(state): Extract<UiState>, headers: HeaderMap) -> Response {
    let who = match auth::require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    html::not_found(who.csrf(), "The dashboard has no such page.")
}
