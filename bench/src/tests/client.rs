//! A small HTTP/1.1 client for the tests: hyper's connection API for normal
//! exchanges, raw sockets where the test needs to misbehave.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read to its end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// One keep-alive client connection.
pub(crate) struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Client { sender }
    }

    /// Sends a request and returns the response with its body unread.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Incoming> {
        let mut request = Request::builder().method(method).uri(path).header("host", "mock");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        self.sender.ready().await.unwrap();
        self.sender.send_request(request).await.unwrap()
    }

    /// Sends a request and reads the whole response.
    pub(crate) async fn call(&mut self, method: &str, path: &str, body: impl Into<Bytes>) -> Answer {
        let response = self.send(method, path, &[], body).await;
        let (head, body) = response.into_parts();
        Answer { status: head.status.as_u16(), headers: head.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    pub(crate) async fn chat(&mut self, body: &Value) -> Answer {
        self.call("POST", "/v1/chat/completions", body.to_string()).await
    }
}

/// One request on a fresh connection.
pub(crate) async fn call(addr: SocketAddr, method: &str, path: &str, body: impl Into<Bytes>) -> Answer {
    Client::connect(addr).await.call(method, path, body).await
}

/// A chat request body.
pub(crate) fn chat_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

/// Reads body frames until the end or an error; `Err` carries what was
/// received before the error.
pub(crate) async fn read_frames(response: Response<Incoming>) -> Result<Vec<Bytes>, Vec<Bytes>> {
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => frames.extend(frame.into_data().ok()),
            Err(_) => return Err(frames),
        }
    }
    Ok(frames)
}

/// The payloads of the `data:` lines of an SSE body.
pub(crate) fn sse_data(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "events end in a blank line: {text:?}");
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

/// The concatenated `delta.content` of streamed chunk payloads.
pub(crate) fn streamed_content(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .filter_map(|e| {
            let value: Value = serde_json::from_str(e).unwrap();
            value["choices"][0]["delta"]["content"].as_str().map(str::to_owned)
        })
        .collect()
}

/// A raw HTTP/1.1 POST.
pub(crate) fn raw_post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Connects and writes `request` on a raw socket.
pub(crate) async fn raw_send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Reads from a raw socket until `needle` has arrived.
pub(crate) async fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !received.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "EOF before {needle:?}");
        received.extend_from_slice(&buf[..n]);
    }
    received
}
