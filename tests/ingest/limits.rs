//! Hostile or broken syslog clients: one that never sends, one that sends a
//! line without end, more connections than the cap. None blocks the
//! others or grows memory past its cap; the idle ones are closed.

use super::*;
use std::net::TcpStream;

#[test]
fn silent_and_endless_clients_do_not_block_others_and_are_capped() {
    let sim = Sim::start();
    let watch =
        "  syslog:\n    - listen: 127.0.0.1:0\n      max_connections: 3\n      idle_timeout: 2s\n";
    let s = Shipping::start(&sim, watch);
    let addr = s.syslog_addr("tcp");
    let name = "syslog:tcp://127.0.0.1:0";
    // A client that never sends, and one that sends a line with no end
    // (1 MiB, 16 times the line limit), keeping its connection open.
    let silent = TcpStream::connect(&addr).unwrap();
    let mut endless = TcpStream::connect(&addr).unwrap();
    let junk = "x".repeat(1 << 20);
    endless.write_all(junk.as_bytes()).unwrap();
    s.wait_metric(
        // 16 pieces of the line limit: each queued and scanned as it came.
        &format!("keysentry_ingest_lines_total{{listener=\"{name}\"}}"),
        16.0,
    );
    // The third slot still serves a sender with a key.
    let k = key("behind a slow client");
    sim.add_live_key(&k);
    let port = s.port_of("tcp");
    logger(&[
        "--tcp",
        "--rfc5424",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "api",
        &format!("x-api-key: {k}"),
    ]);
    sim.wait_for_freeze(&k);
    // Over the cap (3 open: silent, endless, and this one): closed at once.
    let third = TcpStream::connect(&addr).unwrap();
    let mut over = TcpStream::connect(&addr).unwrap();
    s.wait_metric(
        &format!("keysentry_ingest_refused_total{{listener=\"{name}\"}}"),
        1.0,
    );
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        over.read(&mut buf).unwrap_or(0),
        0,
        "the connection over the cap was not closed"
    );
    // idle_timeout closes the silent ones (the endless one too, once quiet).
    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(silent.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(8));
    s.wait_metric_eq(
        &format!("keysentry_ingest_connections_open{{listener=\"{name}\"}}"),
        0.0,
    );
    drop((third, endless));
    let page = s.metrics();
    // One oversized frame: one parse failure, not one per piece.
    let failures = format!("keysentry_ingest_parse_failures_total{{listener=\"{name}\"}}");
    assert_eq!(metric(&page, &failures), Some(1.0), "{page}");
    let bytes = metric(
        &page,
        &format!("keysentry_ingest_bytes_total{{listener=\"{name}\"}}"),
    )
    .unwrap();
    assert!(
        bytes >= (1 << 20) as f64,
        "the endless line was not scanned: {page}"
    );
    s.stop(&[&k[2..]]);
}

impl Shipping {
    pub fn wait_metric_eq(&self, series: &str, value: f64) -> String {
        let start = Instant::now();
        loop {
            let page = self.metrics();
            if metric(&page, series) == Some(value) {
                return page;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{series} never became {value}:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
