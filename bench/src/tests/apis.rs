//! The provider APIs beside OpenAI: Anthropic Messages, Bedrock Converse (with SigV4
//! verification and binary event-stream answers), Gemini and Azure OpenAI, each with
//! failure injection in its own error shape.

use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use super::client::{read_frames, Client};
use super::start;
use crate::bedrock::string_header_value;
use crate::{Behavior, MockLlm, TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};

/// A response read to its end (or to where it broke off).
pub(super) struct Got {
    pub(super) status: u16,
    headers: HeaderMap,
    pub(super) body: Bytes,
    complete: bool,
}

impl Got {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub(super) async fn post(mock: &MockLlm, path: &str, headers: &[(&str, &str)], body: &Value) -> Got {
    let mut client = Client::connect(mock.addr()).await;
    let response = client.send("POST", path, headers, body.to_string()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let (frames, complete) = match read_frames(response).await {
        Ok(f) => (f, true),
        Err(f) => (f, false),
    };
    Got { status, headers, body: frames.concat().into(), complete }
}

/// `(event name, data)` of each SSE event; events may end in LF or CRLF pairs.
pub(super) fn events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = std::str::from_utf8(body).unwrap().replace("\r\n", "\n");
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|event| {
            let mut name = None;
            let mut data = Value::Null;
            for line in event.lines() {
                match line.split_once(": ") {
                    Some(("event", v)) => name = Some(v.to_owned()),
                    Some(("data", v)) => data = serde_json::from_str(v).unwrap(),
                    _ => panic!("unexpected line {line:?}"),
                }
            }
            (name, data)
        })
        .collect()
}

/// The event names of each SSE event (every event must have one).
pub(super) fn event_names(events: &[(Option<String>, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_deref().unwrap()).collect()
}

/// The Messages events of a stream whose one content block comes in three pieces.
pub(super) const MESSAGES_STREAM: [&str; 8] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

fn messages_request(stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

// ---- Anthropic ---------------------------------------------------------------------------

#[tokio::test]
async fn anthropic_message() {
    let mock = start("anth", Behavior::default()).await;
    let body = messages_request(false);
    let got = post(&mock, "/v1/messages", &[], &body).await;
    assert_eq!(got.status, 200);
    let p = (body.to_string().len() / 4) as u64;
    assert_eq!(
        got.json(),
        json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "Hello from anth"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": p, "output_tokens": 5},
        })
    );
    assert_eq!(mock.last_request().unwrap().path, "/v1/messages");
}

#[tokio::test]
async fn anthropic_stream() {
    let mock = start("anth", Behavior::default()).await;
    let got = post(&mock, "/v1/messages", &[], &messages_request(true)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    let events = events(&got.body);
    assert_eq!(event_names(&events), MESSAGES_STREAM);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_deref().unwrap(), "the type repeats the event name");
    }
    let text: String = events.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, "Hello from anth");
    assert_eq!(events[0].1["message"]["model"], "claude-test");
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[6].1["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn anthropic_failures() {
    let behavior = Behavior { retry_after: Some("2".into()), ..Behavior::failing(429) };
    let mock = start("anth", behavior).await;
    let got = post(&mock, "/v1/messages", &[], &messages_request(false)).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.header("retry-after"), Some("2"));
    assert_eq!(
        got.json(),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "mock anth: injected 429"}})
    );
    mock.set_behavior(Behavior { stream_error_first: true, status: 529, failure_rate: 0.0, ..Behavior::default() });
    let got = post(&mock, "/v1/messages", &[], &messages_request(true)).await;
    assert_eq!(got.status, 200);
    let events = events(&got.body);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0.as_deref(), Some("error"));
    assert_eq!(events[0].1["error"]["type"], "overloaded_error");

    mock.set_behavior(Behavior { stream_fail_after: Some(1), ..Behavior::default() });
    let got = post(&mock, "/v1/messages", &[], &messages_request(true)).await;
    assert!(!got.complete, "the stream breaks off");
    let names: Vec<String> = events_lenient(&got.body);
    assert_eq!(names, ["message_start", "content_block_start", "content_block_delta"]);
}

/// Event names of a stream that may have broken off after whole events.
fn events_lenient(body: &[u8]) -> Vec<String> {
    events(body).into_iter().filter_map(|(n, _)| n).collect()
}

