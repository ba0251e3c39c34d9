//! Scanning: the prefilter-then-regex engine, filters, and the types every
//! later stage consumes (`Finding`, `Fingerprint`, `Secret`).

mod check;
mod engine;
mod filter;
mod finding;
mod pair;
mod prefilter;
mod secret;

pub use crate::mask::{without_long_runs, without_quoted_values};
pub use check::{check_rules, CheckFailure};
pub use engine::{Scanner, Suppressed, ALLOW_MARKER};
pub use filter::{
    base62_fixed, crc32, github_checksum_ok, is_placeholder, shannon_entropy, Allowlist,
    AllowlistError,
};
pub use finding::{Chunk, Confidence, Finding, Origin};
pub use prefilter::PrefilterError;
pub use secret::{hex, redact, Fingerprint, Secret};
