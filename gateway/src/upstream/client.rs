//! The HTTP/1.1 client side of an attempt, on a Pingora transport stream (TCP or TLS).
//!
//! Pingora's own H1 client sends a request head and its body as separate writes, and reads
//! through a 64 KiB buffer that each pooled connection keeps. Here a request goes out in one
//! write (head and small body together), responses are read through a buffer sized to what
//! is being read, and a connection holds no buffer while it waits in the pool.

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use pingora_core::protocols::Stream;
use pingora_core::{Error, ErrorType, Result};
use std::io::IoSlice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most headers a response head may have.
const MAX_HEADERS: usize = 128;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// What a read asks the socket for at least; grows while reads fill it.
const READ_MIN: usize = 8 * 1024;
const READ_MAX: usize = 64 * 1024;
/// Bodies up to this size go out in the same write as the head (one copy, one send).
const COPY_BELOW: usize = 64 * 1024;

/// A request as it goes upstream.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub path: http::uri::PathAndQuery,
    pub headers: HeaderMap,
}

impl RequestHead {
    /// `path` is used when it is a valid request target, else `/`.
    pub fn new(method: Method, path: &str, headers: HeaderMap) -> RequestHead {
        let path =
            http::uri::PathAndQuery::try_from(path).unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/"));
        RequestHead { method, path, headers }
    }

    fn encode(&self, extra: usize) -> Vec<u8> {
        let size: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(self.path.as_str().len() + size + 32 + extra);
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_str().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A response head as it came from upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Nothing (more) to read.
    Done,
    Length(u64),
    /// Chunked: the bytes left in the current chunk (0 = a size line is next).
    Chunked(u64),
    /// The chunk data ended; its CRLF comes next.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    UntilClose,
}

/// One HTTP/1.1 exchange at a time on one upstream connection.
pub struct UpstreamSession {
    stream: Stream,
    buf: BytesMut,
    read_size: usize,
    head: Option<ResponseHead>,
    framing: Framing,
    keepalive: bool,
    head_request: bool,
}

fn err(
    etype: ErrorType,
    context: &'static str,
    cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Box<Error> {
    Error::because(etype, context, cause)
}

fn h1_error(what: String) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, what)
}

impl UpstreamSession {
    pub fn new(stream: Stream) -> UpstreamSession {
        UpstreamSession {
            stream,
            buf: BytesMut::new(),
            read_size: READ_MIN,
            head: None,
            framing: Framing::Done,
            keepalive: false,
            head_request: false,
        }
    }

    /// Whether a closed or broken pooled connection can be seen without waiting: the
    /// provider closed it while idle, or sent something unasked.
    pub(super) fn is_closed(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let read = tokio::task::unconstrained(self.stream.read(&mut probe));
        futures_now_or_never(read).is_some()
    }

    /// Sends the request: the head and a small body in one write, a large body after
    /// the head as the slices it is in.
    pub async fn send(&mut self, head: &RequestHead, body: &[Bytes]) -> Result<()> {
        self.head = None;
        self.framing = Framing::Done;
        self.head_request = head.method == Method::HEAD;
        let len: usize = body.iter().map(Bytes::len).sum();
        let copy = len < COPY_BELOW;
        let mut out = head.encode(if copy { len } else { 0 });
        if copy {
            for part in body {
                out.extend_from_slice(part);
            }
        }
        let write = async {
            self.stream.write_all(&out).await?;
            if !copy {
                write_all_vectored(&mut self.stream, body).await?;
            }
            self.stream.flush().await
        };
        write.await.map_err(|e| err(ErrorType::WriteError, "writing the request upstream", e))
    }

