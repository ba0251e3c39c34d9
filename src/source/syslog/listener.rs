//! The sockets of `watch.syslog`: bound at start (a busy port is an error
//! naming the listener), then served until the daemon stops. Each TCP/TLS
//! connection is its own task with its own [`Framer`]: a slow or silent
//! client holds only its own buffer (at most [`MAX_LINE`]) and its slot
//! under `max_connections`, until `idle_timeout` closes it.

use super::framer::Framer;
use super::{Origins, Protocol, Queue, SyslogSettings, HANDSHAKE_TIMEOUT, MAX_DATAGRAM, MAX_LINE};
use crate::metrics::ListenerCounts;
use crate::scan::Via;
use crate::shutdown::Shutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Bytes read from a connection at a time.
const READ_BUF: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {listen} ({at}, {protocol}): {source}; pick a free port, or stop what listens there")]
    Bind {
        at: String,
        listen: String,
        protocol: &'static str,
        source: std::io::Error,
    },
    #[error("{at}: cannot read {path}: {source}; point it at a readable PEM file")]
    TlsFile {
        at: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    Tls { at: String, message: String },
}

enum Socket {
    Tcp(TcpListener, Option<TlsAcceptor>),
    Udp(UdpSocket),
}

/// A bound syslog listener, not yet serving.
pub struct Listener {
    pub settings: SyslogSettings,
    /// Where it really listens (the port, when the config says 0).
    pub local: SocketAddr,
    socket: Socket,
}

impl Listener {
    /// Binds `watch.syslog[index]` (and loads its TLS files).
    pub async fn bind(s: &SyslogSettings, index: usize) -> Result<Listener, ListenError> {
        let at = format!("watch.syslog[{index}]");
        let bind_err = |source| ListenError::Bind {
            at: format!("{at}.listen"),
            listen: s.listen.clone(),
            protocol: s.protocol.as_str(),
            source,
        };
        let (socket, local) = match s.protocol {
            Protocol::Udp => {
                let sock = UdpSocket::bind(s.addr).await.map_err(bind_err)?;
                let local = sock.local_addr().map_err(bind_err)?;
                (Socket::Udp(sock), local)
            }
            Protocol::Tcp | Protocol::Tls => {
                let tls = match &s.tls {
                    Some((cert, key)) => Some(acceptor(&at, cert, key)?),
                    None => None,
                };
                let sock = TcpListener::bind(s.addr).await.map_err(bind_err)?;
                let local = sock.local_addr().map_err(bind_err)?;
                (Socket::Tcp(sock, tls), local)
            }
        };
        Ok(Listener {
            settings: s.clone(),
            local,
            socket,
        })
    }

    /// Serves until `stop` fires.
    pub async fn run(self, queue: Queue, mut stop: Shutdown) {
        let name = self.settings.name();
        match self.socket {
            Socket::Udp(sock) => {
                tokio::select! {
                    _ = stop.wait() => {}
                    _ = serve_udp(sock, &name, queue) => {}
                }
            }
            Socket::Tcp(sock, tls) => {
                let slots = Arc::new(Semaphore::new(self.settings.max_connections));
                loop {
                    let (conn, _peer) = tokio::select! {
                        _ = stop.wait() => return,
                        a = sock.accept() => match a {
                            Ok(a) => a,
                            Err(e) => {
                                // EMFILE and the like pass; do not spin on them.
                                tracing::warn!(listener = %name, "accept failed: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        ListenerCounts::add(&queue.counts.refused, 1);
                        drop(conn);
                        continue;
                    };
                    ListenerCounts::add(&queue.counts.connections, 1);
                    let (queue, name, tls, idle) = (
                        queue.clone(),
                        name.clone(),
                        tls.clone(),
                        self.settings.idle_timeout,
                    );
                    let mut stop = stop.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let _open = Open::new(&queue.counts);
                        let served = async {
                            match tls {
                                None => serve_stream(conn, &name, &queue, idle).await,
                                Some(tls) => {
                                    let hs =
                                        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(conn));
                                    match hs.await {
                                        Ok(Ok(stream)) => {
                                            serve_stream(stream, &name, &queue, idle).await
                                        }
                                        Ok(Err(e)) => {
                                            tracing::debug!(listener = %name, "TLS handshake failed: {e}")
                                        }
                                        Err(_) => {
                                            tracing::debug!(listener = %name, "TLS handshake timed out")
                                        }
                                    }
                                }
                            }
                        };
                        tokio::select! {
                            _ = stop.wait() => {}
                            _ = served => {}
                        }
                    });
                }
            }
        }
    }
}