// ---- Bedrock -----------------------------------------------------------------------------

fn converse_request() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
}

/// SigV4 headers for a request to the mock (its `host` is `mock`), signed with `secret`.
fn sigv4_headers(path: &str, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let identity: Identity =
        aws_credential_types::Credentials::new(TEST_AWS_ACCESS_KEY_ID, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-west-2")
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "POST",
        format!("http://mock{path}"),
        [("content-type", "application/json"), ("host", "mock")].into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    for (name, value) in instructions.headers() {
        headers.push((name.to_owned(), value.to_owned()));
    }
    headers
}

async fn post_signed(mock: &MockLlm, path: &str, body: &Value, secret: &str) -> Got {
    let headers = sigv4_headers(path, body.to_string().as_bytes(), secret);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    post(mock, path, &headers, body).await
}

#[tokio::test]
async fn bedrock_converse_with_a_valid_signature() {
    let mock = start("bed", Behavior::default()).await;
    let path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    let body = converse_request();
    let got = post_signed(&mock, path, &body, TEST_AWS_SECRET_ACCESS_KEY).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let p = (body.to_string().len() / 4) as u64;
    assert_eq!(
        got.json(),
        json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello from bed"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": p, "outputTokens": 5, "totalTokens": p + 5},
            "metrics": {"latencyMs": 0},
        })
    );
    let recorded = mock.last_request().unwrap();
    assert_eq!(recorded.sigv4_valid, Some(true));
    assert_eq!(recorded.path, path);
    let stats = super::client::call(mock.addr(), "GET", "/__mock/stats", "").await.json();
    assert_eq!(stats["last_request"]["sigv4_valid"], true);
}

#[tokio::test]
async fn bedrock_rejects_a_bad_signature_and_records_unsigned_requests() {
    let mock = start("bed", Behavior::default()).await;
    let path = "/model/m/converse";
    let got = post_signed(&mock, path, &converse_request(), "wrong-secret").await;
    assert_eq!(got.status, 403);
    assert_eq!(got.header("x-amzn-errortype"), Some("InvalidSignatureException"));
    assert!(got.json()["message"].as_str().unwrap().contains("signature"));
    assert_eq!(mock.last_request().unwrap().sigv4_valid, Some(false));

    let got = post(&mock, path, &[("authorization", "Bearer bedrock-api-key")], &converse_request()).await;
    assert_eq!(got.status, 200);
    assert_eq!(mock.last_request().unwrap().sigv4_valid, None);
    let stats = super::client::call(mock.addr(), "GET", "/__mock/stats", "").await.json();
    assert_eq!(stats["last_request"]["sigv4_valid"], Value::Null);
}

/// The event (or exception) type of each event-stream frame.
pub(super) fn frame_kinds(frames: &[(String, String, Value)]) -> Vec<&str> {
    frames.iter().map(|(k, _, _)| k.as_str()).collect()
}

/// (event type or exception type, message type, payload) of each event-stream frame.
pub(super) fn frames(mut body: Bytes) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let message = aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap();
        let header = |n: &str| string_header_value(&message, n);
        let kind = header(":event-type").or_else(|| header(":exception-type")).unwrap();
        let payload = serde_json::from_slice(message.payload()).unwrap();
        out.push((kind, header(":message-type").unwrap(), payload));
    }
    out
}

