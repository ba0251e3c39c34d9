//! Scanning: the prefilter-then-regex engine, filters, and the types every
//! later stage consumes (`Finding`, `Fingerprint`, `Secret`); the driver
//! that sources hand their chunks to ([`driver`]: `Source`, `Emit`, `Flow`)
//! and the one contract findings leave by ([`FindingSink`], [`SinkError`]).

mod check;
mod checksum;
mod decode;
pub mod driver;
mod engine;
mod filter;
mod finding;
mod pair;
mod prefilter;
mod secret;
mod sink;

pub use crate::mask::{without_long_runs, without_quoted_values};
pub use check::{check_rules, CheckFailure};
pub use checksum::{base62_fixed, crc32, github_checksum_ok, Checked, Checksum};
pub use decode::Encoding;
pub use engine::{Scanner, Suppressed, ALLOW_MARKER, MAX_LINE_EXTENSION};
pub use filter::{is_placeholder, shannon_entropy, Allowlist, AllowlistError};
pub use finding::{Chunk, Confidence, Finding, Origin, Via};
pub use prefilter::PrefilterError;
pub use secret::{hex, redact, Fingerprint, Secret};
pub use sink::{BoxFuture, FindingSink, Handled, SinkError};
