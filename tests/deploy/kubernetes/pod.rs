//! One pod of a workload, laid out on local disk the way the kubelet would
//! give it to its containers: each volume a directory (a ConfigMap's keys as
//! files, an emptyDir or a hostPath empty), each container's env resolved
//! from the manifests (the Secret template's values, the downward API's
//! fields). Paths in the container's args and in its config are its mount
//! paths mapped to those directories.

use super::{at, seq, str_at, Object};
use crate::support::daemon::Daemon;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The node name the downward API hands the pod here.
pub const NODE: &str = "node-a";

/// A closed port on loopback (plain http is allowed there).
const UNREACHABLE: &str = "http://127.0.0.1:9/unreachable";

pub struct Pod {
    _dir: tempfile::TempDir,
    /// The main container's config, its mount paths mapped to local dirs.
    config_path: PathBuf,
    env: BTreeMap<String, String>,
    env_file: PathBuf,
    /// hostPath path → the directory standing in for it.
    host_paths: BTreeMap<String, PathBuf>,
    local: PathBuf,
}

/// Mount path → local directory, for one container.
type Mounts = Vec<(String, PathBuf)>;

impl Pod {
    pub fn lay_out(objects: &[Object], workload: &Object) -> Pod {
        Pod::try_lay_out(objects, workload).unwrap_or_else(|e| panic!("{}: {e}", workload.name()))
    }

    fn try_lay_out(objects: &[Object], workload: &Object) -> Result<Pod, String> {
        let spec = workload.at("spec.template.spec");
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut volumes = BTreeMap::new();
        let mut host_paths = BTreeMap::new();
        for v in seq(spec, "volumes") {
            let name = str_at(v, "name").expect("volume name");
            let local = dir.path().join("volumes").join(name);
            std::fs::create_dir_all(&local).expect("mkdir");
            if let Some(cm) = str_at(v, "configMap.name") {
                let map = find(objects, "ConfigMap", cm);
                let data = at(map, "data")
                    .and_then(Value::as_mapping)
                    .ok_or(format!("ConfigMap {cm} has no data"))?;
                for (k, v) in data {
                    let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                        return Err(format!("ConfigMap {cm}: {k:?} is not text"));
                    };
                    std::fs::write(local.join(k), v).expect("write");
                }
            } else if let Some(host) = str_at(v, "hostPath.path") {
                host_paths.insert(host.to_string(), local.clone());
            } else if v.get("emptyDir").is_none() {
                return Err(format!(
                    "volume {name}: only configMap, emptyDir and hostPath are laid out here"
                ));
            }
            volumes.insert(name.to_string(), local);
        }

        if !seq(spec, "initContainers").is_empty() {
            return Err("init containers are not run here".into());
        }

