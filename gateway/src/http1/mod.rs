//! HTTP/1.1 toward providers, on Pingora's transport streams.
//!
//! Pingora's H1 client costs more per request than the proxy does (a separate send for a
//! request head, a pool task per reused connection, 64 KiB buffers per connection), and it
//! only faces configured providers, so the gateway speaks HTTP/1.1 to them directly: heads
//! parsed by `httparse` with header values sharing the read buffer, a request head and its
//! body in one write, buffers only while something is read. Pingora still owns connecting
//! and TLS. (Clients are served by Pingora's own server sessions: [`crate::edge`].)

pub mod client;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue};
use std::io::IoSlice;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most header fields a head may have.
pub const MAX_HEADERS: usize = 128;
/// Largest head accepted (request or response), and largest trailer section.
pub const MAX_HEAD: usize = 64 * 1024;
/// What a read asks the socket for at least; grows while reads fill it (and stays grown for
/// the connection's next answers). A streamed answer's buffer is held while it lasts, so the
/// start is small: an answer head with a short body or a few events fit.
const READ_MIN: usize = 2 * 1024;
const READ_MAX: usize = 64 * 1024;

/// How a message body is delimited, and how far it has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Nothing (more) to read.
    Done,
    Length(u64),
    /// Chunked: the bytes left in the current chunk (0 = a size line is next).
    Chunked(u64),
    /// The chunk data ended; its CRLF comes next.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// Runs until the peer closes (responses only).
    UntilClose,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed before the body ended.
    Closed(&'static str),
    /// The bytes do not follow HTTP/1.1 framing.
    Invalid(String),
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed(what) => write!(f, "connection closed within {what}"),
            ReadError::Invalid(what) => f.write_str(what),
            ReadError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

/// The read side of a connection: its buffer and where the current body stands.
#[derive(Debug)]
pub struct Reader {
    pub buf: BytesMut,
    read_size: usize,
    pub framing: Framing,
}

impl Default for Reader {
    fn default() -> Self {
        Reader { buf: BytesMut::new(), read_size: READ_MIN, framing: Framing::Done }
    }
}

impl Reader {
    /// One read into the buffer; 0 means the peer closed.
    pub async fn fill<S: AsyncRead + Unpin + ?Sized>(&mut self, stream: &mut S) -> std::io::Result<usize> {
        self.buf.reserve(self.read_size);
        let spare = self.buf.capacity() - self.buf.len();
        let n = stream.read_buf(&mut self.buf).await?;
        // Reads that fill the buffer ask for more next time.
        if n >= spare && self.read_size < READ_MAX {
            self.read_size = (self.read_size * 2).min(READ_MAX);
        }
        Ok(n)
    }

    async fn fill_or_closed<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut S,
        what: &'static str,
    ) -> Result<(), ReadError> {
        match self.fill(stream).await {
            Ok(0) => Err(ReadError::Closed(what)),
            Ok(_) => Ok(()),
            Err(e) => Err(ReadError::Io(e)),
        }
    }

    /// The next piece of the body; `None` at its end.
    pub async fn body<S: AsyncRead + Unpin + ?Sized>(&mut self, stream: &mut S) -> Result<Option<Bytes>, ReadError> {
        loop {
            match self.framing {
                Framing::Done | Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    let (data, rest) = self.piece(stream, left, "the body").await?;
                    self.framing = if rest == 0 { Framing::Done } else { Framing::Length(rest) };
                    return Ok(Some(data));
                }
                Framing::UntilClose => {
                    if self.buf.is_empty() {
                        match self.fill(stream).await {
                            Ok(0) => {
                                self.framing = Framing::Done;
                                return Ok(None);
                            }
                            Ok(_) => {}
                            Err(e) => return Err(ReadError::Io(e)),
                        }
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                // A size line must start with a hex digit (httparse takes an empty one as 0).
                Framing::Chunked(0) if self.buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                    return Err(ReadError::Invalid("invalid chunk size line".into()))
                }
                Framing::Chunked(0) => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        let _ = self.buf.split_to(used);
                        self.framing = if size == 0 { Framing::Trailers } else { Framing::Chunked(size) };
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() > 1024 => {
                        return Err(ReadError::Invalid("chunk size line too long".into()))
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_closed(stream, "a chunk size").await?,
                    Err(_) => return Err(ReadError::Invalid("invalid chunk size line".into())),
                },
                Framing::Chunked(left) => {
                    let (data, rest) = self.piece(stream, left, "a chunk").await?;
                    self.framing = if rest == 0 { Framing::ChunkEnd } else { Framing::Chunked(rest) };
                    return Ok(Some(data));
                }
                Framing::ChunkEnd => {
                    if self.buf.len() < 2 {
                        self.fill_or_closed(stream, "a chunk end").await?;
                        continue;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(ReadError::Invalid("chunk data longer than its size".into()));
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
                    None if self.buf.len() > MAX_HEAD => return Err(ReadError::Invalid("trailers too large".into())),
                    None => self.fill_or_closed(stream, "the trailers").await?,
                },
            }
        }
    }

    /// Up to `left` bytes of a delimited run (reading first when none are buffered), and how
    /// many of the run are still to come.
    async fn piece<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut S,
        left: u64,
        what: &'static str,
    ) -> Result<(Bytes, u64), ReadError> {
        if self.buf.is_empty() {
            self.fill_or_closed(stream, what).await?;
        }
        let n = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        Ok((self.buf.split_to(n).freeze(), left - n as u64))
    }
}

