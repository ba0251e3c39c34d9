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

/// `KEYSENTRY_GIT_COMMIT` for `--version`: what the builder passes in the
/// same variable (a Docker build has no `.git`), else the short commit of the
/// checkout, else the one `cargo package` recorded (a registry download),
/// else "unknown". A build without git, or outside a repository, must still
/// succeed, so every failure here falls back quietly.
fn record_commit(manifest: &Path) {
    println!("cargo:rerun-if-env-changed=KEYSENTRY_GIT_COMMIT");
    let commit = env::var("KEYSENTRY_GIT_COMMIT")
        .ok()
        .filter(|c| is_commit(c))
        .or_else(|| checkout_commit(manifest))
        .or_else(|| packaged_commit(manifest))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KEYSENTRY_GIT_COMMIT={commit}");
    if checkout_commit(manifest).is_none() {
        return;
    }
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

fn is_commit(c: &str) -> bool {
    (4..=40).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit())
}

/// HEAD of the repository whose root is the crate itself; not of one that
/// merely contains it (an unpacked crate under a home directory kept in git).
fn checkout_commit(manifest: &Path) -> Option<String> {
    let top = git(manifest, &["rev-parse", "--show-toplevel"])?;
    let same = fs::canonicalize(top).ok()? == fs::canonicalize(manifest).ok()?;
    same.then(|| git(manifest, &["rev-parse", "--short", "HEAD"]))?
}

/// `.cargo_vcs_info.json`, which `cargo package` writes: `{"git": {"sha1": "…"}}`.
fn packaged_commit(manifest: &Path) -> Option<String> {
    let info = fs::read_to_string(manifest.join(".cargo_vcs_info.json")).ok()?;
    let rest = &info[info.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let sha: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    is_commit(&sha).then(|| sha[..sha.len().min(7)].to_string())
}

/// One line of `git` output, or None when git is missing or fails. (The
/// crate's hardened git builder is not available to its own build script; this
/// reads the crate's own checkout, which the builder trusts anyway.)
#[allow(clippy::disallowed_methods)]
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // The same guards as the runtime builder: nothing to fetch, no config
    // beyond the repository's own, no token from the build's environment.
    let out = Command::new("git")
        .env_clear()
        .envs(env::var_os("PATH").map(|p| ("PATH", p)))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_ALLOW_PROTOCOL", "")
        .args(["-c", "protocol.allow=never", "-c", "core.fsmonitor=false"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}
