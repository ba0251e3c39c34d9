//! The sender of a syslog message: its HOSTNAME and APP-NAME (RFC 5424) or
//! HOSTNAME and TAG (RFC 3164, BSD syslog). Only the header is read; the
//! whole message, header included, is what gets scanned.
//!
//! Both names come from the network, and end up in the incident's location
//! and the daemon's log: they are cut to printable ASCII, [`MAX_NAME`]
//! bytes, and any key-like run is masked (a key sent as a host name is
//! still found in the message, but not echoed).

/// Longest host or app name kept (RFC 5424 allows 255 for HOSTNAME).
pub const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub host: Option<String>,
    pub app: Option<String>,
}

/// The sender, or `None` when `msg` is not syslog (no `<PRI>`): such a
/// message is still scanned, and counted as a parse failure.
pub fn sender(msg: &[u8]) -> Option<Sender> {
    let rest = pri(msg)?;
    // RFC 5424: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP ...
    if let Some(after) = version(rest) {
        let mut fields = after.splitn(4, |b| *b == b' ');
        let _timestamp = fields.next()?;
        let host = fields.next().and_then(nil_or_name);
        let app = fields.next().and_then(nil_or_name);
        return Some(Sender { host, app });
    }
    // RFC 3164: TIMESTAMP ("Mmm dd hh:mm:ss") SP HOSTNAME SP TAG[pid]: MSG
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    if let Some(after) = bsd_timestamp(rest) {
        let mut fields = after.splitn(3, |b| *b == b' ');
        let first = fields.next().unwrap_or_default();
        if is_tag(first) {
            // No HOSTNAME (a local sender, e.g. `logger` to /dev/log).
            return Some(Sender {
                host: None,
                app: tag(first),
            });
        }
        let host = name(first);
        let app = fields.next().filter(|t| is_tag(t)).and_then(tag);
        return Some(Sender { host, app });
    }
    // No timestamp: `<PRI>TAG: MSG`, as some embedded senders write.
    let first = rest.split(|b| *b == b' ').next().unwrap_or_default();
    let app = is_tag(first).then(|| tag(first)).flatten();
    Some(Sender { host: None, app })
}

/// After `<PRI>` (1 to 3 digits, at most 191).
fn pri(msg: &[u8]) -> Option<&[u8]> {
    let rest = msg.strip_prefix(b"<")?;
    let end = rest.iter().take(4).position(|b| *b == b'>')?;
    let digits = &rest[..end];
    let ok = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
    let value: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (ok && value <= 191).then(|| &rest[end + 1..])
}

/// After `VERSION SP` (RFC 5424: a non-zero digit, at most 3).
fn version(rest: &[u8]) -> Option<&[u8]> {
    let end = rest.iter().take(4).position(|b| *b == b' ')?;
    let digits = &rest[..end];
    let ok = !digits.is_empty() && digits[0] != b'0' && digits.iter().all(u8::is_ascii_digit);
    ok.then(|| &rest[end + 1..])
}

const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// After `Mmm dd hh:mm:ss SP` (the day space-padded).
fn bsd_timestamp(rest: &[u8]) -> Option<&[u8]> {
    let ts = rest.get(..16)?;
    let month = MONTHS.contains(&&ts[..3]);
    let shape = ts[3] == b' '
        && (ts[4] == b' ' || ts[4].is_ascii_digit())
        && ts[5].is_ascii_digit()
        && ts[6] == b' '
        && ts[9] == b':'
        && ts[12] == b':'
        && ts[15] == b' ';
    (month && shape).then(|| &rest[16..])
}

/// `app:`, `app[123]:`: a TAG ends with `:` or a `[pid]`.
fn is_tag(t: &[u8]) -> bool {
    t.ends_with(b":") || t.ends_with(b"]") || t.contains(&b'[')
}

fn tag(t: &[u8]) -> Option<String> {
    let end = t
        .iter()
        .position(|b| matches!(b, b'[' | b':'))
        .unwrap_or(t.len());
    name(&t[..end])
}

fn nil_or_name(f: &[u8]) -> Option<String> {
    (f != b"-").then(|| name(f)).flatten()
}

/// A printable-ASCII name of at most [`MAX_NAME`] bytes, key-like runs
/// masked; `None` when nothing printable is left.
pub fn name(raw: &[u8]) -> Option<String> {
    let kept: String = raw
        .iter()
        .take(MAX_NAME)
        .map(|b| match b {
            b'!'..=b'~' => *b as char,
            _ => '?',
        })
        .collect();
    let kept = crate::mask::without_key_like_runs(&kept);
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(host: Option<&str>, app: Option<&str>) -> Option<Sender> {
        Some(Sender {
            host: host.map(str::to_string),
            app: app.map(str::to_string),
        })
    }

    #[test]
    fn rfc5424_names_host_and_app() {
        let m = b"<165>1 2026-12-01T10:00:00.003Z web-1.example.com payments 8710 ID47 [exampleSDID@32473 iut=\"3\"] x-api-key: t-...";
        assert_eq!(sender(m), s(Some("web-1.example.com"), Some("payments")));
        assert_eq!(sender(b"<13>1 - - - - - - hello"), s(None, None));
    }

    #[test]
    fn rfc3164_names_host_and_tag() {
        assert_eq!(
            sender(b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed"),
            s(Some("mymachine"), Some("su"))
        );
        assert_eq!(
            sender(b"<13>Dec  1 10:00:00 web-2 cron: job done"),
            s(Some("web-2"), Some("cron"))
        );
        // Without HOSTNAME, as a local sender writes it.
        assert_eq!(
            sender(b"<13>Dec  1 10:00:00 app[12]: hello"),
            s(None, Some("app"))
        );
        assert_eq!(sender(b"<13>myapp: no timestamp"), s(None, Some("myapp")));
    }

    #[test]
    fn not_syslog_is_none() {
        assert_eq!(sender(b"plain text"), None);
        assert_eq!(sender(b"<999>1 - - - - - - x"), None);
        assert_eq!(sender(b"<abc>x"), None);
        assert_eq!(sender(b""), None);
    }

    #[test]
    fn names_from_the_network_are_cut_and_masked() {
        let key = "t-6677183273e3a22c239969cb-dbb1e8c8d1c012c954834afa";
        let m = format!("<13>1 - {key} app - - - x");
        let got = sender(m.as_bytes()).unwrap();
        let host = got.host.unwrap();
        assert!(!host.contains("6677183273e3a22c239969cb"), "{host}");
        let long = format!("<13>1 - {} app - - - x", "h".repeat(1000));
        assert!(sender(long.as_bytes()).unwrap().host.unwrap().len() <= MAX_NAME * 3);
        assert_eq!(name(b"we\x1bird\xff"), Some("we?ird?".into()));
    }
}
