//! Connection-level behaviour: keep-alive, reset, hang, client cancellation
//! and shutdown.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::client::{chat_request, raw_post, raw_send, read_until, Client};
use super::{start, PROMPTLY};
use crate::Behavior;

#[tokio::test]
async fn reset_closes_with_rst_and_no_response() {
    let behavior = Behavior { reset: true, ..Behavior::default() };
    let mock = start("r", behavior).await;
    let body = chat_request("m", false).to_string();
    let mut stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", &body)).await;
    let mut received = Vec::new();
    let outcome = stream.read_to_end(&mut received).await;
    assert!(received.is_empty(), "{:?}", String::from_utf8_lossy(&received));
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(mock.requests(), 1);
    let recorded = mock.last_request().unwrap();
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(mock.cancelled(), 0);
}

#[tokio::test]
async fn hang_then_client_close_counts_a_cancellation() {
    let behavior = Behavior { hang: true, ..Behavior::default() };
    let mock = start("hang", behavior).await;
    let body = chat_request("m", false).to_string();
    let stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", &body)).await;
    assert!(mock.wait_for_requests(1, PROMPTLY).await);
    assert_eq!(mock.cancelled(), 0);
    drop(stream);
    assert!(mock.wait_for_cancelled(1, PROMPTLY).await);
    assert_eq!(mock.cancelled(), 1);
}

#[tokio::test]
async fn hang_answers_nothing() {
    let behavior = Behavior { hang: true, ..Behavior::default() };
    let mock = start("hang", behavior).await;
    let mut stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", "{}")).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    assert!(read.is_err(), "no byte, no close: {read:?}");
}

#[tokio::test]
async fn client_close_during_first_byte_delay_counts_a_cancellation() {
    let behavior = Behavior { first_byte_delay_ms: 10_000, ..Behavior::default() };
    let mock = start("delay", behavior).await;
    let stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", "{}")).await;
    assert!(mock.wait_for_requests(1, PROMPTLY).await);
    drop(stream);
    assert!(mock.wait_for_cancelled(1, PROMPTLY).await);
}

#[tokio::test]
async fn client_close_mid_stream_counts_a_cancellation() {
    let behavior = Behavior { stream_chunks: 50, chunk_delay_ms: 100, ..Behavior::default() };
    let mock = start("mid", behavior).await;
    let body = chat_request("m", true).to_string();
    let mut stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", &body)).await;
    let head = read_until(&mut stream, b"data: ").await;
    assert!(head.starts_with(b"HTTP/1.1 200"));
    assert_eq!(mock.cancelled(), 0);
    drop(stream);
    assert!(mock.wait_for_cancelled(1, PROMPTLY).await);
}

#[tokio::test]
async fn wait_for_requests_times_out() {
    let mock = start("idle", Behavior::default()).await;
    let started = Instant::now();
    assert!(!mock.wait_for_requests(1, Duration::from_millis(50)).await);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(!mock.wait_for_cancelled(1, Duration::from_millis(10)).await);
}

#[tokio::test]
async fn set_behavior_applies_to_the_next_request() {
    let mock = start("switch", Behavior::default()).await;
    let mut client = Client::connect(mock.addr()).await;
    assert_eq!(client.chat(&chat_request("m", false)).await.status, 200);
    mock.set_behavior(Behavior::failing(502));
    assert_eq!(mock.behavior().status, 502);
    assert_eq!(client.chat(&chat_request("m", false)).await.status, 502);
    mock.set_behavior(Behavior::default());
    assert_eq!(client.chat(&chat_request("m", false)).await.status, 200);
    assert_eq!(mock.connections(), 1);
}

#[tokio::test]
async fn dropping_the_mock_stops_it() {
    let behavior = Behavior { hang: true, ..Behavior::default() };
    let mock = start("gone", behavior).await;
    let addr = mock.addr();
    let mut hanging = raw_send(addr, &raw_post("/v1/chat/completions", "{}")).await;
    assert!(mock.wait_for_requests(1, PROMPTLY).await);
    drop(mock);
    // The open connection is closed...
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PROMPTLY, hanging.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // ...and new ones are refused.
    let deadline = Instant::now() + PROMPTLY;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn stream_fail_after_ends_with_rst() {
    let behavior = Behavior { stream_chunks: 4, stream_fail_after: Some(1), ..Behavior::default() };
    let mock = start("rst", behavior).await;
    let body = chat_request("m", true).to_string();
    let mut stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", &body)).await;
    let received = read_until(&mut stream, b"\n\n").await;
    let mut rest = Vec::new();
    let outcome = stream.read_to_end(&mut rest).await;
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::ConnectionReset);
    let text = String::from_utf8([received, rest].concat()).unwrap();
    assert_eq!(text.matches("data: ").count(), 1, "{text}");
}

#[tokio::test]
async fn stream_close_early_ends_without_the_last_chunk() {
    let behavior = Behavior { stream_close_early: true, ..Behavior::default() };
    let mock = start("fin", behavior).await;
    let body = chat_request("m", true).to_string();
    let mut stream = raw_send(mock.addr(), &raw_post("/v1/chat/completions", &body)).await;
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await.unwrap();
    let text = String::from_utf8(received).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.ends_with("\r\n\r\n") && !text.contains("0\r\n\r\n"), "{text}");
}
