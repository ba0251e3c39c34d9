//! Handing a new key to the services that use the old one (Tatum KMS above
//! all: it must hold exactly the key that broadcasts transactions).
//!
//! A consumer is an env file (`TATUM_API_KEY=...`) plus a restart command.
//! Consumers are matched by the fingerprint of the variable's current value,
//! so a file holding some other key is never touched. The rewrite is atomic
//! (temp file in the same directory, fsync, rename), keeps every other line
//! byte for byte, keeps the owner, and keeps the mode but never wider than
//! 0600. A file that is a symlink, or that another user could change or
//! swap, is refused before it is read ([`super::env_file`]).

use crate::config::Consumer;
use crate::scan::{Fingerprint, Secret};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PropagateError {
    #[error("consumer {consumer}: cannot read {path}: {source}; check the path and that keysentry may read it")]
    Read {
        consumer: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("consumer {consumer}: refused {path}: {why} (keysentry neither reads nor writes it, so the new key was not written there)")]
    Refused {
        consumer: String,
        path: PathBuf,
        why: String,
    },
    #[error("consumer {consumer}: cannot write {path}: {source}; keysentry needs write access to the file's directory (the file was left unchanged)")]
    Write {
        consumer: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("consumer {consumer}: restart command `{command}` could not run: {source}; check `restart` in the config")]
    Spawn {
        consumer: String,
        command: String,
        source: std::io::Error,
    },
    #[error("consumer {consumer}: restart command `{command}` {how}; restart it by hand")]
    RestartFailed {
        consumer: String,
        command: String,
        how: String,
    },
}

/// The value of `consumer.variable` in its env file, if set.
pub fn current_value(consumer: &Consumer) -> Result<Option<Secret>, PropagateError> {
    let file = open(consumer)?;
    let text = &file.text;
    Ok(find_values(text, &consumer.variable)
        .first()
        .map(|span| Secret::new(&text[span.0..span.1])))
}

/// The fingerprint of `consumer.variable`'s value, if set.
pub fn current_fingerprint(consumer: &Consumer) -> Result<Option<Fingerprint>, PropagateError> {
    Ok(current_value(consumer)?.map(|s| s.fingerprint()))
}

/// Why keysentry refuses to read or write the consumer's env file, if it
/// does (`config check`). A file that cannot be opened at all is not judged.
pub fn refusal(consumer: &Consumer) -> Option<String> {
    match open(consumer) {
        Err(PropagateError::Refused { why, .. }) => Some(why),
        _ => None,
    }
}

/// Replaces every assignment of `consumer.variable` whose value has
/// fingerprint `old` by `new`. Returns false (and writes nothing) when no
/// assignment held the old key.
pub fn rewrite(
    consumer: &Consumer,
    old: &Fingerprint,
    new: &Secret,
) -> Result<bool, PropagateError> {
    // Read and replaced through one opened directory: what was checked and
    // read is what gets replaced.
    let file = open(consumer)?;
    let text = &file.text;
    let spans: Vec<(usize, usize)> = find_values(text, &consumer.variable)
        .into_iter()
        .filter(|&(a, b)| Fingerprint::of(&text.as_bytes()[a..b]) == *old)
        .collect();
    if spans.is_empty() {
        return Ok(false);
    }
    let mut out = String::with_capacity(text.len() + new.len());
    let mut last = 0;
    for (a, b) in spans {
        out.push_str(&text[last..a]);
        out.push_str(new.expose());
        last = b;
    }
    out.push_str(&text[last..]);
    file.replace(out.as_bytes())
        .map_err(|source| PropagateError::Write {
            consumer: consumer.name.clone(),
            path: consumer.env_file.clone(),
            source,
        })?;
    Ok(true)
}

#[cfg(unix)]
fn open(consumer: &Consumer) -> Result<super::env_file::EnvFile, PropagateError> {
    use super::env_file::OpenError;
    super::env_file::open(&consumer.env_file).map_err(|e| match e {
        OpenError::Io(source) => PropagateError::Read {
            consumer: consumer.name.clone(),
            path: consumer.env_file.clone(),
            source,
        },
        OpenError::Refused(why) => PropagateError::Refused {
            consumer: consumer.name.clone(),
            path: consumer.env_file.clone(),
            why,
        },
    })
}

/// Without `openat` and POSIX owners: read, and replace by rename.
#[cfg(not(unix))]
struct PlainFile {
    path: PathBuf,
    text: String,
}