    /// Reads the response head (skipping informational answers).
    pub async fn read_response_header(&mut self) -> Result<()> {
        loop {
            if let Some(head) = self.parse_head()? {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                    continue;
                }
                self.head = Some(head);
                return Ok(());
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(h1_error(format!("response head over {MAX_HEAD} bytes")));
            }
            if self.fill().await? == 0 {
                let what = if self.buf.is_empty() { "closed before answering" } else { "closed within the head" };
                return Err(Error::explain(ErrorType::ConnectionClosed, what));
            }
        }
    }

    pub fn response_header(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The whole body has been read.
    pub fn response_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// The next piece of the body; `None` at its end.
    pub async fn read_response_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    if self.buf.is_empty() && self.fill_at_most(left).await? == 0 {
                        return Err(Error::explain(ErrorType::ConnectionClosed, "closed within the body"));
                    }
                    let n = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = self.buf.split_to(n).freeze();
                    let rest = left - n as u64;
                    self.framing = if rest == 0 { Framing::Done } else { Framing::Length(rest) };
                    return Ok(Some(data));
                }
                Framing::UntilClose => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Chunked(0) => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        let _ = self.buf.split_to(used);
                        self.framing = if size == 0 { Framing::Trailers } else { Framing::Chunked(size) };
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_closed("a chunk size").await?,
                    Err(_) => return Err(h1_error("invalid chunk size line".into())),
                },
                Framing::Chunked(left) => {
                    if self.buf.is_empty() {
                        self.fill_or_closed("a chunk").await?;
                    }
                    let n = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = self.buf.split_to(n).freeze();
                    let rest = left - n as u64;
                    self.framing = if rest == 0 { Framing::ChunkEnd } else { Framing::Chunked(rest) };
                    return Ok(Some(data));
                }
                Framing::ChunkEnd => {
                    if self.buf.len() < 2 {
                        self.fill_or_closed("a chunk end").await?;
                        continue;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(h1_error("chunk data longer than its size".into()));
                    }
                    let _ = self.buf.split_to(2);
                    self.framing = Framing::Chunked(0);
                }
                Framing::Trailers => match self.buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        let _ = self.buf.split_to(2);
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    // A trailer field: not forwarded.
                    Some(end) => {
                        let _ = self.buf.split_to(end + 2);
                    }
                    None if self.buf.len() > MAX_HEAD => return Err(h1_error("trailers too large".into())),
                    None => self.fill_or_closed("the trailers").await?,
                },
            }
        }
    }

    /// The connection can carry another request: this answer was read to its end, the
    /// provider did not ask to close, and sent nothing beyond it.
    pub fn reusable(&self) -> bool {
        self.keepalive && self.framing == Framing::Done && self.buf.is_empty()
    }

    /// Ready for the pool: no buffer kept while idle.
    pub(super) fn into_idle(mut self) -> Stream {
        self.buf = BytesMut::new();
        self.stream
    }

    fn parse_head(&mut self) -> Result<Option<ResponseHead>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let used = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(h1_error(format!("invalid response head: {e}"))),
        };
        let code = resp.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| h1_error(format!("invalid status {code}")))?;
        let http11 = resp.version == Some(1);
        // Header values share the head's bytes instead of being copied one by one.
        let count = resp.headers.len();
        let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let base = self.buf.as_ptr() as usize;
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (name, h.name.len(), value, h.value.len());
        }
        let raw = self.buf.split_to(used).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        for &(name, name_len, value, value_len) in &spans[..count] {
            let name = HeaderName::from_bytes(&raw[name..name + name_len])
                .map_err(|_| h1_error("invalid response header name".into()))?;
            let value = HeaderValue::from_maybe_shared(raw.slice(value..value + value_len))
                .map_err(|_| h1_error(format!("invalid value of response header {name}")))?;
            headers.append(name, value);
        }
        let close = headers.get_all(header::CONNECTION).iter().any(|v| has_token(v.as_bytes(), b"close"));
        let keep_alive = headers.get_all(header::CONNECTION).iter().any(|v| has_token(v.as_bytes(), b"keep-alive"));
        self.keepalive = if http11 { !close } else { keep_alive && !close };
        self.framing = self.framing_of(status, &headers)?;
        if self.framing == Framing::UntilClose {
            self.keepalive = false;
        }
        Ok(Some(ResponseHead { status, headers }))
    }

    fn framing_of(&self, status: StatusCode, headers: &HeaderMap) -> Result<Framing> {
        if self.head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Done);
        }
        if let Some(te) = headers.get_all(header::TRANSFER_ENCODING).iter().next_back() {
            // Chunked must be the last coding; anything else runs to the close.
            let last = te.as_bytes().rsplit(|b| *b == b',').next().unwrap_or_default();
            return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked(0)
            } else {
                Framing::UntilClose
            });
        }
        let mut length = None;
        for v in headers.get_all(header::CONTENT_LENGTH) {
            let n = std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| h1_error("invalid Content-Length in the response".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(h1_error("conflicting Content-Length values in the response".into()));
            }
            length = Some(n);
        }
        Ok(match length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }

    async fn fill_or_closed(&mut self, what: &'static str) -> Result<()> {
        if self.fill().await? == 0 {
            return Err(Error::explain(ErrorType::ConnectionClosed, format!("closed within {what}")));
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<usize> {
        self.fill_at_most(READ_MAX as u64).await
    }

    /// One read into the buffer, of up to the current read size (and at most `want`).
    async fn fill_at_most(&mut self, want: u64) -> Result<usize> {
        let size = self.read_size.min(usize::try_from(want).unwrap_or(usize::MAX)).max(1024);
        self.buf.reserve(size);
        let spare = self.buf.capacity() - self.buf.len();
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| err(ErrorType::ReadError, "reading the response", e))?;
        // Reads that fill the buffer ask for more next time.
        if n >= spare && self.read_size < READ_MAX {
            self.read_size = (self.read_size * 2).min(READ_MAX);
        }
        Ok(n)
    }
}

/// `token` is in the comma-separated list `value` (case-insensitively).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

async fn write_all_vectored(stream: &mut Stream, parts: &[Bytes]) -> std::io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < parts.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[index][offset..])
            .chain(parts[index + 1..].iter().map(|p| &p[..]))
            .take(64)
            .map(IoSlice::new)
            .collect();
        let mut n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < parts.len() && n >= parts[index].len() - offset {
            n -= parts[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += n;
    }
    Ok(())
}

/// Polls a future once.
fn futures_now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
    }
}
