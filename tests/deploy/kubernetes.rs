//! deploy/kubernetes/: the fleet's manifests (a DaemonSet on every node, webhook
//! replicas behind a Service, one shared store) as a cluster would take them,
//! and each pod's config as the pod's keysentry would read it. No cluster runs
//! here: [`pod::Pod`] lays a pod's volumes out in a temp dir and hands its
//! config and env to the real `keysentry` binary.

mod manifests;
mod pod;

use super::{have, read_repo_file, repo_root};
use crate::support::keysentry;
use manifests::{
    at, env_refs, objects, one, quantity, seq, str_at, workloads, Object, DIR, NAMESPACE,
    SECRET_TEMPLATE,
};
use pod::Pod;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

#[test]
fn manifests_hold_the_fleet_and_the_kustomization_lists_them() {
    let objects = objects();
    let kinds: BTreeMap<&str, usize> = objects.iter().fold(BTreeMap::new(), |mut m, o| {
        *m.entry(o.kind()).or_default() += 1;
        m
    });
    let want: BTreeMap<&str, usize> = [
        ("ConfigMap", 2),
        ("DaemonSet", 1),
        ("Deployment", 1),
        ("Namespace", 1),
        ("PodDisruptionBudget", 1),
        ("Secret", 1),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into();
    assert_eq!(kinds, want, "the kinds in {DIR}");
    for o in &objects {
        assert!(
            str_at(&o.value, "apiVersion").is_some() && !o.name().is_empty(),
            "{}: apiVersion and metadata.name",
            o.file
        );
        if o.kind() != "Namespace" {
            assert_eq!(
                str_at(&o.value, "metadata.namespace"),
                Some(NAMESPACE),
                "{} {}",
                o.file,
                o.name()
            );
        }
    }

    let webhook = one(&objects, "Deployment", "keysentry-webhook");
    let replicas = webhook.at("spec.replicas").as_u64().unwrap_or(0);
    assert!(replicas >= 2, "webhook replicas: {replicas}");
    for w in workloads(&objects) {
        let selector = w.at("spec.selector.matchLabels");
        let labels = w.at("spec.template.metadata.labels");
        for (k, v) in selector.as_mapping().expect("matchLabels") {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{}: the selector picks its pods",
                w.name()
            );
        }
    }
    // The Service sends traffic to the webhook pods, on the webhook's port.
    let service = one(&objects, "Service", "keysentry-webhook");
    let pod_labels = webhook.at("spec.template.metadata.labels");
    for (k, v) in service.at("spec.selector").as_mapping().expect("selector") {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the Service selects the webhook pods"
        );
    }
    let target = seq(&service.value, "spec.ports")
        .first()
        .and_then(|p| p.get("targetPort"))
        .and_then(Value::as_str)
        .expect("a named targetPort");
    let ports = seq(webhook.at("spec.template.spec"), "containers")
        .iter()
        .flat_map(|c| seq(c, "ports"))
        .filter_map(|p| str_at(p, "name"))
        .collect::<Vec<_>>();
    assert!(ports.contains(&target), "targetPort {target} in {ports:?}");

    let kustomization: Value =
        serde_yaml::from_str(&read_repo_file(&format!("{DIR}/kustomization.yaml"))).unwrap();
    let listed: BTreeSet<&str> = seq(&kustomization, "resources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let files: BTreeSet<&str> = objects
        .iter()
        .map(|o| o.file.as_str())
        .filter(|f| *f != SECRET_TEMPLATE)
        .collect();
    assert_eq!(
        listed, files,
        "kustomization.yaml lists every manifest but the Secret template"
    );
    assert_eq!(str_at(&kustomization, "namespace"), Some(NAMESPACE));

    // Every ConfigMap is some pod's config, so the config check below covers
    // each one.
    let mounted: BTreeSet<&str> = workloads(&objects)
        .iter()
        .flat_map(|w| seq(w.at("spec.template.spec"), "volumes"))
        .filter_map(|v| str_at(v, "configMap.name"))
        .collect();
    for cm in objects.iter().filter(|o| o.kind() == "ConfigMap") {
        assert!(
            mounted.contains(cm.name()),
            "ConfigMap {} is mounted by no workload",
            cm.name()
        );
    }

    if have("kubectl") {
        let out = Command::new("kubectl")
            .args(["kustomize", &repo_root().join(DIR).display().to_string()])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8_lossy(&out.stdout);
        let n = serde_yaml::Deserializer::from_str(&rendered).count();
        assert_eq!(
            n,
            files.len(),
            "kubectl kustomize renders one object per manifest"
        );
    } else {
        eprintln!("kubectl is not installed: the kustomization was checked as YAML only");
    }
}