/// Where one header field sits in a head: (name start, name length, value start, value length).
pub type Span = (usize, usize, usize, usize);

/// The positions of parsed header fields within `base`, so the head's bytes can be frozen
/// and shared by the values.
pub fn spans(base: &[u8], fields: &[httparse::Header<'_>], out: &mut [Span; MAX_HEADERS]) -> usize {
    let start = base.as_ptr() as usize;
    for (span, h) in out.iter_mut().zip(fields) {
        *span = (h.name.as_ptr() as usize - start, h.name.len(), h.value.as_ptr() as usize - start, h.value.len());
    }
    fields.len().min(MAX_HEADERS)
}

/// The header map of a head whose bytes are `raw`; values are slices of it, not copies.
pub fn header_map(raw: &Bytes, spans: &[Span]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &(name, name_len, value, value_len) in spans {
        let name =
            HeaderName::from_bytes(&raw[name..name + name_len]).map_err(|_| "invalid header name".to_string())?;
        let value = HeaderValue::from_maybe_shared(raw.slice(value..value + value_len))
            .map_err(|_| format!("invalid value of header {name}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Appends a message head: the start line (given in pieces), `name: value` for every field,
/// and the blank line.
pub fn encode_head(start: &[&[u8]], headers: &HeaderMap, out: &mut Vec<u8>) {
    let fields: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    out.reserve(start.iter().map(|p| p.len()).sum::<usize>() + fields + 4);
    for piece in start {
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `token` is in the comma-separated lists of `name` (case-insensitively).
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &[u8]) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token)))
}

/// Whether a connection stays open after this message, by its version and `Connection`.
pub fn keep_alive(http11: bool, headers: &HeaderMap) -> bool {
    if has_token(headers, header::CONNECTION, b"close") {
        return false;
    }
    http11 || has_token(headers, header::CONNECTION, b"keep-alive")
}

/// Whether a `Transfer-Encoding` is present, and whether chunked is its last coding.
pub fn transfer_chunked(headers: &HeaderMap) -> Option<bool> {
    let last = headers.get_all(header::TRANSFER_ENCODING).iter().next_back()?;
    let coding = last.as_bytes().rsplit(|b| *b == b',').next().unwrap_or_default();
    Some(coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The `Content-Length`, if any; repeated values must agree.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let mut length = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let n = std::str::from_utf8(v.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| "invalid Content-Length".to_string())?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length values".into());
        }
        length = Some(n);
    }
    Ok(length)
}

/// Writes `first` and then `parts`, in as few syscalls as the socket allows.
pub async fn write_all_vectored<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    first: &[u8],
    parts: &[Bytes],
) -> std::io::Result<()> {
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    pieces.push(first);
    pieces.extend(parts.iter().map(|p| &p[..]));
    pieces.retain(|p| !p.is_empty());
    let (mut index, mut offset) = (0, 0);
    while index < pieces.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&pieces[index][offset..])
            .chain(pieces[index + 1..].iter().copied())
            .take(64)
            .map(IoSlice::new)
            .collect();
        let mut n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while index < pieces.len() && n >= pieces[index].len() - offset {
            n -= pieces[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += n;
    }
    Ok(())
}

/// Polls a future once (for a read that must not wait).
pub fn now_or_never<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let mut r = Reader { framing: Framing::Chunked(0), ..Reader::default() };
        let mut wire: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let mut body = Vec::new();
        while let Some(piece) = r.body(&mut wire).await.map_err(|e| e.to_string()).unwrap() {
            body.extend_from_slice(&piece);
        }
        assert_eq!(body, b"hello world");
        assert_eq!(&r.buf[..], b"NEXT", "bytes after the body stay for the next message");
    }

    #[tokio::test]
    async fn chunk_longer_than_declared_is_refused() {
        let mut r = Reader { framing: Framing::Chunked(0), ..Reader::default() };
        let mut wire: &[u8] = b"2\r\nabc\r\n0\r\n\r\n";
        let first = r.body(&mut wire).await.map_err(|e| e.to_string()).unwrap();
        assert_eq!(first.as_deref(), Some(&b"ab"[..]));
        assert!(matches!(r.body(&mut wire).await, Err(ReadError::Invalid(_))));
    }

    #[tokio::test]
    async fn length_body_and_early_close() {
        let mut r = Reader { framing: Framing::Length(10), ..Reader::default() };
        let mut wire: &[u8] = b"12345";
        assert_eq!(r.body(&mut wire).await.map_err(|e| e.to_string()).unwrap().as_deref(), Some(&b"12345"[..]));
        assert!(matches!(r.body(&mut wire).await, Err(ReadError::Closed(_))));
    }

    #[test]
    fn framing_headers() {
        assert_eq!(content_length(&headers(&[("content-length", "12")])), Ok(Some(12)));
        assert!(content_length(&headers(&[("content-length", "12"), ("content-length", "13")])).is_err());
        assert!(content_length(&headers(&[("content-length", "+12")])).is_err());
        assert_eq!(transfer_chunked(&headers(&[("transfer-encoding", "gzip, chunked")])), Some(true));
        assert_eq!(transfer_chunked(&headers(&[("transfer-encoding", "chunked, gzip")])), Some(false));
        assert_eq!(transfer_chunked(&headers(&[])), None);
        assert!(!keep_alive(true, &headers(&[("connection", "keep-alive, Close")])));
        assert!(keep_alive(false, &headers(&[("connection", "Keep-Alive")])));
        assert!(!keep_alive(false, &headers(&[])));
    }
}
