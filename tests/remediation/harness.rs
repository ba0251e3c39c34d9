//! A simulator process, a temp workspace (rules, scanned tree, consumer
//! files, config, state) and the assertions the remediation tests share.

use crate::support;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

pub use crate::support::sim::Sim;
/// The shared key and fingerprint helpers, by the names these tests use.
pub use crate::support::{fingerprint as fp, key as tatum_key};

/// A temp workspace with a tree to scan and a simulator; the built-in rules
/// (the ones users run, with their verify and revoke templates) find the keys.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tree")).unwrap();
        Workspace {
            dir,
            sim: Sim::start(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        support::write(self.dir.path(), rel, content);
        self.path(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Writes `config.yaml`: `{sim}` and `{dir}` in `body` are replaced; the
    /// state dir is prepended and, unless `body` has its own, alerts to the
    /// simulator's `owner` webhook and `slack` sinks appended.
    pub fn config(&self, body: &str) -> PathBuf {
        let dir = self.dir.path().display().to_string();
        let mut text = format!("state_dir: {dir}/state\n{body}");
        if !body.contains("\nalerts:") {
            text.push_str(
                "alerts:\n  - {type: webhook, url: '{sim}/_sink/webhook/owner'}\n  - {type: slack, url: '{sim}/_sink/webhook/slack'}\n",
            );
        }
        let text = text.replace("{sim}", &self.sim.url).replace("{dir}", &dir);
        self.write("config.yaml", &text)
    }

    /// The alert bodies a simulator sink received, as text.
    pub fn sink(&self, name: &str) -> Vec<String> {
        match self
            .sim
            .request("GET", &format!("/_sim/sink/{name}"), None)
            .1
        {
            Value::Array(items) => items
                .iter()
                .map(|i| i["body"].as_str().unwrap_or_default().to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn keysentry(&self, args: &[&str]) -> Output {
        let mut cmd = support::keysentry();
        cmd.current_dir(self.dir.path())
            .env("KEYSENTRY_LOG", "keysentry=debug")
            .args(args);
        cmd.output().expect("run keysentry")
    }

    pub fn scan_args(&self) -> Vec<String> {
        let p = |r: &str| self.path(r).display().to_string();
        vec![
            "scan".into(),
            p("tree"),
            "--config".into(),
            p("config.yaml"),
            "--remediate".into(),
        ]
    }

    /// `keysentry scan tree --remediate`; findings mean exit 1.
    pub fn scan(&self) -> Output {
        let args = self.scan_args();
        let out = self.keysentry(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            out.status.code(),
            Some(1),
            "scan with findings exits 1\n{}",
            text(&out)
        );
        out
    }

    pub fn incidents(&self) -> Vec<Value> {
        let config = self.path("config.yaml").display().to_string();
        let out = self.keysentry(&["incidents", "list", "--json", "--config", &config]);
        assert!(out.status.success(), "{}", text(&out));
        match serde_json::from_slice(&out.stdout).expect("incidents JSON") {
            Value::Array(a) => a,
            other => panic!("{other}"),
        }
    }

    pub fn incident_by_fp(&self, key: &str) -> Value {
        let f = fp(key);
        self.incidents()
            .into_iter()
            .find(|i| i["fingerprint"] == f.as_str())
            .unwrap_or_else(|| panic!("no incident for {}", &f[..12]))
    }

    pub fn show(&self, id: &Value) -> (Value, String) {
        let config = self.path("config.yaml").display().to_string();
        let id = id.to_string();
        let json = self.keysentry(&["incidents", "show", &id, "--json", "--config", &config]);
        let txt = self.keysentry(&["incidents", "show", &id, "--config", &config]);
        assert!(
            json.status.success() && txt.status.success(),
            "{}",
            text(&txt)
        );
        (
            serde_json::from_slice(&json.stdout).expect("show JSON"),
            String::from_utf8_lossy(&txt.stdout).into_owned(),
        )
    }

    /// No key in any store file (database, WAL), nor in `outputs`, nor in
    /// any alert recorded for any incident or received by the sinks, nor in
    /// `incidents list`, `show` or `new-key`.
    pub fn assert_secrets_hidden(&self, keys: &[&str], outputs: &[&Output]) {
        let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in std::fs::read_dir(self.path("state")).expect("state dir") {
            let path = entry.unwrap().path();
            haystacks.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
        for (i, out) in outputs.iter().enumerate() {
            haystacks.push((format!("output {i} stdout"), out.stdout.clone()));
            haystacks.push((format!("output {i} stderr"), out.stderr.clone()));
        }
        for sink in ["owner", "slack"] {
            for body in self.sink(sink) {
                haystacks.push((format!("alert sent to the {sink} sink"), body.into_bytes()));
            }
        }
        let config = self.path("config.yaml").display().to_string();
        let list = self.keysentry(&["incidents", "list", "--config", &config]);
        haystacks.push(("incidents list".into(), list.stdout));
        for incident in self.incidents() {
            let (json, text) = self.show(&incident["id"]);
            haystacks.push((
                "incidents show --json".into(),
                json.to_string().into_bytes(),
            ));
            haystacks.push(("incidents show".into(), text.into_bytes()));
            // The escrowed ciphertext (or why there is none).
            let id = incident["id"].to_string();
            let sealed = self.keysentry(&["incidents", "new-key", &id, "--config", &config]);
            haystacks.push(("incidents new-key stdout".into(), sealed.stdout));
            haystacks.push(("incidents new-key stderr".into(), sealed.stderr));
        }
        for key in keys {
            // The redacted form shows a short prefix: look for the rest.
            let tail = &key.as_bytes()[6..];
            for (name, hay) in &haystacks {
                assert!(
                    !hay.windows(tail.len()).any(|w| w == tail),
                    "a key leaked into {name}"
                );
            }
        }
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