#[test]
fn every_pod_runs_unprivileged_read_only_and_bounded() {
    let objects = objects();
    for w in workloads(&objects) {
        let name = w.name();
        let spec = w.at("spec.template.spec");
        let pod_sc = spec.get("securityContext").unwrap_or(&Value::Null);
        assert_eq!(
            spec.get("automountServiceAccountToken"),
            Some(&Value::Bool(false)),
            "{name}"
        );
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(spec.get(host), Some(&Value::Bool(true)), "{name}: {host}");
        }
        let containers: Vec<&Value> = seq(spec, "initContainers")
            .iter()
            .chain(seq(spec, "containers"))
            .collect();
        assert!(!containers.is_empty(), "{name} has containers");
        for c in containers {
            let cname = format!("{name}/{}", str_at(c, "name").unwrap_or("?"));
            let sc = c.get("securityContext").unwrap_or(&Value::Null);
            // A container's own setting wins over the pod's.
            let either = |path: &str| at(sc, path).or_else(|| at(pod_sc, path));
            assert_eq!(
                either("runAsNonRoot"),
                Some(&Value::Bool(true)),
                "{cname}: runAsNonRoot"
            );
            let uid = either("runAsUser").and_then(Value::as_u64);
            assert!(uid.is_some_and(|u| u != 0), "{cname}: runAsUser {uid:?}");
            assert_eq!(
                either("seccompProfile.type").and_then(Value::as_str),
                Some("RuntimeDefault"),
                "{cname}: seccomp"
            );
            assert_eq!(
                at(sc, "readOnlyRootFilesystem"),
                Some(&Value::Bool(true)),
                "{cname}"
            );
            assert_eq!(
                at(sc, "allowPrivilegeEscalation"),
                Some(&Value::Bool(false)),
                "{cname}"
            );
            assert_ne!(at(sc, "privileged"), Some(&Value::Bool(true)), "{cname}");
            let drop: Vec<&str> = seq(sc, "capabilities.drop")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(drop, ["ALL"], "{cname}: capabilities.drop");
            assert!(
                seq(sc, "capabilities.add").is_empty(),
                "{cname}: capabilities.add"
            );
            for res in ["cpu", "memory"] {
                let request = at(c, &format!("resources.requests.{res}"));
                let limit = at(c, &format!("resources.limits.{res}"));
                let (Some(request), Some(limit)) = (request, limit) else {
                    panic!("{cname}: resources.requests.{res} and resources.limits.{res}");
                };
                assert!(
                    quantity(request) <= quantity(limit),
                    "{cname}: {res} request over its limit"
                );
            }
        }
        // The node's files are read, never written.
        let host_volumes: Vec<&str> = seq(spec, "volumes")
            .iter()
            .filter(|v| v.get("hostPath").is_some())
            .filter_map(|v| str_at(v, "name"))
            .collect();
        for c in seq(spec, "initContainers")
            .iter()
            .chain(seq(spec, "containers"))
        {
            for m in seq(c, "volumeMounts") {
                if host_volumes.contains(&str_at(m, "name").unwrap_or("")) {
                    assert_eq!(m.get("readOnly"), Some(&Value::Bool(true)), "{name}: {m:?}");
                }
            }
        }
    }
}

