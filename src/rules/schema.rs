//! The rule YAML schema (`rules/<provider>.yaml`), as in ARCHITECTURE.md.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable and unique, `<provider>.<name>`: baselines, incidents and
    /// SARIF results refer to it.
    pub id: String,
    pub name: String,
    pub provider: String,
    /// Literals for the prefilter, matched case-insensitively.
    pub keywords: Vec<String>,
    /// Regex with a named group `secret`.
    pub pattern: String,
    #[serde(default)]
    pub min_entropy: Option<f64>,
    /// Bytes either side of a keyword hit that the regex sees (default 256),
    /// widened to whole lines. Long secrets such as PEM blocks need more.
    #[serde(default)]
    pub window: Option<usize>,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub negative_examples: Vec<String>,
    /// A key that works only with a second one (AWS key id + secret, Twilio
    /// SID + token, an exchange's key + secret): the rule that finds the
    /// partner, and how near it must be. Templates reach it as `{{pair}}`.
    #[serde(default)]
    pub pair: Option<PairSpec>,
    #[serde(default)]
    pub verify: Option<HttpTemplate>,
    /// One call, or `steps:` (calls in order, each fed by the answers of
    /// the earlier ones).
    #[serde(default)]
    pub revoke: Option<Revoke>,
    /// A call that replaces the key and answers with the new one (at
    /// `new_key_pointer`), the old one dead; used under the `regenerate`
    /// policy when the new key has somewhere to go.
    #[serde(default)]
    pub rotate: Option<HttpTemplate>,
    /// What the owner does by hand where the provider has no revoke API
    /// (the Dashboard's exact steps); alerts include it.
    #[serde(default)]
    pub manual: Option<String>,
    /// What the rule is for, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// Provider pages on the key's format and how to revoke or rotate it;
    /// the text report and SARIF point the user at them.
    #[serde(default)]
    pub references: Vec<String>,
    /// A checksum the engine applies after the regex (`github-crc32`,
    /// `npm-crc32`, `base58check`, `bip39`): valid means `high` confidence;
    /// invalid drops the candidate or leaves it `medium`, per kind.
    #[serde(default)]
    pub checksum: Option<Checksum>,
    /// Regexes over a file's path: in a small file whose path matches, the
    /// rule runs over the whole file without waiting for a keyword hit (a
    /// Solana `id.json` or a seed backup holds the key and nothing else).
    #[serde(default)]
    pub files: Vec<String>,
    /// Matches to drop: any entry that matches suppresses the finding.
    #[serde(default)]
    pub allow: Vec<RuleAllow>,
}

/// One allowlist entry of a rule (gitleaks' rule allowlists map onto it).
/// Without `all`, any criterion that matches suppresses the finding; with
/// `all: true`, every criterion given must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleAllow {
    /// Regexes tested against the secret.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Regexes tested against the whole line holding the secret.
    #[serde(default)]
    pub lines: Vec<String>,
    /// The secret contains one of these (ASCII case-insensitively).
    #[serde(default)]
    pub stopwords: Vec<String>,
    /// Regexes tested against the finding's path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Commit shas (or prefixes of at least 7 hex digits) to ignore.
    #[serde(default)]
    pub commits: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

/// `pair:` of a rule: its partner rule, found in the same file within
/// `within` lines of the match (the nearest one wins).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    pub rule: String,
    #[serde(default = "default_within")]
    pub within: u32,
}

fn default_within() -> u32 {
    5
}

/// An HTTP call described as data. Strings may use the placeholders of
/// [`super::template`]: `{{secret}}`, `{{pair}}`, `{{env.NAME}}`,
/// `{{api_url}}`, timestamps and functions (`basic`, `hmac_sha256`, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTemplate {
    pub method: String,
    pub url: String,
    /// The provider's public API base: what `{{api_url}}` is unless the
    /// config sets `providers.<name>.api_url` (a proxy, a region, a test
    /// double).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// A query parameter appended to the URL once the URL and body are
    /// built, so its value may sign them (`{{query}}`, `{{body}}`): the
    /// exchanges' `&signature=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_signature: Option<QuerySignature>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// verify: statuses meaning the key works.
    #[serde(default)]
    pub live: Vec<u16>,
    /// verify: statuses meaning the key is dead.
    #[serde(default)]
    pub dead: Vec<u16>,
    /// revoke and management calls: statuses meaning success.
    #[serde(default)]
    pub ok: Vec<u16>,
    /// When set, a `live` or `ok` status counts only if the response body
    /// contains this text: Slack answers 200 with `{"ok":false}` for dead
    /// tokens.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Management calls: RFC 6901 pointer to a new key in the JSON response.
    #[serde(default)]
    pub new_key_pointer: Option<String>,
}

