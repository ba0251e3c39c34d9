//! Plain `http://` carries keys and tokens in the clear, so it is refused for
//! every URL keysentry sends them to — provider APIs, management templates,
//! GitHub, alert receivers — unless the host is this machine (loopback) or
//! the config says `allow_insecure_http: true`. Checked when the config is
//! loaded (and by `config check`) and again for each templated URL at call
//! time, since `{{env.NAME}}` can change what a template expands to.
//!
//! Messages name the scheme and host only: a URL may hold a key
//! (`?token=...`). Which URLs a config holds is each stage's to say
//! (`remediate::urls`, the alert channels); this is the one rule.

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
