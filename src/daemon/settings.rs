//! The config file turned into what the daemon runs: validated once (by
//! [`crate::check`], which includes [`crate::settings`]), so a reload with a
//! bad file is refused before anything is stopped.

use super::DaemonError;
use crate::config::{Config, Env};
use crate::rules::RuleSet;
use crate::scan::{Allowlist, Scanner};
pub use crate::settings::{parse_duration, RepoSettings, Settings};
use std::path::Path;

/// Everything a (re)load produces.
pub struct Loaded {
    pub config: Config,
    pub settings: Settings,
    pub scanner: Scanner,
    /// Also handed to the engine: findings' `verify`/`revoke` templates.
    pub rules: RuleSet,
}

impl Loaded {
    /// Reads and validates the config, its rules and allowlist: refused
    /// with every problem `config check` finds in the file itself; what it
    /// finds missing on this machine (a consumer file, a command) is logged.
    pub fn from_file(path: &Path) -> Result<Loaded, DaemonError> {
        let (config, rules, machine) = crate::check::load_checked(path, &[], &Env::Process)?;
        for p in machine {
            tracing::warn!("config {}: {p}", path.display());
        }
        let settings = settings_from_config(&config)?;
        for w in rules.warnings() {
            tracing::warn!("{w}");
        }
        let allowlist =
            Allowlist::new(&config.scan.allowlist.paths, &config.scan.allowlist.secrets)?;
        let scanner = Scanner::new(&rules, allowlist)?;
        Ok(Loaded {
            config,
            settings,
            scanner,
            rules,
        })
    }
}

/// The daemon's settings, or the first problem in them.
pub fn settings_from_config(c: &Config) -> Result<Settings, DaemonError> {
    Settings::check(c).map_err(|mut problems| {
        let (at, message) = problems.swap_remove(0);
        DaemonError::Setting { at, message }
    })
}
