//! The environment a config's `*_env` names and `{{env.NAME}}` templates are
//! resolved in: this process's, or the service's environment file (systemd
//! `EnvironmentFile=`), so `config check` run from an admin's shell checks
//! what the service will see.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where variables come from. Values are only ever tested for presence or
/// handed to the code that needs them, never printed.
pub enum Env {
    Process,
    File {
        path: PathBuf,
        vars: HashMap<String, String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("cannot read environment file {path}: {source}; check the path and its permissions")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    // The line's text is left out: it may hold a key.
    #[error("{path}:{line}: not a KEY=value line; environment files hold one NAME=value per line (# for comments)")]
    Syntax { path: PathBuf, line: usize },
}

impl Env {
    /// Reads `KEY=value` lines (`export` prefixes, `#` comments, blank lines
    /// and quoted values allowed), as systemd's `EnvironmentFile=` does.
    pub fn from_file(path: &Path) -> Result<Env, EnvFileError> {
        let io = |source| EnvFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        Env::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Env, EnvFileError> {
        let mut vars = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, value) = line
                .split_once('=')
                .filter(|(k, _)| valid_name(k.trim()))
                .ok_or_else(|| EnvFileError::Syntax {
                    path: path.to_path_buf(),
                    line: n + 1,
                })?;
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value);
            vars.insert(name.trim().to_string(), unquoted.to_string());
        }
        Ok(Env::File {
            path: path.to_path_buf(),
            vars,
        })
    }

    /// The variable's value when it is set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::File { vars, .. } => vars.get(name).cloned(),
        }
        .filter(|v| !v.is_empty())
    }

    /// Where a missing variable should be set, for error messages.
    pub fn where_to_set(&self) -> String {
        match self {
            Env::Process => "keysentry's environment".to_string(),
            Env::File { path, .. } => format!("the environment file {}", path.display()),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_files_read_like_systemd_does() {
        let text = "# the service\nexport A=1\nB = \"two\"\n\nC=''\nD='x y'\n";
        let env = Env::parse(Path::new("e"), text).unwrap();
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B").as_deref(), Some("two"));
        assert_eq!(env.get("C"), None, "empty counts as unset");
        assert_eq!(env.get("D").as_deref(), Some("x y"));
        assert_eq!(env.get("PATH"), None, "never falls back to the process");
    }

    #[test]
    fn a_bad_line_is_named_without_its_text() {
        let e = Env::parse(Path::new("svc.env"), "A=1\nt-66a8f1c2e4b0a1d2c3e4f5a6\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("svc.env:2"), "{e}");
        assert!(!e.contains("t-66a8"), "{e}");
    }
}
