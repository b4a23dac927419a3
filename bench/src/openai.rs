//! OpenAI chat-completions wire format: what the mock reads from a request
//! and the bodies it answers with.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::StreamParts;
use crate::tools::{ToolLayout, ARGUMENTS_JSON};

/// Fixed id of every answer.
const ID: &str = "chatcmpl-mock";
/// Fixed `created` timestamp of every answer.
const CREATED: u64 = 1_700_000_000;
/// Model named in answers to requests without a `model`.
pub(crate) const DEFAULT_MODEL: &str = "mock-model";
/// Completion tokens reported in `usage`.
pub(crate) const COMPLETION_TOKENS: u64 = 5;
/// The SSE event that ends a stream.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";
/// Fixed id of every tool call.
const TOOL_CALL_ID: &str = "call_mock_1";

/// The parts of a chat request that shape the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChatParams {
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) prompt_tokens: u64,
    /// The tool the answer calls instead of answering with text ([`crate::tools`]).
    pub(crate) tool: Option<String>,
    /// Anthropic extended thinking asked for (`thinking.type` = `enabled`): Anthropic-shaped
    /// answers open with a thinking block.
    pub(crate) thinking: bool,
}

impl ChatParams {
    /// Reads a chat request body whose tools are laid out as `tools` says; `Err` holds why
    /// it is not valid JSON.
    pub(crate) fn parse(body: &[u8], tools: ToolLayout) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let body_len = u64::try_from(body.len()).unwrap_or(u64::MAX);
        Ok(ChatParams {
            model: value.get("model").and_then(Value::as_str).unwrap_or(DEFAULT_MODEL).to_owned(),
            stream: value.get("stream").and_then(Value::as_bool) == Some(true),
            include_usage: value.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true),
            prompt_tokens: (body_len / 4).max(1),
            tool: tools.requested_tool(&value),
            thinking: value.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled"),
        })
    }
}

/// The text every mock answers with.
pub(crate) fn answer_text(name: &str) -> String {
    format!("Hello from {name}")
}

/// What a streamed answer spreads over its content events, in `pieces` parts: the text, or
/// the arguments of the tool call.
pub(crate) fn streamed_pieces(name: &str, params: &ChatParams, pieces: usize) -> Vec<String> {
    match params.tool {
        Some(_) => split_content(ARGUMENTS_JSON, pieces),
        None => split_content(&answer_text(name), pieces),
    }
}

fn finish_reason(params: &ChatParams) -> &'static str {
    if params.tool.is_some() {
        "tool_calls"
    } else {
        "stop"
    }
}

/// OpenAI's error `type` for a status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_error",
        404 => "not_found_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

fn error_value(message: &str, status: u16) -> Value {
    json!({"error": {"message": message, "type": error_type(status), "code": status}})
}

/// An OpenAI-shaped error body.
pub(crate) fn error_body(message: &str, status: u16) -> Bytes {
    Bytes::from(error_value(message, status).to_string())
}

/// The message of an injected failure.
pub(crate) fn injected_message(name: &str, status: u16) -> String {
    format!("mock {name}: injected {status}")
}

fn usage(prompt_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt_tokens + COMPLETION_TOKENS,
    })
}

/// A non-streamed `chat.completion`: text, or a call to the requested tool.
pub(crate) fn completion(name: &str, params: &ChatParams) -> Bytes {
    let message = match &params.tool {
        Some(tool) => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": tool, "arguments": ARGUMENTS_JSON},
            }],
        }),
        None => json!({"role": "assistant", "content": answer_text(name)}),
    };
    let body = json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": params.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(params),
        }],
        "usage": usage(params.prompt_tokens),
    });
    Bytes::from(body.to_string())
}

/// One SSE event carrying `value`.
pub(crate) fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn chunk(model: &str, choices: Value) -> Value {
    json!({
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": choices,
    })
}

/// Splits `text` into `pieces` consecutive parts (some may be empty).
pub(crate) fn split_content(text: &str, pieces: usize) -> Vec<String> {
    let pieces = pieces.max(1);
    let chars: Vec<char> = text.chars().collect();
    (0..pieces)
        .map(|i| {
            let start = i * chars.len() / pieces;
            let end = (i + 1) * chars.len() / pieces;
            chars[start..end].iter().collect()
        })
        .collect()
}

