//! Helpers shared by the integration test modules: the binary, files, keys,
//! one simulator harness ([`sim::Sim`]) and one daemon harness
//! ([`daemon::Daemon`] for the real binary, [`daemon::InProcess`] for
//! `keysentry::daemon::run` on port 0).

#![allow(dead_code)]

use assert_cmd::Command;
use std::path::Path;

/// The `keysentry` binary under test.
pub fn keysentry() -> Command {
    let mut cmd = Command::cargo_bin("keysentry").expect("keysentry binary is built");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// `keysentry scan ARGS --format json --rules R`, run from `cwd`.
pub fn scan_json_in(cwd: &Path, rules: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    keysentry()
        .current_dir(cwd)
        .arg("scan")
        .args(args)
        .args(["--format", "json", "--rules"])
        .arg(rules.path())
        .output()
        .expect("run keysentry")
}

/// Writes `content` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create test dir");
    }
    std::fs::write(path, content).expect("write test file");
}

pub mod daemon;
pub mod openbao;
pub mod postgres;
pub mod sim;

use keysentry::scan::Fingerprint;

/// A distinct, valid-looking Tatum key per seed (what the built-in rule and
/// the simulator accept).
pub fn key(seed: &str) -> String {
    let hex = fingerprint(seed);
    format!("t-{}-{}", &hex[..24], &hex[24..48])
}

/// A key's fingerprint as keysentry reports and stores it.
pub fn fingerprint(key: &str) -> String {
    Fingerprint::of(key.as_bytes()).as_str().to_string()
}
