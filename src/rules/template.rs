//! The placeholder language of `verify`/`revoke` templates.
//!
//! A placeholder is `{{ expr }}`: a variable (`secret`, `pair`, `api_url`,
//! `env.NAME`, the request's clock and, in headers and signatures, the parts
//! of the request already built), a string literal (`"…"`, with `\"`, `\\`,
//! `\n`), or a function of expressions: `basic(user, password)`,
//! `concat(a, b, …)`, `after(x, sep)` (what follows the last `sep`: a
//! Mailchimp key's data centre), `part(x, sep, "n")` (the n-th piece, from
//! 0: a SendGrid key's id), `hex(x)`, `base64(x)`, `base64_decode(x)`, `sha256(x)`,
//! `sha512(x)`, `hmac_sha256(key, msg)`, `hmac_sha384(key, msg)`,
//! `hmac_sha512(key, msg)`. That covers every shape providers use to take a
//! key: a header, a bearer token, HTTP basic, a query parameter, a key and
//! its partner secret, and HMAC-signed requests (exchanges, AWS SigV4).
//!
//! Parsing is separate from evaluation so that `rules check` names an
//! unknown placeholder or a function called wrongly before any call is made.
//! Values are bytes (a digest is not text); what lands in a request must be
//! text, so a digest goes through `hex` or `base64` first.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Variables every template string may use.
pub const VARIABLES: &[&str] = &[
    "secret",
    "pair",
    "api_url",
    "timestamp",
    "timestamp_ms",
    "timestamp_iso",
    "amz_date",
    "date",
];

/// Variables of the request being built, usable only where the request's
/// URL and body already exist: headers and `query_signature`.
pub const REQUEST_VARIABLES: &[&str] = &["method", "host", "path", "query", "body"];

/// `(name, arguments)`; `None` means any number, at least one.
const FUNCTIONS: &[(&str, Option<usize>)] = &[
    ("basic", Some(2)),
    ("concat", None),
    ("after", Some(2)),
    ("part", Some(3)),
    ("hex", Some(1)),
    ("base64", Some(1)),
    ("base64_decode", Some(1)),
    ("sha256", Some(1)),
    ("sha512", Some(1)),
    ("hmac_sha256", Some(2)),
    ("hmac_sha384", Some(2)),
    ("hmac_sha512", Some(2)),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Var(String),
    Text(String),
    Call(String, Vec<Expr>),
}

/// A template string cut into literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Expr(Expr),
}

/// What is wrong with a template string. Never quotes the string itself
/// (a key pasted into a template must not come out in an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("`{{{{` without a closing `}}}}`")]
    Unclosed,
    #[error("unknown placeholder `{0}`; use {{{{secret}}}}, {{{{pair}}}}, {{{{api_url}}}}, {{{{env.NAME}}}}, {{{{timestamp}}}}/{{{{timestamp_ms}}}}/{{{{timestamp_iso}}}}/{{{{amz_date}}}}/{{{{date}}}}, in headers and signatures {{{{method}}}}/{{{{host}}}}/{{{{path}}}}/{{{{query}}}}/{{{{body}}}}, or a function: basic, concat, after, part, hex, base64, base64_decode, sha256, sha512, hmac_sha256, hmac_sha384, hmac_sha512")]
    Unknown(String),
    #[error("`{0}` describes the request being built: use it in a header or query_signature, not in the url or body")]
    TooEarly(String),
    #[error("{name}() takes {want} argument(s), not {got}")]
    Arity {
        name: String,
        want: String,
        got: usize,
    },
    #[error("malformed placeholder: {0}")]
    Malformed(&'static str),
}

/// Cuts `text` into pieces; every placeholder is parsed and its names
/// checked (`request_vars`: whether [`REQUEST_VARIABLES`] may appear).
pub fn parse(text: &str, request_vars: bool) -> Result<Vec<Piece>, SyntaxError> {
    parse_with(text, request_vars, &[])
}