#[cfg(not(unix))]
impl PlainFile {
    fn replace(&self, data: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("keysentry.tmp");
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(not(unix))]
fn open(consumer: &Consumer) -> Result<PlainFile, PropagateError> {
    let text =
        std::fs::read_to_string(&consumer.env_file).map_err(|source| PropagateError::Read {
            consumer: consumer.name.clone(),
            path: consumer.env_file.clone(),
            source,
        })?;
    Ok(PlainFile {
        path: consumer.env_file.clone(),
        text,
    })
}

/// Byte spans of the values assigned to `variable`: `VAR=v`, `export VAR=v`,
/// `VAR = v`, `VAR="v"`, `VAR='v'`, `VAR=v # comment`. Quotes stay outside
/// the span, so a rewrite keeps the line's style.
fn find_values(text: &str, variable: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((a, b)) = value_span(line, variable) {
            spans.push((offset + a, offset + b));
        }
        offset += line.len();
    }
    spans
}

fn value_span(line: &str, variable: &str) -> Option<(usize, usize)> {
    let body = line.trim_end_matches(['\n', '\r']);
    let mut i = body.len() - body.trim_start().len();
    let rest = &body[i..];
    if let Some(r) = rest.strip_prefix("export ") {
        i += rest.len() - r.trim_start().len();
    }
    let rest = body[i..].strip_prefix(variable)?;
    i += variable.len();
    let after_name = rest.trim_start();
    let eq = after_name.strip_prefix('=')?;
    i += rest.len() - after_name.len() + 1;
    let value = eq.trim_start();
    i += eq.len() - value.len();
    let (start, len) = match value.chars().next() {
        Some(q @ ('"' | '\'')) => (i + 1, value[1..].find(q)?),
        _ => {
            let end = value
                .find(" #")
                .or_else(|| value.find("\t#"))
                .unwrap_or(value.len());
            (i, value[..end].trim_end().len())
        }
    };
    (len > 0).then_some((start, start + len))
}

/// Runs the consumer's restart command, if it has one, and waits for it.
/// Its output is discarded: keysentry cannot vouch that it holds no key.
// The owner's own restart argv from the config, not git.
#[allow(clippy::disallowed_methods)]
pub async fn restart(consumer: &Consumer, timeout: Duration) -> Result<bool, PropagateError> {
    let Some((program, args)) = consumer.restart.split_first() else {
        return Ok(false);
    };
    let command = consumer.restart.join(" ");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PropagateError::Spawn {
            consumer: consumer.name.clone(),
            command: command.clone(),
            source,
        })?;
    let failed = |how: String| PropagateError::RestartFailed {
        consumer: consumer.name.clone(),
        command: command.clone(),
        how,
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(true),
        Ok(Ok(status)) => Err(failed(format!("exited with {status}"))),
        Ok(Err(e)) => Err(failed(format!("could not be waited for ({e})"))),
        Err(_) => Err(failed(format!(
            "did not finish within {}s and was killed",
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn consumer(path: &Path) -> Consumer {
        Consumer {
            name: "kms".into(),
            env_file: path.to_path_buf(),
            variable: "TATUM_API_KEY".into(),
            restart: vec![],
        }
    }

    #[test]
    fn finds_values_in_every_dotenv_style() {
        for (line, want) in [
            ("TATUM_API_KEY=abc\n", Some("abc")),
            ("export TATUM_API_KEY=abc", Some("abc")),
            ("  TATUM_API_KEY = \"abc\"\r\n", Some("abc")),
            ("TATUM_API_KEY='abc' # old", Some("abc")),
            ("TATUM_API_KEY=abc # comment", Some("abc")),
            ("TATUM_API_KEY_2=abc", None),
            ("# TATUM_API_KEY=abc", None),
            ("TATUM_API_KEY=", None),
        ] {
            let got = value_span(line, "TATUM_API_KEY").map(|(a, b)| &line[a..b]);
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn rewrite_keeps_other_lines_and_narrows_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let old = "t-aaaa";
        std::fs::write(
            &path,
            format!("# kms\nTATUM_KMS_PASSWORD=pw\nexport TATUM_API_KEY=\"{old}\"\nTAIL=1"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = consumer(&path);
        let other = Fingerprint::of(b"t-other");
        assert!(!rewrite(&c, &other, &Secret::new("t-bbbb")).unwrap());
        assert!(rewrite(&c, &Fingerprint::of(old.as_bytes()), &Secret::new("t-bbbb")).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# kms\nTATUM_KMS_PASSWORD=pw\nexport TATUM_API_KEY=\"t-bbbb\"\nTAIL=1"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            current_fingerprint(&c).unwrap(),
            Some(Fingerprint::of(b"t-bbbb"))
        );
        // No temp file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
