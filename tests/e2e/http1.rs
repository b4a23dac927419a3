//! HTTP/1.1 as the gateway speaks it to clients, byte by byte over raw TCP: keep-alive,
//! pipelining, chunked and `Expect: 100-continue` request bodies, framing errors (request
//! smuggling defences), `Connection` handling, HTTP/1.0, streamed answers, and clients that
//! leave mid-body.

use crate::harness::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for any read: a hung gateway fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(5);
const CHAT: &str = "/v1/chat/completions";

/// A gateway with one OpenAI provider `p` (the client's model passes through) for `/v1`.
async fn gateway(mock: &MockLlm) -> Gateway {
    Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /v1}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n",
        provider("p", mock, "")
    ))
    .await
}

/// A chat request body for `model`.
fn chat_body(model: &str, stream: bool) -> String {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "What is 2+2?"}]})
        .to_string()
}

/// A request with `Host`, the `extra` header lines (each ending in CRLF) and, with a body,
/// its `Content-Length`.
fn request(method: &str, path: &str, version: &str, extra: &str, body: Option<&str>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/{version}\r\nHost: gateway\r\n{extra}");
    if let Some(body) = body {
        out.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    } else {
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// `POST /v1/chat/completions` over HTTP/1.1 for `model`.
fn chat_request(model: &str, extra: &str) -> Vec<u8> {
    request("POST", CHAT, "1.1", extra, Some(&chat_body(model, false)))
}

/// An answer as it came on the wire.
#[derive(Debug)]
struct Response {
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// The body with any chunked framing removed.
    body: Vec<u8>,
    /// The body came chunked.
    chunked: bool,
}

impl Response {
    /// The value of header `name` (case-insensitive); fails on repeated fields.
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let first = values.next();
        assert!(values.next().is_none(), "header {name} repeated in {:?}", self.headers);
        first
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A raw client connection to the gateway and the bytes read but not consumed yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to the gateway's client listener (the host and port of its base URL).
    async fn open(gw: &Gateway) -> Conn {
        let url = gw.url("");
        let addr = url.strip_prefix("http://").expect("http URL").trim_end_matches('/').to_string();
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(&addr)).await.expect("connect timeout").unwrap();
        Conn { stream, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the gateway");
    }

    /// One read into the buffer; `Ok(0)` once the gateway closed. Fails after [`WAIT`].
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("nothing from the gateway for {WAIT:?}; so far: {:?}", self.pending()))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads more, failing if the connection ends within `what`.
    async fn more(&mut self, what: &str) {
        match self.fill().await {
            Ok(0) => panic!("connection closed within {what}; so far: {:?}", self.pending()),
            Ok(_) => {}
            Err(e) => panic!("read failed within {what}: {e}; so far: {:?}", self.pending()),
        }
    }

    fn pending(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The next CRLF-terminated line, without its CRLF.
    async fn line(&mut self, what: &str) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 line");
                self.buf.drain(..end + 2);
                return line;
            }
            self.more(what).await;
        }
    }

    /// The next `n` bytes.
    async fn take(&mut self, n: usize, what: &str) -> Vec<u8> {
        while self.buf.len() < n {
            self.more(what).await;
        }
        self.buf.drain(..n).collect()
    }

    /// The next response (an interim 1xx one included), its body framed by
    /// `Content-Length`, chunked encoding, or the close.
    async fn response(&mut self) -> Response {
        let status_line = self.line("the status line").await;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {status_line:?}"));
        assert!(version.starts_with("HTTP/1."), "status line {status_line:?}");
        let mut headers = Vec::new();
        loop {
            let line = self.line("the response head").await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("header line {line:?}"));
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut r = Response { version, status, headers, body: Vec::new(), chunked: false };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return r;
        }
        if let Some(te) = r.header("transfer-encoding") {
            assert!(te.eq_ignore_ascii_case("chunked"), "transfer-encoding {te}");
            assert!(r.header("content-length").is_none(), "both framings in {:?}", r.headers);
            r.chunked = true;
            loop {
                let size_line = self.line("a chunk size").await;
                let size = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("chunk size line {size_line:?}"));
                if size == 0 {
                    while !self.line("the trailers").await.is_empty() {}
                    break;
                }
                let data = self.take(size, "a chunk").await;
                r.body.extend_from_slice(&data);
                assert_eq!(self.take(2, "a chunk end").await, b"\r\n", "chunk data longer than its size");
            }
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len.parse().unwrap_or_else(|_| panic!("content-length {len:?}"));
            r.body = self.take(len, "the body").await;
        } else {
            loop {
                match self.fill().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => panic!("read failed within a body that ends with the close: {e}"),
                }
            }
            r.body = std::mem::take(&mut self.buf);
        }
        r
    }

    /// The gateway closes the connection: nothing more is read, then end of stream.
    async fn expect_closed(&mut self) {
        assert!(self.buf.is_empty(), "unexpected bytes after the answer: {:?}", self.pending());
        match self.fill().await {
            Ok(0) => {}
            Ok(_) => panic!("unexpected bytes instead of the close: {:?}", self.pending()),
            Err(e) => panic!("connection reset instead of closed: {e}"),
        }
    }

    /// The connection carries another request: `GET /v1/models` is answered with the list.
    async fn expect_usable(&mut self) {
        self.send(&request("GET", "/v1/models", "1.1", "", None)).await;
        let r = self.response().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["data"].is_array(), "{}", r.text());
    }
}

