//! Syslog senders: `logger` over TCP (RFC 5424, newline framing) and UDP
//! (RFC 3164), rsyslog forwarding with octet-counted framing, and a TLS
//! client.

use super::*;

const TCP_AND_UDP: &str = "  syslog:\n    - listen: 127.0.0.1:0\n      protocol: tcp\n    - listen: 127.0.0.1:0\n      protocol: udp\n";

#[test]
fn keys_sent_by_logger_over_tcp_and_udp_are_contained_and_name_the_sender() {
    let sim = Sim::start();
    let s = Shipping::start(&sim, TCP_AND_UDP);
    let (k1, k2) = (key("logger tcp"), key("logger udp"));
    sim.add_live_key(&k1);
    sim.add_live_key(&k2);
    let tcp = s.port_of("tcp");
    let udp = s.port_of("udp");
    logger(&[
        "--tcp",
        "--rfc5424",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-t",
        "payments",
        &format!("GET /v3/tatum/version x-api-key: {k1}"),
    ]);
    sim.wait_for_freeze(&k1);
    logger(&[
        "--udp",
        "--rfc3164",
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "-t",
        "batch",
        &format!("retry with x-api-key: {k2}"),
    ]);
    sim.wait_for_freeze(&k2);
    // The same key again over TCP: no second freeze (the UDP one came
    // after, so a second freeze would have happened by now).
    logger(&[
        "--tcp",
        "--rfc5424",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-t",
        "payments",
        &format!("again {k1}"),
    ]);
    s.wait_metric(
        "keysentry_ingest_lines_total{listener=\"syslog:tcp://127.0.0.1:0\"}",
        2.0,
    );
    let page = s.wait_metric(
        "keysentry_scanned_lines_total{source=\"syslog:tcp://127.0.0.1:0\"}",
        2.0,
    );
    assert_eq!(sim.freezes_of(&k1), 1);
    assert_eq!(sim.freezes_of(&k2), 1);
    assert_eq!(incident_count(&page), 2.0, "{page}");
    assert_eq!(
        metric(
            &page,
            "keysentry_ingest_lines_total{listener=\"syslog:udp://127.0.0.1:0\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "keysentry_ingest_parse_failures_total{listener=\"syslog:tcp://127.0.0.1:0\"}"
        ),
        Some(0.0),
        "{page}"
    );
    // Where the key came from: host and app from the header, the listener.
    let (first, text) = s.show(1);
    let loc = &first["locations"][0];
    assert_eq!(loc["source"], "syslog", "{first}");
    let path = loc["path"].as_str().unwrap();
    assert!(
        path.ends_with("/payments") && !path.starts_with("-/"),
        "{path}"
    );
    assert_eq!(loc["repo"], "syslog:tcp://127.0.0.1:0");
    assert!(
        text.contains("/payments:1") && text.contains("(syslog,"),
        "{text}"
    );
    let (second, _) = s.show(2);
    let loc = &second["locations"][0];
    assert_eq!(loc["repo"], "syslog:udp://127.0.0.1:0");
    assert!(
        loc["path"].as_str().unwrap().ends_with("/batch"),
        "{second}"
    );
    // `/healthz` lists the listeners.
    let (_, health) = http_request(s.daemon.port(), "GET", "/healthz", &[], b"");
    assert!(
        health.contains("syslog:tcp://127.0.0.1:0") && health.contains("syslog:udp://127.0.0.1:0"),
        "{health}"
    );
    let page = s.metrics();
    let log = s.stop(&[&k1[2..], &k2[2..]]);
    assert!(!page.contains(&k1[2..]) && !text.contains(&k1[2..]));
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn rsyslog_forwarding_with_octet_counted_framing_is_contained() {
    // Fails, never skips, without it: .ci/run installs it.
    let rsyslogd = which("rsyslogd").unwrap_or_else(|| {
        panic!("rsyslogd is not installed: apt-get install rsyslog (.ci/run installs it)")
    });
    let sim = Sim::start();
    let s = Shipping::start(&sim, "  syslog:\n    - listen: 127.0.0.1:0\n");
    let k = key("forwarded by rsyslog");
    sim.add_live_key(&k);
    let port = s.port_of("tcp");
    let dir = s.dir.path();
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let app_log = dir.join("app.log");
    std::fs::write(
        &app_log,
        format!("starting\nPOST /v3/ledger x-api-key: {k}\n"),
    )
    .unwrap();
    // Its own work directory and pid file, a file input (no /dev/log), and
    // an RFC 5424 forward with octet counting to keysentry.
    let conf = format!(
        "global(workDirectory=\"{work}\")\n\
         module(load=\"imfile\")\n\
         input(type=\"imfile\" File=\"{log}\" Tag=\"ledger\" Severity=\"info\")\n\
         action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
        work = work.display(),
        log = app_log.display(),
    );
    let conf_path = dir.join("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let pid = dir.join("rsyslogd.pid");
    let mut child = Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(&pid)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rsyslogd");
    let stop = Kill(&mut child);
    sim.wait_for_freeze(&k);
    drop(stop);
    let (incident, _) = s.show(1);
    let loc = &incident["locations"][0];
    assert_eq!(loc["source"], "syslog");
    assert!(
        loc["path"].as_str().unwrap().ends_with("/ledger"),
        "{incident}"
    );
    let page = s.metrics();
    // Octet-counted frames: each line one message, none mis-framed.
    assert_eq!(
        metric(
            &page,
            "keysentry_ingest_parse_failures_total{listener=\"syslog:tcp://127.0.0.1:0\"}"
        ),
        Some(0.0),
        "{page}"
    );
    assert!(
        metric(
            &page,
            "keysentry_ingest_lines_total{listener=\"syslog:tcp://127.0.0.1:0\"}"
        )
        .unwrap()
            >= 2.0,
        "{page}"
    );
    s.stop(&[&k[2..]]);
}

/// Kills the child (by its own pid) when dropped.
struct Kill<'a>(&'a mut std::process::Child);

impl Drop for Kill<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

#[test]
fn a_key_sent_over_tls_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=keysentry-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key_file)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sim = Sim::start();
    let watch = format!(
        "  syslog:\n    - listen: 127.0.0.1:0\n      protocol: tls\n      tls_cert: {}\n      tls_key: {}\n",
        cert.display(),
        key_file.display()
    );
    let s = Shipping::start(&sim, &watch);
    let k = key("over tls");
    sim.add_live_key(&k);
    let addr = s.syslog_addr("tls");
    let msg = format!("<13>1 2026-12-01T10:00:00Z vault-7 kms - - - x-api-key: {k}");
    let frame = format!("{} {msg}", msg.len());
    tls_send(&addr, &cert, frame.as_bytes());
    sim.wait_for_freeze(&k);
    let (incident, _) = s.show(1);
    assert_eq!(
        incident["locations"][0]["path"], "vault-7/kms",
        "{incident}"
    );
    assert_eq!(incident["locations"][0]["repo"], "syslog:tls://127.0.0.1:0");
    // Plain TCP to the TLS port is no handshake: nothing is taken from it.
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain.write_all(format!("{frame}\n").as_bytes()).unwrap();
    drop(plain);
    s.stop(&[&k[2..]]);
}

