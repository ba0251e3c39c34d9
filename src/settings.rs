//! The config's `watch` and `http` sections turned into what the daemon
//! runs, with every problem and its YAML path: `check` lists them for
//! `config check`, the daemon refuses a (re)load that has any. Below both,
//! so neither imports the other.

use crate::config::Config;
use crate::source::log_tail::{check_globs, LogTailSettings, StartFrom};
pub use crate::source::repo_watch::RepoSettings;
use crate::source::stuck_after;
use std::time::Duration;

const DEFAULT_LOG_POLL: Duration = Duration::from_secs(1);
const DEFAULT_REPO_POLL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Settings {
    pub logs: LogTailSettings,
    pub repos: Vec<RepoSettings>,
    pub http_listen: Option<String>,
    /// `watch.syslog` listeners.
    pub syslog: Vec<crate::source::syslog::SyslogSettings>,
    /// `watch.http_ingest`.
    pub http_ingest: Option<crate::source::http_ingest::HttpIngestSettings>,
}

impl Settings {
    /// The daemon's settings, or every problem in them, each with its YAML
    /// path (`watch.repos[1].poll`). `keysentry config check` lists them all.
    pub fn check(c: &Config) -> Result<Settings, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut bad = |at: String, message: String| problems.push((at, message));
        let from = match c.watch.from.as_deref() {
            None | Some("end") => StartFrom::End,
            Some("start") => StartFrom::Start,
            Some(other) => {
                bad(
                    "watch.from".into(),
                    format!("`{other}` is neither `start` nor `end`"),
                );
                StartFrom::End
            }
        };
        let poll = duration_or(&c.watch.poll, DEFAULT_LOG_POLL, "watch.poll", &mut bad);
        let stuck = c.watch.stuck_after.as_ref().map(|_| {
            duration_or(
                &c.watch.stuck_after,
                Duration::ZERO,
                "watch.stuck_after",
                &mut bad,
            )
        });
        let stuck = stuck.filter(|d| !d.is_zero());
        if let Err(e) = check_globs(&c.watch.logs) {
            // The error names the field itself.
            let message = e.to_string();
            let message = message.strip_prefix("watch.logs: ").unwrap_or(&message);
            bad("watch.logs".into(), message.to_string());
        }
        let mut repos = Vec::new();
        for (i, r) in c.watch.repos.iter().enumerate() {
            let at = format!("watch.repos[{i}]");
            let poll = duration_or(&r.poll, DEFAULT_REPO_POLL, &format!("{at}.poll"), &mut bad);
            repos.push(RepoSettings {
                path: r.path.clone(),
                poll,
                stuck_after: stuck_after(poll, stuck),
                history: r.history.unwrap_or(true),
            });
        }
        if let Some(h) = &c.http {
            if let Err(e) = h.listen.parse::<std::net::SocketAddr>() {
                bad(
                    "http.listen".into(),
                    format!("`{}`: {e}; use HOST:PORT, e.g. 127.0.0.1:9187", h.listen),
                );
            }
            if let Err(limits) = crate::server::HttpLimits::from_config(Some(h)) {
                limits.into_iter().for_each(|(at, m)| bad(at, m));
            }
        }
        let syslog = crate::source::syslog::check(c, &mut bad, parse_duration);
        let http_ingest = crate::source::http_ingest::check(c, &mut bad);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            logs: LogTailSettings {
                globs: c.watch.logs.clone(),
                from,
                poll,
                stuck_after: stuck_after(poll, stuck),
            },
            repos,
            http_listen: c.http.as_ref().map(|h| h.listen.clone()),
            syslog,
            http_ingest,
        })
    }
}

/// `value` parsed as a duration, `default` when absent; a bad value is
/// reported at `at` and replaced by the default so checking goes on.
fn duration_or(
    value: &Option<String>,
    default: Duration,
    at: &str,
    bad: &mut impl FnMut(String, String),
) -> Duration {
    match value.as_deref().map(parse_duration) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(m)) => {
            bad(at.to_string(), m);
            default
        }
    }
}

/// `500ms`, `30s`, `5m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 500ms, 30s, 5m or 1h"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}` has an unknown unit; use ms, s, m or h")),
    };
    if d.is_zero() {
        return Err(format!("`{s}` must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every problem, one a line, as `config check` shows them.
    fn settings_error(c: &Config) -> String {
        let problems = Settings::check(c).unwrap_err();
        problems
            .iter()
            .map(|(at, m)| format!("{at}: {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn bad_settings_name_their_place() {
        let c = Config::parse(Path::new("c.yaml"), "watch:\n  from: middle\n").unwrap();
        let e = settings_error(&c);
        assert!(e.contains("watch.from") && e.contains("middle"), "{e}");
        let c = Config::parse(
            Path::new("c.yaml"),
            "watch:\n  repos:\n    - path: /srv/r\n      poll: often\n",
        )
        .unwrap();
        let e = settings_error(&c);
        assert!(e.contains("watch.repos[0].poll"), "{e}");
    }

    #[test]
    fn stuck_after_defaults_to_three_polls_and_at_least_30_s() {
        let c = Config::parse(
            Path::new("c.yaml"),
            "watch:\n  poll: 1s\n  repos:\n    - path: /srv/r\n      poll: 5m\n",
        )
        .unwrap();
        let s = Settings::check(&c).unwrap();
        assert_eq!(s.logs.stuck_after, Duration::from_secs(30));
        assert_eq!(s.repos[0].stuck_after, Duration::from_secs(900));
        let c = Config::parse(Path::new("c.yaml"), "watch:\n  stuck_after: 2m\n").unwrap();
        let s = Settings::check(&c).unwrap();
        assert_eq!(s.logs.stuck_after, Duration::from_secs(120));
        let c = Config::parse(Path::new("c.yaml"), "watch:\n  stuck_after: soon\n").unwrap();
        let e = settings_error(&c);
        assert!(e.contains("watch.stuck_after") && e.contains("soon"), "{e}");
    }

    #[test]
    fn the_example_config_in_systemd_is_valid() {
        let text = include_str!("../systemd/keysentry.yaml");
        let c = Config::parse(Path::new("systemd/keysentry.yaml"), text).unwrap();
        let s = Settings::check(&c).unwrap();
        assert_eq!(s.logs.from, StartFrom::End);
        assert_eq!(s.repos[0].poll, Duration::from_secs(30));
    }
}
