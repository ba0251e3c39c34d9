//! The service as README.md's "Run as a service" installs it: the README's
//! own install lines are run (re-rooted into a temp dir), then real
//! processes running as the `keysentry` user and as `nobody` try the files.

use super::{have, is_root, keysentry_bin, read_repo_file, readme_section, repo_root};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const NOBODY: &str = "65534";
const TATUM: &str = "t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e";

/// `Key=value` lines of a unit file (the last one wins, as for these keys).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .next_back()
        .map(str::to_string)
}

/// The README's install lines, each as the words of one command, from the
/// `sh` blocks of "Run as a service" before "Enable and start".
fn readme_install_lines() -> Vec<String> {
    let section = readme_section("Run as a service");
    let end = section
        .find("**Enable and start**")
        .expect("README: **Enable and start**");
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in section[..end].lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if in_block && !line.is_empty() && !line.starts_with('#') {
            lines.push(line.to_string());
        }
    }
    lines
}

/// The README's steps the test cannot run in a temp root (they act on the
/// host's users, systemd or an editor); users come from `create_user`.
const NOT_RUN: &[&str] = &[
    "cargo build --release",
    "sudo systemd-sysusers",
    "sudoedit ",
    "sudo systemctl ",
    "keysentry completions ",
];

/// One README line as a command re-rooted under `root`: absolute paths get
/// the prefix, `target/release/keysentry` is the binary under test.
fn reroot(line: &str, root: &Path) -> Command {
    assert!(
        !line.contains(['|', '&', ';', '>', '<', '$', '`', '"', '\'']),
        "README install line has shell syntax this test does not run: {line}"
    );
    let mut words = line.split_whitespace().enumerate().map(|(i, w)| {
        if w == "target/release/keysentry" || (i == 1 && w == "keysentry") {
            keysentry_bin()
        } else if w.starts_with('/') && !w.starts_with("/dev/") {
            root.join(w.trim_start_matches('/'))
        } else {
            PathBuf::from(w)
        }
    });
    let first = words.next().expect("non-empty line");
    assert_eq!(
        first,
        Path::new("sudo"),
        "README install lines run with sudo: {line}"
    );
    let mut cmd = Command::new(words.next().expect("a command after sudo"));
    cmd.args(words).current_dir(repo_root());
    cmd
}

