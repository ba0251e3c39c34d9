//! Embeds every `rules/*.yaml` in the binary so that a scan works with no
//! files besides the executable, and records the git commit for `--version`.

use std::{env, fs, path::Path, process::Command};

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap();
    embed_rules(Path::new(&manifest));
    record_commit(Path::new(&manifest));
}

fn embed_rules(manifest: &Path) {
    let dir = manifest.join("rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    let mut out = String::from("pub static BUILTIN_RULES: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        out.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            format!("rules/{name}"),
            f.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("builtin_rules.rs");
    fs::write(dest, out).unwrap();
}

/// `KEYSENTRY_GIT_COMMIT` for `--version`: the short commit of the checkout,
/// or what the builder passes in the same variable (a Docker build has no
/// `.git`), else "unknown". A build without git, or outside a repository,
/// must still succeed, so every failure here falls back quietly.
fn record_commit(manifest: &Path) {
    println!("cargo:rerun-if-env-changed=KEYSENTRY_GIT_COMMIT");
    let given = env::var("KEYSENTRY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let commit = given
        .or_else(|| git(manifest, &["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KEYSENTRY_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names
    // (a commit) and packed refs. Only paths that exist: cargo treats a
    // missing one as always changed and would rebuild the crate every time.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(manifest, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(manifest, &["rev-parse", "--git-path", &name]) {
            let path = manifest.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// One line of `git` output, or None when git is missing or fails. (The
/// crate's hardened git builder is not available to its own build script; this
/// reads the crate's own checkout, which the builder trusts anyway.)
#[allow(clippy::disallowed_methods)]
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}