/// A rustls client that trusts `cert`, sends `data` and closes cleanly.
fn tls_send(addr: &str, cert: &Path, data: &[u8]) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(data).unwrap();
    tls.flush().unwrap();
    tls.conn.send_close_notify();
    let _ = tls.conn.complete_io(&mut tls.sock);
}

#[test]
fn a_key_sent_as_the_host_name_is_contained_but_never_shown() {
    let sim = Sim::start();
    let s = Shipping::start(&sim, INGEST_AND_TCP);
    let (k, k2) = (key("in the hostname"), key("in the appname"));
    sim.add_live_key(&k);
    sim.add_live_key(&k2);
    // RFC 5424 with the key as HOSTNAME and as APP-NAME of a JSON record.
    let msg = format!("<13>1 2026-12-01T10:00:00Z {k} app - - - nothing else here");
    let mut conn = std::net::TcpStream::connect(s.syslog_addr("tcp")).unwrap();
    conn.write_all(format!("{} {msg}", msg.len()).as_bytes())
        .unwrap();
    drop(conn);
    sim.wait_for_freeze(&k);
    let record = format!("{{\"message\":\"plain\",\"host\":\"web-1\",\"appname\":\"{k2}\"}}\n");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (status, body) = http_request(
        s.daemon.port(),
        "POST",
        "/ingest",
        &[&auth],
        record.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    // Masked in the location, still scanned: contained.
    sim.wait_for_freeze(&k2);
    let page = s.metrics();
    let (incident, text) = s.show(1);
    let (second, text2) = s.show(2);
    let shown = format!("{incident}{text}{second}{text2}{page}");
    assert!(
        !shown.contains(&k[2..]) && !shown.contains(&k2[2..]),
        "a key is shown: {shown}"
    );
    assert_eq!(
        second["locations"][0]["path"]
            .as_str()
            .unwrap()
            .split('/')
            .next(),
        Some("web-1")
    );
    assert!(
        incident["locations"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/app"),
        "{incident}"
    );
    s.stop(&[&k[2..], &k2[2..], TOKEN]);
}

const INGEST_AND_TCP: &str =
    "  syslog:\n    - listen: 127.0.0.1:0\n  http_ingest:\n    token_env: KEYSENTRY_INGEST_TOKEN\n";

#[test]
fn the_dashboard_shows_where_a_shipped_key_came_from() {
    let sim = Sim::start();
    // `http` is the config's last section: the dashboard goes under it.
    let s = Shipping::start_edited(&sim, "  syslog:\n    - listen: 127.0.0.1:0\n", "", |t| {
        format!("{t}  ui:\n    token_env: KEYSENTRY_UI_TOKEN\n")
    });
    let k = key("on the dashboard");
    sim.add_live_key(&k);
    let msg = format!("<14>Dec  1 10:00:00 web-9 billing[42]: charge x-api-key: {k}");
    let mut conn = std::net::TcpStream::connect(s.syslog_addr("tcp")).unwrap();
    conn.write_all(format!("{msg}\n").as_bytes()).unwrap();
    drop(conn);
    sim.wait_for_freeze(&k);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let port = s.daemon.port();
    let (status, page) = http_request(port, "GET", "/ui/incidents/1", &[&auth], b"");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("syslog:tcp://127.0.0.1:0:web-9/billing:1"),
        "{page}"
    );
    assert!(page.contains("<td>syslog</td>"), "{page}");
    let (_, list) = http_request(port, "GET", "/ui/?source=syslog", &[&auth], b"");
    assert!(
        list.contains("<option value=\"syslog\" selected>"),
        "{list}"
    );
    assert!(list.contains("href=\"/ui/incidents/1\""), "{list}");
    assert!(!page.contains(&k[2..]) && !list.contains(&k[2..]));
    s.stop(&[&k[2..], TOKEN]);
}

#[test]
fn a_reload_keeps_the_listeners_serving_and_in_healthz() {
    let sim = Sim::start();
    let s = Shipping::start(&sim, "  syslog:\n    - listen: 127.0.0.1:0\n");
    let addr = s.syslog_addr("tcp");
    // A sender connected across the reload keeps its connection.
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    s.daemon.signal("HUP");
    s.daemon.wait_for("the reload", |l| l.contains("reloaded"));
    let k = key("after the reload");
    sim.add_live_key(&k);
    conn.write_all(format!("<13>1 - web-1 app - - - x-api-key: {k}\n").as_bytes())
        .unwrap();
    sim.wait_for_freeze(&k);
    let (_, health) = http_request(s.daemon.port(), "GET", "/healthz", &[], b"");
    assert!(
        health.contains("\"syslog:tcp://127.0.0.1:0\":{\"status\":\"ok\""),
        "{health}"
    );
    s.stop(&[&k[2..]]);
}
