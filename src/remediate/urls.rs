//! Plain `http://` carries keys and tokens in the clear, so it is refused for
//! every URL keysentry sends them to — provider APIs, management templates,
//! GitHub, alert receivers — unless the host is this machine (loopback) or
//! the config says `allow_insecure_http: true`. Checked when the config is
//! loaded (and by `config check`) and again for each templated URL at call
//! time, since `{{env.NAME}}` can change what a template expands to.
//!
//! Messages name the scheme and host only: a URL may hold a key
//! (`?token=...`).

use crate::config::Config;

/// Why `url` may not be used, or `None` when it may. `at` names it
/// (`providers.tatum.api_url`). A URL that does not parse is left to the
/// caller's own check (and to the HTTP client, which refuses it).
pub fn insecure_http(url: &str, allow_insecure_http: bool, at: &str) -> Option<String> {
    insecure_reason(url, allow_insecure_http).map(|why| format!("{at}: {why}"))
}

/// As [`insecure_http`], without the path in front.
pub fn insecure_reason(url: &str, allow_insecure_http: bool) -> Option<String> {
    if allow_insecure_http {
        return None;
    }
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    if parsed.scheme() != "http" {
        return None;
    }
    let host = parsed.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    Some(format!(
        "plain http:// to {host} would send keys unencrypted; use https://, or set `allow_insecure_http: true` at the top of the config if this network is trusted"
    ))
}

/// Every configured URL that keysentry would send a key or token to over
/// plain http://, as `path: reason` lines. Templates are checked with their
/// placeholders filled in the way a call fills them (`{{api_url}}`), and
/// again at call time.
pub fn problems(config: &Config) -> Vec<String> {
    let allow = config.allow_insecure_http;
    let mut urls: Vec<(String, String)> = Vec::new();
    if let Some(t) = &config.providers.tatum {
        let api = super::tatum::api_url(config);
        if t.api_url.is_some() {
            urls.push(("providers.tatum.api_url".into(), api.clone()));
        }
        for (name, tmpl) in [
            ("regenerate", &t.management.regenerate),
            ("expire", &t.management.expire),
        ] {
            if let Some(tmpl) = tmpl {
                // Only the base can make it http://; other values are
                // percent-encoded into the URL.
                let url = tmpl.url.replace("{{api_url}}", &api);
                if !url.trim_start().starts_with("{{") {
                    urls.push((format!("providers.tatum.management.{name}.url"), url));
                }
            }
        }
    }
    for (name, p) in &config.providers.others {
        if let Some(u) = &p.api_url {
            urls.push((format!("providers.{name}.api_url"), u.clone()));
        }
    }
    if let Some(u) = config.github.as_ref().and_then(|g| g.api_url.as_ref()) {
        urls.push(("github.api_url".into(), u.clone()));
    }
    // Alert URLs are checked where the channels are built (src/alert).
    urls.iter()
        .filter_map(|(at, url)| insecure_http(url, allow, at))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remote_plain_http_is_refused() {
        for ok in [
            "https://api.tatum.io",
            "http://127.0.0.1:8080/x",
            "http://127.1.2.3/",
            "http://[::1]:9/",
            "http://localhost:3000",
        ] {
            assert_eq!(insecure_http(ok, false, "x"), None, "{ok}");
        }
        let why = insecure_http("http://example.invalid/v3?token=s3cr3t", false, "a.b").unwrap();
        assert!(why.starts_with("a.b: "), "{why}");
        assert!(why.contains("example.invalid"), "{why}");
        assert!(why.contains("allow_insecure_http"), "{why}");
        assert!(!why.contains("s3cr3t"), "{why}");
        assert_eq!(insecure_http("http://example.invalid", true, "x"), None);
    }
}