/// A normal chat answer from provider `p` for `model`.
fn assert_answer(r: &Response, model: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), Some("p"));
    let v = r.json();
    assert_eq!(v["model"], model, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from p", "{v}");
}

/// A refusal: `status`, an OpenAI-shaped JSON error naming `needle`, and `connection: close`.
fn assert_refused(r: &Response, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("connection"), Some("close"));
    let v = r.json();
    let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message in {v}"));
    assert!(message.contains(needle), "{message:?} should mention {needle:?}");
    assert!(v["error"]["type"].is_string(), "{v}");
}

/// Sends `bytes` on a new connection and expects the refusal, then the close.
/// A mock provider, a gateway in front of it, and a connection to the gateway.
async fn connected() -> (MockLlm, Gateway, Conn) {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    let c = Conn::open(&gw).await;
    (mock, gw, c)
}

async fn expect_refusal(gw: &Gateway, bytes: &[u8], status: u16, needle: &str) {
    let mut c = Conn::open(gw).await;
    c.send(bytes).await;
    let r = c.response().await;
    assert_refused(&r, status, needle);
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_serves_requests_on_one_connection() {
    let (mock, _gw, mut c) = connected().await;
    for model in ["first", "second"] {
        c.send(&chat_request(model, "")).await;
        let r = c.response().await;
        assert_answer(&r, model);
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("connection"), Some("keep-alive"), "HTTP/1.1 keeps the connection");
        assert!(r.header("content-length").is_some() && !r.chunked, "{:?}", r.headers);
    }
    c.expect_usable().await;
    assert_eq!(mock.requests(), 2);
    // An answer that leaves the request body unread (no route): the gateway reads and
    // drops the rest of the body, then closes.
    c.send(&request("POST", "/nowhere", "1.1", "", Some(&chat_body("lost", false)))).await;
    let r = c.response().await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().await;
    let mut c = Conn::open(&_gw).await;
    c.send(&chat_request("third", "")).await;
    assert_answer(&c.response().await, "third");
    assert_eq!(mock.requests(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order() {
    let (mock, gw, mut c) = connected().await;
    let mut both = chat_request("first", "X-Request-Id: req-1\r\n");
    both.extend_from_slice(&chat_request("second", "X-Request-Id: req-2\r\n"));
    c.send(&both).await;
    let first = c.response().await;
    assert_answer(&first, "first");
    assert_eq!(first.header("x-request-id"), Some("req-1"));
    let second = c.response().await;
    assert_answer(&second, "second");
    assert_eq!(second.header("x-request-id"), Some("req-2"));
    // Three more, the last a `GET` with no body, still in a single write.
    let mut three = chat_request("third", "");
    three.extend_from_slice(&request("GET", "/v1/models", "1.1", "", None));
    three.extend_from_slice(&chat_request("fourth", "Connection: close\r\n"));
    c.send(&three).await;
    assert_answer(&c.response().await, "third");
    let models = c.response().await;
    assert_eq!(models.status, 200);
    assert!(models.json()["data"].is_array(), "{}", models.text());
    let last = c.response().await;
    assert_answer(&last, "fourth");
    assert_eq!(last.header("connection"), Some("close"));
    c.expect_closed().await;
    assert_eq!(mock.requests(), 4);

    // A streamed answer, then a plain one, pipelined.
    let mut c = Conn::open(&gw).await;
    let mut both = request("POST", CHAT, "1.1", "", Some(&chat_body("streamed", true)));
    both.extend_from_slice(&chat_request("plain", ""));
    c.send(&both).await;
    let streamed = c.response().await;
    assert!(streamed.chunked, "{:?}", streamed.headers);
    assert_eq!(streamed_text(&streamed.text()), "Hello from p");
    assert_answer(&c.response().await, "plain");
    c.expect_usable().await;

    // `Connection: close` on the first: the second is never answered.
    let mut c = Conn::open(&gw).await;
    let mut both = chat_request("only", "Connection: close\r\n");
    both.extend_from_slice(&chat_request("never", ""));
    c.send(&both).await;
    let r = c.response().await;
    assert_answer(&r, "only");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().await;
    assert_eq!(mock.last_request().unwrap().json().unwrap()["model"], "only");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_request_body_is_proxied() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    let body = chat_body("chunky", false);
    let mut wire = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for (i, piece) in body.as_bytes().chunks(10).enumerate() {
        // A chunk extension on the first chunk, upper-case hex on the others.
        let ext = if i == 0 { ";name=value" } else { "" };
        wire.push_str(&format!("{:X}{ext}\r\n{}\r\n", piece.len(), std::str::from_utf8(piece).unwrap()));
    }
    wire.push_str("0\r\nX-Trailer: ignored\r\n\r\n");
    assert!(body.len() > 30, "several chunks");
    let mut c = Conn::open(&gw).await;
    // The head and each chunk in separate writes, as a streaming client sends them.
    let (head, chunks) = wire.split_at(wire.find("\r\n\r\n").unwrap() + 4);
    c.send(head.as_bytes()).await;
    for piece in chunks.split_inclusive("\r\n") {
        c.send(piece.as_bytes()).await;
    }
    let r = c.response().await;
    assert_answer(&r, "chunky");
    let seen = mock.last_request().expect("the mock got the request");
    assert_eq!(seen.json().expect("JSON body at the mock"), serde_json::from_str::<serde_json::Value>(&body).unwrap());
    assert_eq!(seen.header("transfer-encoding"), None, "the gateway sends the whole body with a length");
    assert_eq!(seen.header("content-length"), Some(seen.body.len().to_string().as_str()));
    // Nothing after a chunked body is taken as a next request: the connection closes.
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_is_answered_before_the_body() {
    let (mock, _gw, mut c) = connected().await;
    let wire = chat_request("patient", "Expect: 100-continue\r\n");
    let (head, body) = wire.split_at(wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
    c.send(head).await;
    let interim = c.response().await;
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(interim.headers.is_empty(), "{interim:?}");
    assert!(c.buf.is_empty(), "nothing but the 100 before the body: {:?}", c.pending());
    assert_eq!(mock.requests(), 0, "nothing goes upstream before the body");
    c.send(body).await;
    assert_answer(&c.response().await, "patient");
    c.expect_usable().await;
}

/// Answered before the held-back body is sent (no route): the body never comes, so the
/// answer says the connection closes, and it does.
#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_refused_early_closes() {
    let (mock, _gw, mut c) = connected().await;
    let head = "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    c.send(head.as_bytes()).await;
    let r = c.response().await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    c.expect_closed().await;
    assert_eq!(mock.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    let head = format!("POST {CHAT} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n");
    // Both framings: the classic smuggling vector (CL.TE / TE.CL).
    let both = format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    expect_refusal(&gw, both.as_bytes(), 400, "both Transfer-Encoding and Content-Length").await;
    let both = format!("{head}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_refusal(&gw, both.as_bytes(), 400, "both Transfer-Encoding and Content-Length").await;
    // A transfer coding that does not end in chunked leaves the body length unknown.
    let gzip = format!("{head}Transfer-Encoding: gzip\r\n\r\nxxxxx");
    expect_refusal(&gw, gzip.as_bytes(), 400, "Transfer-Encoding").await;
    let chunked_gzip = format!("{head}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n");
    expect_refusal(&gw, chunked_gzip.as_bytes(), 400, "Transfer-Encoding").await;
    for length in ["+5", "abc", "-1", "5 5", ""] {
        let bad = format!("{head}Content-Length: {length}\r\n\r\nhello");
        expect_refusal(&gw, bad.as_bytes(), 400, "invalid Content-Length").await;
    }
    // Header fields that another hop might read as framing.
    let spaced = format!("{head}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n");
    expect_refusal(&gw, spaced.as_bytes(), 400, "malformed request head").await;
    // Chunk sizes that do not parse, or chunks longer than their size.
    for size in ["10000000000000000", "-5", "zz", "5 5"] {
        let bad = format!("{head}Transfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n");
        expect_refusal(&gw, bad.as_bytes(), 400, "InvalidChunk").await;
    }
    let long = format!("{head}Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n");
    expect_refusal(&gw, long.as_bytes(), 400, "was not CRLF").await;
    let conflicting = format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
    expect_refusal(&gw, conflicting.as_bytes(), 400, "invalid Content-Length").await;
    // After a good request on the same connection, a bad one is still refused and closes it.
    let mut c = Conn::open(&gw).await;
    c.send(&chat_request("ok", "")).await;
    assert_answer(&c.response().await, "ok");
    let both = format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n");
    c.send(both.as_bytes()).await;
    assert_refused(&c.response().await, 400, "both Transfer-Encoding and Content-Length");
    c.expect_closed().await;
    assert_eq!(mock.requests(), 1, "no refused request went upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_line_is_400_and_closes() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    expect_refusal(&gw, b"GARBAGE\r\n\r\n", 400, "malformed request head").await;
    expect_refusal(&gw, b"POST /v1/chat/completions HTTP/9.9\r\nHost: x\r\n\r\n", 400, "malformed request head").await;
    assert_eq!(mock.requests(), 0);
    // The gateway still serves.
    let mut c = Conn::open(&gw).await;
    c.send(&chat_request("after", "")).await;
    assert_answer(&c.response().await, "after");
}

/// A head that reaches 64 KiB before it ends, or has too many fields, is refused with 431.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_heads_are_431() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    let mut head = format!("POST {CHAT} HTTP/1.1\r\nHost: gateway\r\nX-Big: ").into_bytes();
    head.resize(64 * 1024, b'a');
    // Exactly 64 KiB, so the gateway reads all of it and its close is a clean one.
    expect_refusal(&gw, &head, 431, "limits.maxHeaderBytes (65536 bytes)").await;
    // Too many fields, however small.
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    expect_refusal(&gw, &chat_request("many", &many), 431, "more than 128 header fields").await;
    assert_eq!(mock.requests(), 0);
}

/// A complete head over 64 KiB (one huge header) is refused with 431.
/// (The check is on the parsed head, not only on an unfinished one: reads grow up to
/// 64 KiB, so a complete head larger than that can arrive in one buffer.)
#[tokio::test(flavor = "multi_thread")]
async fn complete_head_over_64_kib_is_431() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    let big = "a".repeat(70 * 1024);
    let mut c = Conn::open(&gw).await;
    c.send(&chat_request("big", &format!("X-Big: {big}\r\n"))).await;
    let r = c.response().await;
    assert_eq!(mock.requests(), 0, "a head over 64 KiB went upstream; answered {}", r.status);
    assert_refused(&r, 431, "limits.maxHeaderBytes (65536 bytes)");
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_close_from_the_client_closes_after_the_answer() {
    let (_mock, gw, mut c) = connected().await;
    c.send(&chat_request("bye", "Connection: close\r\n")).await;
    let r = c.response().await;
    assert_answer(&r, "bye");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().await;
    // Case-insensitive, among other tokens.
    let mut c = Conn::open(&gw).await;
    c.send(&chat_request("bye", "Connection: TE, Close\r\n")).await;
    let r = c.response().await;
    assert_answer(&r, "bye");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_closes_unless_keep_alive_is_asked_for() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(&mock).await;
    let body = chat_body("old", false);
    let mut c = Conn::open(&gw).await;
    c.send(&request("POST", CHAT, "1.0", "", Some(&body))).await;
    let r = c.response().await;
    assert_answer(&r, "old");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(!r.chunked, "no chunked answers to HTTP/1.0");
    c.expect_closed().await;

    let mut c = Conn::open(&gw).await;
    for _ in 0..2 {
        c.send(&request("POST", CHAT, "1.0", "Connection: keep-alive\r\n", Some(&body))).await;
        let r = c.response().await;
        assert_answer(&r, "old");
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert!(!r.chunked && r.header("content-length").is_some(), "{:?}", r.headers);
    }
    c.expect_usable().await;

    // A streamed answer to HTTP/1.0 has no length: it ends with the close.
    let mut c = Conn::open(&gw).await;
    c.send(&request("POST", CHAT, "1.0", "Connection: keep-alive\r\n", Some(&chat_body("old", true)))).await;
    let r = c.response().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(!r.chunked && r.header("content-length").is_none(), "{:?}", r.headers);
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    assert!(c.buf.is_empty());
}

/// The text of an OpenAI SSE stream's deltas; checks it ends with `[DONE]`.
fn streamed_text(sse: &str) -> String {
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
    let mut text = String::new();
    for data in sse.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("event {data:?}: {e}"));
        text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or_default());
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_answer_is_chunked_and_the_connection_stays_usable() {
    let mock = MockLlm::start("p", Behavior { stream_chunks: 4, ..Behavior::default() }).await.unwrap();
    let gw = gateway(&mock).await;
    let mut c = Conn::open(&gw).await;
    for _ in 0..2 {
        c.send(&request("POST", CHAT, "1.1", "", Some(&chat_body("streamy", true)))).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.chunked, "{:?}", r.headers);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.header("content-length"), None);
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/event-stream")), "{:?}", r.headers);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(streamed_text(&r.text()), "Hello from p");
    }
    c.expect_usable().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_leaving_mid_body_does_not_hurt_the_gateway() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let mut gw = gateway(&mock).await;
    let body = chat_body("cut", false);
    let wire = request("POST", CHAT, "1.1", "", Some(&body));
    let cut = wire.len() - body.len() / 2;

    // Half the body, then the client closes entirely.
    let mut c = Conn::open(&gw).await;
    c.send(&wire[..cut]).await;
    drop(c);
    // Half a chunked body, then the client closes.
    let mut c = Conn::open(&gw).await;
    c.send(
        format!("POST {CHAT} HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{{\"model\"")
            .as_bytes(),
    )
    .await;
    drop(c);
    // Half the body, then the client stops sending but still reads: the gateway says why.
    let mut c = Conn::open(&gw).await;
    c.send(&wire[..cut]).await;
    c.stream.shutdown().await.unwrap();
    let r = c.response().await;
    assert_refused(&r, 400, "could not read the request body");
    c.expect_closed().await;

    let mut c = Conn::open(&gw).await;
    c.send(&chat_request("after", "")).await;
    assert_answer(&c.response().await, "after");
    assert_eq!(gw.wait_exit(Duration::ZERO).await, None, "the gateway is still running");
    assert_eq!(mock.requests(), 1, "no cut request went upstream");
}

/// A provider on raw TCP that answers every request (read by its `Content-Length`) with
/// `answer`, keeping the connection open unless `close`. Stops when the returned handle is
/// aborted.
async fn raw_provider(answer: Vec<u8>, close: bool) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let (mut stream, mut buf, mut chunk) = (stream, Vec::new(), [0u8; 4096]);
                loop {
                    // A head, then a body of its `Content-Length`; idle connections wait.
                    let (end, length) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                            break (end + 4, length);
                        }
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    };
                    while buf.len() < end + length {
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    buf.drain(..end + length);
                    if stream.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (port, task)
}

/// A provider answer with both `Transfer-Encoding: chunked` and a wrong `Content-Length`
/// (RFC 9112 §6.3: chunked wins, and an intermediary must drop the length before forwarding)
/// reaches the client whole, framed so that the next answer on the connection still parses.
///
/// (Regression: the provider's length was kept next to the chunked marker and won, so the
/// client read the rest of the body as the next response.)
#[tokio::test(flavor = "multi_thread")]
async fn provider_answer_with_both_framings_does_not_desync_the_client() {
    let body = r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from raw"},"finish_reason":"stop"}]}"#;
    let (a, b) = body.split_at(40);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let (port, task) = raw_provider(answer.into_bytes(), false).await;
    let gw = raw_gateway(port).await;
    let mut c = Conn::open(&gw).await;
    for _ in 0..2 {
        c.send(&chat_request("m", "")).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), body, "headers {:?}", r.headers);
    }
    task.abort();
}

