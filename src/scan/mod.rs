//! Scanning: the prefilter-then-regex engine, filters, and the types every
//! later stage consumes (`Finding`, `Fingerprint`, `Secret`).

mod engine;
mod filter;
mod finding;
mod secret;

pub use engine::{PrefilterError, Scanner, ALLOW_MARKER};
pub use filter::{
    base62_fixed, crc32, github_checksum_ok, is_placeholder, shannon_entropy, Allowlist,
    AllowlistError,
};
pub use finding::{Chunk, Confidence, Finding, Origin};
pub use secret::{hex, redact, Fingerprint, Secret};
