//! The upstream side: one HTTP/1.1 exchange at a time on a provider connection.

use super::{header_map, spans, Framing, ReadError, Reader, Span, MAX_HEAD, MAX_HEADERS};
use bytes::{Buf, Bytes};
use http::{HeaderMap, Method, StatusCode};
use pingora_core::protocols::Stream;
use pingora_core::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bodies below this size go out in the same write as the head (one copy, one send); larger
/// ones follow it as the slices they are in.
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

    /// The head's bytes, in a buffer with room for `extra` more (the body).
    fn encode(&self, extra: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(extra);
        let start = [self.method.as_str().as_bytes(), b" ", self.path.as_str().as_bytes(), b" HTTP/1.1"];
        super::encode_head(&start, &self.headers, &mut out);
        out
    }
}

/// A response head as it came from upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

pub struct UpstreamSession {
    stream: Stream,
    reader: Reader,
    head: Option<ResponseHead>,
    keepalive: bool,
    head_request: bool,
}

fn read_error(e: ReadError) -> Box<Error> {
    match e {
        ReadError::Closed(what) => Error::explain(ErrorType::ConnectionClosed, format!("closed within {what}")),
        ReadError::Invalid(what) => Error::explain(ErrorType::InvalidHTTPHeader, what),
        ReadError::Io(e) => Error::because(ErrorType::ReadError, "reading the response", e),
    }
}

impl UpstreamSession {
    pub fn new(stream: Stream) -> UpstreamSession {
        UpstreamSession { stream, reader: Reader::default(), head: None, keepalive: false, head_request: false }
    }

    /// Whether a pooled connection is seen to be unusable without waiting: the provider
    /// closed it while idle, or sent something unasked.
    pub fn is_closed(&mut self) -> bool {
        let mut probe = [0u8; 1];
        super::now_or_never(tokio::task::unconstrained(self.stream.read(&mut probe))).is_some()
    }

    /// Sends the request.
    pub async fn send(&mut self, head: &RequestHead, body: &[Bytes]) -> Result<()> {
        self.head = None;
        self.reader.framing = Framing::Done;
        self.head_request = head.method == Method::HEAD;
        let len: usize = body.iter().map(Bytes::len).sum();
        let copy = len < COPY_BELOW;
        let mut out = head.encode(if copy { len } else { 0 });
        let write = async {
            if copy {
                for part in body {
                    out.extend_from_slice(part);
                }
                self.stream.write_all(&out).await?;
            } else {
                super::write_all_vectored(&mut self.stream, &out, body).await?;
            }
            self.stream.flush().await
        };
        write.await.map_err(|e| Error::because(ErrorType::WriteError, "writing the request upstream", e))
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
            if self.reader.buf.len() >= MAX_HEAD {
                return Err(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    format!("response head over {MAX_HEAD} bytes"),
                ));
            }
            match self.reader.fill(&mut self.stream).await {
                Ok(0) => {
                    let what =
                        if self.reader.buf.is_empty() { "closed before answering" } else { "closed within the head" };
                    return Err(Error::explain(ErrorType::ConnectionClosed, what));
                }
                Ok(_) => {}
                Err(e) => return Err(Error::because(ErrorType::ReadError, "reading the response", e)),
            }
        }
    }

    /// Not a byte of an answer has come on this exchange.
    pub fn received_nothing(&self) -> bool {
        self.head.is_none() && self.reader.buf.is_empty()
    }

    pub fn response_header(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// The whole body has been read.
    pub fn response_done(&self) -> bool {
        self.reader.framing == Framing::Done
    }

    /// The next piece of the body; `None` at its end.
    pub async fn read_response_body(&mut self) -> Result<Option<Bytes>> {
        self.reader.body(&mut self.stream).await.map_err(read_error)
    }

    /// The connection can carry another request: this answer was read to its end, the
    /// provider did not ask to close, and sent nothing beyond it.
    pub fn reusable(&self) -> bool {
        self.keepalive && self.reader.framing == Framing::Done && self.reader.buf.is_empty()
    }

    /// Ready for the pool: no buffer kept while idle.
    pub fn into_idle(self) -> Stream {
        self.stream
    }

    fn parse_head(&mut self) -> Result<Option<ResponseHead>> {
        let invalid = |what: String| Error::explain(ErrorType::InvalidHTTPHeader, what);
        if self.reader.buf.is_empty() {
            return Ok(None);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut at: [Span; MAX_HEADERS] = [(0, 0, 0, 0); MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        let used = match resp.parse(&self.reader.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(invalid(format!("invalid response head: {e}"))),
        };
        let code = resp.code.unwrap_or(0);
        let http11 = resp.version == Some(1);
        let count = spans(&self.reader.buf, resp.headers, &mut at);
        let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("invalid status {code}")))?;
        // The head gets an allocation of its own (its header values point into it): the read
        // buffer then stays unshared, and a streamed body's reads reuse it instead of holding
        // a second one for the whole answer.
        let raw = Bytes::copy_from_slice(&self.reader.buf[..used]);
        self.reader.buf.advance(used);
        let headers = header_map(&raw, &at[..count]).map_err(|e| invalid(format!("response: {e}")))?;
        self.keepalive = super::keep_alive(http11, &headers);
        self.reader.framing = self.framing_of(status, &headers).map_err(|e| invalid(format!("response: {e}")))?;
        // A length next to a transfer coding makes the message suspect: it is read by its
        // coding, and the connection is not reused (RFC 9112 §6.3).
        let both =
            headers.contains_key(http::header::TRANSFER_ENCODING) && headers.contains_key(http::header::CONTENT_LENGTH);
        if self.reader.framing == Framing::UntilClose || both || status == StatusCode::SWITCHING_PROTOCOLS {
            self.keepalive = false;
        }
        Ok(Some(ResponseHead { status, headers }))
    }

    fn framing_of(&self, status: StatusCode, headers: &HeaderMap) -> std::result::Result<Framing, String> {
        if self.head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::Done);
        }
        // A coding other than chunked last runs to the close.
        if let Some(chunked) = super::transfer_chunked(headers) {
            return Ok(if chunked { Framing::Chunked(0) } else { Framing::UntilClose });
        }
        Ok(match super::content_length(headers)? {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }
}
