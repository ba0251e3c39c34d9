//! What ships besides the binary: completions, manual pages, `--version`,
//! LICENSE and the container image definition.

use super::{have, path_with_binary, read_repo_file, repo_root};
use crate::support::keysentry;
use std::path::Path;
use std::process::Command;

fn stdout_of(args: &[&str]) -> String {
    let out = keysentry().args(args).output().expect("run keysentry");
    assert!(
        out.status.success(),
        "keysentry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The subcommands `keysentry --help` lists, so a new one is covered too.
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let commands = help
        .split("Commands:")
        .nth(1)
        .expect("--help lists commands");
    let names: Vec<String> = commands
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for expected in ["scan", "daemon", "incidents", "completions", "man"] {
        assert!(
            names.iter().any(|n| n == expected),
            "--help lacks {expected}: {names:?}"
        );
    }
    names
}

#[test]
fn completions_for_bash_zsh_fish_name_every_subcommand() {
    let subcommands = subcommands();
    for (shell, marker) in [
        ("bash", "complete -F _keysentry"),
        ("zsh", "#compdef keysentry"),
        ("fish", "complete -c keysentry"),
    ] {
        let script = stdout_of(&["completions", shell]);
        assert!(
            script.contains(marker),
            "{shell} completion lacks `{marker}`"
        );
        for sub in &subcommands {
            assert!(
                script.contains(sub.as_str()),
                "{shell} completion lacks `{sub}`"
            );
        }
        let git_option = if shell == "fish" { "-l git" } else { "--git" };
        assert!(
            script.contains(git_option),
            "{shell} completion lacks scan's --git"
        );
    }
}

/// What a bash user sees after `keysentry sc<TAB>` and `keysentry scan --fo<TAB>`.
#[test]
fn bash_completion_completes_subcommands_and_options() {
    if !have("bash") {
        eprintln!("skipped: bash is not installed");
        return;
    }
    let script = stdout_of(&["completions", "bash"]);
    let dir = tempfile::TempDir::new().expect("temp dir");
    let file = dir.path().join("keysentry.bash");
    std::fs::write(&file, script).expect("write");
    let complete = |words: &str, cword: usize| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
             COMP_POINT=${{#COMP_LINE}}; _keysentry keysentry \"${{COMP_WORDS[COMP_CWORD]}}\" \
             \"${{COMP_WORDS[COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash")
            .args(["--norc", "-c", &probe])
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "bash: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("keysentry sc", 1), "scan");
    assert_eq!(complete("keysentry scan --fo", 2), "--format");
    assert_eq!(complete("keysentry completions z", 2), "zsh");
}

#[test]
fn completions_for_an_unknown_shell_name_the_valid_ones() {
    let out = keysentry()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tcsh") && err.contains("bash") && err.contains("fish"),
        "{err}"
    );
}

#[test]
fn man_page_renders_and_one_page_per_subcommand_is_written() {
    let page = stdout_of(&["man"]);
    assert!(
        page.contains(".TH KEYSENTRY 1"),
        "no .TH header: {}",
        &page[..page.len().min(300)]
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(page.contains(version), "the page names the version");
    if have("man") {
        let rendered = Command::new("sh")
            .args(["-c", "keysentry man | MANWIDTH=80 man -l -"])
            .env("PATH", path_with_binary())
            .output()
            .expect("run man");
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            rendered.status.success(),
            "man -l: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        for expected in [
            "KEYSENTRY(1)",
            "SYNOPSIS",
            "SUBCOMMANDS",
            "keysentry-scan(1)",
        ] {
            assert!(
                text.contains(expected),
                "rendered page lacks {expected}:\n{text}"
            );
        }
    } else {
        eprintln!("man is not installed: checked the roff source only");
    }

    let dir = tempfile::TempDir::new().expect("temp dir");
    let out = keysentry()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan =
        std::fs::read_to_string(dir.path().join("keysentry-scan.1")).expect("keysentry-scan.1");
    assert!(
        scan.contains(".TH KEYSENTRY-SCAN 1") && scan.contains("\\-\\-git"),
        "{scan}"
    );
    for sub in subcommands() {
        assert!(
            dir.path().join(format!("keysentry-{sub}.1")).is_file(),
            "no page for {sub}"
        );
    }
}

#[test]
fn man_into_a_missing_directory_names_it() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let missing = dir.path().join("no/such/dir");
    let out = keysentry()
        .args(["man", "--dir"])
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// `keysentry 0.1.0 (commit 1a2b3c4)`: the crate version and the commit the
/// binary was built from ("unknown" outside a git checkout).
#[test]
fn version_names_the_version_and_the_commit() {
    let line = stdout_of(&["--version"]);
    let line = line.trim_end();
    let expected_prefix = format!("keysentry {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = line
        .strip_prefix(&expected_prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--version printed {line:?}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "commit {commit:?}"
    );
    let head = Command::new("git")
        .args([
            "-C",
            &repo_root().display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output();
    if let Some(head) = head.ok().filter(|o| o.status.success()) {
        assert_eq!(
            commit,
            String::from_utf8_lossy(&head.stdout).trim(),
            "built from HEAD"
        );
    }
}

#[test]
fn license_file_is_the_apache_2_text_cargo_toml_names() {
    let manifest = read_repo_file("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = read_repo_file("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    assert!(
        license.contains("END OF TERMS AND CONDITIONS"),
        "the full text, not a notice"
    );
}

/// The image a deployer runs: the binary and CA certificates on an empty
/// base, as a non-root user. (No container engine here; the text is checked.)
#[test]
fn dockerfile_final_stage_holds_the_binary_and_ca_certs_as_non_root() {
    let dockerfile = read_repo_file("Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert!(stages.len() >= 2, "multi-stage build");
    let last = stages.last().expect("final stage");
    assert!(
        last.starts_with("scratch"),
        "final stage starts from scratch: {last}"
    );
    let copies: Vec<&str> = last.lines().filter(|l| l.starts_with("COPY")).collect();
    assert!(
        copies
            .iter()
            .any(|c| c.ends_with(" /usr/local/bin/keysentry")),
        "{copies:?}"
    );
    assert!(
        copies.iter().any(|c| c.contains("ca-certificates.crt")),
        "{copies:?}"
    );
    let user = last
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "USER {user}"
    );
    let ignore = read_repo_file(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim_matches('/') == "target"),
        ".dockerignore keeps target/ out"
    );
}

/// build.rs on its own (compiled here with rustc): a build without git, or
/// from a tree outside any repository, succeeds and says "unknown"; a
/// registry download takes the commit `cargo package` recorded.
#[test]
fn build_script_never_fails_without_git() {
    let work = tempfile::TempDir::new().expect("temp dir");
    let script = work.path().join("build-script");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&script)
        .arg(repo_root().join("build.rs"))
        .output()
        .expect("run rustc");
    assert!(
        out.status.success(),
        "rustc build.rs: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let copy = work.path().join("keysentry-0.1.0");
    std::fs::create_dir_all(copy.join("rules")).expect("mkdir");
    std::fs::copy(
        repo_root().join("rules/tatum.yaml"),
        copy.join("rules/tatum.yaml"),
    )
    .expect("copy");
    let run = |manifest: &Path, path: &str| {
        let out_dir = work.path().join("out");
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let out = Command::new(&script)
            .current_dir(work.path())
            .env("CARGO_MANIFEST_DIR", manifest)
            .env("OUT_DIR", &out_dir)
            .env("PATH", path)
            .env_remove("KEYSENTRY_GIT_COMMIT")
            .output()
            .expect("run build script");
        assert!(
            out.status.success(),
            "build script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out_dir.join("builtin_rules.rs").is_file(), "rules embedded");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("cargo:rustc-env=KEYSENTRY_GIT_COMMIT="))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no commit line in {stdout}"))
    };
    let path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(run(&copy, "/nonexistent"), "unknown", "no git at all");
    assert_eq!(
        run(&copy, &path),
        "unknown",
        "a tree outside any repository"
    );
    assert_eq!(
        run(repo_root(), "/nonexistent"),
        "unknown",
        "a checkout, but no git"
    );
    std::fs::write(
        copy.join(".cargo_vcs_info.json"),
        "{\n  \"git\": {\n    \"sha1\": \"0123456789abcdef0123456789abcdef01234567\"\n  },\n  \"path_in_vcs\": \"\"\n}\n",
    )
    .expect("write");
    assert_eq!(run(&copy, &path), "0123456");
}
