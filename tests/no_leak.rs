//! A report must never become the leak: without `--show-secrets` no format,
//! no report file and nothing on stderr carries a key; with it, every format
//! does (that is what the flag is for).

use crate::scan_cli::{rules_dir, scan, KEY, KEY2};
use crate::support::{keysentry, write};
use tempfile::TempDir;

const FORMATS: [&str; 4] = ["text", "json", "jsonl", "sarif"];

/// The part of a key no redacted form may show: everything after its first
/// few characters.
fn tails() -> [&'static str; 2] {
    [&KEY[8..], &KEY2[8..]]
}

fn leaks(bytes: &[u8]) -> Vec<&'static str> {
    let text = String::from_utf8_lossy(bytes);
    tails().into_iter().filter(|t| text.contains(t)).collect()
}

fn tree() -> TempDir {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "app/.env", &format!("CREDENTIAL={KEY}\n"));
    write(
        dir.path(),
        "app/main.go",
        &format!("const k = \"{KEY2}\"\n"),
    );
    dir
}

#[test]
fn no_format_prints_a_key_without_show_secrets() {
    let rules = rules_dir();
    let dir = tree();
    for format in FORMATS {
        let o = scan(
            rules.path(),
            &[dir.path().to_str().unwrap(), "--format", format],
        );
        assert_eq!(o.status.code(), Some(1), "{format}");
        assert_eq!(leaks(&o.stdout), Vec::<&str>::new(), "{format} stdout");
        assert_eq!(leaks(&o.stderr), Vec::<&str>::new(), "{format} stderr");
    }
}

#[test]
fn no_report_file_holds_a_key_without_show_secrets() {
    let rules = rules_dir();
    let dir = tree();
    let out = TempDir::new().unwrap();
    for format in FORMATS {
        let file = out.path().join(format!("report.{format}"));
        let o = scan(
            rules.path(),
            &[
                dir.path().to_str().unwrap(),
                "--format",
                format,
                "--output",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{format}");
        let written = std::fs::read(&file).unwrap();
        assert!(!written.is_empty(), "{format}");
        assert_eq!(leaks(&written), Vec::<&str>::new(), "{format} file");
        assert_eq!(leaks(&o.stderr), Vec::<&str>::new(), "{format} stderr");
    }
}

#[test]
fn stdin_scan_does_not_echo_the_key() {
    let rules = rules_dir();
    for format in FORMATS {
        let o = keysentry()
            .args(["scan", "-", "--format", format, "--rules"])
            .arg(rules.path())
            .write_stdin(format!("{KEY}\n"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{format}");
        assert!(leaks(&o.stdout).is_empty() && leaks(&o.stderr).is_empty());
    }
}

#[test]
fn show_secrets_prints_the_key_in_every_format() {
    let rules = rules_dir();
    let dir = tree();
    for format in FORMATS {
        let o = scan(
            rules.path(),
            &[
                dir.path().to_str().unwrap(),
                "--format",
                format,
                "--show-secrets",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{format}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(KEY) && out.contains(KEY2), "{format}: {out}");
        assert_eq!(leaks(&o.stderr), Vec::<&str>::new(), "{format} stderr");
    }
}

#[test]
fn show_secrets_adds_the_secret_field_to_json() {
    let rules = rules_dir();
    let dir = tree();
    let o = scan(
        rules.path(),
        &[
            dir.path().to_str().unwrap(),
            "--format",
            "json",
            "--show-secrets",
        ],
    );
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let secrets: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule_id"] == "testprov.ksq-key")
        .map(|f| f["secret"].as_str().expect("secret field"))
        .collect();
    assert_eq!(secrets, [KEY, KEY2]);
}

#[test]
fn a_key_in_a_bad_baseline_is_not_echoed_in_the_error() {
    // A user who passes the wrong file (their .env) as a baseline gets an
    // error naming the file, not its contents.
    let rules = rules_dir();
    let dir = tree();
    let baseline = dir.path().join("app/.env");
    let o = scan(
        rules.path(),
        &[
            dir.path().to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(".env"));
    assert_eq!(leaks(&o.stderr), Vec::<&str>::new());
    assert_eq!(leaks(&o.stdout), Vec::<&str>::new());

    // JSON that is not a report: serde would quote the string it choked on.
    let out = TempDir::new().unwrap();
    for (name, text) in [
        ("list.json", format!("[\"{KEY}\"]")),
        ("fp.json", format!("[{{\"fingerprint\": \"{KEY}\"}}]")),
        ("lines.jsonl", format!("{{\"fingerprint\": [\"{KEY}\"]}}\n")),
    ] {
        let baseline = out.path().join(name);
        std::fs::write(&baseline, text).unwrap();
        let o = scan(
            rules.path(),
            &[
                dir.path().to_str().unwrap(),
                "--baseline",
                baseline.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert_eq!(leaks(&o.stderr), Vec::<&str>::new(), "{name}");
    }
}

#[test]
fn a_key_in_a_refused_plain_http_url_is_not_echoed() {
    // A token in a provider URL's query, refused for plain http://: the
    // error names the field and the host, never the URL.
    let dir = tree();
    let config = dir.path().join("keysentry.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}/state\nproviders:\n  github: {{api_url: 'http://example.invalid/api?token={KEY}'}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let check = keysentry()
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("providers.github.api_url: plain http://")
    );
    let rules = rules_dir();
    let scan = scan(
        rules.path(),
        &[
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--remediate",
        ],
    );
    assert_eq!(scan.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&scan.stderr).contains("allow_insecure_http"));
    for o in [&check, &scan] {
        assert_eq!(leaks(&o.stdout), Vec::<&str>::new());
        assert_eq!(leaks(&o.stderr), Vec::<&str>::new());
    }
}