/// The `keysentry` user and group, made from the shipped sysusers.d file as
/// the README does (useradd where systemd-sysusers is missing).
fn create_user() {
    let status = if have("systemd-sysusers") {
        Command::new("systemd-sysusers")
            .arg(repo_root().join("systemd/keysentry.sysusers"))
            .status()
    } else {
        Command::new("sh")
            .args([
                "-c",
                "id keysentry >/dev/null 2>&1 || useradd --system --user-group \
                 --home-dir /var/lib/keysentry --shell /usr/sbin/nologin keysentry",
            ])
            .status()
    };
    assert!(status.expect("run systemd-sysusers").success());
}

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, name])
        .output()
        .expect("run id");
    assert!(out.status.success(), "no such user {name}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// `script` run by `sh` as another user: the service user with the groups
/// /etc/group gives it (as systemd does for `User=`), or nobody with none.
fn run_as(user: &str, script: &str) -> Output {
    let mut cmd = Command::new("setpriv");
    if user == NOBODY {
        cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"]);
    } else {
        cmd.args(["--reuid", user, "--regid", user, "--init-groups"]);
    }
    cmd.args(["--", "sh", "-c", script])
        .output()
        .expect("run setpriv")
}

fn assert_can(user: &str, what: &str, script: &str) {
    let out = run_as(user, script);
    assert!(
        out.status.success(),
        "{user} should be able to {what} ({script}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_cannot(user: &str, what: &str, script: &str) {
    let out = run_as(user, script);
    assert!(
        !out.status.success(),
        "{user} must not be able to {what} ({script})"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{user} {what}: expected a permission error, got {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode_owner(path: &Path) -> (u32, u32, u32) {
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (md.mode() & 0o7777, md.uid(), md.gid())
}

/// A temp root laid out by the README's install lines, plus what systemd
/// makes at first start (`StateDirectory=`), with the paths the unit uses.
struct Installed {
    root: TempDir,
    uid: u32,
    gid: u32,
    /// ExecStart's program, re-rooted.
    bin: String,
    /// ExecStart's `--config`, re-rooted.
    config: String,
    /// EnvironmentFile=, re-rooted.
    env: String,
    /// StateDirectory=, re-rooted.
    state: String,
}

impl Installed {
    fn at(&self, path: &str) -> PathBuf {
        self.root.path().join(path.trim_start_matches('/'))
    }
}

/// None (after saying why) unless the test can create users and chown.
fn install_as_readme() -> Option<Installed> {
    if !is_root() || !have("setpriv") {
        eprintln!("skipped: needs root and setpriv (creates a system user, changes owners)");
        return None;
    }
    static USER: std::sync::Once = std::sync::Once::new();
    USER.call_once(create_user);
    let (uid, gid) = (id_of("-u", "keysentry"), id_of("-g", "keysentry"));
    let unit = read_repo_file("systemd/keysentry.service");
    assert_eq!(unit_value(&unit, "User").as_deref(), Some("keysentry"));
    assert_eq!(unit_value(&unit, "Group").as_deref(), Some("keysentry"));
    assert_eq!(
        unit_value(&unit, "DynamicUser"),
        None,
        "a dynamic user cannot own /etc files"
    );

    let tmp = TempDir::new().expect("temp dir");
    let root = tmp.path();
    // The temp dir is 0700; the users under test must reach into it.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for dir in ["usr/local/bin", "etc/systemd/system", "var/lib"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    // Tatum KMS was installed before keysentry: a root-owned env file.
    std::fs::create_dir_all(root.join("etc/tatum-kms")).expect("mkdir");
    std::fs::write(root.join("etc/tatum-kms/env"), "TATUM_API_KEY=old\n").expect("write");

    let mut not_run = Vec::new();
    for line in readme_install_lines() {
        if NOT_RUN.iter().any(|p| line.starts_with(p)) {
            not_run.push(line);
            continue;
        }
        let out = reroot(&line, root).output().expect("run README line");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "README step failed: {line}: {err}");
    }
    assert!(
        not_run.iter().any(|l| l == "sudo systemd-sysusers"),
        "the README must create the user: {not_run:?}"
    );

    let exec = unit_value(&unit, "ExecStart").expect("ExecStart");
    let mut words = exec.split_whitespace();
    let program = words.next().expect("program");
    let config = words
        .skip_while(|w| *w != "--config")
        .nth(1)
        .expect("--config");
    let env = unit_value(&unit, "EnvironmentFile").expect("EnvironmentFile");
    let at = |p: &str| root.join(p.trim_start_matches('/')).display().to_string();

    // What systemd does at first start for StateDirectory=.
    let state = root
        .join("var/lib")
        .join(unit_value(&unit, "StateDirectory").expect("StateDirectory"));
    let mode = unit_value(&unit, "StateDirectoryMode").expect("StateDirectoryMode");
    let mode = u32::from_str_radix(&mode, 8).expect("octal mode");
    std::fs::create_dir(&state).expect("mkdir state");
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).expect("chown state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(mode)).expect("chmod");

    Some(Installed {
        uid,
        gid,
        bin: at(program),
        config: at(config),
        env: at(env.trim_start_matches('-')),
        state: state.display().to_string(),
        root: tmp,
    })
}

#[test]
fn readme_install_lays_out_every_shipped_file_with_the_documented_owners() {
    let Some(installed) = install_as_readme() else {
        return;
    };
    let gid = installed.gid;
    assert!(
        Path::new(&installed.bin).is_file(),
        "README installs no {}",
        installed.bin
    );
    assert_eq!(mode_owner(&installed.at("/etc/keysentry")), (0o750, 0, gid));
    assert_eq!(mode_owner(Path::new(&installed.config)), (0o640, 0, gid));
    assert_eq!(mode_owner(Path::new(&installed.env)), (0o600, 0, 0));
    assert!(
        installed
            .at("/usr/local/share/man/man1/keysentry.1")
            .is_file(),
        "README's man step"
    );

    let lines = readme_install_lines().join("\n");
    for entry in std::fs::read_dir(repo_root().join("systemd")).expect("read systemd/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            lines.contains(&format!("systemd/{name}")),
            "README never installs systemd/{name}"
        );
    }
}

#[test]
fn installed_config_and_store_are_the_service_users_and_nobody_elses() {
    let Some(installed) = install_as_readme() else {
        return;
    };
    let Installed {
        uid,
        gid,
        config,
        env,
        state,
        bin,
        ..
    } = &installed;
    assert_can("keysentry", "read the config", &format!("cat {config}"));
    assert_cannot(
        "keysentry",
        "read the secrets (systemd does)",
        &format!("cat {env}"),
    );
    assert_cannot(NOBODY, "read the config", &format!("cat {config}"));
    let config_dir = installed.at("/etc/keysentry").display().to_string();
    assert_cannot(
        NOBODY,
        "list the config directory",
        &format!("ls {config_dir}"),
    );
    assert_cannot(NOBODY, "read the secrets", &format!("cat {env}"));

    // The installed binary, as each user, with the installed config (its
    // text swapped for one whose store is in the temp root; owner and mode
    // stay as the README made them): the service user records an incident
    // in its store; nobody cannot even read the config.
    std::fs::write(
        config,
        format!("state_dir: {state}\nremediation:\n  mode: \"off\"\n"),
    )
    .expect("write config");
    assert_eq!(mode_owner(Path::new(config)), (0o640, 0, *gid));
    let leak = installed.at("/leak.env");
    std::fs::write(&leak, format!("TATUM_API_KEY={TATUM}\n")).expect("write");
    let scan = format!(
        "{bin} scan {} --remediate --config {config}",
        leak.display()
    );
    let out = run_as("keysentry", &scan);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "scan --remediate as the service user: {err}"
    );
    let db = Path::new(state).join("keysentry.db");
    assert_eq!(mode_owner(&db).1, *uid, "the store is the service user's");

    let out = run_as(NOBODY, &scan);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "nobody: {err}");
    assert!(
        err.contains(config.as_str()) && err.contains("ermission denied"),
        "nobody: {err}"
    );
    assert!(!err.contains(TATUM), "no key in the error");
    assert_cannot(NOBODY, "read the store", &format!("cat {}", db.display()));
    assert_cannot(
        NOBODY,
        "write the store",
        &format!("echo x > {state}/other"),
    );
}

/// The Tatum KMS consumer: keysentry replaces the file with a rename in its
/// directory, which the drop-in makes writable; nobody else reads the key.
#[test]
fn installed_tatum_kms_env_file_is_rewritable_by_the_service_only() {
    let Some(installed) = install_as_readme() else {
        return;
    };
    let kms = installed.at("/etc/tatum-kms");
    assert_eq!(mode_owner(&kms), (0o700, installed.uid, installed.gid));
    let kms = kms.display().to_string();
    let rewrite = format!(
        "cat {kms}/env >/dev/null && echo TATUM_API_KEY=new > {kms}/.env.tmp && mv {kms}/.env.tmp {kms}/env"
    );
    assert_can("keysentry", "replace the consumer file", &rewrite);
    assert_cannot(NOBODY, "read the consumer file", &format!("cat {kms}/env"));
    assert_cannot(NOBODY, "replace the consumer file", &rewrite);
    let now = std::fs::read_to_string(format!("{kms}/env")).expect("read");
    assert_eq!(now, "TATUM_API_KEY=new\n");

    let dropin = installed.at("/etc/systemd/system/keysentry.service.d/tatum-kms.conf");
    let dropin = std::fs::read_to_string(dropin).expect("README installs the drop-in");
    assert_eq!(
        unit_value(&dropin, "ReadWritePaths").as_deref(),
        Some("/etc/tatum-kms")
    );
    for name in ["tatum-kms-restart.path", "tatum-kms-restart.service"] {
        let installed_unit = installed.at(&format!("/etc/systemd/system/{name}"));
        assert!(installed_unit.is_file(), "README installs {name}");
    }
}

/// The exposure score CI prints: at most 2.0 (issue: DynamicUser could not
/// read /etc/keysentry; the static user must not cost hardening).
#[test]
fn unit_exposure_is_at_most_2() {
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(repo_root().join("systemd/keysentry.service"))
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let figure = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for keysentry.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|f| f.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure figure in: {text}"));
    assert!(figure <= 2.0, "exposure {figure} is above 2.0:\n{text}");
    let unit = read_repo_file("systemd/keysentry.service");
    assert_eq!(unit_value(&unit, "LimitNOFILE").as_deref(), Some("4096"));
    assert_eq!(unit_value(&unit, "LimitCORE").as_deref(), Some("0"));
}

/// `systemd-analyze verify` over every shipped unit (the drop-in in place),
/// with ExecStart pointing at the built binary instead of /usr/local/bin.
#[test]
fn shipped_units_verify() {
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = TempDir::new().expect("temp dir");
    let unit = read_repo_file("systemd/keysentry.service").replace(
        "/usr/local/bin/keysentry",
        &keysentry_bin().display().to_string(),
    );
    std::fs::write(dir.path().join("keysentry.service"), unit).expect("write");
    std::fs::create_dir(dir.path().join("keysentry.service.d")).expect("mkdir");
    std::fs::copy(
        repo_root().join("systemd/keysentry-tatum-kms.conf"),
        dir.path().join("keysentry.service.d/tatum-kms.conf"),
    )
    .expect("copy");
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg(dir.path().join("keysentry.service"));
    for name in ["tatum-kms-restart.path", "tatum-kms-restart.service"] {
        std::fs::copy(
            repo_root().join("systemd").join(name),
            dir.path().join(name),
        )
        .expect("copy");
        cmd.arg(dir.path().join(name));
    }
    let out = cmd.output().expect("run systemd-analyze verify");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example config, the unit and the shipped units agree: the store is
/// the unit's StateDirectory=, every consumer file sits under the drop-in's
/// ReadWritePaths= and is watched by the restart path unit, and no consumer
/// names a `restart:` command the unprivileged service could not run.
#[test]
fn example_config_matches_the_units() {
    let unit = read_repo_file("systemd/keysentry.service");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&read_repo_file("systemd/keysentry.yaml")).expect("example config");
    let state = unit_value(&unit, "StateDirectory").expect("StateDirectory");
    assert_eq!(
        config["state_dir"].as_str(),
        Some(format!("/var/lib/{state}").as_str())
    );

    let dropin = read_repo_file("systemd/keysentry-tatum-kms.conf");
    let writable = unit_value(&dropin, "ReadWritePaths").expect("ReadWritePaths");
    let path_unit = read_repo_file("systemd/tatum-kms-restart.path");
    let watched = unit_value(&path_unit, "PathChanged").expect("PathChanged");
    let consumers = config["providers"]["tatum"]["consumers"]
        .as_sequence()
        .expect("consumers");
    assert!(!consumers.is_empty());
    for consumer in consumers {
        let file = consumer["env_file"].as_str().expect("env_file");
        assert!(
            Path::new(file).starts_with(&writable),
            "{file} is not under {writable}"
        );
        assert_eq!(file, watched, "the path unit watches the consumer file");
        assert!(
            consumer.get("restart").is_none(),
            "the service cannot restart {file}'s unit"
        );
    }
}
