//! Stream translation: one snapshot per conversion, every input also fed in awkward splits
//! (byte by byte, small pieces, random cuts) with identical output; output is produced as
//! input arrives; garbage and truncation fail without panicking.

use super::stream::translator;
use super::test_support::*;
use super::{stream_translator, ClientApi, StreamTranslator, TranslateError};
use crate::config::ProviderKind;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

fn make(client: ClientApi, kind: &ProviderKind, include_usage: bool) -> impl Fn() -> Box<dyn StreamTranslator> + '_ {
    move || translator(client, kind, meta(), include_usage)
}

/// Output for `input` fed whole; asserts every other way of splitting it gives the same.
fn in_all_splits(make: impl Fn() -> Box<dyn StreamTranslator>, input: &[u8]) -> Bytes {
    let whole = run_stream(make(), input, 0);
    for piece in [1, 2, 3, 5, 13, 64] {
        assert_eq!(run_stream(make(), input, piece), whole, "pieces of {piece} bytes");
    }
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..50 {
        let mut cuts: Vec<usize> = (0..6).map(|_| rng.usize(0..=input.len())).collect();
        cuts.sort_unstable();
        assert_eq!(run_stream_cut(make(), input, &cuts), whole, "cuts {cuts:?}");
    }
    whole
}

fn anthropic_events() -> Vec<(Option<&'static str>, Value)> {
    vec![
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (Some("ping"), json!({"type": "ping"})),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", wörld 🌍"}}),
        ),
        (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0})),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        ),
        (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 1})),
        (
            Some("message_delta"),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
        ),
        (Some("message_stop"), json!({"type": "message_stop"})),
    ]
}

fn openai_chunks() -> Vec<(Option<&'static str>, Value)> {
    let chunk = |delta: Value, finish: Value| {
        (
            None,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hi"}), Value::Null),
        chunk(json!({"content": " thére"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Rome\"}"}}]}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        (
            None,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}}),
        ),
    ]
}

fn openai_input() -> String {
    sse_input(&openai_chunks()) + "data: [DONE]\n\n"
}

fn bedrock_events() -> Vec<(&'static str, Value)> {
    vec![
        ("messageStart", json!({"role": "assistant", "p": "abcd"})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "ab"})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": " from Bedrock"}})),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}),
        ),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Lima\"}"}}})),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 40, "outputTokens": 18, "totalTokens": 58}, "metrics": {"latencyMs": 420}}),
        ),
    ]
}

fn bedrock_input() -> Vec<u8> {
    bedrock_events().iter().flat_map(|(kind, payload)| mock_llm::bedrock_event_frame(kind, payload).to_vec()).collect()
}

fn bedrock_rendered() -> Value {
    bedrock_events().into_iter().map(|(kind, payload)| json!({"event_type": kind, "payload": payload})).collect()
}

fn gemini_input() -> String {
    let chunks = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo, checking."}]}, "index": 0}], "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 11, "totalTokenCount": 20}, "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}),
    ];
    // Gemini ends its events with CRLF pairs.
    chunks.iter().map(|c| format!("data: {c}\r\n\r\n")).collect()
}

/// SSE input text as one string per event, for the snapshots.
fn text_lines(input: &str) -> Value {
    input.replace("\r\n", "\n").split_terminator("\n\n").map(|e| json!(e)).collect()
}

#[test]
fn anthropic_sse_to_openai_chunks() {
    let input = sse_input(&anthropic_events());
    let out = in_all_splits(make(ClientApi::OpenAiChat, &anthropic(), true), input.as_bytes());
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    insta::assert_yaml_snapshot!(
        "stream_anthropic_to_openai",
        json!({"input": text_lines(&input), "output": render_sse(&out)})
    );
}

#[test]
fn bedrock_eventstream_to_openai_chunks() {
    let input = bedrock_input();
    let out = in_all_splits(make(ClientApi::OpenAiChat, &bedrock(), true), &input);
    insta::assert_yaml_snapshot!(
        "stream_bedrock_to_openai",
        json!({"input": bedrock_rendered(), "output": render_sse(&out)})
    );
}