/// The node daemon reads the node's pod logs and knows which node it is on
/// (`KEYSENTRY_NODE`, read by a build with the fleet store); both workloads
/// get the shared store's URL from the Secret.
#[test]
fn the_daemon_set_tails_the_node_logs_under_the_node_name() {
    let objects = objects();
    let ds = one(&objects, "DaemonSet", "keysentry-node");
    let spec = ds.at("spec.template.spec");
    let pod_logs = seq(spec, "volumes")
        .iter()
        .find(|v| str_at(v, "hostPath.path") == Some("/var/log/pods"))
        .expect("a hostPath volume of /var/log/pods");
    assert_eq!(str_at(pod_logs, "hostPath.type"), Some("Directory"));
    let node_env = seq(&seq(spec, "containers")[0], "env")
        .iter()
        .find(|e| str_at(e, "name") == Some("KEYSENTRY_NODE"))
        .expect("KEYSENTRY_NODE in the daemon's env");
    assert_eq!(
        str_at(node_env, "valueFrom.fieldRef.fieldPath"),
        Some("spec.nodeName"),
        "KEYSENTRY_NODE is the node's name (downward API)"
    );
    assert!(
        seq(spec, "tolerations")
            .iter()
            .any(|t| str_at(t, "operator") == Some("Exists")),
        "tolerates every taint: a daemon on every node"
    );

    let pod = Pod::lay_out(&objects, ds);
    let config = pod.config();
    // A `node:` in the one ConfigMap every node reads would win over
    // KEYSENTRY_NODE and give all nodes one name, and one set of offsets.
    assert!(config.get("node").is_none(), "the node config names a node");
    let logs: Vec<&str> = seq(&config, "watch.logs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let host_dir = pod.host_path_dir("/var/log/pods");
    assert!(
        !logs.is_empty()
            && logs
                .iter()
                .all(|g| g.starts_with(&host_dir.display().to_string())),
        "watch.logs {logs:?} reads the node's /var/log/pods mount"
    );
    for w in workloads(&objects) {
        let pod = Pod::lay_out(&objects, w);
        assert_eq!(
            str_at(&pod.config(), "store.url_env"),
            Some("KEYSENTRY_STORE_URL"),
            "{}: the shared store",
            w.name()
        );
        let url = pod
            .env()
            .get("KEYSENTRY_STORE_URL")
            .cloned()
            .unwrap_or_default();
        assert!(
            url.starts_with("postgres://") && url.contains("sslmode=require"),
            "{}: the store URL (TLS) comes from the Secret",
            w.name()
        );
    }

    // The daemon in this pod's environment says which node it is.
    let daemon = pod.start_daemon();
    let ready: serde_json::Value = daemon
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("daemon ready"))
        })
        .expect("a ready line");
    assert_eq!(
        ready["fields"]["node"],
        pod::NODE,
        "the daemon's node: {ready}"
    );
}

