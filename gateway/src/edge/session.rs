//! One client request on Pingora's server session (HTTP/1.1 or HTTP/2): its head, its body
//! read whole within the limits, and the answer written back.

use crate::config::Limits;
use crate::edge::budget::Reservation;
use crate::error::GatewayError;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use pingora_core::protocols::http::{ReusableHttpStream, ServerSession};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::Duration;
use tokio::time::Instant;

/// How long a write of one piece of an answer may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// What an early answer (an error before any attempt) reads and drops of a body the client
/// is still sending, so that it reads the answer instead of a reset.
const DISCARD_LIMIT: usize = 16 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(10);

pub struct ClientSession {
    inner: ServerSession,
    /// The answer's head, held until its first body piece (so a failed relay can still
    /// replace it) or its end.
    pending: Option<Box<ResponseHeader>>,
    /// The client waits for `100 Continue` before sending its body, and has not had it.
    awaits_continue: bool,
    /// Headers every answer to this request carries (a client's rate-limit headers).
    answer_headers: Vec<(HeaderName, HeaderValue)>,
}

impl ClientSession {
    pub fn new(mut inner: ServerSession) -> ClientSession {
        inner.set_write_timeout(Some(WRITE_TIMEOUT));
        // Whether an early answer closes the connection is decided here (`close_after`),
        // not on every answer written before the body is read (`100 Continue` included).
        inner.set_close_on_response_before_downstream_finish(false);
        ClientSession { inner, pending: None, awaits_continue: false, answer_headers: Vec::new() }
    }

    /// Reads the request head (HTTP/1; an HTTP/2 session arrives with it). `Ok(false)`: the
    /// client closed without sending one.
    pub async fn read_head(&mut self) -> Result<bool> {
        let read = self.inner.read_request().await?;
        self.awaits_continue =
            read && pingora_core::protocols::http::v1::common::is_expect_continue_req(self.req_header());
        Ok(read)
    }

    pub fn req_header(&self) -> &RequestHeader {
        self.inner.req_header()
    }

    pub fn is_h2(&self) -> bool {
        self.inner.is_http2()
    }

    /// The HTTP/1 head as received, for the checks Pingora leaves to the application.
    pub fn raw_head(&self) -> Option<Bytes> {
        self.inner.as_http1().map(|s| s.get_headers_raw_bytes())
    }

    /// Whether the body comes chunked (HTTP/1).
    pub fn is_chunked(&self) -> bool {
        !self.is_h2() && self.req_header().headers.contains_key(header::TRANSFER_ENCODING)
    }

    /// The connection closes once this answer is sent (HTTP/1; HTTP/2 streams end alone).
    pub fn close_after(&mut self) {
        self.inner.set_keepalive(None);
    }

    fn declared_length(&self) -> Option<u64> {
        let v = self.req_header().headers.get(header::CONTENT_LENGTH)?;
        std::str::from_utf8(v.as_bytes()).ok()?.trim().parse().ok()
    }

