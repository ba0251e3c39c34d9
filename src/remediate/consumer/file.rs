//! The env-file consumer: `NAME=value` lines (`TATUM_API_KEY=...`), the
//! original kind. Matched by the fingerprint of the variable's current
//! value; the rewrite is atomic (temp file in the same directory, fsync,
//! rename), keeps every other line byte for byte, keeps the owner, and keeps
//! the mode but never wider than 0600. A file that is a symlink, or that
//! another user could change or swap, is refused before it is read
//! ([`super::env_file`]).

use super::ConsumerError as PropagateError;
use crate::config::Consumer;
use crate::scan::{Fingerprint, Secret};
use std::path::Path;
#[cfg(not(unix))]
use std::path::PathBuf;

/// The configured file and variable (the kind says both are there).
fn place(consumer: &Consumer) -> Result<(&Path, &str), PropagateError> {
    match (&consumer.env_file, &consumer.variable) {
        (Some(f), Some(v)) => Ok((f.as_path(), v.as_str())),
        (None, _) => Err(PropagateError::Config {
            consumer: consumer.name.clone(),
            why: "`variable` needs `env_file`, the file that holds it".into(),
        }),
        (_, None) => Err(PropagateError::Config {
            consumer: consumer.name.clone(),
            why: "`env_file` needs `variable`, the name of the key in it, e.g. TATUM_API_KEY"
                .into(),
        }),
    }
}

/// The value of `consumer.variable` in its env file, if set.
pub(crate) fn current_value(consumer: &Consumer) -> Result<Option<Secret>, PropagateError> {
    let (_, variable) = place(consumer)?;
    let file = open(consumer)?;
    let text = &file.text;
    Ok(find_values(text, variable)
        .first()
        .map(|span| Secret::new(&text[span.0..span.1])))
}

/// The fingerprint of `consumer.variable`'s value, if set.
pub(crate) fn current_fingerprint(
    consumer: &Consumer,
) -> Result<Option<Fingerprint>, PropagateError> {
    Ok(current_value(consumer)?.map(|s| s.fingerprint()))
}

/// Replaces every assignment of `consumer.variable` whose value has
/// fingerprint `old` by `new`. Returns false (and writes nothing) when no
/// assignment held the old key.
pub(crate) fn rewrite(
    consumer: &Consumer,
    old: &Fingerprint,
    new: &Secret,
) -> Result<bool, PropagateError> {
    // Read and replaced through one opened directory: what was checked and
    // read is what gets replaced.
    let (path, variable) = place(consumer)?;
    let file = open(consumer)?;
    let text = &file.text;
    let spans: Vec<(usize, usize)> = find_values(text, variable)
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
            path: path.to_path_buf(),
            source,
        })?;
    Ok(true)
}

#[cfg(unix)]
fn open(consumer: &Consumer) -> Result<super::env_file::EnvFile, PropagateError> {
    use super::env_file::OpenError;
    let (path, _) = place(consumer)?;
    super::env_file::open(path).map_err(|e| match e {
        OpenError::Io(source) => PropagateError::Read {
            consumer: consumer.name.clone(),
            path: path.to_path_buf(),
            source,
        },
        OpenError::Refused(why) => PropagateError::Refused {
            consumer: consumer.name.clone(),
            path: path.to_path_buf(),
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
    let (path, _) = place(consumer)?;
    let text = std::fs::read_to_string(path).map_err(|source| PropagateError::Read {
        consumer: consumer.name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    Ok(PlainFile {
        path: path.to_path_buf(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn consumer(path: &Path) -> Consumer {
        Consumer {
            name: "kms".into(),
            env_file: Some(path.to_path_buf()),
            variable: Some("TATUM_API_KEY".into()),
            ..Consumer::default()
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
