//! `/ui/stats`: incidents opened and contained per day and the time to
//! containment, as an SVG drawn on the server (no script) beside a table
//! with the same numbers for screen readers.

use super::auth;
use super::html::{escape, page};
use super::{blocking, UiState};
use crate::store::Stats;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;

pub(super) async fn stats(Extract(state): Extract<UiState>, headers: HeaderMap) -> Response {
    let who = match auth::require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let st = state.clone();
    let stats = match blocking(move || st.0.store.stats()).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => return super::pages::store_error(&who, &e.to_string()),
        None => return super::pages::store_error(&who, "the store task failed"),
    };
    Html(page("Statistics", who.csrf(), None, &stats_body(&stats))).into_response()
}

fn secs(s: Option<f64>) -> String {
    match s {
        None => "none yet".into(),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// The median time to containment of each day's contained incidents, one
/// bar a day (taller is slower), drawn on the server: no script.
fn ttc_chart(s: &Stats) -> String {
    let max = s
        .days
        .iter()
        .filter_map(|d| d.ttc_median_secs)
        .fold(0.0f64, f64::max);
    let (w, h, bar) = (640u64, 100u64, 12u64);
    let mut svg = format!(
        "<svg id=\"ttc-chart\" role=\"img\" aria-labelledby=\"ttc-chart-title\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\">\n\
         <title id=\"ttc-chart-title\">Median time to containment per day, last 30 days (the table holds the numbers)</title>\n",
        h + 20,
        h + 20
    );
    for (i, d) in s.days.iter().enumerate() {
        let Some(t) = d.ttc_median_secs else {
            continue;
        };
        let bh = if max > 0.0 {
            ((t / max) * h as f64).round().max(1.0) as u64
        } else {
            1
        };
        let _ = writeln!(
            svg,
            "<rect class=\"ttc\" x=\"{}\" y=\"{}\" width=\"{bar}\" height=\"{bh}\"><title>{}: median {}</title></rect>",
            10 + i as u64 * 21,
            h - bh,
            escape(&d.day),
            secs(Some(t))
        );
    }
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\"></line>\n</svg>"
    );
    svg
}

/// Bars per day (opened, contained), drawn on the server: no script.
fn stats_body(s: &Stats) -> String {
    let max = s
        .days
        .iter()
        .map(|d| d.opened.max(d.contained))
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, bar) = (640u64, 200u64, 8u64);
    let mut svg = format!(
        "<svg id=\"chart\" role=\"img\" aria-labelledby=\"chart-title\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\">\n\
         <title id=\"chart-title\">Incidents opened and contained per day, last 30 days (the table holds the numbers)</title>\n",
        h + 20,
        h + 20
    );
    for (i, d) in s.days.iter().enumerate() {
        let x = 10 + i as u64 * 21;
        for (k, (n, class)) in [(d.opened, "opened"), (d.contained, "contained")]
            .iter()
            .enumerate()
        {
            let bh = n * h / max;
            let _ = writeln!(
                svg,
                "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{bar}\" height=\"{bh}\"><title>{}: {n} {class}</title></rect>",
                x + k as u64 * bar,
                h - bh,
                escape(&d.day)
            );
        }
    }
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\"></line>\n</svg>"
    );
    let mut b = format!(
        "<h1>Statistics</h1>\n<h2>Time to containment</h2>\n<p id=\"ttc\">Over the {} incident(s) contained in the last 30 days: median <strong>{}</strong>, 90th percentile <strong>{}</strong>.</p>\n\
         <div class=\"chart\">\n{}</div>\n\
         <h2>Opened and contained per day</h2>\n<div class=\"chart\">\n{svg}<p class=\"legend\"><span class=\"key opened\"></span> opened <span class=\"key contained\"></span> contained</p>\n</div>\n",
        s.contained,
        secs(s.ttc_median_secs),
        secs(s.ttc_p90_secs),
        ttc_chart(s)
    );
    b.push_str("<table id=\"per-day\">\n<caption>Incidents per day (UTC)</caption>\n<thead><tr><th scope=\"col\">Day</th><th scope=\"col\">Opened</th><th scope=\"col\">Contained</th><th scope=\"col\">Median time to containment</th></tr></thead>\n<tbody>\n");
    for d in &s.days {
        let _ = writeln!(
            b,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.day),
            d.opened,
            d.contained,
            d.ttc_median_secs
                .map_or_else(|| "-".to_string(), |t| secs(Some(t)))
        );
    }
    b.push_str("</tbody>\n</table>\n");
    b
}
