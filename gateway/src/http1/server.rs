//! The client side: HTTP/1.1 requests read from a client connection, answers written back.

use super::{content_length, header_map, spans, transfer_chunked, Framing, Reader, Span, MAX_HEAD, MAX_HEADERS};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::Stream;
use pingora_core::{Error, ErrorType, Result};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a keep-alive connection may wait for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a client may take to send a request head once its first bytes came, and
/// between two reads of a request body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Body bytes up to this size are copied next to the head or chunk header and go in one
/// write; larger ones are written from where they are.
const COPY_BELOW: usize = 16 * 1024;
/// How long writing one piece of an answer may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Unread request body the gateway reads and drops to keep a connection open.
const MAX_DRAIN: usize = 64 * 1024;

/// A client's request head.
#[derive(Debug)]
pub struct ClientRequest {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub http11: bool,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The connection closed, went idle for too long, or the server is stopping: no answer.
    Closed,
    /// A malformed request: answered with this status and message, then the connection closes.
    Invalid(StatusCode, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Length,
    Chunked,
    /// HTTP/1.0 without a length: the close ends the body.
    Close,
    NoBody,
}

pub struct ClientSession {
    stream: Stream,
    reader: Reader,
    req: ClientRequest,
    keepalive: bool,
    expect_continue: bool,
    /// Response bytes not written yet (a head waits for the body's first piece).
    pending: Vec<u8>,
    out: Out,
    /// Body bytes still owed under a `Content-Length`.
    remaining: Option<u64>,
    sent: bool,
    ended: bool,
}

/// `Date` for the answers the gateway writes itself, formatted once per second.
fn http_date() -> HeaderValue {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, Option<HeaderValue>)> = const { std::cell::RefCell::new((0, None)) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match &c.1 {
            Some(v) if c.0 == secs => v.clone(),
            _ => {
                let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                *c = (secs, Some(v.clone()));
                v
            }
        }
    })
}

fn write_error(e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::WriteError, "writing to the client", e)
}

impl ClientSession {
    pub fn new(stream: Stream) -> ClientSession {
        ClientSession {
            stream,
            reader: Reader::default(),
            req: ClientRequest {
                method: Method::GET,
                uri: Uri::from_static("/"),
                headers: HeaderMap::new(),
                http11: true,
            },
            keepalive: true,
            expect_continue: false,
            pending: Vec::new(),
            out: Out::Length,
            remaining: None,
            sent: false,
            ended: false,
        }
    }

