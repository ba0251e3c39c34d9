//! The HTML every page shares: [`escape`], the layout (skip link, `<main>`,
//! navigation, sign-out form), the login page and the error pages.
//!
//! No inline script or style: the CSP forbids them, and the page reads the
//! same without `/ui/static/app.js`.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;

/// Text and attribute values, escaped for HTML: every byte a page prints
/// from the store goes through here.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string value, percent-encoded.
pub(super) fn query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The hidden CSRF field of a form (nothing for a bearer request, which
/// needs none).
pub(super) fn csrf_field(csrf: Option<&str>) -> String {
    csrf.map(|t| {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            escape(t)
        )
    })
    .unwrap_or_default()
}

/// A whole page: `body` is HTML already escaped.
pub(super) fn page(title: &str, csrf: Option<&str>, flash: Option<&str>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · keysentry</title>\n\
         <link rel=\"stylesheet\" href=\"/ui/static/app.css\">\n\
         <script src=\"/ui/static/app.js\" defer></script>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
         <header>\n<nav aria-label=\"Dashboard\">\n<ul>\n\
         <li><a href=\"/ui/\">Incidents</a></li>\n<li><a href=\"/ui/sources\">Sources</a></li>\n\
         <li><a href=\"/ui/stats\">Statistics</a></li>\n</ul>\n\
         <form id=\"logout\" method=\"post\" action=\"/ui/logout\">{}\
         <button type=\"submit\">Sign out</button></form>\n</nav>\n</header>\n\
         <main id=\"main\" tabindex=\"-1\">\n",
        escape(title),
        csrf_field(csrf)
    );
    if let Some(f) = flash {
        let _ = writeln!(out, "<p id=\"flash\" role=\"status\">{}</p>", escape(f));
    }
    out.push_str(body);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

pub(super) fn login(error: Option<&str>) -> Html<String> {
    let mut body = String::from("<h1>Sign in to keysentry</h1>\n");
    if let Some(e) = error {
        let _ = writeln!(body, "<p id=\"error\" role=\"alert\">{}</p>", escape(e));
    }
    body.push_str(
        "<form id=\"login\" method=\"post\" action=\"/ui/login\">\n\
         <label for=\"token\">Dashboard token</label>\n\
         <input id=\"token\" type=\"password\" name=\"token\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n",
    );
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Sign in · keysentry</title>\n\
         <link rel=\"stylesheet\" href=\"/ui/static/app.css\">\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
         <main id=\"main\" tabindex=\"-1\">\n{body}</main>\n</body>\n</html>\n"
    ))
}

/// An error page: `status`, a heading and what to do.
pub(super) fn error(
    status: StatusCode,
    csrf: Option<&str>,
    title: &str,
    what: &str,
    back: Option<&str>,
) -> Response {
    let mut body = format!(
        "<h1>{}</h1>\n<p id=\"error\" role=\"alert\">{}</p>\n",
        escape(title),
        escape(what)
    );
    if let Some(b) = back {
        let _ = writeln!(body, "<p><a href=\"{}\">Back</a></p>", escape(b));
    }
    (status, Html(page(title, csrf, None, &body))).into_response()
}

pub(super) fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        None,
        "Refused",
        "This form's CSRF token is missing or is not this session's: reload the page and try again.",
        Some("/ui/"),
    )
}

pub(super) fn not_found(csrf: Option<&str>, what: &str) -> Response {
    error(StatusCode::NOT_FOUND, csrf, "Not found", what, Some("/ui/"))
}

/// The embedded assets: no third-party file, nothing fetched.
pub(super) fn asset(name: &str) -> Option<Response> {
    let (ty, body) = match name {
        "app.css" => ("text/css; charset=utf-8", include_str!("static/app.css")),
        "app.js" => (
            "text/javascript; charset=utf-8",
            include_str!("static/app.js"),
        ),
        _ => return None,
    };
    Some(([(header::CONTENT_TYPE, ty)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("a b&c=d"), "a%20b%26c%3Dd");
    }
}