#[test]
fn gemini_sse_to_openai_chunks() {
    let input = gemini_input();
    let out = in_all_splits(make(ClientApi::OpenAiChat, &gemini(), true), input.as_bytes());
    insta::assert_yaml_snapshot!(
        "stream_gemini_to_openai",
        json!({"input": text_lines(&input), "output": render_sse(&out)})
    );
}

#[test]
fn openai_chunks_to_anthropic_sse() {
    let input = openai_input();
    let out = in_all_splits(make(ClientApi::AnthropicMessages, &openai(), false), input.as_bytes());
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("event: message_start\ndata: "));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    insta::assert_yaml_snapshot!(
        "stream_openai_to_anthropic",
        json!({"input": text_lines(&input), "output": render_sse(&out)})
    );
}

#[test]
fn bedrock_eventstream_to_anthropic_sse() {
    let input = bedrock_input();
    let out = in_all_splits(make(ClientApi::AnthropicMessages, &bedrock(), false), &input);
    insta::assert_yaml_snapshot!(
        "stream_bedrock_to_anthropic",
        json!({"input": bedrock_rendered(), "output": render_sse(&out)})
    );
}

#[test]
fn gemini_sse_to_anthropic_sse() {
    let input = gemini_input();
    let out = in_all_splits(make(ClientApi::AnthropicMessages, &gemini(), false), input.as_bytes());
    insta::assert_yaml_snapshot!(
        "stream_gemini_to_anthropic",
        json!({"input": text_lines(&input), "output": render_sse(&out)})
    );
}

#[test]
fn stream_errors_become_the_clients_error_event() {
    let anthropic_error = sse_input(&[
        (Some("message_start"), anthropic_events()[0].1.clone()),
        (Some("error"), json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
    ]);
    let openai_error =
        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"code\":null}}\n\n"
            .to_string();
    let gemini_error =
        "data: {\"error\":{\"code\":429,\"message\":\"Resource exhausted\",\"status\":\"RESOURCE_EXHAUSTED\"}}\r\n\r\n"
            .to_string();
    let mut bedrock_error = mock_llm::bedrock_event_frame("messageStart", &json!({"role": "assistant"})).to_vec();
    bedrock_error.extend_from_slice(&mock_llm::bedrock_exception_frame(
        "throttlingException",
        "Too many tokens, please wait before trying again.",
    ));
    let cases: Vec<(&str, ClientApi, ProviderKind, Vec<u8>, Value)> = vec![
        (
            "anthropic error event to openai",
            ClientApi::OpenAiChat,
            anthropic(),
            anthropic_error.clone().into_bytes(),
            text_lines(&anthropic_error),
        ),
        (
            "bedrock exception to openai",
            ClientApi::OpenAiChat,
            bedrock(),
            bedrock_error.clone(),
            json!([
                "messageStart frame",
                "exception frame throttlingException: Too many tokens, please wait before trying again."
            ]),
        ),
        (
            "gemini error to openai",
            ClientApi::OpenAiChat,
            gemini(),
            gemini_error.clone().into_bytes(),
            text_lines(&gemini_error),
        ),
        (
            "openai error to anthropic",
            ClientApi::AnthropicMessages,
            openai(),
            openai_error.clone().into_bytes(),
            text_lines(&openai_error),
        ),
        (
            "bedrock exception to anthropic",
            ClientApi::AnthropicMessages,
            bedrock(),
            bedrock_error,
            json!([
                "messageStart frame",
                "exception frame throttlingException: Too many tokens, please wait before trying again."
            ]),
        ),
        (
            "gemini error to anthropic",
            ClientApi::AnthropicMessages,
            gemini(),
            gemini_error.clone().into_bytes(),
            text_lines(&gemini_error),
        ),
    ];
    let table: Vec<Value> = cases
        .into_iter()
        .map(|(case, client, kind, input, shown)| {
            let out = in_all_splits(make(client, &kind, true), &input);
            let text = std::str::from_utf8(&out).unwrap();
            assert!(
                !text.contains("[DONE]") && !text.contains("message_stop"),
                "{case}: no terminal event after an error"
            );
            json!({"case": case, "input": shown, "output": render_sse(&out)})
        })
        .collect();
    insta::assert_yaml_snapshot!("stream_errors", table);
}

#[test]
fn usage_chunk_only_when_asked() {
    let input = sse_input(&anthropic_events());
    let out = run_stream(make(ClientApi::OpenAiChat, &anthropic(), false)(), input.as_bytes(), 0);
    let events = render_sse(&out);
    let events = events.as_array().unwrap();
    assert!(events.iter().all(|e| e["data"].get("usage").is_none()));
    assert_eq!(events.last().unwrap()["data"], "[DONE]");
}

#[test]
fn output_comes_as_input_arrives() {
    // Each input event's output is written before the next input arrives.
    let events = anthropic_events();
    let mut t = make(ClientApi::OpenAiChat, &anthropic(), true)();
    let mut out = BytesMut::new();
    t.push(sse_input(&events[..1]).as_bytes(), &mut out).unwrap();
    assert!(std::str::from_utf8(&out).unwrap().contains("\"role\":\"assistant\""));
    t.push(sse_input(&events[1..4]).as_bytes(), &mut out).unwrap();
    assert!(std::str::from_utf8(&out).unwrap().contains("\"content\":\"Hello\""));
    // Half an event: nothing new until it is complete.
    let next = sse_input(&events[4..5]);
    let before = out.len();
    t.push(&next.as_bytes()[..10], &mut out).unwrap();
    assert_eq!(out.len(), before);
    t.push(&next.as_bytes()[10..], &mut out).unwrap();
    assert!(out.len() > before);

    let frames = bedrock_input();
    let first = mock_llm::bedrock_event_frame("messageStart", &bedrock_events()[0].1).len();
    let second = first + mock_llm::bedrock_event_frame("contentBlockDelta", &bedrock_events()[1].1).len();
    let mut t = make(ClientApi::AnthropicMessages, &bedrock(), false)();
    let mut out = BytesMut::new();
    t.push(&frames[..second], &mut out).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.contains("message_start") && text.contains("Hello"), "{text}");
}

