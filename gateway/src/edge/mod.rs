//! The client side: connections served through Pingora's HTTP server sessions (HTTP/1.1 and
//! HTTP/2, plain and TLS). Pingora parses every byte a client sends; this module decides
//! what a connection may cost (count, idle time, head time) and what the gateway refuses on
//! top of Pingora's own checks ([`checks`]).
//!
//! HTTP/1 connections run their keep-alive loop here rather than in Pingora's
//! `HttpServerApp` loop, so that the wait for a next request (`limits.idleTimeout`) and the
//! time to read a head once it started (`limits.headerTimeout`) are separate: the first
//! bytes of each request are read here and handed to Pingora's session as its start.
//! HTTP/2 connections (ALPN `h2`, or the h2c preface on a plain listener) go to Pingora's
//! own HTTP/2 server loop.

pub mod budget;
pub mod checks;
pub mod session;
pub mod tls;

use crate::config::Limits;
use crate::telemetry::metrics;
use async_trait::async_trait;
use bytes::BytesMut;
use checks::Refusal;
use http::StatusCode;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora_core::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora_core::protocols::http::{ReusableHttpStream, ServerSession};
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use session::ClientSession;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// The largest head Pingora's HTTP/1 parser reads; `limits.maxHeaderBytes` may not exceed it.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024 - 1;
/// What the first read of a request asks for (nginx's `client_header_buffer_size`): a chat
/// request's head and a small body fit; it is held for the whole request, so every open
/// stream pays it. A longer head doubles the buffer on each further read.
const FIRST_READ: usize = 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What serves one request on a session: the proxy.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Serves one request; an HTTP/1 connection that may carry another comes back.
    async fn handle(&self, session: ClientSession, shutdown: &ShutdownWatch) -> Option<ReusableHttpStream>;
    /// The limits in force now (they change on reload).
    fn limits(&self) -> Limits;
}

/// The Pingora service application for the proxy listeners.
pub struct Edge<H: Handler> {
    h2: Arc<H2App<H>>,
    connections: Arc<Semaphore>,
}

impl<H: Handler> Edge<H> {
    pub fn new(handler: Arc<H>) -> Edge<H> {
        let limits = handler.limits();
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        options.h2_idle_timeout = Some(limits.idle_timeout);
        Edge { h2: Arc::new(H2App { handler, options }), connections: Arc::new(Semaphore::new(limits.max_connections)) }
    }
}

/// Counts an open connection for the gauge while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::with(|m| m.connections.inc());
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::with(|m| m.connections.dec());
    }
}

#[async_trait]
impl<H: Handler> ServerApp for Edge<H> {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        // Beyond limits.maxConnections a new connection is closed at once.
        let Ok(_permit) = self.connections.clone().try_acquire_owned() else {
            metrics::with(|m| m.refused.with_label_values(&["max_connections"]).inc());
            return None;
        };
        let _open = Open::new();
        let tls = stream.get_ssl_digest().is_some();
        if tls && matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.h2, stream, shutdown).await;
        }
        let mut prefix: Option<BytesMut> = None;
        let mut first = true;
        loop {
            let limits = self.h2.handler.limits();
            let mut start = match prefix.take().filter(|p| !p.is_empty()) {
                Some(p) => p,
                None => next_request(&mut stream, limits.idle_timeout, shutdown).await?,
            };
            if first && !tls && h2_preface(&mut stream, &mut start, limits.header_timeout).await {
                // h2c prior knowledge: give the bytes back, then Pingora's HTTP/2 server.
                let stream = rewind(stream, &start)?;
                return ServerApp::process_new(&self.h2, stream, shutdown).await;
            }
            first = false;
            // The whole head within limits.headerTimeout and limits.maxHeaderBytes, before
            // Pingora parses it (its own cap is 1 MiB, its timeout per read).
            let max = limits.max_header_bytes;
            let refusal =
                match tokio::time::timeout(limits.header_timeout, complete_head(&mut stream, &mut start, max)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(())) => return None,
                    Err(_) => Some(Refusal::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("request head not complete within limits.headerTimeout ({:?})", limits.header_timeout),
                    )),
                };
            let refusal = refusal.or_else(|| {
                (head_end(&start).is_none_or(|end| end > max)).then(|| {
                    let msg = format!("request head over limits.maxHeaderBytes ({max} bytes)");
                    Refusal::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg)
                })
            });
            let mut session = ServerSession::new_http1(stream);
            session.set_pipelining_enabled(true);
            session.set_pipelined_prefix(start);
            if let Some(r) = refusal {
                // Boxed with its session: a rare path, kept out of every connection's task.
                Box::pin(async move { refuse(&mut ClientSession::new(session), r).await }).await;
                return None;
            }
            let reusable = self.h2.handler.handle(ClientSession::new(session), shutdown).await?;
            let (next, rest) = reusable.into_parts();
            stream = next;
            prefix = rest;
        }
    }
}