/// `revoke:` of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Revoke {
    /// One call: the key revokes itself (GitHub, Slack, Doppler, ...).
    Call(Box<HttpTemplate>),
    /// `steps:` in order: look the key's id up, then delete it.
    Steps(Vec<Step>),
}

impl Revoke {
    /// The single call, when this is one.
    pub fn call(&self) -> Option<&HttpTemplate> {
        match self {
            Revoke::Call(t) => Some(t.as_ref()),
            Revoke::Steps(_) => None,
        }
    }
}

// A map with `steps:` is the multi-step form; any other map is one call.
// Each form keeps its own `deny_unknown_fields` errors (an untagged enum
// would only say "did not match any variant").
impl<'de> Deserialize<'de> for Revoke {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Revoke, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Steps {
            steps: Vec<Step>,
        }
        let v = serde_yaml::Value::deserialize(d)?;
        let multi = v.as_mapping().is_some_and(|m| m.contains_key("steps"));
        if multi {
            Steps::deserialize(v)
                .map(|s| Revoke::Steps(s.steps))
                .map_err(D::Error::custom)
        } else {
            HttpTemplate::deserialize(v)
                .map(|t| Revoke::Call(Box::new(t)))
                .map_err(D::Error::custom)
        }
    }
}

/// One call of a multi-step `revoke:`. Its strings may use the
/// placeholders of [`super::template`] and the names earlier steps
/// extracted (`{{key_id}}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Names the step in the journal (`revoke:<name>`), so a step done is
    /// never repeated after a restart.
    pub name: String,
    pub method: String,
    pub url: String,
    /// The base `{{api_url}}` stands for when the config sets none.
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses meaning the step succeeded; required for a step that
    /// changes state (anything but GET and HEAD).
    #[serde(default)]
    pub ok: Vec<u16>,
    /// Statuses meaning the key is already dead (counts as contained).
    #[serde(default)]
    pub dead: Vec<u16>,
    /// Statuses to try again after a pause (429 and 5xx always are).
    #[serde(default)]
    pub retry: Vec<u16>,
    /// Values for later steps: name → RFC 6901 pointer into the answer.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    /// Picks the key's own entry out of a list answer.
    #[serde(default)]
    pub find: Option<Find>,
}

/// `find:` of a step: exactly one item of the list must match, or nothing
/// is deleted and the owner is asked (a key that only looks similar is
/// never touched).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Find {
    /// Pointer to the array of candidates in the answer.
    pub list: String,
    /// Pointer inside an item → the value it must equal (a template, e.g.
    /// `{{hex(sha512(secret))}}`); every entry must match.
    #[serde(rename = "where")]
    pub matches: BTreeMap<String, String>,
    /// Values for later steps: name → pointer inside the matching item.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    /// Pointer to the next page's URL in the answer (a path or a URL on the
    /// same host); pages are followed until it is absent.
    #[serde(default)]
    pub next: Option<String>,
}

/// `query_signature:` of a template: `&<param>=<value>`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySignature {
    pub param: String,
    pub value: String,
}

pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// The checksums a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checksum {
    /// `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 30 base62 + 6 base62 of their CRC32.
    GithubCrc32,
    /// `npm_` + 30 base62 + 6 base62 of their CRC32 (GitHub's scheme).
    NpmCrc32,
    /// Base58 whose last 4 decoded bytes are the first 4 of the double
    /// SHA-256 of the rest (Bitcoin WIF keys, BIP-32 extended keys).
    Base58check,
    /// A BIP-39 English mnemonic: 12–24 words of the list whose last word
    /// carries the first ENT/32 bits of the SHA-256 of the entropy.
    Bip39,
}