#[test]
fn no_translator_for_the_same_api() {
    assert!(stream_translator(ClientApi::OpenAiChat, &openai(), "m", true).is_none());
    assert!(stream_translator(ClientApi::OpenAiChat, &azure(), "m", true).is_none());
    assert!(stream_translator(ClientApi::AnthropicMessages, &anthropic(), "m", true).is_none());
    assert!(stream_translator(ClientApi::AnthropicMessages, &azure(), "m", true).is_some());
}

#[test]
fn clean_end_without_terminal_event_still_terminates() {
    // Upstream closed cleanly after some text: finish() emits the terminal events.
    let input = sse_input(&anthropic_events()[..4]);
    let out = run_stream(make(ClientApi::OpenAiChat, &anthropic(), false)(), input.as_bytes(), 0);
    assert!(std::str::from_utf8(&out).unwrap().ends_with("data: [DONE]\n\n"));
    let input = sse_input(&openai_chunks()[..3]);
    let out = run_stream(make(ClientApi::AnthropicMessages, &openai(), false)(), input.as_bytes(), 0);
    let text = std::str::from_utf8(&out).unwrap();
    assert!(
        text.contains("content_block_stop")
            && text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    );
}

/// Runs a translator over `input`, returning the first error.
fn try_run(mut t: Box<dyn StreamTranslator>, input: &[u8], piece: usize) -> Result<(), TranslateError> {
    let mut out = BytesMut::new();
    for chunk in input.chunks(piece.max(1)) {
        t.push(chunk, &mut out)?;
    }
    t.finish(&mut out)
}

#[test]
fn truncated_input_is_an_error() {
    let cases: Vec<(ClientApi, ProviderKind, Vec<u8>)> = vec![
        (ClientApi::OpenAiChat, anthropic(), sse_input(&anthropic_events()).into_bytes()),
        (ClientApi::OpenAiChat, bedrock(), bedrock_input()),
        (ClientApi::OpenAiChat, gemini(), gemini_input().into_bytes()),
        (ClientApi::AnthropicMessages, openai(), openai_input().into_bytes()),
    ];
    for (client, kind, input) in cases {
        // Cut inside the JSON of the second event / frame.
        let cut = if matches!(kind, ProviderKind::Bedrock { .. }) {
            mock_llm::bedrock_event_frame("messageStart", &bedrock_events()[0].1).len() + 20
        } else {
            let second_data = input.windows(6).enumerate().filter(|(_, w)| w == b"data: ").nth(1).unwrap().0;
            second_data + 20
        };
        let err = try_run(make(client, &kind, true)(), &input[..cut], 3).unwrap_err();
        assert!(matches!(err, TranslateError::Invalid(_)), "{kind:?}: {err}");
    }
}

