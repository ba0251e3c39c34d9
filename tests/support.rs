//! Helpers shared by the integration test modules.

#![allow(dead_code)]

use assert_cmd::Command;
use std::path::Path;

/// The `keysentry` binary under test.
pub fn keysentry() -> Command {
    let mut cmd = Command::cargo_bin("keysentry").expect("keysentry binary is built");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Writes `content` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create test dir");
    }
    std::fs::write(path, content).expect("write test file");
}