/// Counts a connection open while it lives.
struct Open(Arc<ListenerCounts>);

impl Open {
    fn new(counts: &Arc<ListenerCounts>) -> Open {
        counts.open.fetch_add(1, Relaxed);
        Open(counts.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// One TCP or TLS connection: framed, each message queued (waiting while
/// the queue is full, so the socket is not read), closed when idle.
async fn serve_stream<S: AsyncRead + Unpin>(
    mut conn: S,
    name: &str,
    queue: &Queue,
    idle: std::time::Duration,
) {
    let mut framer = Framer::new(MAX_LINE);
    let mut origins = Origins::new(Via::Syslog, name);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = match tokio::time::timeout(idle, conn.read(&mut buf)).await {
            Err(_) => {
                tracing::debug!(listener = %name, "closing an idle connection");
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(listener = %name, "connection ended: {e}");
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        for frame in framer.push(&buf[..n]) {
            if queue_frame(frame, &mut origins, queue).await.is_err() {
                return;
            }
        }
    }
    if let Some(frame) = framer.finish() {
        let _ = queue_frame(frame, &mut origins, queue).await;
    }
}

async fn queue_frame(
    frame: super::framer::Frame,
    origins: &mut Origins,
    queue: &Queue,
) -> Result<(), super::Closed> {
    // One failure per message, whatever is wrong with it; a later piece
    // of an oversized frame has no header and keeps the first's sender.
    let (origin, parsed) = match origins.last() {
        Some(o) if frame.continued => (o, true),
        _ => origins.of_syslog(&frame.data),
    };
    let oversized = frame.oversized && !frame.continued;
    if oversized || frame.incomplete || !parsed {
        ListenerCounts::add(&queue.counts.parse_failures, 1);
    }
    queue.send(origin, frame.data).await
}

/// Datagrams, one message each (a trailing LF dropped); a full queue drops
/// them, counted: UDP senders cannot be told to wait.
async fn serve_udp(sock: UdpSocket, name: &str, queue: Queue) {
    let mut origins = Origins::new(Via::Syslog, name);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match sock.recv_from(&mut buf).await {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::debug!(listener = %name, "receive failed: {e}");
                continue;
            }
        };
        let mut msg = &buf[..n];
        while let Some(rest) = msg.strip_suffix(b"\n") {
            msg = rest;
        }
        if msg.is_empty() {
            continue;
        }
        let (origin, parsed) = origins.of_syslog(msg);
        if !parsed {
            ListenerCounts::add(&queue.counts.parse_failures, 1);
        }
        queue.try_send(origin, msg.to_vec());
    }
}

/// The TLS server config of `tls_cert` and `tls_key`.
fn acceptor(at: &str, cert: &Path, key: &Path) -> Result<TlsAcceptor, ListenError> {
    let read = |field: &str, path: &Path| {
        std::fs::read(path).map_err(|source| ListenError::TlsFile {
            at: format!("{at}.{field}"),
            path: path.display().to_string(),
            source,
        })
    };
    let cert_pem = read("tls_cert", cert)?;
    let key_pem = read("tls_key", key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ListenError::Tls {
            at: format!("{at}.tls_cert"),
            message: format!("{} is not a PEM certificate chain ({e})", cert.display()),
        })?;
    if certs.is_empty() {
        return Err(ListenError::Tls {
            at: format!("{at}.tls_cert"),
            message: format!(
                "{} holds no certificate; give a PEM file with `-----BEGIN CERTIFICATE-----`",
                cert.display()
            ),
        });
    }
    // The key file's content is never quoted: only that it did not parse.
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| ListenError::Tls {
        at: format!("{at}.tls_key"),
        message: format!(
            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        ),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| ListenError::Tls {
            at: format!("{at}.tls_key"),
            message: format!("the certificate and key do not make a TLS config: {e}; check that the key belongs to the certificate"),
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::syslog::{SyslogSettings, QUEUE_BYTES};
    use std::io::Write;
    use std::time::Duration;

    fn settings(protocol: Protocol) -> SyslogSettings {
        SyslogSettings {
            listen: "127.0.0.1:0".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
            protocol,
            tls: None,
            max_connections: 4,
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// Nobody takes from the queue (a stalled pipeline): the listener stops
    /// reading, so the sender's writes block, and what is held stays at
    /// the queue's cap instead of growing with what is sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_stops_reading_tcp_and_the_sender_waits() {
        let l = Listener::bind(&settings(Protocol::Tcp), 0).await.unwrap();
        let addr = l.local;
        let counts = Arc::new(ListenerCounts::default());
        let (queue, mut rx) = Queue::new(counts.clone());
        let (trigger, stop) = crate::shutdown::channel();
        tokio::spawn(l.run(queue, stop));
        let sender = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let line = format!("<13>1 - host app - - - {}\n", "x".repeat(1000));
            let mut sent = 0usize;
            // 256 MiB if nothing pushed back.
            while sent < 256 << 20 {
                if s.write_all(line.as_bytes()).is_err() {
                    return (sent, true);
                }
                sent += line.len();
            }
            (sent, false)
        });
        let (sent, blocked) = tokio::task::spawn_blocking(move || sender.join().unwrap())
            .await
            .unwrap();
        assert!(
            blocked,
            "the sender was never made to wait ({sent} bytes sent)"
        );
        let held = counts.bytes.load(Relaxed) as usize;
        assert!(held <= QUEUE_BYTES, "{held} bytes queued");
        // Once the pipeline takes again, the same connection goes on.
        let before = counts.lines.load(Relaxed);
        for _ in 0..100 {
            drop(rx.recv().await);
        }
        tokio::time::timeout(Duration::from_secs(5), async {
            while counts.lines.load(Relaxed) <= before {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("reading resumed");
        trigger.fire();
    }

    #[test]
    fn bad_tls_files_name_the_field_and_never_quote_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "not a certificate").unwrap();
        let secret = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
        std::fs::write(&key, format!("-----BEGIN NONSENSE-----\n{secret}\n")).unwrap();
        let e = acceptor("watch.syslog[0]", &cert, &key)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("watch.syslog[0].tls_cert") && e.contains("BEGIN CERTIFICATE"),
            "{e}"
        );
        let e = acceptor("watch.syslog[0]", &dir.path().join("none.pem"), &key)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("watch.syslog[0].tls_cert") && e.contains("readable PEM"),
            "{e}"
        );
        let good_cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        std::fs::write(&cert, good_cert).unwrap();
        let e = acceptor("watch.syslog[0]", &cert, &key)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("watch.syslog[0].tls_key") && !e.contains(secret),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn udp_drops_on_a_full_queue_and_counts_the_drops() {
        let l = Listener::bind(&settings(Protocol::Udp), 0).await.unwrap();
        let addr = l.local;
        let counts = Arc::new(ListenerCounts::default());
        let (queue, _rx) = Queue::new(counts.clone());
        let (trigger, stop) = crate::shutdown::channel();
        tokio::spawn(l.run(queue, stop));
        let msg = format!("<13>1 - host app - - - {}", "x".repeat(8000));
        // Paced so the kernel's socket buffer does not drop them first; at
        // most ten times what the queue holds.
        let sending = tokio::task::spawn_blocking({
            let counts = counts.clone();
            move || {
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                for _ in 0..(10 * QUEUE_BYTES / msg.len()) {
                    if counts.dropped.load(Relaxed) > 0 {
                        return;
                    }
                    sock.send_to(msg.as_bytes(), addr).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), sending)
            .await
            .expect("sent in time")
            .unwrap();
        assert!(
            counts.dropped.load(Relaxed) > 0,
            "no drop counted: {counts:?}"
        );
        assert!(counts.bytes.load(Relaxed) as usize >= QUEUE_BYTES / 2);
        trigger.fire();
    }
}