        let main = seq(spec, "containers").first().ok_or("no container")?;
        let mounts = mounts(main, &volumes)?;
        let env = env(objects, main, NODE)?;
        let args: Vec<&str> = seq(main, "args").iter().filter_map(Value::as_str).collect();
        if args.first() != Some(&"daemon") {
            return Err(format!(
                "the container runs {args:?}, not `keysentry daemon`"
            ));
        }
        let config = args
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| args.get(i + 1))
            .ok_or("no --config")?;
        let in_pod = PathBuf::from(rewrite(config, &mounts));
        let text = std::fs::read_to_string(&in_pod)
            .map_err(|e| format!("the pod has no {config} ({}): {e}", in_pod.display()))?;
        let config_path = dir.path().join("keysentry.yaml");
        std::fs::write(&config_path, rewrite(&text, &mounts)).expect("write");
        let env_file = dir.path().join("env");
        let lines: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, lines).expect("write");
        let local = dir.path().join("local.yaml");
        Ok(Pod {
            _dir: dir,
            config_path,
            env,
            env_file,
            host_paths,
            local,
        })
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn config(&self) -> Value {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        serde_yaml::from_str(&text).expect("the pod's config is YAML")
    }

    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The container's environment as KEY=value lines (`config check --env-file`).
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    pub fn host_path_dir(&self, host: &str) -> PathBuf {
        self.host_paths
            .get(host)
            .cloned()
            .unwrap_or_else(|| panic!("no hostPath volume of {host}"))
    }

    /// The real daemon on this pod's config and env, its servers on loopback
    /// port 0 and its store SQLite in the pod's state dir (`store:` cut: no
    /// PostgreSQL here).
    pub fn start_daemon(&self) -> Daemon {
        let mut config = self.config();
        let map = config.as_mapping_mut().expect("a mapping");
        map.remove("store");
        for path in [
            &["http", "listen"][..],
            &["github", "webhook", "listen"][..],
        ] {
            let (last, parents) = path.split_last().expect("a path");
            let parent = parents.iter().try_fold(&mut config, |v, k| v.get_mut(*k));
            if let Some(Value::Mapping(m)) = parent {
                if m.contains_key(*last) {
                    m.insert((*last).into(), "127.0.0.1:0".into());
                }
            }
        }
        // Nothing reaches GitHub or Slack from a test: their URLs point at a
        // closed loopback port (nothing is sent unless a key is found).
        if let Some(Value::Mapping(g)) = config.get_mut("github") {
            g.insert("api_url".into(), UNREACHABLE.into());
        }
        std::fs::write(&self.local, serde_yaml::to_string(&config).expect("YAML")).expect("write");
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| match v.starts_with("https://") {
                true => (k.as_str(), UNREACHABLE),
                false => (k.as_str(), v.as_str()),
            })
            .collect();
        Daemon::start_with(&self.local, &env)
    }
}

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .map(|o| &o.value)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn mounts(container: &Value, volumes: &BTreeMap<String, PathBuf>) -> Result<Mounts, String> {
    let mut out = Vec::new();
    for m in seq(container, "volumeMounts") {
        let name = str_at(m, "name").unwrap_or("");
        let dir = volumes
            .get(name)
            .ok_or(format!("a mount of no volume: {name}"))?;
        let dir = match str_at(m, "subPath") {
            Some(sub) => dir.join(sub),
            None => dir.clone(),
        };
        out.push((
            str_at(m, "mountPath").ok_or("no mountPath")?.to_string(),
            dir,
        ));
    }
    // Longest first: /var/log/pods before a mount at /var/log.
    out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    Ok(out)
}

/// A container's env: literal values, Secret keys (from the Secret
/// template) and downward-API fields.
fn env(objects: &[Object], c: &Value, node: &str) -> Result<BTreeMap<String, String>, String> {
    if c.get("envFrom").is_some() {
        return Err("envFrom is not laid out here: name each variable".into());
    }
    let mut out = BTreeMap::new();
    for e in seq(c, "env") {
        let name = str_at(e, "name").ok_or("an env entry without a name")?;
        let value = if let Some(v) = str_at(e, "value") {
            v.to_string()
        } else if let Some(secret) = str_at(e, "valueFrom.secretKeyRef.name") {
            let key =
                str_at(e, "valueFrom.secretKeyRef.key").ok_or("secretKeyRef without a key")?;
            let s = find(objects, "Secret", secret);
            str_at(s, &format!("stringData.{key}"))
                .ok_or(format!("{name}: Secret {secret} has no key {key}"))?
                .to_string()
        } else {
            match str_at(e, "valueFrom.fieldRef.fieldPath") {
                Some("spec.nodeName") => node.to_string(),
                Some("metadata.name") => "keysentry-pod-0".to_string(),
                other => return Err(format!("{name}: cannot resolve {other:?}")),
            }
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `text` with each whole mount path (not a prefix of a longer name) replaced
/// by its directory, in one pass, so a replacement is never replaced again.
fn rewrite(text: &str, mounts: &Mounts) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'next: while i < text.len() {
        let starts_path = i == 0 || !(name_char(bytes[i - 1]) || bytes[i - 1] == b'/');
        if starts_path {
            for (mount, dir) in mounts {
                if text[i..].starts_with(mount.as_str())
                    && bytes.get(i + mount.len()).map_or(true, |b| !name_char(*b))
                {
                    out.push_str(&dir.display().to_string());
                    i += mount.len();
                    continue 'next;
                }
            }
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}