/// [`parse`], where `extra` names may appear as variables too (what the
/// earlier steps of a multi-step revoke extracted).
pub fn parse_with(
    text: &str,
    request_vars: bool,
    extra: &[&str],
) -> Result<Vec<Piece>, SyntaxError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = closing(after).ok_or(SyntaxError::Unclosed)?;
        let mut p = Parser {
            s: &after.as_bytes()[..end],
            at: 0,
        };
        let expr = p.expr()?;
        p.space();
        if p.at != p.s.len() {
            return Err(SyntaxError::Malformed("text after the expression"));
        }
        check(&expr, request_vars, extra)?;
        pieces.push(Piece::Expr(expr));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    Ok(pieces)
}

/// Where the placeholder's `}}` is: the first one outside a string literal.
fn closing(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted && b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn check(e: &Expr, request_vars: bool, extra: &[&str]) -> Result<(), SyntaxError> {
    match e {
        Expr::Text(_) => Ok(()),
        Expr::Var(v) if VARIABLES.contains(&v.as_str()) => Ok(()),
        Expr::Var(v) if extra.contains(&v.as_str()) => Ok(()),
        Expr::Var(v) if v.strip_prefix("env.").is_some_and(valid_env) => Ok(()),
        Expr::Var(v) if REQUEST_VARIABLES.contains(&v.as_str()) => match request_vars {
            true => Ok(()),
            false => Err(SyntaxError::TooEarly(v.clone())),
        },
        Expr::Var(v) => Err(SyntaxError::Unknown(shown(v))),
        Expr::Call(name, args) => {
            let Some(&(_, arity)) = FUNCTIONS.iter().find(|(n, _)| n == name) else {
                return Err(SyntaxError::Unknown(format!("{}(…)", shown(name))));
            };
            let ok = match arity {
                Some(n) => args.len() == n,
                None => !args.is_empty(),
            };
            if !ok {
                return Err(SyntaxError::Arity {
                    name: name.clone(),
                    want: arity.map_or("one or more".into(), |n| n.to_string()),
                    got: args.len(),
                });
            }
            args.iter().try_for_each(|a| check(a, request_vars, extra))
        }
    }
}

fn valid_env(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A name as an error may show it: a long one may be a pasted key.
fn shown(name: &str) -> String {
    if name.len() > 40 {
        format!("{}…", name.chars().take(12).collect::<String>())
    } else {
        name.to_string()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        self.space();
        match self.s.get(self.at) {
            Some(b'"') => self.string(),
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let start = self.at;
                while self
                    .s
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || b"_.".contains(c))
                {
                    self.at += 1;
                }
                let name = String::from_utf8_lossy(&self.s[start..self.at]).into_owned();
                self.space();
                if self.s.get(self.at) != Some(&b'(') {
                    return Ok(Expr::Var(name));
                }
                self.at += 1;
                let mut args = Vec::new();
                self.space();
                if self.s.get(self.at) == Some(&b')') {
                    self.at += 1;
                    return Ok(Expr::Call(name, args));
                }
                loop {
                    args.push(self.expr()?);
                    self.space();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b')') => {
                            self.at += 1;
                            return Ok(Expr::Call(name, args));
                        }
                        _ => return Err(SyntaxError::Malformed("expected `,` or `)`")),
                    }
                }
            }
            Some(_) => Err(SyntaxError::Malformed(
                "expected a name, a function call or a \"string\"",
            )),
            None => Err(SyntaxError::Malformed("empty placeholder")),
        }
    }

    fn string(&mut self) -> Result<Expr, SyntaxError> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.at) {
                None => return Err(SyntaxError::Malformed("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    let text = String::from_utf8(out)
                        .map_err(|_| SyntaxError::Malformed("string is not UTF-8"))?;
                    return Ok(Expr::Text(text));
                }
                Some(b'\\') => {
                    self.at += 1;
                    out.push(match self.s.get(self.at) {
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        _ => return Err(SyntaxError::Malformed("unknown escape in string")),
                    });
                }
                Some(&c) => out.push(c),
            }
            self.at += 1;
        }
    }
}

/// Why an expression could not be evaluated. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Variable(String),
    #[error("base64_decode: the value is not base64")]
    NotBase64,
    #[error("part: the third argument must be a piece number such as \"1\"")]
    NotIndex,
    #[error("the value is binary (a digest?): wrap it in hex(…) or base64(…)")]
    Binary,
}