/// What `keysentry config check` says of each pod's config, in that pod's
/// environment (the Secret template's placeholders standing in for the
/// values). `store:` and `node:` are the fleet's fields: a build without
/// them refuses both.
#[test]
fn each_pods_config_passes_config_check_in_its_environment() {
    let objects = objects();
    for w in workloads(&objects) {
        let pod = Pod::lay_out(&objects, w);
        let mut refs = BTreeSet::new();
        env_refs(&pod.config(), &mut refs);
        assert!(
            refs.contains("KEYSENTRY_STORE_URL"),
            "{}: {refs:?}",
            w.name()
        );
        let env = pod.env();
        for name in &refs {
            assert!(
                env.get(name).is_some_and(|v| !v.is_empty()),
                "{}: the config names {name}, which the pod spec does not set",
                w.name()
            );
        }
        let out = keysentry()
            .args(["config", "check"])
            .arg(pod.config_path())
            .arg("--env-file")
            .arg(pod.env_file())
            .output()
            .expect("run keysentry config check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim_end().ends_with(": OK"),
            "{} ({}): keysentry config check:\n{stdout}{}",
            w.name(),
            w.file,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The kubelet's probes and the Service reach what the daemon serves: the
/// pod's own config run by the real daemon (on loopback port 0, and on
/// SQLite in the pod's state dir: no PostgreSQL here).
#[test]
fn probes_and_the_service_reach_what_the_daemon_serves() {
    let objects = objects();
    for w in workloads(&objects) {
        let name = w.name();
        let pod = Pod::lay_out(&objects, w);
        let config = pod.config();
        let container = &seq(w.at("spec.template.spec"), "containers")[0];
        let port_of = |port: &Value| -> u64 {
            match port {
                Value::Number(n) => n.as_u64().expect("a port"),
                Value::String(named) => seq(container, "ports")
                    .iter()
                    .find(|p| str_at(p, "name") == Some(named))
                    .and_then(|p| p.get("containerPort"))
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| panic!("{name}: no container port named {named}")),
                other => panic!("{name}: port {other:?}"),
            }
        };
        let listen_port = |path: &str| -> u64 {
            let listen = str_at(&config, path).unwrap_or_else(|| panic!("{name}: no {path}"));
            listen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port")
        };
        let mut probes = BTreeMap::new();
        for probe in ["livenessProbe", "readinessProbe"] {
            let get = container
                .get(probe)
                .and_then(|p| p.get("httpGet"))
                .unwrap_or_else(|| panic!("{name}: {probe}.httpGet"));
            assert_eq!(
                port_of(get.get("port").expect("probe port")),
                listen_port("http.listen"),
                "{name}: {probe} on http.listen's port"
            );
            probes.insert(probe, str_at(get, "path").expect("probe path").to_string());
        }
        assert_eq!(
            probes["livenessProbe"], "/healthz",
            "{name}: liveness is /healthz"
        );
        assert_eq!(
            probes["readinessProbe"], "/readyz",
            "{name}: readiness is /readyz"
        );
        if w.kind() == "Deployment" {
            let service = one(&objects, "Service", "keysentry-webhook");
            let target = seq(&service.value, "spec.ports")[0]
                .get("targetPort")
                .expect("targetPort");
            assert_eq!(
                port_of(target),
                listen_port("github.webhook.listen"),
                "the Service targets github.webhook.listen's port"
            );
        }

        let daemon = pod.start_daemon();
        let port = daemon.port();
        for (probe, path) in &probes {
            let (status, body) = crate::daemon::http_get(port, path);
            assert_eq!(status, 200, "{name}: {probe} {path}: {body}");
            let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
            assert_eq!(health["status"], "ok", "{name}: {path}: {body}");
        }
        if w.kind() == "Deployment" {
            // Unsigned: refused, which only the webhook's route does.
            let hook = daemon.webhook_url();
            let addr = hook.trim_start_matches("http://");
            let (status, _) = crate::daemon::http(addr, "POST", "/github/webhook", "{}");
            assert_eq!(status, 401, "{name}: the webhook is served");
        }
        let (status, _) = crate::daemon::http_get(port, "/no-such-probe");
        assert_eq!(status, 404, "{name}: a path the daemon does not serve");
    }
}

/// What ships in deploy/ holds no key: keysentry run on it finds nothing
/// (the Secret template's values are placeholders).
#[test]
fn the_shipped_manifests_hold_no_key() {
    let out = keysentry()
        .args(["scan", "--format", "json"])
        .arg(repo_root().join("deploy"))
        .output()
        .expect("run keysentry scan");
    assert_eq!(
        out.status.code(),
        Some(0),
        "keysentry scan deploy/: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The docs name what ships: deploy/README.md's table lists every manifest,
/// and the README's "Run a fleet" points at it.
#[test]
fn the_docs_list_every_manifest() {
    let docs = read_repo_file("deploy/README.md");
    for entry in std::fs::read_dir(repo_root().join(DIR)).expect("deploy/kubernetes") {
        let file = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            docs.contains(&format!("| `{file}` |")),
            "deploy/README.md does not describe {file}"
        );
    }
    let section = super::readme_section("Run a fleet");
    for expected in [
        "deploy/README.md",
        "deploy/kubernetes/",
        "SQLite",
        "PostgreSQL",
        "node:",
    ] {
        assert!(
            section.contains(expected),
            "README \"Run a fleet\" lacks {expected}"
        );
    }
}