    /// Reads the whole body within `limits` (size, time), holding its bytes in `held` (the
    /// shared body budget) as they are announced or arrive.
    pub async fn read_body(
        &mut self,
        limits: &Limits,
        held: &mut Reservation,
    ) -> std::result::Result<Bytes, GatewayError> {
        let limit = limits.max_request_body_bytes;
        let declared = self.declared_length();
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        let overloaded = || GatewayError::Overloaded { retry_after_secs: 1 };
        if !held.hold(declared.unwrap_or(0)) {
            return Err(overloaded());
        }
        if self.inner.is_body_done() {
            return Ok(Bytes::new());
        }
        if self.awaits_continue {
            self.awaits_continue = false;
            self.inner.write_continue_response().await.map_err(|e| GatewayError::BodyRead(e.to_string()))?;
        }
        let deadline = Instant::now() + limits.body_timeout;
        let mut buf = BytesMut::new();
        loop {
            let chunk = match tokio::time::timeout_at(deadline, self.inner.read_request_body()).await {
                Err(_) => return Err(GatewayError::BodyTimeout { secs: limits.body_timeout.as_secs() }),
                Ok(Err(e)) => return Err(GatewayError::BodyRead(e.to_string())),
                // A chunked body of nothing is refused: no client API takes an empty body,
                // and an empty chunk-size line (which Pingora's decoder reads as the last
                // chunk) would otherwise reach a provider as one.
                Ok(Ok(None)) if buf.is_empty() && self.is_chunked() => {
                    return Err(GatewayError::BodyRead("empty chunked body (or an empty chunk-size line)".into()))
                }
                Ok(Ok(None)) => return Ok(buf.freeze()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let total = buf.len() + chunk.len();
            if total > limit {
                return Err(GatewayError::BodyTooLarge { limit });
            }
            if !held.hold(total as u64) {
                return Err(overloaded());
            }
            if buf.is_empty() && declared == Some(chunk.len() as u64) {
                // The whole body in one piece: no copy.
                return Ok(chunk);
            }
            if buf.is_empty() {
                buf.reserve(declared.map_or(chunk.len(), |n| n as usize));
            }
            buf.extend_from_slice(&chunk);
        }
    }

    /// Reads and drops what is left of the body (at most 16 MiB, 10 s), after an early
    /// answer; the connection then closes.
    pub async fn discard_body(&mut self) {
        self.close_after();
        if self.awaits_continue {
            // It sends nothing until told to: there is nothing to read.
            return;
        }
        let mut left = DISCARD_LIMIT;
        let drain = async {
            while let Ok(Some(chunk)) = self.inner.read_request_body().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
    }

    /// Whether the request body is still (partly) unread.
    pub fn body_pending(&mut self) -> bool {
        !self.inner.is_body_done()
    }

    /// Headers that whichever answer this request gets will carry (they replace the same
    /// names given by a provider).
    pub fn set_answer_headers(&mut self, headers: Vec<(HeaderName, HeaderValue)>) {
        self.answer_headers = headers;
    }

    /// Starts the answer; the head goes out with the first body piece (or now, if `end`).
    /// Framing follows the headers: `Content-Length` when given, else chunked (HTTP/1.1), or
    /// until the close (HTTP/1.0).
    pub async fn write_response_header(&mut self, status: StatusCode, mut headers: HeaderMap, end: bool) -> Result<()> {
        // (A refusal of an unreadable head always has a length: no request head is read.)
        if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            headers.remove(header::TRANSFER_ENCODING);
            if status != StatusCode::NOT_MODIFIED {
                headers.remove(header::CONTENT_LENGTH);
            }
        } else if headers.contains_key(header::CONTENT_LENGTH) {
            headers.remove(header::TRANSFER_ENCODING);
        } else if self.req_header().version == Version::HTTP_11 {
            headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        } else {
            // HTTP/1.0 without a length: the close ends the body, and the head says so.
            headers.remove(header::TRANSFER_ENCODING);
            self.close_after();
        }
        headers.remove(header::CONNECTION);
        if !status.is_informational() {
            for (name, value) in &self.answer_headers {
                headers.insert(name.clone(), value.clone());
            }
        }
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.headers = headers;
        self.pending = Some(Box::new(ResponseHeader::from(parts)));
        if end {
            self.write_response_body(None, true).await?;
        }
        Ok(())
    }

    /// Sends a piece of the body (after the head, if still held), and ends it if `end`.
    pub async fn write_response_body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        if let Some(head) = self.pending.take() {
            self.inner.write_response_header(head).await?;
        }
        let data = data.unwrap_or_default();
        if data.is_empty() && !end {
            return Ok(());
        }
        self.inner.write_response_body(data, end).await
    }

    /// Bytes of the answer have gone to the client (a head only held back does not count).
    pub fn response_started(&self) -> bool {
        self.inner.response_written().is_some()
    }

    /// Resolves when the client goes away: HTTP/1 close, HTTP/2 `RST_STREAM`. Only once the
    /// body is read; bytes of a pipelined next request are kept for it.
    pub async fn closed(&mut self) {
        if self.inner.read_body_or_idle(true).await.is_err() {
            return;
        }
        std::future::pending::<()>().await;
    }

    pub fn client_addr(&self) -> Option<&SocketAddr> {
        self.inner.client_addr()
    }

    /// Ends the exchange; an HTTP/1 connection that can take another request comes back
    /// (with bytes of a pipelined request already read).
    pub async fn finish(mut self) -> Option<ReusableHttpStream> {
        if self.pending.is_some() || self.inner.response_written().is_none() {
            // No complete answer: nothing more can follow on this connection.
            self.close_after();
        }
        // Boxed: Pingora's finish is a 4.5 KiB future, and inline it would make every
        // request's task that much larger for the whole of its answer.
        Box::pin(self.inner.finish()).await.ok().flatten()
    }

    /// Answers a request that was refused before any work (malformed head, limits): the
    /// connection closes after it.
    pub async fn refuse(&mut self, status: StatusCode, body: Vec<u8>) {
        self.close_after();
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if self.write_response_header(status, headers, false).await.is_ok() {
            let _ = self.write_response_body(Some(Bytes::from(body)), true).await;
        }
    }
}
