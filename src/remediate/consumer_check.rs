//! What `keysentry config check` reports for remediation beyond the schema:
//! consumers whose env file keysentry refuses to touch (a symlink, or a
//! place others can write; see [`super::env_file`]) and URLs it would send
//! keys to over plain http:// ([`super::urls`]). Each line starts with its
//! YAML path.

use crate::config::Config;

pub fn problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = &config.providers.tatum {
        for (i, c) in t.consumers.iter().enumerate() {
            if let Some(why) = super::propagate::refusal(c) {
                out.push(format!(
                    "providers.tatum.consumers[{i}].env_file: keysentry will not write the new key there: {why}"
                ));
            }
        }
    }
    out.extend(super::urls::problems(config));
    out
}
