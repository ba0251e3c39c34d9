//! The accept loop and one connection's life under [`HttpGuard`]: hyper's
//! HTTP/1 server with a header timeout, an idle timeout on the socket, and
//! a slot per connection taken before anything is read.

use super::limits::{HttpGuard, Slot, Timeout, RESERVED_HEADER_TIMEOUT};
use crate::shutdown::Shutdown;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// hyper's read buffer per connection (its default is ~400 KiB): it bounds
/// a request head and each piece of a body, so 1,024 connections hold at
/// most 64 MiB of it. GitHub's heads are a few KiB.
const READ_BUFFER: usize = 64 << 10;
/// After a failed `accept` (out of file descriptors), before the next one:
/// retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one listener serves.
pub struct Served {
    pub app: Router,
    /// Answers on reserved slots (`/healthz`, `/metrics`); `None` closes
    /// every connection over the cap at once.
    pub reserved: Option<Router>,
}

/// Serves `listener` until `shutdown` fires, then lets open connections
/// finish their request (graceful shutdown) and returns once they have.
pub async fn serve(
    listener: TcpListener,
    served: Served,
    guard: HttpGuard,
    mut shutdown: Shutdown,
) {
    let (close, closing) = watch::channel(false);
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.wait() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection; lower http.max_connections or raise LimitNOFILE=");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(slot) = guard.admit(served.reserved.is_some()) else {
            // Dropped here: closed before a byte is read.
            continue;
        };
        let app = match (&slot, &served.reserved) {
            (Slot::Reserved(_), Some(r)) => r.clone(),
            _ => served.app.clone(),
        };
        conns.spawn(connection(
            stream,
            app,
            slot,
            guard.clone(),
            closing.clone(),
        ));
    }
    drop(listener);
    let _ = close.send(true);
    while conns.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    app: Router,
    slot: Slot,
    guard: HttpGuard,
    mut closing: watch::Receiver<bool>,
) {
    let _open = guard.open();
    let limits = *guard.limits();
    let reserved = matches!(slot, Slot::Reserved(_));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(if reserved {
            limits.header_timeout.min(RESERVED_HEADER_TIMEOUT)
        } else {
            limits.header_timeout
        })
        .keep_alive(!reserved)
        .max_buf_size(READ_BUFFER);
    let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout, guard.clone()));
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(conn);
    let done = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { drop(closing.wait_for(|c| *c).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = done {
        if e.is_timeout() {
            guard.timed_out(Timeout::Header);
        }
        tracing::debug!(error = %e, "http connection ended");
    }
    drop(slot);
}

/// A socket that fails with `TimedOut` once no byte has moved either way
/// for `timeout` while it is waited on. Counted here: hyper ends an idle
/// connection whose read fails without an error of its own.
struct IdleIo {
    inner: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    guard: HttpGuard,
    /// Counted already.
    expired: bool,
}

impl IdleIo {
    fn new(inner: TcpStream, timeout: Duration, guard: HttpGuard) -> IdleIo {
        IdleIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            guard,
            expired: false,
        }
    }

    /// Passes `poll` through, moving the deadline on progress and failing
    /// once it passes while waiting.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.deadline.as_mut().reset(Instant::now() + self.timeout);
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    if !self.expired {
                        self.expired = true;
                        self.guard.timed_out(Timeout::Idle);
                    }
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no traffic for http.idle_timeout_secs",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch(cx, poll)
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
