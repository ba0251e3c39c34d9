//! Scanning: the prefilter-then-regex engine, filters, and the types every
//! later stage consumes (`Finding`, `Fingerprint`, `Secret`).

mod checksum;
mod decode;
mod engine;
mod filter;
mod finding;
mod prefilter;
mod secret;

pub use checksum::{base62_fixed, crc32, github_checksum_ok, Checked, Checksum};
pub use decode::Encoding;
pub use engine::{Scanner, Suppressed, ALLOW_MARKER};
pub use filter::{is_placeholder, shannon_entropy, Allowlist, AllowlistError};
pub use finding::{Chunk, Confidence, Finding, Origin};
pub use prefilter::PrefilterError;
pub use secret::{hex, redact, without_long_runs, without_quoted_values, Fingerprint, Secret};