/// A provider answer without a length that ends with its connection (HTTP/1.0 style) is
/// relayed whole, chunked to the client, and the client's connection stays usable.
#[tokio::test(flavor = "multi_thread")]
async fn provider_answer_delimited_by_close_is_relayed_whole() {
    let body = r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from close"},"finish_reason":"stop"}]}"#;
    let answer = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
    let (port, task) = raw_provider(answer.into_bytes(), true).await;
    let gw = raw_gateway(port).await;
    let mut c = Conn::open(&gw).await;
    for _ in 0..2 {
        c.send(&chat_request("m", "")).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{:?}", r.headers);
        assert_eq!(r.text(), body);
    }
    c.expect_usable().await;
    task.abort();
}

/// A gateway with one provider on a raw-TCP port.
async fn raw_gateway(port: u16) -> Gateway {
    Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /v1}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n",
        provider_x("raw", port, "", "")
    ))
    .await
}

/// A provider stream sent with a `Content-Length`: the gateway hides the usage chunk the client
/// did not ask for, so the length no longer holds; the client gets the events chunked and the
/// connection stays in step.
#[tokio::test(flavor = "multi_thread")]
async fn stream_with_provider_length_is_rechunked() {
    let content = r#"data: {"id":"s","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
    let usage = r#"data: {"id":"s","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let events = format!("{content}\n\n{usage}\n\ndata: [DONE]\n\n");
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{events}",
        events.len()
    );
    let (port, task) = raw_provider(answer.into_bytes(), false).await;
    let gw = raw_gateway(port).await;
    let mut c = Conn::open(&gw).await;
    for _ in 0..2 {
        c.send(&request("POST", CHAT, "1.1", "", Some(&chat_body("m", true)))).await;
        let r = c.response().await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{:?}", r.headers);
        assert_eq!(r.text(), format!("{content}\n\ndata: [DONE]\n\n"), "the usage chunk is hidden");
    }
    c.expect_usable().await;
    task.abort();
}

