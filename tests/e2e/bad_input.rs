//! Requests the gateway refuses, and what it answers when no provider can.

use crate::harness::*;

async fn gateway(mock_port: u16, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "{extra}routes:\n  - {{name: r, match: {{pathPrefix: /v1}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n",
        provider_x("p", mock_port, "", "")
    ))
    .await
}

fn assert_openai_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    let msg = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message in {}", r.body));
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(v["error"]["type"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_400_and_reaches_nobody() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(mock.port(), "").await;
    let r = post(&gw.url("/v1/chat/completions"), "{\"model\": \"m\", \"messages\": [").await;
    assert_openai_error(&r, 400, "not valid JSON");
    let r = post(&gw.url("/v1/chat/completions"), "[1, 2]").await;
    assert_openai_error(&r, 400, "JSON object");
    let r = post(&gw.url("/v1/chat/completions"), "{\"model\": 42}").await;
    assert_openai_error(&r, 400, "model");
    assert_eq!(mock.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_limit_is_413() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(mock.port(), "limits: {maxRequestBodyBytes: 1000}\n").await;
    let big = serde_json::json!({"messages": [{"role": "user", "content": "x".repeat(2000)}]}).to_string();
    let r = post(&gw.url("/v1/chat/completions"), big).await;
    assert_openai_error(&r, 413, "1000 bytes");
    // Chunked upload without a length: refused while reading.
    let mut raw = String::from("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        raw.push_str(&format!("3e8\r\n{}\r\n", "x".repeat(1000)));
    }
    raw.push_str("0\r\n\r\n");
    let answer = raw_exchange(gw.port, raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let ok = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(ok.status, 200, "a body under the limit passes");
    assert_eq!(mock.requests(), 1);
}

/// Writes raw bytes to the gateway and returns what it answers until it closes or pauses.
async fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_path_is_404() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = gateway(mock.port(), "").await;
    let r = post_json(&gw.url("/nowhere"), &chat(None)).await;
    assert_openai_error(&r, 404, "/nowhere");
    assert_eq!(mock.requests(), 0);
}

/// When every provider fails with a status, the client gets the last provider's answer as
/// it came.
#[tokio::test(flavor = "multi_thread")]
async fn all_failing_returns_last_upstream_answer() {
    let a = MockLlm::start("a", Behavior { status: 503, ..Behavior::default() }).await.unwrap();
    let b = MockLlm::start("b", Behavior { status: 429, retry_after: Some("7".into()), ..Behavior::default() })
        .await
        .unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n    retry: {{attempts: 2}}\n",
        provider("a", &a, ""),
        provider("b", &b, "")
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(r.provider(), "b");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("mock b"));
    // With more attempts than providers, the earlier answer is kept when nobody is left.
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n    retry: {{attempts: 3}}\n",
        provider("a", &a, "")
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (503, "a", Some("1")));
}

/// When no provider answers at all: 502 (or 504 on timeouts) in the OpenAI error shape.
#[tokio::test(flavor = "multi_thread")]
async fn no_answer_is_502_or_504() {
    let gw = gateway(free_port(), "").await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_openai_error(&r, 502, "no provider could answer");
    let slow = MockLlm::start("slow", Behavior { hang: true, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, timeouts: {{firstByte: 200ms}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n",
        provider("slow", &slow, "")
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_openai_error(&r, 504, "no provider could answer");
}