#[tokio::test]
async fn bedrock_converse_stream() {
    let mock = start("bed", Behavior::default()).await;
    let path = "/model/us.amazon.nova-lite-v1%3A0/converse-stream";
    let got = post_signed(&mock, path, &converse_request(), TEST_AWS_SECRET_ACCESS_KEY).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/vnd.amazon.eventstream"));
    let frames = frames(got.body);
    assert_eq!(
        frame_kinds(&frames),
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert!(frames.iter().all(|(_, m, _)| m == "event"));
    let text: String = frames.iter().filter_map(|(_, _, p)| p["delta"]["text"].as_str()).collect();
    assert_eq!(text, "Hello from bed");
    assert_eq!(frames[5].2["stopReason"], "end_turn");
    assert_eq!(frames[6].2["usage"]["outputTokens"], 5);
    assert_eq!(mock.last_request().unwrap().sigv4_valid, Some(true));
}

#[tokio::test]
async fn bedrock_failures() {
    let mock = start("bed", Behavior::failing(429)).await;
    let got = post(&mock, "/model/m/converse", &[], &converse_request()).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.header("x-amzn-errortype"), Some("ThrottlingException"));
    assert_eq!(got.json(), json!({"message": "mock bed: injected 429"}));

    mock.set_behavior(Behavior { stream_error_first: true, ..Behavior::default() });
    let got = post(&mock, "/model/m/converse-stream", &[], &converse_request()).await;
    assert_eq!(got.status, 200);
    let frames = frames(got.body);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, "internalServerException");
    assert_eq!(frames[0].1, "exception");
    assert!(frames[0].2["message"].as_str().unwrap().starts_with("mock bed:"));

    mock.set_behavior(Behavior { stream_fail_after: Some(2), ..Behavior::default() });
    let got = post(&mock, "/model/m/converse-stream", &[], &converse_request()).await;
    assert!(!got.complete);
    let kinds: Vec<String> = self::frames(got.body).into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(kinds, ["messageStart", "contentBlockDelta", "contentBlockDelta"]);
}

// ---- Gemini ------------------------------------------------------------------------------

fn gemini_request() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
}

#[tokio::test]
async fn gemini_generate_content() {
    let mock = start("gem", Behavior::default()).await;
    let body = gemini_request();
    let got = post(&mock, "/v1beta/models/gemini-2.5-flash:generateContent", &[], &body).await;
    assert_eq!(got.status, 200);
    let p = (body.to_string().len() / 4) as u64;
    assert_eq!(
        got.json(),
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from gem"}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": 5, "totalTokenCount": p + 5},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mock-response",
        })
    );
}

#[tokio::test]
async fn gemini_stream_needs_alt_sse() {
    let mock = start("gem", Behavior::default()).await;
    let got = post(&mock, "/v1beta/models/g:streamGenerateContent?alt=sse", &[], &gemini_request()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    assert!(std::str::from_utf8(&got.body).unwrap().contains("}\r\n\r\ndata: "));
    let events = events(&got.body);
    assert_eq!(events.len(), 4);
    let text: String =
        events.iter().filter_map(|(_, d)| d["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, "Hello from gem");
    let last = &events[3].1;
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 5);
    assert_eq!(mock.last_request().unwrap().query.as_deref(), Some("alt=sse"));

    let got = post(&mock, "/v1beta/models/g:streamGenerateContent", &[], &gemini_request()).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.json()["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn gemini_failures() {
    let mock = start("gem", Behavior::failing(503)).await;
    let got = post(&mock, "/v1beta/models/g:generateContent", &[], &gemini_request()).await;
    assert_eq!(got.status, 503);
    assert_eq!(
        got.json(),
        json!({"error": {"code": 503, "message": "mock gem: injected 503", "status": "UNAVAILABLE"}})
    );
    mock.set_behavior(Behavior { stream_error_first: true, ..Behavior::default() });
    let got = post(&mock, "/v1beta/models/g:streamGenerateContent?alt=sse", &[], &gemini_request()).await;
    let events = events(&got.body);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["error"]["status"], "INTERNAL");
}

// ---- Azure -------------------------------------------------------------------------------

#[tokio::test]
async fn azure_requires_an_api_key() {
    let mock = start("az", Behavior::default()).await;
    let path = "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21";
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let got = post(&mock, path, &[], &body).await;
    assert_eq!(got.status, 401);
    assert!(got.json()["error"]["message"].as_str().unwrap().contains("api-key"));

    let got = post(&mock, path, &[("api-key", "k")], &body).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["object"], "chat.completion");
    assert_eq!(got.json()["choices"][0]["message"]["content"], "Hello from az");
    let recorded = mock.last_request().unwrap();
    assert_eq!(recorded.path, "/openai/deployments/gpt-4o-prod/chat/completions");
    assert_eq!(recorded.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(recorded.header("api-key"), Some("k"));

    mock.set_behavior(Behavior::failing(429));
    let got = post(&mock, path, &[("api-key", "k")], &body).await;
    assert_eq!(got.status, 429);
    assert_eq!(got.json()["error"]["type"], "rate_limit_error");
}
