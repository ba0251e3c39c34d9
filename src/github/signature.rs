//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw request body under the
//! webhook secret, sent as `sha256=<64 hex digits>`. The header is checked
//! before a byte of the body is read, the MAC computed while the body
//! streams in ([`Verifier`]), and nothing of the body parsed before it holds.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// The shared webhook secret. `Debug` never prints it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

// Wiped when dropped, like every key keysentry holds.
impl Drop for WebhookSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl WebhookSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        WebhookSecret(secret.into())
    }

    /// The header value GitHub would send for `body` (tests, benchmarks).
    pub fn sign(&self, body: &[u8]) -> String {
        format!("sha256={}", crate::scan::hex(&self.mac(body)))
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    fn mac(&self, body: &[u8]) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// Accepts `header` only if it is the signature of `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let mut v = self.verifier(header)?;
        v.update(body);
        v.finish()
    }

    /// Checks the header's form at once (`Missing`, `Malformed`), before a
    /// byte of the body is read; the body is then fed as it arrives.
    pub fn verifier(&self, header: Option<&[u8]>) -> Result<Verifier, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let claimed = decode_hex32(hex).ok_or(SignatureError::Malformed)?;
        Ok(Verifier {
            mac: self.hmac(),
            claimed,
        })
    }
}

/// A signature check in progress: the MAC of what was fed so far.
pub struct Verifier {
    mac: Hmac<Sha256>,
    claimed: [u8; 32],
}

impl Verifier {
    pub fn update(&mut self, chunk: &[u8]) {
        self.mac.update(chunk);
    }

    /// Whether the claimed signature is that of everything fed, compared in
    /// constant time.
    pub fn finish(self) -> Result<(), SignatureError> {
        let mac: [u8; 32] = self.mac.finalize().into_bytes().into();
        if bool::from(mac.ct_eq(&self.claimed)) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "missing X-Hub-Signature-256 header; set the webhook secret in the GitHub webhook settings"
    )]
    Missing,
    #[error("malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body; the webhook secret on GitHub differs from github.webhook.secret_env")]
    Mismatch,
}

fn decode_hex32(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let secret = WebhookSecret::new("It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(secret.sign(b"Hello, World!"), sig);
        assert_eq!(
            secret.verify(Some(sig.as_bytes()), b"Hello, World!"),
            Ok(())
        );
    }

    #[test]
    fn rejects_missing_malformed_and_wrong_signatures() {
        let secret = WebhookSecret::new("s3cret");
        let body = b"{}";
        let good = secret.sign(body);
        assert_eq!(secret.verify(None, body), Err(SignatureError::Missing));
        assert_eq!(
            secret.verify(Some(b"sha1=abc"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            secret.verify(Some(&good.as_bytes()[..70]), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            secret.verify(Some(good.as_bytes()), b"{} "),
            Err(SignatureError::Mismatch)
        );
        let other = WebhookSecret::new("other").sign(body);
        assert_eq!(
            secret.verify(Some(other.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_body_fed_in_pieces_verifies_as_a_whole() {
        let secret = WebhookSecret::new("s3cret");
        let body = b"{\"zen\": \"Design for failure.\"}";
        let sig = secret.sign(body);
        let mut v = secret.verifier(Some(sig.as_bytes())).unwrap();
        for piece in body.chunks(5) {
            v.update(piece);
        }
        assert_eq!(v.finish(), Ok(()));
        let mut v = secret.verifier(Some(sig.as_bytes())).unwrap();
        v.update(&body[..body.len() - 1]);
        assert_eq!(v.finish(), Err(SignatureError::Mismatch));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", WebhookSecret::new("hunter2")).contains("hunter2"));
    }
}
