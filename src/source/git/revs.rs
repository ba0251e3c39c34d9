//! `--since REV` and `--range A..B`: revisions from the command line (or a
//! CI variable), checked before git sees them and resolved to commit ids.
//!
//! A revision is only ever passed to git after `--end-of-options`, and is
//! refused outright when it starts with `-`, so `--output=/etc/passwd` or
//! `--upload-pack=…` can never become an option. After resolution only full
//! commit ids travel on.

use super::command::{GitError, Repo};
use super::history::BlobId;

/// Which commits a history scan covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Commits {
    /// Every commit of every ref (and HEAD).
    #[default]
    All,
    /// Reachable from `to` but not from `from`, as in `git log from..to`:
    /// what a push (`before..after`) or a pull request (`base..head`) adds.
    Range { from: String, to: String },
}

impl Commits {
    /// `--since REV`: what HEAD has that REV has not.
    pub fn since(rev: &str) -> Result<Commits, GitError> {
        Ok(Commits::Range {
            from: checked(rev)?.to_string(),
            to: "HEAD".into(),
        })
    }

    /// `--range A..B`. The three-dot form (symmetric difference) would also
    /// scan what B lacks, which a pull request did not add; it is refused.
    pub fn range(text: &str) -> Result<Commits, GitError> {
        let bad = |why| GitError::BadRev {
            rev: text.to_string(),
            why,
        };
        if text.contains("...") {
            return Err(bad(
                "A...B is not supported; give the range as A..B (the commits B has that A has not)",
            ));
        }
        let Some((from, to)) = text.split_once("..") else {
            return Err(bad(
                "a range is written A..B (the commits B has that A has not)",
            ));
        };
        if from.is_empty() || to.is_empty() {
            return Err(bad(
                "both ends of A..B are needed (write HEAD for the current commit)",
            ));
        }
        Ok(Commits::Range {
            from: checked(from)?.to_string(),
            to: checked(to)?.to_string(),
        })
    }
}

/// Refuses what cannot be a revision name, or could be read as an option.
fn checked(rev: &str) -> Result<&str, GitError> {
    let bad = |why| GitError::BadRev {
        rev: rev.to_string(),
        why,
    };
    if rev.is_empty() {
        return Err(bad("it is empty"));
    }
    if rev.starts_with('-') {
        return Err(bad("a revision cannot start with `-`"));
    }
    if rev.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains a space or a control character"));
    }
    if rev.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    Ok(rev)
}

/// The commit `rev` names in `repo`, as a full id. Tags are peeled; a rev
/// that names no commit (unknown, a tree, a blob) is an error naming it.
pub fn resolve(repo: &Repo, rev: &str) -> Result<String, GitError> {
    let rev = checked(rev)?;
    let peeled = format!("{rev}^{{commit}}");
    let unknown = || GitError::UnknownRev {
        rev: rev.to_string(),
        repo: repo.label.clone(),
    };
    let args = [
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        &peeled,
    ];
    let out = match repo.output(&args, "rev-parse", b"") {
        Ok(out) => out,
        // `--quiet`: a failure says nothing, and means "no such commit".
        Err(GitError::Failed { detail, .. }) if !detail.contains("fatal") => return Err(unknown()),
        Err(e) => return Err(e),
    };
    let id = String::from_utf8_lossy(&out).trim().to_string();
    match BlobId::from_hex(id.as_bytes()) {
        Some(_) => Ok(id),
        None => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: &str, to: &str) -> Commits {
        Commits::Range {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn ranges_and_since_parse_into_both_ends() {
        assert_eq!(
            Commits::range("main..feature").ok(),
            Some(range("main", "feature"))
        );
        assert_eq!(
            Commits::range("v1.0^..HEAD~2").ok(),
            Some(range("v1.0^", "HEAD~2"))
        );
        assert_eq!(
            Commits::since("origin/main").ok(),
            Some(range("origin/main", "HEAD"))
        );
    }

    #[test]
    fn option_like_odd_or_incomplete_revisions_are_refused() {
        for text in [
            "--all..HEAD",
            "main..--output=x",
            "main...feature",
            "main",
            "..HEAD",
            "main..",
            "a b..c",
            "a\n..c",
        ] {
            let err = Commits::range(text).expect_err(text);
            assert!(matches!(err, GitError::BadRev { .. }), "{text}: {err}");
        }
        assert!(Commits::since("-n1").is_err());
        assert!(Commits::since("").is_err());
    }
}
