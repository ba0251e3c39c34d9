//! What a deployer installs and runs besides `scan`: the systemd service as
//! the README installs it, completions, manual pages and `--version`, the
//! pre-commit hook and the GitHub Action.

// These tests run the programs a deployer runs (git, setpriv, systemd-analyze,
// bash, man) directly, as that deployer would.
#![allow(clippy::disallowed_methods)]

mod artifacts;
mod ci;
mod kubernetes;
mod service;

use std::path::{Path, PathBuf};

/// The repository root: the README's commands are relative to a clone.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_repo_file(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The built `keysentry` binary, for commands run the way a user runs them
/// (by name from PATH, or through another program).
fn keysentry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keysentry"))
}

/// PATH with the built binary first: the hook, the action and the shell
/// completions call `keysentry` by name.
fn path_with_binary() -> String {
    let dir = keysentry_bin()
        .parent()
        .expect("binary dir")
        .display()
        .to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

/// The README section that starts with `## {title}`, up to the next `## `.
fn readme_section(title: &str) -> String {
    let readme = read_repo_file("README.md");
    let heading = format!("\n## {title}");
    let start = readme
        .find(&heading)
        .unwrap_or_else(|| panic!("README.md has no `## {title}` section"));
    let body = &readme[start + heading.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    body[..end].to_string()
}

/// Whether the tests run as root; tests that create users or change owners
/// print why they skip otherwise.
fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