#[test]
fn garbage_input_never_panics() {
    let mut rng = fastrand::Rng::with_seed(42);
    let valid: Vec<Vec<u8>> = vec![
        sse_input(&anthropic_events()).into_bytes(),
        bedrock_input(),
        gemini_input().into_bytes(),
        openai_input().into_bytes(),
    ];
    for (client, kind) in cross_pairs() {
        for round in 0..200 {
            let input: Vec<u8> = match round % 4 {
                // Random bytes.
                0 => (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
                // A valid stream with bytes flipped.
                1 => {
                    let mut v = valid[rng.usize(..valid.len())].clone();
                    for _ in 0..rng.usize(1..5) {
                        let i = rng.usize(..v.len());
                        v[i] = rng.u8(..);
                    }
                    v
                }
                // A valid stream cut short.
                2 => {
                    let v = &valid[rng.usize(..valid.len())];
                    v[..rng.usize(..v.len())].to_vec()
                }
                // SSE with JSON of the wrong shapes.
                _ => {
                    let data = ["{}", "[]", "1", "null", "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3}]}}]}", "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"x\"}}", "{\"candidates\":[{\"content\":{\"parts\":[{}]}}]}", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":5}}"];
                    format!("data: {}\n\n", data[rng.usize(..data.len())]).into_bytes()
                }
            };
            let _ = try_run(make(client, &kind, true)(), &input, 1 + rng.usize(..7));
        }
    }
    // A frame that claims to be enormous is refused at once, not buffered.
    let mut huge = vec![0x7f, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&[0; 12]);
    assert!(try_run(make(ClientApi::OpenAiChat, &bedrock(), true)(), &huge, 16).is_err());
}

/// Anthropic events with a thinking block, as Claude streams them.
fn claude_thinking_events() -> Vec<(Option<&'static str>, Value)> {
    let mut events = anthropic_events();
    let thinking = [
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris first."}}),
        ),
        (
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCkYI"}}),
        ),
        (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0})),
    ];
    events.splice(1..1, thinking);
    events
}

#[test]
fn bedrock_invoke_stream_is_anthropic_sse_byte_for_byte() {
    let events = claude_thinking_events();
    let input: Vec<u8> =
        events.iter().flat_map(|(_, v)| mock_llm::bedrock_chunk_frame(v.to_string().as_bytes()).to_vec()).collect();
    let kind = ProviderKind::Bedrock { region: "us-east-1".into(), anthropic: true };
    let make = || stream_translator(ClientApi::AnthropicMessages, &kind, "m", false).unwrap();
    let out = in_all_splits(make, &input);
    assert_eq!(std::str::from_utf8(&out).unwrap(), sse_input(&events), "exactly what Anthropic would have sent");
    insta::assert_yaml_snapshot!("stream_bedrock_invoke_to_anthropic", render_sse(&out));

    // An exception mid-stream becomes Anthropic's error event.
    let mut broken = mock_llm::bedrock_chunk_frame(events[0].1.to_string().as_bytes()).to_vec();
    broken.extend_from_slice(&mock_llm::bedrock_exception_frame("throttlingException", "Too many tokens"));
    let out = run_stream(make(), &broken, 0);
    insta::assert_yaml_snapshot!("stream_bedrock_invoke_exception_to_anthropic", render_sse(&out));

    // A chunk whose bytes are not an event fails without panicking.
    let bad = mock_llm::bedrock_chunk_frame(b"not json");
    assert!(try_run(make(), &bad, 0).is_err());
}

#[test]
fn anthropic_sse_to_responses_events() {
    let input = sse_input(&anthropic_events());
    let out = in_all_splits(make(ClientApi::OpenAiResponses, &anthropic(), false), input.as_bytes());
    let events = render_sse(&out);
    let names: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    for (i, e) in events.as_array().unwrap().iter().enumerate() {
        assert_eq!(e["data"]["type"], e["event"]);
        assert_eq!(e["data"]["sequence_number"], i, "numbered in order");
    }
    insta::assert_yaml_snapshot!("stream_anthropic_to_responses", events);
}