    /// Reads the next request head. While nothing of it has come, a stop of the server
    /// (`stopping` resolving) or [`IDLE_TIMEOUT`] closes the connection.
    pub async fn read_request(
        &mut self,
        stopping: impl std::future::Future<Output = ()>,
    ) -> std::result::Result<(), HeadError> {
        let mut stopping = std::pin::pin!(stopping);
        // The whole head must come within READ_TIMEOUT of its first bytes.
        let mut deadline = None;
        loop {
            if !self.reader.buf.is_empty() {
                if let Some(req) = self.parse_head()? {
                    self.req = req;
                    self.sent = false;
                    self.ended = false;
                    return Ok(());
                }
                if self.reader.buf.len() >= MAX_HEAD {
                    let msg = format!("request head over {MAX_HEAD} bytes");
                    return Err(HeadError::Invalid(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg));
                }
            }
            let read = if self.reader.buf.is_empty() {
                tokio::select! {
                    r = tokio::time::timeout(IDLE_TIMEOUT, self.reader.fill(&mut self.stream)) => r,
                    () = &mut stopping => return Err(HeadError::Closed),
                }
            } else {
                let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + READ_TIMEOUT);
                tokio::time::timeout_at(at, self.reader.fill(&mut self.stream)).await
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(HeadError::Closed),
            }
        }
    }

    fn parse_head(&mut self) -> std::result::Result<Option<ClientRequest>, HeadError> {
        let bad = |msg: String| HeadError::Invalid(StatusCode::BAD_REQUEST, msg);
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut at: [Span; MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let used = match req.parse(&self.reader.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                let msg = format!("more than {MAX_HEADERS} header fields");
                return Err(HeadError::Invalid(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg));
            }
            Err(e) => return Err(bad(format!("malformed request head: {e}"))),
        };
        if used > MAX_HEAD {
            let msg = format!("request head over {MAX_HEAD} bytes");
            return Err(HeadError::Invalid(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg));
        }
        let method =
            Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad("invalid method".into()))?;
        let http11 = req.version == Some(1);
        let base = self.reader.buf.as_ptr() as usize;
        let target = req.path.unwrap_or("");
        let target_at = (target.as_ptr() as usize - base, target.len());
        let count = spans(&self.reader.buf, req.headers, &mut at);
        let raw = self.reader.buf.split_to(used).freeze();
        let uri = Uri::from_maybe_shared(raw.slice(target_at.0..target_at.0 + target_at.1))
            .map_err(|_| bad("invalid request target".into()))?;
        let headers = header_map(&raw, &at[..count]).map_err(bad)?;
        // Body framing (RFC 9112 §6): a request with both framings, or a transfer coding
        // that does not end in chunked, could be read differently by another hop.
        let length = content_length(&headers).map_err(bad)?;
        self.reader.framing = match (transfer_chunked(&headers), length) {
            (Some(_), Some(_)) => return Err(bad("both Transfer-Encoding and Content-Length".into())),
            (Some(true), None) if http11 => Framing::Chunked(0),
            (Some(_), None) => return Err(bad("unsupported Transfer-Encoding".into())),
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Done,
        };
        self.keepalive = super::keep_alive(http11, &headers);
        self.expect_continue =
            http11 && headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        Ok(Some(ClientRequest { method, uri, headers, http11 }))
    }

    pub fn req_header(&self) -> &ClientRequest {
        &self.req
    }

    /// Closes the connection once this answer is sent.
    pub fn close_after(&mut self) {
        self.keepalive = false;
    }

    /// The next piece of the request body; `None` at its end.
    pub async fn read_request_body(&mut self) -> std::result::Result<Option<Bytes>, String> {
        self.send_continue().await?;
        match tokio::time::timeout(READ_TIMEOUT, self.reader.body(&mut self.stream)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no body data for {READ_TIMEOUT:?}")),
        }
    }

    /// The body length the request declared (`Content-Length`), while none of it is read.
    pub fn declared_body_length(&self) -> Option<u64> {
        match self.reader.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// The whole body when its length was declared: read straight into one buffer of that
    /// size (each read takes what the socket has; no pieces to join). `None` for a chunked
    /// body.
    pub async fn read_sized_body(&mut self) -> Option<std::result::Result<Bytes, String>> {
        let Framing::Length(n) = self.reader.framing else {
            return None;
        };
        let n = usize::try_from(n).ok()?;
        if let Err(e) = self.send_continue().await {
            return Some(Err(e));
        }
        while self.reader.buf.len() < n {
            self.reader.buf.reserve(n - self.reader.buf.len());
            match tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.reader.buf)).await {
                Ok(Ok(0)) => return Some(Err("connection closed within the body".into())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Some(Err(format!("read failed: {e}"))),
                Err(_) => return Some(Err(format!("no body data for {READ_TIMEOUT:?}"))),
            }
        }
        self.reader.framing = Framing::Done;
        Some(Ok(self.reader.buf.split_to(n).freeze()))
    }

    /// `100 Continue`, once, if the client waits for it before sending its body.
    async fn send_continue(&mut self) -> std::result::Result<(), String> {
        if self.expect_continue {
            self.expect_continue = false;
            if self.reader.buf.is_empty() && self.reader.framing != Framing::Done {
                let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
                self.stream.write_all(cont).await.map_err(|e| e.to_string())?;
                self.stream.flush().await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Starts the answer. The head is sent with the body's first piece (or now, if `end`).
    /// Framing follows the headers: `Content-Length` when given, else chunked (HTTP/1.1) or
    /// until the close (HTTP/1.0).
    pub async fn write_response_header(&mut self, status: StatusCode, mut headers: HeaderMap, end: bool) -> Result<()> {
        // A head held back from an answer that then failed is replaced.
        self.pending.clear();
        let no_body = self.req.method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        self.remaining = None;
        self.out = if no_body {
            // No framing headers where there can be no body (RFC 9110 §8.6, §6.4.1); a
            // HEAD or 304 answer keeps the length of the body it stands for.
            headers.remove(header::TRANSFER_ENCODING);
            if status.is_informational() || status == StatusCode::NO_CONTENT {
                headers.remove(header::CONTENT_LENGTH);
            }
            Out::NoBody
        } else if let Ok(Some(n)) = super::content_length(&headers) {
            headers.remove(header::TRANSFER_ENCODING);
            self.remaining = Some(n);
            Out::Length
        } else if self.req.http11 {
            headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            Out::Chunked
        } else {
            headers.remove(header::TRANSFER_ENCODING);
            self.keepalive = false;
            Out::Close
        };
        // Answered without reading a body the client still holds back (it waits for
        // `100 Continue`): the connection cannot be reused, so say so.
        if self.expect_continue && self.reader.framing != Framing::Done {
            self.keepalive = false;
        }
        if !headers.contains_key(header::DATE) {
            headers.insert(header::DATE, http_date());
        }
        headers.remove(header::CONNECTION);
        if !self.keepalive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        } else if !self.req.http11 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        let reason = status.canonical_reason().unwrap_or("Unknown");
        let start = [&b"HTTP/1.1 "[..], status.as_str().as_bytes(), b" ", reason.as_bytes()];
        super::encode_head(&start, &headers, &mut self.pending);
        if end {
            self.write_response_body(None, true).await?;
        }
        Ok(())
    }

    /// Sends a piece of the body (and the head, if still held), and ends the body if `end`.
    pub async fn write_response_body(&mut self, data: Option<Bytes>, end: bool) -> Result<()> {
        let mut data = data.filter(|d| !d.is_empty() && self.out != Out::NoBody);
        // Never more, nor (at the end) less, than the length announced: a mismatch would
        // make the client read the next answer wrongly, so the connection closes.
        if let (Some(left), Some(d)) = (self.remaining, data.as_mut()) {
            if d.len() as u64 > left {
                d.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                self.keepalive = false;
            }
            self.remaining = Some(left - d.len() as u64);
        }
        if end && self.remaining.is_some_and(|left| left > 0) {
            self.keepalive = false;
        }
        let mut tail: &[u8] = b"";
        let mut big = None;
        if let Some(d) = data {
            if self.out == Out::Chunked {
                self.pending.extend_from_slice(format!("{:x}\r\n", d.len()).as_bytes());
                tail = if end { b"\r\n0\r\n\r\n" } else { b"\r\n" };
            }
            if d.len() < COPY_BELOW {
                self.pending.extend_from_slice(&d);
                self.pending.extend_from_slice(tail);
                tail = b"";
            } else {
                big = Some(d);
            }
        } else if end && self.out == Out::Chunked {
            self.pending.extend_from_slice(b"0\r\n\r\n");
        }
        if end {
            self.ended = true;
        }
        if big.is_none() && self.pending.is_empty() {
            return Ok(());
        }
        self.sent = true;
        let write = async {
            match big {
                None => self.stream.write_all(&self.pending).await?,
                Some(d) => {
                    super::write_all_vectored(&mut self.stream, &self.pending, &[d, Bytes::from_static(tail)]).await?
                }
            }
            self.stream.flush().await
        };
        // A client that stops reading does not hold the answer (and its provider) forever.
        let result = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(r) => r.map_err(write_error),
            Err(_) => Err(Error::explain(ErrorType::WriteTimedout, "the client did not read the answer")),
        };
        self.pending.clear();
        if result.is_err() {
            self.keepalive = false;
        }
        result
    }

    /// Bytes of the answer have been written (a head only held back does not count).
    pub fn response_started(&self) -> bool {
        self.sent
    }

    /// Resolves when the client closes the connection. Bytes it sends meanwhile (a
    /// pipelined request) are kept for later.
    pub async fn closed(&mut self) {
        while self.reader.buf.len() < MAX_HEAD {
            match self.reader.fill(&mut self.stream).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        std::future::pending::<()>().await;
    }

    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.stream.get_socket_digest().and_then(|d| d.peer_addr().cloned())
    }

    /// Ends the exchange; whether the connection can take another request (the answer was
    /// complete, neither side asked to close, and the request body is read or drained).
    pub async fn finish(&mut self) -> bool {
        if !self.ended || !self.keepalive || self.out == Out::Close {
            return false;
        }
        let mut drained = 0;
        while self.reader.framing != Framing::Done {
            match tokio::time::timeout(Duration::from_millis(100), self.reader.body(&mut self.stream)).await {
                Ok(Ok(Some(d))) if drained + d.len() <= MAX_DRAIN => drained += d.len(),
                Ok(Ok(None)) => break,
                _ => return false,
            }
        }
        // An idle connection keeps no buffers: the last request's header values share its
        // read buffer, so they go too.
        self.req.headers = HeaderMap::new();
        self.req.uri = Uri::from_static("/");
        self.reader.shrink();
        self.pending = Vec::new();
        true
    }

    /// Answers a request that could not be read, then the connection closes.
    pub async fn refuse(&mut self, status: StatusCode, body: Vec<u8>) {
        self.req.http11 = true;
        self.req.method = Method::GET;
        self.keepalive = false;
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        if self.write_response_header(status, headers, false).await.is_ok() {
            let _ = self.write_response_body(Some(Bytes::from(body)), true).await;
        }
        let _ = self.stream.shutdown().await;
    }
}
