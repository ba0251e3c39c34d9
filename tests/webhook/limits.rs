//! `keysentry daemon` against unauthenticated clients (issue 9.4): slow
//! headers, more connections than the cap, large unsigned or wrongly signed
//! bodies. Raw sockets, as an attacker would use them.

use super::daemon::{start_daemon, SECRET_ENV};
use super::harness::*;
use crate::support::daemon::Daemon;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

/// A daemon serving `/healthz`, `/metrics` and the webhook on one address,
/// with `http` (YAML lines under `http:`) added.
fn daemon(dir: &tempfile::TempDir, http: &str) -> Daemon {
    let config = dir.path().join("config.yaml");
    let http: String = http.lines().map(|l| format!("  {l}\n")).collect();
    std::fs::write(
        &config,
        format!(
            "state_dir: {state}
http:
  listen: 127.0.0.1:0
{http}github:
  api_url: http://127.0.0.1:9
  webhook:
    listen: 127.0.0.1:0
    secret_env: {SECRET_ENV}
",
            state = dir.path().join("state").display(),
        ),
    )
    .unwrap();
    start_daemon(&config)
}

async fn addr(d: &Daemon) -> String {
    d.webhook_url().trim_start_matches("http://").to_string()
}

/// The value of the series `name` (a whole `name value` line).
async fn metric(d: &Daemon, name: &str) -> f64 {
    let url = format!("{}/metrics", d.http_url());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// What the server sent before closing or going quiet for `wait`: the
/// response head, or "" when it closed without a word.
fn head(stream: &mut TcpStream, wait: Duration) -> Result<String, std::io::Error> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn post_head(len: usize, signature: Option<&str>) -> String {
    let sig = signature
        .map(|s| format!("X-Hub-Signature-256: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: d-abuse\r\n{sig}Content-Length: {len}\r\n\r\n"
    )
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir, "header_timeout_secs: 1");
    let addr = addr(&d).await;
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Without a header timeout this read waits its full 20 s and fails.
    let said = tokio::task::spawn_blocking(move || head(&mut slow, Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the daemon closes a connection whose header never ends");
    assert!(
        said.is_empty() || said.starts_with("HTTP/1.1 408"),
        "{said}"
    );
    assert_eq!(
        metric(&d, "keysentry_http_timeouts_total{kind=\"header\"}").await,
        1.0
    );
    // A complete request on a fresh connection is answered as usual.
    let ok = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir, "header_timeout_secs: 60\nidle_timeout_secs: 1");
    let addr = addr(&d).await;
    let said = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let first = head(&mut s, Duration::from_secs(10)).unwrap();
        // Kept alive, then silent: only the idle timeout can end it.
        let mut rest = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut closed = false;
        loop {
            match s.read(&mut rest) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => continue, // the rest of the 200's body
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        (first, closed)
    })
    .await
    .unwrap();
    assert!(said.0.starts_with("HTTP/1.1 200"), "{}", said.0);
    assert!(said.1, "the idle connection was left open");
    assert_eq!(
        metric(&d, "keysentry_http_timeouts_total{kind=\"idle\"}").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_while_healthz_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir, "max_connections: 8\nheader_timeout_secs: 60");
    let addr = addr(&d).await;
    let cap: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Until the server has taken all eight (the count includes the request
    // that asks, on a reserved slot once the others are full).
    let start = std::time::Instant::now();
    while metric(&d, "keysentry_http_connections_open").await < 8.0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the 8 connections were never accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every full slot is held by a client that sends nothing; /healthz and
    // /metrics are served on a reserved slot, anything else is not.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    let hook = client
        .post(format!("http://{addr}{PATH}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 503);
    assert!(hook.headers().contains_key("retry-after"));
    // With the reserve held too, one more is closed before a byte is read.
    let reserve: Vec<TcpStream> = (0..keysentry::server::RESERVED_CONNECTIONS)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut over = TcpStream::connect(&addr).unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let said = tokio::task::spawn_blocking(move || head(&mut over, Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        said, "",
        "a connection over the cap and the reserve is closed unanswered"
    );
    // The reserve frees itself (a reserved slot has 2 s to send its request).
    until("/healthz to answer again", || async {
        let r = client.get(format!("http://{addr}/healthz")).send().await;
        r.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(metric(&d, "keysentry_http_connections_refused_total").await >= 1.0);
    assert!(metric(&d, "keysentry_http_connections_reserved_total").await >= 2.0);
    assert_eq!(metric(&d, "keysentry_http_connections_max").await, 8.0);
    drop((cap, reserve));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_20_mib_body_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir, "");
    let addr = addr(&d).await;
    let said = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(post_head(20 << 20, None).as_bytes()).unwrap();
        s.write_all(&vec![b' '; 64 << 10]).unwrap();
        // The rest of the 20 MiB is never sent: the answer must not need it.
        head(&mut s, Duration::from_secs(20))
    })
    .await
    .unwrap()
    .expect("answered before the body is complete");
    assert!(said.starts_with("HTTP/1.1 401"), "{said}");
    assert_eq!(
        metric(&d, "keysentry_http_body_bytes_read_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_signed_bodies_are_held_only_within_the_in_flight_budget() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir, &format!("max_inflight_body_bytes: {}", 32 << 20));
    let addr = addr(&d).await;
    let pid = d.child.id();
    let before = rss_kib(pid, "VmRSS:");
    let body_len = 20 << 20;
    let sig = WebhookSecret::new("not-the-secret").sign(b"{}");
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, sig, barrier) = (addr.clone(), sig.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                barrier.wait();
                s.write_all(post_head(body_len, Some(&sig)).as_bytes())
                    .unwrap();
                // Refused at once (503), or the server waits for the body.
                let early = head(&mut s, Duration::from_secs(2)).unwrap_or_default();
                if !early.is_empty() {
                    return early;
                }
                s.write_all(&vec![b'{'; body_len]).unwrap();
                head(&mut s, Duration::from_secs(30)).unwrap()
            })
        })
        .collect();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let status = |a: &String| a.get(9..12).unwrap_or("").to_string();
    assert!(
        answers
            .iter()
            .all(|a| ["401", "503"].contains(&status(a).as_str())),
        "{answers:?}"
    );
    assert!(answers.iter().any(|a| status(a) == "401"), "{answers:?}");
    let busy: Vec<&String> = answers.iter().filter(|a| status(a) == "503").collect();
    assert!(
        !busy.is_empty(),
        "no request was refused for budget: {answers:?}"
    );
    assert!(busy
        .iter()
        .all(|a| a.to_ascii_lowercase().contains("retry-after: ")));
    let peak = metric(&d, "keysentry_http_body_bytes_inflight_peak").await;
    assert!(peak <= (32 << 20) as f64, "{peak}");
    assert_eq!(metric(&d, "keysentry_http_body_bytes_inflight").await, 0.0);
    // Loosely: eight 20 MiB bodies held at once would be 160 MiB and more.
    let grew_mib = rss_kib(pid, "VmHWM:").saturating_sub(before) / 1024;
    assert!(grew_mib < 96, "peak RSS grew by {grew_mib} MiB");
}

#[test]
fn config_check_names_every_bad_http_limit_and_the_daemon_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "http:\n  listen: 127.0.0.1:0\n  max_connections: 0\n  body_timeout_secs: 99999\n",
    )
    .unwrap();
    let o = crate::support::keysentry()
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("http.max_connections"), "{out}");
    assert!(out.contains("http.body_timeout_secs"), "{out}");
    let o = crate::support::keysentry()
        .args(["daemon", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("http.body_timeout_secs: 99999 is out of range"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_larger_than_64_kib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir, "");
    let addr = addr(&d).await;
    let said = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(128 << 10)
        );
        let _ = s.write_all(big.as_bytes());
        head(&mut s, Duration::from_secs(20))
    })
    .await
    .unwrap()
    .expect("answered or closed at once");
    assert!(
        said.is_empty() || said.starts_with("HTTP/1.1 431"),
        "{said}"
    );
}
