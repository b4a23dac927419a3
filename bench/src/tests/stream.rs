//! Streamed (SSE) answers and their broken variants.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::{chat_request, read_frames, sse_data, streamed_content, Client};
use super::start;
use crate::{Behavior, MockLlm};

fn parse(event: &str) -> Value {
    serde_json::from_str(event).unwrap()
}

/// Sends a streamed chat request; returns the status, the content type and
/// the frames (`Err` if the body broke off).
async fn stream(mock: &MockLlm, body: &Value) -> (u16, String, Result<Vec<bytes::Bytes>, Vec<bytes::Bytes>>) {
    let mut client = Client::connect(mock.addr()).await;
    let response = client.send("POST", "/v1/chat/completions", &[], body.to_string()).await;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, read_frames(response).await)
}

#[tokio::test]
async fn streams_chunks_ending_in_done() {
    for chunks in [1, 3, 5] {
        let behavior = Behavior { stream_chunks: chunks, ..Behavior::default() };
        let mock = start("alpha", behavior).await;
        let mut client = Client::connect(mock.addr()).await;
        let response = client.send("POST", "/v1/chat/completions", &[], chat_request("gpt-s", true).to_string()).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        assert!(response.headers().get("content-length").is_none());
        let body = read_frames(response).await.unwrap().concat();
        let events = sse_data(&body);
        assert_eq!(events.len(), chunks + 2, "{events:?}");
        assert_eq!(events.last().unwrap(), "[DONE]");
        assert_eq!(streamed_content(&events), "Hello from alpha");

        let first = parse(&events[0]);
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["id"], "chatcmpl-mock");
        assert_eq!(first["created"], 1_700_000_000);
        assert_eq!(first["model"], "gpt-s");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
        for event in &events[1..chunks] {
            assert!(parse(event)["choices"][0]["delta"].get("role").is_none());
        }
        let last = parse(&events[chunks]);
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(mock.cancelled(), 0);
    }
}

#[tokio::test]
async fn include_usage_adds_a_usage_chunk() {
    let mock = start("u", Behavior::default()).await;
    let mut body = chat_request("m", true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, _, frames) = stream(&mock, &body).await;
    assert_eq!(status, 200);
    let events = sse_data(&frames.unwrap().concat());
    assert_eq!(events.len(), 3 + 3);
    assert_eq!(events[5], "[DONE]");
    let usage = parse(&events[4]);
    assert_eq!(usage["choices"], json!([]));
    let p = (body.to_string().len() / 4) as u64;
    assert_eq!(usage["usage"], json!({"prompt_tokens": p, "completion_tokens": 5, "total_tokens": p + 5}));
}

#[tokio::test]
async fn chunk_delay_spaces_the_events() {
    let behavior = Behavior { stream_chunks: 3, chunk_delay_ms: 50, ..Behavior::default() };
    let mock = start("d", behavior).await;
    let started = Instant::now();
    let (_, _, frames) = stream(&mock, &chat_request("m", true)).await;
    let frames = frames.unwrap();
    // 3 content events, the finishing chunk and [DONE]: 4 gaps.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(frames.len(), 5, "one frame per event");
}

#[tokio::test]
async fn stream_comment_first_opens_with_a_comment_then_waits() {
    let behavior =
        Behavior { stream_chunks: 1, chunk_delay_ms: 100, stream_comment_first: true, ..Behavior::default() };
    let mock = start("c", behavior).await;
    let mut client = Client::connect(mock.addr()).await;
    let started = Instant::now();
    let response = client.send("POST", "/v1/chat/completions", &[], chat_request("m", true).to_string()).await;
    assert!(started.elapsed() < Duration::from_millis(100), "the head comes at once");
    let frames = read_frames(response).await.unwrap();
    assert_eq!(frames[0], ": waiting\n\n", "a comment, no content");
    assert!(started.elapsed() >= Duration::from_millis(100), "content after chunk_delay");
    assert_eq!(sse_data(&frames[1..].concat()).last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn stream_error_first_sends_an_error_event() {
    let behavior = Behavior { stream_error_first: true, ..Behavior::default() };
    let mock = start("ef", behavior).await;
    let (status, content_type, frames) = stream(&mock, &chat_request("m", true)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    let events = sse_data(&frames.unwrap().concat());
    assert_eq!(events.len(), 1, "{events:?}");
    let error = parse(&events[0]);
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(error["error"]["code"], 500);
    assert!(error["error"]["message"].as_str().unwrap().starts_with("mock ef:"));
}

#[tokio::test]
async fn stream_close_early_sends_headers_then_closes() {
    let behavior = Behavior { stream_close_early: true, ..Behavior::default() };
    let mock = start("ce", behavior).await;
    let (status, content_type, frames) = stream(&mock, &chat_request("m", true)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    let received = frames.expect_err("the body breaks off");
    assert!(received.concat().is_empty(), "{received:?}");
    assert_eq!(mock.cancelled(), 0, "the server closed, not the client");
}

#[tokio::test]
async fn stream_fail_after_breaks_off_after_n_chunks() {
    let behavior = Behavior { stream_chunks: 5, stream_fail_after: Some(2), ..Behavior::default() };
    let mock = start("fa", behavior).await;
    let (status, _, frames) = stream(&mock, &chat_request("m", true)).await;
    assert_eq!(status, 200);
    let received = frames.expect_err("the body breaks off");
    let events = sse_data(&received.concat());
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e != "[DONE]"));
    assert_eq!(mock.cancelled(), 0, "the server aborted, not the client");
}

#[tokio::test]
async fn non_streamed_requests_ignore_stream_failures() {
    let behavior = Behavior { stream_close_early: true, ..Behavior::default() };
    let mock = start("ns", behavior).await;
    let answer = Client::connect(mock.addr()).await.chat(&chat_request("m", false)).await;
    assert_eq!(answer.status, 200);
}
