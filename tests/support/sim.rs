//! The one simulator harness: `keysentry-sim` in-process on 127.0.0.1:0
//! (`keysentry_sim::spawn`, its own runtime thread), stopped on drop, with
//! the queries every area asks it. Synchronous helpers speak plain HTTP/1.1
//! over a `TcpStream` (tests that are not async need no client); the async
//! ones use `reqwest` for tests already on a runtime.

use super::fingerprint;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a `wait_for*` polls before it fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

pub struct Sim {
    _sim: keysentry_sim::Running,
    /// `http://127.0.0.1:PORT`: what configs name as a provider's `api_url`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub http: reqwest::Client,
}

impl Sim {
    pub fn start() -> Sim {
        let sim = keysentry_sim::spawn().expect("start keysentry-sim");
        Sim {
            url: sim.url.clone(),
            addr: sim.addr.clone(),
            _sim: sim,
            http: reqwest::Client::new(),
        }
    }

    // --- synchronous ---------------------------------------------------

    /// A minimal HTTP/1.1 exchange: (status, JSON body or `Null`).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.addr).expect("connect to sim");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read sim response");
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Makes `key` a Tatum key the simulator knows, with its account data.
    pub fn add_tatum_key(&self, key: &str, testnet: bool, subscriptions: u64, accounts: u64) {
        let (status, _) = self.request(
            "POST",
            "/_sim/tatum/keys",
            Some(&json!({"key": key, "testnet": testnet, "subscriptions": subscriptions, "accounts": accounts})),
        );
        assert_eq!(status, 204);
    }

    /// Makes `key` a live Tatum key (the simulator's defaults).
    pub fn add_live_key(&self, key: &str) {
        let (status, resp) = self.request("POST", "/_sim/tatum/keys", Some(&json!({ "key": key })));
        assert_eq!(status, 204, "{resp}");
    }

    /// What the simulated Tatum holds for `key`.
    pub fn tatum_key(&self, key: &str) -> Value {
        let path = format!("/_sim/tatum/keys/{}", fingerprint(key));
        let (status, v) = self.request("GET", &path, None);
        assert_eq!(status, 200, "sim knows the key");
        v
    }

    /// Queues a fault (`POST /_sim/fault`).
    pub fn fault(&self, fault: Value) {
        assert_eq!(self.request("POST", "/_sim/fault", Some(&fault)).0, 204);
    }

    /// Every provider call received.
    pub fn calls(&self) -> Vec<Value> {
        match self.request("GET", "/_sim/calls", None).1 {
            Value::Array(calls) => calls,
            other => panic!("calls: {other}"),
        }
    }

    /// Calls received for `method path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c["method"] == method && c["path"] == path)
            .count()
    }

    /// Calls that change state at a provider.
    pub fn state_changing_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c["method"] != "GET" && c["path"] != "/api/auth.test")
            .count()
    }

    /// Containment calls (`PUT /v3/tatum/freeze`) that carried `key`.
    pub fn freezes_of(&self, key: &str) -> usize {
        let fp = fingerprint(key);
        self.calls()
            .iter()
            .filter(|c| c["method"] == "PUT" && c["path"] == "/v3/tatum/freeze")
            .filter(|c| c["key_fingerprint"] == fp.as_str())
            .count()
    }

    /// Polls the call log until `pred` holds, or panics at the deadline.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if pred(&self.calls()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    }

    /// Waits for the first freeze of `key`.
    pub fn wait_for_freeze(&self, key: &str) {
        self.wait_for("a freeze call for the key", |calls| {
            let fp = fingerprint(key);
            calls.iter().any(|c| {
                c["method"] == "PUT"
                    && c["path"] == "/v3/tatum/freeze"
                    && c["key_fingerprint"] == fp.as_str()
            })
        });
    }

    /// The bodies of the alerts the `name` webhook sink received.
    pub fn sink(&self, name: &str) -> Vec<String> {
        let (_, body) = self.request("GET", &format!("/_sim/sink/{name}"), None);
        let got = body.as_array().expect("the sink answers a list");
        got.iter()
            .map(|r| r["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    // --- async ---------------------------------------------------------

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("sim reachable");
        assert!(res.status().is_success(), "sim {path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    /// `GET path` as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("query the simulator");
        res.json().await.expect("simulator answers JSON")
    }

    /// `GET path` as a JSON list (empty when it is not one).
    pub async fn get_list(&self, path: &str) -> Vec<Value> {
        let v = self.get_json(path).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// `PUT path`: how a simulated receiver behaves.
    pub async fn behave(&self, path: &str, behaviour: Value) {
        let res = self
            .http
            .put(format!("{}{path}", self.url))
            .json(&behaviour)
            .send()
            .await
            .expect("configure the simulator");
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    /// The raw bodies a webhook sink received.
    pub async fn sink_bodies(&self, name: &str) -> Vec<String> {
        let records = self.get_json(&format!("/_sim/sink/{name}")).await;
        let records = records.as_array().expect("a list").clone();
        records
            .iter()
            .map(|r| r["body"].as_str().expect("body text").to_string())
            .collect()
    }

    /// Makes `key` a live key at the simulated Tatum.
    pub async fn live_key(&self, key: &str) {
        let res = self
            .http
            .post(format!("{}/_sim/tatum/keys", self.url))
            .json(&json!({"key": key, "testnet": false, "subscriptions": 0, "accounts": 0}))
            .send()
            .await
            .expect("sim reachable");
        assert!(res.status().is_success());
    }

    /// Containment calls that carried `key`.
    pub async fn freezes(&self, key: &str) -> usize {
        let fp = fingerprint(key);
        self.get_list("/_sim/calls")
            .await
            .iter()
            .filter(|c| c["method"] == "PUT" && c["path"] == "/v3/tatum/freeze")
            .filter(|c| c["key_fingerprint"] == fp.as_str())
            .count()
    }

    pub async fn all_freezes(&self) -> usize {
        self.get_list("/_sim/calls")
            .await
            .iter()
            .filter(|c| c["method"] == "PUT" && c["path"] == "/v3/tatum/freeze")
            .count()
    }

    /// GitHub API calls whose path contains `part`, as (method, path, status).
    pub async fn github_calls(&self, part: &str) -> Vec<(String, String, u64)> {
        self.get_list("/_sim/github/calls")
            .await
            .into_iter()
            .filter(|c| c["path"].as_str().is_some_and(|p| p.contains(part)))
            .map(|c| {
                (
                    c["method"].as_str().unwrap_or("").to_string(),
                    c["path"].as_str().unwrap_or("").to_string(),
                    c["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// A GitHub repository whose default branch is `main`.
    pub async fn repo(&self, repo: &str) {
        self.post(
            "/_sim/github/repos",
            json!({"repo": repo, "default_branch": "main"}),
        )
        .await;
    }

    /// A commit by `email` on top of `parent` setting `files`; returns its sha.
    pub async fn commit(
        &self,
        repo: &str,
        parent: Option<&str>,
        email: &str,
        files: Value,
    ) -> String {
        self.commit_with(
            json!({"repo": repo, "parent": parent, "files": files, "message": "change",
                   "author": {"name": "Dev", "email": email, "date": "2024-05-01T10:00:00Z"}}),
        )
        .await
    }

    pub async fn commit_with(&self, body: Value) -> String {
        let v = self.post("/_sim/github/commits", body).await;
        v["sha"].as_str().expect("sha").to_string()
    }
}
