//! Precision of the built-in rules as a user meets it: documentation and
//! template values stay silent across providers, and a key that a provider
//! rule and the generic rule both match is reported once, by the provider
//! rule. (Recall on fresh keys and findings on real code are measured by
//! bench/recall.sh, not here.)

use crate::support::{key, keysentry, write};
use serde_json::Value;
use std::path::Path;
use tempfile::TempDir;

/// Every built-in rule, real binary, JSON findings and the exit code.
fn scan(dir: &Path) -> (Option<i32>, Vec<Value>, String) {
    let o = keysentry()
        .arg("scan")
        .arg(dir)
        .args(["--format", "json"])
        .output()
        .expect("run keysentry");
    let found: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    let mut output = String::from_utf8_lossy(&o.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&o.stdout));
    (
        o.status.code(),
        found.as_array().cloned().unwrap_or_default(),
        output,
    )
}

/// Placeholder and documentation values the way READMEs, .env.example files
/// and vendor docs write them: `xxxx`, `<your-key>`, `your_api_key_here`,
/// all-zero keys, `${VAR}` templates and vendors' published `EXAMPLE` keys
/// (AWS's pair from the IAM documentation), across providers.
const PLACEHOLDERS: &str = r#"# .env.example - copy to .env and fill in
AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
aws_session_token = AQoDYXdzEJr...<remainder of security token>
GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
GH_TOKEN=github_pat_<your-token>
GITLAB_TOKEN=glpat-xxxxxxxxxxxxxxxxxxxx
NPM_TOKEN=npm_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx
STRIPE_WEBHOOK_SECRET=whsec_<your-webhook-secret>
SLACK_BOT_TOKEN=xoxb-your-bot-token
SLACK_WEBHOOK_URL=https://hooks.slack.com/services/TXXXXXXXX/BXXXXXXXX/XXXXXXXXXXXXXXXXXXXXXXXX
SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
TWILIO_ACCOUNT_SID=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX
TWILIO_AUTH_TOKEN=your_auth_token
MAILGUN_API_KEY=key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
OPENAI_API_KEY=sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
OPENAI_API_KEY=<your-openai-api-key>
ANTHROPIC_API_KEY=sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-xxxxxxxAA
HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
GOOGLE_MAPS_API_KEY=AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX
DATADOG_API_KEY=00000000000000000000000000000000
TATUM_API_KEY=t-000000000000000000000000-000000000000000000000000
TATUM_API_KEY=${TATUM_API_KEY}
INFURA_URL=https://mainnet.infura.io/v3/YOUR_PROJECT_ID
ALCHEMY_URL=https://eth-mainnet.g.alchemy.com/v2/your-api-key
ETHERSCAN_API_KEY=YourApiKeyToken
PRIVATE_KEY=0x0000000000000000000000000000000000000000000000000000000000000000
DATABASE_URL=postgres://user:<password>@localhost:5432/app
REDIS_URL=redis://:${REDIS_PASSWORD}@cache:6379/0
DISCORD_WEBHOOK=https://discord.com/api/webhooks/<id>/<token>
api_key = "your_api_key_here"
api_key: "<your-api-key>"
secret: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
token = "0000000000000000000000000000000000000000"
Authorization: Bearer <token>
Authorization: Bearer ${API_TOKEN}
"apiKey": "{{ api_key }}",
"#;

#[test]
fn placeholder_and_documentation_values_stay_silent_across_providers() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), ".env.example", PLACEHOLDERS);
    write(
        dir.path(),
        "docs/quickstart.md",
        &format!("```\n{PLACEHOLDERS}```\n"),
    );
    let (status, found, output) = scan(dir.path());
    let listed: Vec<String> = found
        .iter()
        .map(|f| format!("{}:{} {}", f["path"], f["line"], f["rule_id"]))
        .collect();
    assert!(
        found.is_empty(),
        "placeholders reported: {listed:#?}\n{output}"
    );
    assert_eq!(status, Some(0), "{output}");
}

/// The same file with one real-shaped key per line is not silent: the
/// placeholder test above is not passing because nothing in such a file
/// is ever scanned.
#[test]
fn the_placeholder_file_with_real_shaped_keys_is_reported() {
    let dir = TempDir::new().unwrap();
    let tatum = key("precision-placeholder");
    let text = PLACEHOLDERS.replace(
        "t-000000000000000000000000-000000000000000000000000",
        &tatum,
    );
    write(dir.path(), ".env.example", &text);
    let (status, found, output) = scan(dir.path());
    assert_eq!(found.len(), 1, "{output}");
    assert_eq!(found[0]["rule_id"], "tatum.api-key", "{output}");
    assert_eq!(status, Some(1), "{output}");
}

/// The generic rule's own pattern, read from the built-in file, so the
/// overlap test below checks a line both rules really match.
fn generic_matches(line: &str) -> bool {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../rules/generic.yaml")).expect("generic.yaml parses");
    let pattern = yaml["rules"][0]["pattern"]
        .as_str()
        .expect("generic.yaml has a pattern");
    regex::Regex::new(pattern)
        .expect("generic pattern compiles")
        .is_match(line)
}

#[test]
fn a_key_both_a_provider_rule_and_the_generic_rule_match_is_reported_once_by_the_provider_rule() {
    let tatum = key("precision-overlap");
    let stripe = "sk_live_51Hq8Zk2eZvKYlo2CvQ7mN3pR";
    let lines = [
        (
            "tatum.api-key",
            "tatum",
            format!("TATUM_API_KEY=\"{tatum}\""),
        ),
        (
            "stripe.secret-key",
            "stripe",
            format!("stripe_secret_key: \"{stripe}\""),
        ),
    ];
    for (rule, provider, line) in &lines {
        assert!(generic_matches(line), "the generic rule must match {line}");
        let dir = TempDir::new().unwrap();
        write(
            dir.path(),
            "config/app.env",
            &format!("# service\n{line}\n"),
        );
        let (status, found, output) = scan(dir.path());
        assert_eq!(found.len(), 1, "one finding for {line}: {output}");
        assert_eq!(found[0]["rule_id"], *rule, "{output}");
        assert_eq!(found[0]["provider"], *provider, "{output}");
        assert_eq!(found[0]["line"], 2, "{output}");
        assert_eq!(status, Some(1), "{output}");
    }
}

/// Regression (found by bench/recall.sh on real code): a constant typed by a
/// SCREAMING_SNAKE name (windows-sys) and RFC 6749's published example
/// tokens (oauthlib's docs) were reported by the generic rule.
#[test]
fn constants_in_code_and_the_oauth_rfc_example_tokens_are_not_keys() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "src/identity.rs",
        "pub const MsV1_0LookupToken: MSV1_0_PROTOCOL_MESSAGE_TYPE = 15i32;\n",
    );
    write(
        dir.path(),
        "oauth2/parameters.py",
        "        {\n            \"access_token\":\"2YotnFZFEjr1zCsicMWpAA\",\n            \"refresh_token\":\"tGzv3JOkF0XG5Qx2TlKWIA\",\n        }\n",
    );
    let (status, found, output) = scan(dir.path());
    assert!(found.is_empty(), "{output}");
    assert_eq!(status, Some(0), "{output}");
}