/// A 204 from the provider goes to the client without framing headers and without a body.
#[tokio::test(flavor = "multi_thread")]
async fn no_content_answer_has_no_framing_headers() {
    let (port, task) = raw_provider(b"HTTP/1.1 204 No Content\r\nX-Up: 1\r\n\r\n".to_vec(), false).await;
    let gw = raw_gateway(port).await;
    let mut c = Conn::open(&gw).await;
    c.send(&chat_request("m", "")).await;
    let r = c.response().await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("transfer-encoding"), None, "{:?}", r.headers);
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert_eq!(r.header("x-up"), Some("1"));
    c.expect_usable().await;
    task.abort();
}

/// Answers the gateway writes itself carry a `Date`; an empty chunk-size line is refused.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_answers_are_dated_and_empty_chunk_sizes_refused() {
    let (mock, gw, mut c) = connected().await;
    c.send(&request("GET", "/nowhere", "1.1", "", None)).await;
    let r = c.response().await;
    assert_eq!(r.status, 404);
    let date = r.header("date").expect("a Date header");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    let body = chat_body("m", false);
    let wire = format!("POST {CHAT} HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n\r\n{body}\r\n0\r\n\r\n");
    expect_refusal(&gw, wire.as_bytes(), 400, "empty chunk").await;
    assert_eq!(mock.requests(), 0);
}
