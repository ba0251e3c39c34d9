//! The remediation URLs of a config (provider APIs, management templates)
//! checked against the plain-http rule of [`crate::urls`].

use crate::config::Config;
use crate::urls::insecure_http;

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