/// Evaluates `e`; `var` supplies every variable (it is only asked for names
/// [`parse`] accepted).
pub fn eval(
    e: &Expr,
    var: &mut dyn FnMut(&str) -> Result<Vec<u8>, EvalError>,
) -> Result<Vec<u8>, EvalError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(match e {
        Expr::Text(t) => t.as_bytes().to_vec(),
        Expr::Var(v) => var(v)?,
        Expr::Call(name, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, var)?);
            }
            let arg = |i: usize| vals.get(i).map(Vec::as_slice).unwrap_or_default();
            match name.as_str() {
                "basic" => {
                    let mut pair = arg(0).to_vec();
                    pair.push(b':');
                    pair.extend_from_slice(arg(1));
                    b64.encode(pair).into_bytes()
                }
                "concat" => vals.concat(),
                "after" => {
                    let (x, sep) = (arg(0), arg(1));
                    let at = (!sep.is_empty())
                        .then(|| x.windows(sep.len()).rposition(|w| w == sep))
                        .flatten();
                    at.map_or(x, |i| &x[i + sep.len()..]).to_vec()
                }
                "part" => {
                    // The n-th piece (from 0) of x cut at sep: a SendGrid
                    // key's id is `part(secret, ".", "1")`.
                    let (x, sep) = (arg(0), arg(1));
                    let n: usize = std::str::from_utf8(arg(2))
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .ok_or(EvalError::NotIndex)?;
                    let mut pieces = Vec::new();
                    let mut rest = x;
                    while let Some(i) = (!sep.is_empty())
                        .then(|| rest.windows(sep.len()).position(|w| w == sep))
                        .flatten()
                    {
                        pieces.push(&rest[..i]);
                        rest = &rest[i + sep.len()..];
                    }
                    pieces.push(rest);
                    pieces.get(n).map(|p| p.to_vec()).unwrap_or_default()
                }
                "hex" => hex(arg(0)).into_bytes(),
                "base64" => b64.encode(arg(0)).into_bytes(),
                "base64_decode" => b64.decode(arg(0)).map_err(|_| EvalError::NotBase64)?,
                "sha256" => Sha256::digest(arg(0)).to_vec(),
                "sha512" => Sha512::digest(arg(0)).to_vec(),
                "hmac_sha256" => hmac::<Hmac<Sha256>>(arg(0), arg(1)),
                "hmac_sha384" => hmac::<Hmac<Sha384>>(arg(0), arg(1)),
                "hmac_sha512" => hmac::<Hmac<Sha512>>(arg(0), arg(1)),
                // parse() let no other name through.
                _ => return Err(EvalError::Variable(format!("no function {name}"))),
            }
        }
    })
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The clock values of one request, taken once so that a timestamp in the
/// URL and the one a signature covers are the same.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub unix_ms: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock { unix_ms }
    }

    /// `timestamp`, `timestamp_ms`, `timestamp_iso`, `amz_date`, `date`.
    pub fn var(&self, name: &str) -> Option<String> {
        let secs = self.unix_ms / 1000;
        let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
        let (h, mi, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
        Some(match name {
            "timestamp" => secs.to_string(),
            "timestamp_ms" => self.unix_ms.to_string(),
            "timestamp_iso" => format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                self.unix_ms % 1000
            ),
            "amz_date" => format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
            "date" => format!("{y:04}{mo:02}{d:02}"),
            _ => return None,
        })
    }
}

/// Days since 1970-01-01 to (year, month, day): H. Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Whether any placeholder of `text` names `var` (e.g. `pair`).
pub fn uses(text: &str, var: &str) -> bool {
    fn walk(e: &Expr, var: &str) -> bool {
        match e {
            Expr::Var(v) => v == var,
            Expr::Text(_) => false,
            Expr::Call(_, args) => args.iter().any(|a| walk(a, var)),
        }
    }
    parse(text, true).is_ok_and(|pieces| {
        pieces.iter().any(|p| match p {
            Piece::Expr(e) => walk(e, var),
            Piece::Text(_) => false,
        })
    })
}

