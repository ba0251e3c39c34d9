//! `POST /ingest` on `http.listen`: NDJSON (Vector, Fluent Bit's
//! `json_lines`), a JSON array (Fluent Bit's `json`) and plain text are
//! contained; a missing or wrong token is 401, an oversized body 413, and
//! neither records anything nor echoes the body or the token.

use super::*;

const INGEST: &str = "  http_ingest:\n    path: /ingest\n    token_env: KEYSENTRY_INGEST_TOKEN\n    max_body: 4096\n";

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[test]
fn ndjson_and_plain_text_lines_with_a_key_are_contained() {
    let sim = Sim::start();
    let s = Shipping::start(&sim, INGEST);
    let (k1, k2, k3) = (key("ndjson"), key("plain text"), key("json array"));
    for k in [&k1, &k2, &k3] {
        sim.add_live_key(k);
    }
    let port = s.daemon.port();
    let ndjson = format!(
        "{{\"message\":\"started\",\"host\":\"web-3\",\"appname\":\"checkout\"}}\n{{\"message\":\"call with x-api-key: {k1}\",\"host\":\"web-3\",\"appname\":\"checkout\",\"timestamp\":\"2026-12-01T10:00:00Z\"}}\n"
    );
    let (status, body) = http_request(
        port,
        "POST",
        "/ingest",
        &[&bearer(), "Content-Type: application/x-ndjson"],
        ndjson.as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "{\"accepted\":2}");
    sim.wait_for_freeze(&k1);
    let plain = format!("first line\nx-api-key: {k2}\n");
    let (status, _) = http_request(
        port,
        "POST",
        "/ingest",
        &[&bearer(), "Content-Type: text/plain"],
        plain.as_bytes(),
    );
    assert_eq!(status, 200);
    sim.wait_for_freeze(&k2);
    let array = format!("[{{\"date\":1764583200.0,\"log\":\"key {k3}\",\"hostname\":\"node-9\"}}]");
    let (status, _) = http_request(
        port,
        "POST",
        "/ingest",
        &[&bearer(), "Content-Type: application/json"],
        array.as_bytes(),
    );
    assert_eq!(status, 200);
    sim.wait_for_freeze(&k3);
    let (incident, text) = s.show(1);
    let loc = &incident["locations"][0];
    assert_eq!(loc["source"], "ingest", "{incident}");
    assert_eq!(loc["path"], "web-3/checkout");
    assert_eq!(loc["repo"], "ingest:/ingest");
    // Line 2: the second message the endpoint received.
    assert!(text.contains("ingest:/ingest:web-3/checkout:2"), "{text}");
    assert_eq!(s.show(2).0["locations"][0]["path"], "-/-");
    assert_eq!(s.show(3).0["locations"][0]["path"], "node-9/-");
    let page = s.metrics();
    assert_eq!(
        metric(
            &page,
            "keysentry_ingest_lines_total{listener=\"ingest:/ingest\"}"
        ),
        Some(5.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "keysentry_ingest_connections_total{listener=\"ingest:/ingest\"}"
        ),
        Some(3.0),
        "{page}"
    );
    s.stop(&[&k1[2..], &k2[2..], &k3[2..], TOKEN]);
}

#[test]
fn a_missing_or_wrong_token_is_401_an_oversized_body_413_and_nothing_is_recorded() {
    let sim = Sim::start();
    let s = Shipping::start(&sim, INGEST);
    let (refused, good) = (key("refused"), key("accepted after"));
    sim.add_live_key(&refused);
    sim.add_live_key(&good);
    let port = s.daemon.port();
    let line = format!("x-api-key: {refused}\n");
    let wrong = "Authorization: Bearer ingest-token-0123456789abcdeX".to_string();
    let basic = "Authorization: Basic aW5nZXN0OnRva2Vu".to_string();
    let mut answers = Vec::new();
    for headers in [vec![], vec![wrong.as_str()], vec![basic.as_str()]] {
        let (status, body) = http_request(port, "POST", "/ingest", &headers, line.as_bytes());
        assert_eq!(status, 401, "{headers:?}: {body}");
        answers.push(body);
    }
    // Over max_body (4096): declared, and streamed without a length.
    let big = format!("{line}{}", "filler line\n".repeat(400));
    let (status, body) = http_request(port, "POST", "/ingest", &[&bearer()], big.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_body"), "{body}");
    answers.push(body);
    let mut chunked = Vec::new();
    for piece in big.as_bytes().chunks(1000) {
        chunked.extend(format!("{:x}\r\n", piece.len()).into_bytes());
        chunked.extend(piece);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let (status, body) = http_request(
        port,
        "POST",
        "/ingest",
        &[&bearer(), "Transfer-Encoding: chunked"],
        &chunked,
    );
    assert_eq!(status, 413, "{body}");
    answers.push(body);
    for a in &answers {
        assert!(
            !a.contains(&refused[2..]) && !a.contains(TOKEN) && !a.contains("filler"),
            "echoed: {a}"
        );
    }
    // An accepted line after them is contained; the refused key never was.
    let (status, _) = http_request(
        port,
        "POST",
        "/ingest",
        &[&bearer()],
        format!("ok {good}\n").as_bytes(),
    );
    assert_eq!(status, 200);
    sim.wait_for_freeze(&good);
    let page = s.wait_metric(
        "keysentry_scanned_lines_total{source=\"ingest:/ingest\"}",
        1.0,
    );
    assert_eq!(sim.freezes_of(&refused), 0);
    assert_eq!(incident_count(&page), 1.0, "{page}");
    assert_eq!(
        metric(
            &page,
            "keysentry_ingest_lines_total{listener=\"ingest:/ingest\"}"
        ),
        Some(1.0),
        "{page}"
    );
    s.stop(&[&refused[2..], &good[2..], TOKEN]);
}
