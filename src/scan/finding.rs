//! What the scanner reads (`Chunk`), where it came from (`Origin`) and what it
//! reports (`Finding`).

use super::secret::{Fingerprint, Secret};
use std::path::PathBuf;
use std::sync::Arc;

/// Where a chunk's bytes came from. Paths of file and git sources are relative
/// to the scanned root, as the finding JSON contract requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    File {
        path: String,
    },
    Stdin,
    Git {
        repo: String,
        commit: String,
        author_email: Option<String>,
        path: String,
    },
    Log {
        path: PathBuf,
    },
    GitHub {
        repo: String,
        commit: String,
        author_email: Option<String>,
        path: String,
        /// Who pushed (a push delivery): the owner to tell when no `owners`
        /// entry matches and the commit names no author. Not in reports.
        pusher: Option<String>,
    },
    /// A line shipped to the daemon (syslog, HTTP ingest): the sender's
    /// host and app as the message names them (`None` when it does not),
    /// and the listener it arrived on. Shown as `host/app` (the path) on
    /// the listener (the repo field) so an incident says where it came from.
    Shipped {
        via: Via,
        listener: String,
        host: Option<String>,
        app: Option<String>,
    },
}

/// How a shipped line arrived: the finding's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Syslog,
    Http,
}

impl Origin {
    /// The `source` field of the finding JSON contract.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::File { .. } => "file",
            Origin::Stdin => "stdin",
            Origin::Git { .. } => "git",
            Origin::Log { .. } => "log",
            Origin::GitHub { .. } => "github",
            Origin::Shipped {
                via: Via::Syslog, ..
            } => "syslog",
            Origin::Shipped { via: Via::Http, .. } => "ingest",
        }
    }

    pub fn path(&self) -> String {
        match self {
            Origin::File { path } | Origin::Git { path, .. } | Origin::GitHub { path, .. } => {
                path.clone()
            }
            Origin::Log { path } => path.display().to_string(),
            Origin::Stdin => "-".to_string(),
            Origin::Shipped { host, app, .. } => format!(
                "{}/{}",
                host.as_deref().unwrap_or("-"),
                app.as_deref().unwrap_or("-")
            ),
        }
    }

    pub fn commit(&self) -> Option<&str> {
        match self {
            Origin::Git { commit, .. } | Origin::GitHub { commit, .. } => Some(commit),
            _ => None,
        }
    }

    pub fn author_email(&self) -> Option<&str> {
        match self {
            Origin::Git { author_email, .. } | Origin::GitHub { author_email, .. } => {
                author_email.as_deref()
            }
            _ => None,
        }
    }

    /// The pusher of a GitHub push; `None` for every other origin.
    pub fn pusher(&self) -> Option<&str> {
        match self {
            Origin::GitHub { pusher, .. } => pusher.as_deref(),
            _ => None,
        }
    }

    pub fn repo(&self) -> Option<&str> {
        match self {
            Origin::Git { repo, .. } | Origin::GitHub { repo, .. } => Some(repo),
            Origin::Shipped { listener, .. } => Some(listener),
            _ => None,
        }
    }
}

/// A run of bytes to scan. A chunk may be a whole file or blob, or a slice of
/// one (log tails, added lines of a diff); `first_line` and `base_offset` place
/// it in the whole so that findings report real positions.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub origin: Arc<Origin>,
    pub data: Vec<u8>,
    /// 1-based line number of `data[0]` in the whole file.
    pub first_line: u64,
    /// Byte offset of `data[0]` in the whole file.
    pub base_offset: u64,
}

impl Chunk {
    pub fn whole(origin: Origin, data: Vec<u8>) -> Self {
        Chunk {
            origin: Arc::new(origin),
            data,
            first_line: 1,
            base_offset: 0,
        }
    }
}

/// How sure the scanner is. `High` when the key carries a verifiable
/// structure (e.g. GitHub's CRC32 suffix checks out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Confidence {
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub rule_id: Arc<str>,
    pub rule_name: Arc<str>,
    pub provider: Arc<str>,
    pub secret: Secret,
    pub fingerprint: Fingerprint,
    pub origin: Arc<Origin>,
    /// 1-based.
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// Byte offset of the secret in the whole file, blob or log.
    pub offset: u64,
    pub confidence: Confidence,
    /// Set when the key was found decoded (base64, URL or JSON escaping).
    pub encoding: Option<super::decode::Encoding>,
}

impl Finding {
    /// The identity used to deduplicate: the same key reported twice at the
    /// same place by the same rule is one finding.
    pub fn dedup_key(&self) -> (Arc<str>, Fingerprint, Arc<Origin>, u64, u64) {
        (
            self.rule_id.clone(),
            self.fingerprint.clone(),
            self.origin.clone(),
            self.line,
            self.column,
        )
    }
}
