//! What `keysentry config check` reports for remediation beyond the schema:
//! consumers whose env file keysentry refuses to touch (a symlink, or a
//! place others can write; see [`super::env_file`]) and URLs it would send
//! keys to over plain http:// ([`super::urls`]). Each line starts with its
//! YAML path.

use crate::config::Config;

/// Consumer files keysentry will not write as the machine stands now. This
/// is the machine's state, not the file's: `config check` reports it, the
/// daemon logs it and refuses the write when it comes to it (the incident
/// then names the consumer), because a file can be fixed — or broken —
/// after the config is loaded.
pub fn consumer_problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (at, consumers) in config.providers.all_consumers() {
        for (i, c) in consumers.iter().enumerate() {
            if let Some(why) = super::propagate::refusal(c) {
                out.push(format!(
                    "{at}[{i}].env_file: keysentry will not write the new key there: {why}"
                ));
            }
        }
    }
    out
}

/// URLs the config itself gets wrong (plain http:// to a remote host).
pub fn url_problems(config: &Config) -> Vec<String> {
    super::urls::problems(config)
}