/// Waits for the first bytes of the next request on an idle HTTP/1 connection; `None`
/// when the client closes, stays idle past `idle`, or the server stops.
async fn next_request(stream: &mut Stream, idle: Duration, shutdown: &ShutdownWatch) -> Option<BytesMut> {
    let mut stop = shutdown.clone();
    if *stop.borrow_and_update() {
        return None;
    }
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    tokio::select! {
        r = tokio::time::timeout(idle, stream.read_buf(&mut buf)) => match r {
            Ok(Ok(n)) if n > 0 => Some(buf),
            _ => None,
        },
        _ = stop.changed() => None,
    }
}

/// Reads until `buf` holds a whole request head, or `max` bytes without one. `Err` when
/// the client closes first.
async fn complete_head(stream: &mut Stream, buf: &mut BytesMut, max: usize) -> Result<(), ()> {
    while head_end(buf).is_none() && buf.len() < max {
        buf.reserve(buf.len().max(FIRST_READ));
        match stream.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(()),
        }
    }
    Ok(())
}

/// Where a request head ends: just past its empty line (CRLF or, as Pingora's parser
/// also accepts, a bare LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == b'\n').map(|i| i + from) {
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => return Some(i + 2),
            Some([b'\r', b'\n', ..]) => return Some(i + 3),
            _ => from = i + 1,
        }
    }
    None
}

/// Answers a refused request (the connection then closes) and counts it.
pub async fn refuse(session: &mut ClientSession, r: Refusal) {
    tracing::debug!(status = %r.status, message = %r.message, "refusing a request");
    let reason = match r.status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "header_too_large",
        StatusCode::REQUEST_TIMEOUT => "header_timeout",
        _ => "bad_request",
    };
    metrics::with(|m| m.refused.with_label_values(&[reason]).inc());
    let e = crate::error::GatewayError::Refused { status: r.status.as_u16(), message: r.message };
    // Boxed: writing an answer is a large future, and this path is rare; inline, it would
    // enlarge every connection's and every request's task.
    Box::pin(session.refuse(r.status, e.body())).await;
}

/// Whether a plain connection opens with the HTTP/2 preface (h2c prior knowledge): reads
/// until its first bytes tell (`PRI ` starts no HTTP/1 request; `P` alone may be `POST`).
async fn h2_preface(stream: &mut Stream, start: &mut BytesMut, wait: Duration) -> bool {
    const TELLS: usize = 4;
    let read_more = async {
        while start.len() < TELLS && is_h2_preface(start) {
            match stream.read_buf(start).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(wait, read_more).await;
    start.len() >= TELLS && is_h2_preface(start)
}

/// Whether bytes are (the start of) the HTTP/2 preface.
fn is_h2_preface(start: &[u8]) -> bool {
    let n = start.len().min(H2_PREFACE.len());
    start[..n] == H2_PREFACE[..n]
}

/// Puts bytes read from a plain TCP stream back in front of it.
fn rewind(stream: Stream, bytes: &[u8]) -> Option<Stream> {
    let mut l4 = stream.into_any().downcast::<pingora_core::protocols::l4::stream::Stream>().ok()?;
    l4.rewind(bytes);
    Some(l4)
}

/// Pingora's HTTP/2 server loop, serving each stream through the handler.
struct H2App<H: Handler> {
    handler: Arc<H>,
    options: HttpServerOptions,
}

#[async_trait]
impl<H: Handler> HttpServerApp for H2App<H> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.handler.handle(ClientSession::new(session), shutdown).await;
        None
    }

    fn h2_options(&self) -> Option<H2Options> {
        let mut options = default_h2_options();
        let max = u32::try_from(self.handler.limits().max_header_bytes).unwrap_or(u32::MAX);
        options.max_header_list_size(max);
        Some(options)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_preface_is_recognised_from_its_first_bytes() {
        assert!(is_h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"));
        assert!(is_h2_preface(b"PRI * HT"));
        assert!(!is_h2_preface(b"POST /v1/chat/completions HTTP/1.1\r\n"));
        assert!(!is_h2_preface(b"GET / HTTP/1.1\r\n"));
    }

    #[test]
    fn head_end_after_the_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(head_end(b""), None);
    }
}
