//! What the gateway refuses in a request head that Pingora's parser accepted: decisions on
//! the parsed head (and, for HTTP/1, its raw bytes), no I/O.

use http::{header, HeaderMap, Method, StatusCode, Version};
use pingora_http::RequestHeader;

/// A refused request: the status and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }
}

/// Most header fields a request head may have.
pub const MAX_HEADER_FIELDS: usize = 128;

/// Checks a parsed request head. `raw_head` is the HTTP/1 head as received (`None` for
/// HTTP/2, whose framing the h2 codec checks).
pub fn check_head(req: &RequestHeader, raw_head: Option<&[u8]>, max_header_bytes: usize) -> Result<(), Refusal> {
    let bad = |m: &str| Err(Refusal::new(StatusCode::BAD_REQUEST, m));
    if let Some(raw) = raw_head {
        if raw.len() > max_header_bytes {
            let msg = format!("request head of {} bytes is over limits.maxHeaderBytes ({max_header_bytes})", raw.len());
            return Err(Refusal::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg));
        }
        if req.headers.len() > MAX_HEADER_FIELDS {
            let msg = format!("more than {MAX_HEADER_FIELDS} header fields");
            return Err(Refusal::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, msg));
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is refused.
        if req.version == Version::HTTP_11 && !req.headers.contains_key(header::HOST) {
            return bad("HTTP/1.1 request without a Host header");
        }
        check_transfer_coding(&req.headers, raw)?;
    }
    if req.method == Method::CONNECT {
        return Err(Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served"));
    }
    // Origin form (`/path`) or absolute form (`http://host/path`, whose authority Pingora
    // checked against Host); the asterisk form and anything else names no API.
    let target = req.raw_path();
    let absolute = |scheme: &[u8]| target.get(..scheme.len()).is_some_and(|t| t.eq_ignore_ascii_case(scheme));
    if !target.starts_with(b"/") && !absolute(b"http://") && !absolute(b"https://") {
        return bad("request target must be a path (origin form) or an absolute URL");
    }
    Ok(())
}

/// RFC 9112 §6: a request body is framed by `chunked` alone. Another coding (alone, in a
/// list or on another line) is not implemented (501), and a `Content-Length` next to a
/// transfer coding is refused outright (400) rather than ignored, so no hop can frame the
/// body differently.
fn check_transfer_coding(headers: &HeaderMap, raw: &[u8]) -> Result<(), Refusal> {
    let mut codings = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        for coding in value.as_bytes().split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            codings += 1;
            if !coding.eq_ignore_ascii_case(b"chunked") {
                let name = String::from_utf8_lossy(coding);
                return Err(Refusal::new(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("transfer coding {name:?} is not supported"),
                ));
            }
        }
    }
    if codings > 1 {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "chunked applied more than once"));
    }
    // Pingora drops a Content-Length that comes with Transfer-Encoding; the raw head still
    // has it.
    if codings == 1 && raw_has_header(raw, header::CONTENT_LENGTH.as_str()) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "both Transfer-Encoding and Content-Length"));
    }
    Ok(())
}

/// Whether a raw HTTP/1 head (already accepted by Pingora's parser) has a field `name`.
fn raw_has_header(raw: &[u8], name: &str) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(raw) {
        Ok(_) => req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name)),
        // Unreadable here after Pingora read it: treat as present, and refuse.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn head(raw: &str) -> (RequestHeader, Vec<u8>) {
        let mut fields = [httparse::EMPTY_HEADER; 256];
        let mut p = httparse::Request::new(&mut fields);
        p.parse(raw.as_bytes()).unwrap();
        let mut req = RequestHeader::build(p.method.unwrap(), p.path.unwrap().as_bytes(), None).unwrap();
        req.set_version(if p.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 });
        for h in p.headers.iter() {
            req.append_header(h.name.to_string(), h.value).unwrap();
        }
        (req, raw.as_bytes().to_vec())
    }

    fn check(raw: &str) -> Result<(), u16> {
        let (req, bytes) = head(raw);
        check_head(&req, Some(&bytes), 64 * 1024).map_err(|r| r.status.as_u16())
    }

    #[test]
    fn host_is_required_on_http11_only() {
        assert_eq!(check("GET /v1/models HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(check("GET /v1/models HTTP/1.0\r\n\r\n"), Ok(()));
        assert_eq!(check("GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_not_implemented() {
        let two_lines = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check(two_lines), Err(501));
        assert_eq!(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Err(501));
        assert_eq!(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), Err(400));
        assert_eq!(check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"), Ok(()));
    }

    #[test]
    fn content_length_next_to_transfer_encoding_is_refused() {
        // Pingora removes the Content-Length from the parsed head; the raw head keeps it.
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (mut req, bytes) = head(raw);
        req.remove_header(&header::CONTENT_LENGTH);
        assert_eq!(check_head(&req, Some(&bytes), 1 << 16).map_err(|r| r.status.as_u16()), Err(400));
    }

    #[test]
    fn targets_and_methods() {
        assert_eq!(check("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"), Err(405));
        assert_eq!(check("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), Err(400));
        assert_eq!(check("GET http://a/v1/models HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
    }

    #[test]
    fn head_size_is_limited() {
        let (req, bytes) = head("GET / HTTP/1.1\r\nHost: a\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n");
        assert_eq!(check_head(&req, Some(&bytes), 32).unwrap_err().status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(check_head(&req, Some(&bytes), bytes.len()).is_ok());
        assert!(check_head(&req, None, 1).is_ok(), "HTTP/2 heads are limited by the codec");
        let many: String = (0..=MAX_HEADER_FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(check(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")), Err(431));
    }
}