fn delta_event(model: &str, delta: Value) -> Bytes {
    sse(&chunk(model, json!([{"index": 0, "delta": delta, "finish_reason": null}])))
}

/// A streamed answer. Text: one chunk per piece, the first with the role. A tool call: a
/// chunk opening the call (role, id, name), then one per piece of its arguments.
pub(crate) fn stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    let model = params.model.as_str();
    let pieces = streamed_pieces(name, params, pieces).into_iter();
    let (head, content) = match &params.tool {
        Some(tool) => {
            let call = json!({"index": 0, "id": TOOL_CALL_ID, "type": "function",
                "function": {"name": tool, "arguments": ""}});
            let open = delta_event(model, json!({"role": "assistant", "content": null, "tool_calls": [call]}));
            let content = pieces
                .map(|piece| {
                    delta_event(model, json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
                })
                .collect();
            (vec![open], content)
        }
        None => {
            let content = pieces
                .enumerate()
                .map(|(i, piece)| {
                    let delta =
                        if i == 0 { json!({"role": "assistant", "content": piece}) } else { json!({"content": piece}) };
                    delta_event(model, delta)
                })
                .collect();
            (Vec::new(), content)
        }
    };
    StreamParts { head, content, tail: closing_events(params) }
}

/// The events after the content of a complete stream: the finishing chunk,
/// the usage chunk when asked for, and `[DONE]`.
pub(crate) fn closing_events(params: &ChatParams) -> Vec<Bytes> {
    let finish = json!([{"index": 0, "delta": {}, "finish_reason": finish_reason(params)}]);
    let mut events = vec![sse(&chunk(&params.model, finish))];
    if params.include_usage {
        let mut usage_chunk = chunk(&params.model, json!([]));
        usage_chunk["usage"] = usage(params.prompt_tokens);
        events.push(sse(&usage_chunk));
    }
    events.push(Bytes::from_static(DONE));
    events
}

/// An SSE event carrying an OpenAI error.
pub(crate) fn error_event(message: &str, status: u16) -> Bytes {
    sse(&error_value(message, status))
}

/// The body of `GET /v1/models` and `GET /health`.
pub(crate) fn models_list() -> Bytes {
    Bytes::from(json!({"object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model"}]}).to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn split_keeps_the_text() {
        for pieces in [0, 1, 2, 3, 7, 15, 40] {
            let parts = split_content("Hello from alpha", pieces);
            assert_eq!(parts.len(), pieces.max(1));
            assert_eq!(parts.concat(), "Hello from alpha");
        }
        assert_eq!(split_content("Hello from é", 1), vec!["Hello from é"]);
    }

    #[test]
    fn error_types() {
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(404), "not_found_error");
        assert_eq!(error_type(500), "server_error");
        assert_eq!(error_type(503), "server_error");
        assert_eq!(error_type(400), "invalid_request_error");
        assert_eq!(error_type(401), "invalid_request_error");
    }

    #[test]
    fn params_from_body() {
        let p = ChatParams::parse(
            br#"{"model":"m1","stream":true,"stream_options":{"include_usage":true}}"#,
            ToolLayout::OPENAI,
        )
        .unwrap();
        assert_eq!(p.model, "m1");
        assert!(p.stream && p.include_usage);
        let p = ChatParams::parse(b"{}", ToolLayout::OPENAI).unwrap();
        assert_eq!(p.model, DEFAULT_MODEL);
        assert!(!p.stream && !p.include_usage);
        assert_eq!(p.tool, None);
        assert_eq!(p.prompt_tokens, 1);
        assert!(ChatParams::parse(b"{not json", ToolLayout::OPENAI).is_err());
    }

    #[test]
    fn closing_events_end_with_done() {
        let mut p = ChatParams::parse(b"{}", ToolLayout::OPENAI).unwrap();
        assert_eq!(closing_events(&p).len(), 2);
        p.include_usage = true;
        let events = closing_events(&p);
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].as_ref(), DONE);
    }
}