/// Lower-case hex, as the providers' signatures are written.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, EvalError> {
        let pieces = parse(text, true).unwrap();
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Expr(e) => out.extend(eval(&e, &mut |v| match v {
                    "secret" => Ok(b"key".to_vec()),
                    "pair" => Ok(b"key-secret".to_vec()),
                    "query" => Ok(b"symbol=LTCBTC&timestamp=1".to_vec()),
                    _ => Err(EvalError::Variable(v.into())),
                })?),
            }
        }
        String::from_utf8(out).map_err(|_| EvalError::Binary)
    }

    #[test]
    fn functions_compute_what_providers_expect() {
        assert_eq!(
            run(r#"Basic {{ basic(secret, "") }}"#).unwrap(),
            "Basic a2V5Og=="
        );
        assert_eq!(
            run(r#"{{basic("AC1", pair)}}"#).unwrap(),
            "QUMxOmtleS1zZWNyZXQ="
        );
        // RFC 4231 test case 2.
        assert_eq!(
            run(r#"{{hex(hmac_sha256("Jefe", "what do ya want for nothing?"))}}"#).unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            run(r#"{{hex(sha256(concat("a", "b", "c")))}}"#).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            run(r#"{{base64_decode(base64(concat(secret, "\"")))}}"#).unwrap(),
            "key\""
        );
        assert_eq!(
            run(r#"https://{{after(concat("0f3a-", "us21"), "-")}}.api.example"#).unwrap(),
            "https://us21.api.example"
        );
        assert_eq!(run(r#"{{after(secret, "-")}}"#).unwrap(), "key");
        assert_eq!(
            run(r#"{{part("SG.id1.sec", ".", "1")}}"#).unwrap(),
            "id1",
            "a SendGrid key's id"
        );
        assert_eq!(run(r#"{{part("a.b", ".", "5")}}"#).unwrap(), "");
        assert_eq!(
            run(r#"{{part("a.b", ".", "x")}}"#).unwrap_err(),
            EvalError::NotIndex
        );
        assert_eq!(
            run("{{sha256(secret)}}").unwrap_err(),
            EvalError::Binary,
            "a digest must be encoded before it lands"
        );
        assert_eq!(
            run("{{base64_decode(secret)}}").unwrap_err(),
            EvalError::NotBase64
        );
    }

    #[test]
    fn bad_placeholders_are_named_at_parse_time() {
        let err = |t: &str, req| parse(t, req).unwrap_err();
        assert!(matches!(err("{{token}}", true), SyntaxError::Unknown(n) if n == "token"));
        assert!(parse_with("{{api_url}}/keys/{{key_id}}", false, &["key_id"]).is_ok());
        assert!(matches!(
            err("{{md5(secret)}}", true),
            SyntaxError::Unknown(_)
        ));
        assert!(matches!(
            err("{{hex(secret, pair)}}", true),
            SyntaxError::Arity { got: 2, .. }
        ));
        assert!(matches!(err("{{query}}", false), SyntaxError::TooEarly(_)));
        assert_eq!(err("{{secret", true), SyntaxError::Unclosed);
        assert!(matches!(
            err("{{hex(secret}}", true),
            SyntaxError::Malformed(_)
        ));
        assert!(matches!(err(r#"{{"a}}"#, true), SyntaxError::Unclosed));
        assert!(matches!(err("{{ }}", true), SyntaxError::Malformed(_)));
        // A `}}` inside a string literal does not close the placeholder.
        assert_eq!(run(r#"{{concat("}}", secret)}}"#).unwrap(), "}}key");
        let long = "a".repeat(60);
        let shown = err(&format!("{{{{{long}}}}}"), true).to_string();
        assert!(!shown.contains(&long), "{shown}");
    }

    #[test]
    fn the_clock_formats_every_timestamp() {
        // 2024-02-29T13:04:05.678Z
        let c = Clock {
            unix_ms: 1_709_211_845_678,
        };
        assert_eq!(c.var("timestamp").unwrap(), "1709211845");
        assert_eq!(c.var("timestamp_ms").unwrap(), "1709211845678");
        assert_eq!(c.var("timestamp_iso").unwrap(), "2024-02-29T13:04:05.678Z");
        assert_eq!(c.var("amz_date").unwrap(), "20240229T130405Z");
        assert_eq!(c.var("date").unwrap(), "20240229");
        assert!(uses("a {{hex(hmac_sha256(pair, query))}}", "pair"));
        assert!(!uses("{{secret}}", "pair"));
    }
}
