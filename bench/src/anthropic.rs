//! Anthropic Messages wire format (`POST /v1/messages`): the message the mock answers
//! with, its SSE event sequence, and Anthropic-shaped errors.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::StreamParts;
use crate::openai::{answer_text, streamed_pieces, ChatParams, COMPLETION_TOKENS};
use crate::tools;

/// Fixed id of every answer.
const ID: &str = "msg_mock";
/// Fixed id of every `tool_use` block.
const TOOL_USE_ID: &str = "toolu_mock_1";
/// The thinking of an answer to a request with `thinking` enabled.
pub(crate) const THINKING: &str = "Let me think about this.";
/// The signature of that thinking block.
const SIGNATURE: &str = "mock-signature";

/// Anthropic's error `type` for a status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

pub(crate) fn error_value(message: &str, status: u16) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

/// An Anthropic-shaped error body.
pub(crate) fn error_body(message: &str, status: u16) -> Bytes {
    Bytes::from(error_value(message, status).to_string())
}

/// An `event: NAME` SSE event carrying `value`.
fn event(name: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {value}\n\n"))
}

/// The in-stream error event.
pub(crate) fn error_event(message: &str, status: u16) -> Bytes {
    event("error", &error_value(message, status))
}

/// The stop reason of an answer (Bedrock Converse uses the same names).
pub(crate) fn stop_reason(params: &ChatParams) -> &'static str {
    if params.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// The answer's content block: complete (`whole`), or empty as a stream's
/// `content_block_start` opens it.
fn content_block(name: &str, params: &ChatParams, whole: bool) -> Value {
    match &params.tool {
        Some(tool) => {
            let input = if whole { tools::arguments() } else { json!({}) };
            json!({"type": "tool_use", "id": TOOL_USE_ID, "name": tool, "input": input})
        }
        None => json!({"type": "text", "text": if whole { answer_text(name) } else { String::new() }}),
    }
}

/// A non-streamed message: text, or a `tool_use` block (after a thinking block when
/// thinking was asked for).
pub(crate) fn message(name: &str, params: &ChatParams) -> Bytes {
    let mut content = Vec::new();
    if params.thinking {
        content.push(json!({"type": "thinking", "thinking": THINKING, "signature": SIGNATURE}));
    }
    content.push(content_block(name, params, true));
    let body = json!({
        "id": ID,
        "type": "message",
        "role": "assistant",
        "model": params.model,
        "content": content,
        "stop_reason": stop_reason(params),
        "stop_sequence": null,
        "usage": {"input_tokens": params.prompt_tokens, "output_tokens": COMPLETION_TOKENS},
    });
    Bytes::from(body.to_string())
}

/// The events of a stream, each as (event name, JSON), in three parts as [`StreamParts`].
pub(crate) type EventParts = (Vec<(String, Value)>, Vec<(String, Value)>, Vec<(String, Value)>);

/// `message_start`, `content_block_start`, one `content_block_delta` per piece (of the text,
/// or of the tool input's JSON), then `content_block_stop`, `message_delta` and
/// `message_stop`; with thinking asked for, a thinking block (`thinking_delta`,
/// `signature_delta`) comes first.
pub(crate) fn stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    let (head, content, tail) = stream_events(name, params, pieces);
    let sse = |events: Vec<(String, Value)>| events.iter().map(|(n, v)| event(n, v)).collect();
    StreamParts { head: sse(head), content: sse(content), tail: sse(tail) }
}

/// The events of [`stream_parts`] before they are written as SSE (Bedrock wraps them).
pub(crate) fn stream_events(name: &str, params: &ChatParams, pieces: usize) -> EventParts {
    let start = json!({
        "type": "message_start",
        "message": {
            "id": ID, "type": "message", "role": "assistant", "model": params.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": params.prompt_tokens, "output_tokens": 1},
        },
    });
    let ev = |name: &str, value: Value| (name.to_owned(), value);
    let mut head = vec![ev("message_start", start)];
    let mut index = 0;
    if params.thinking {
        let block = json!({"type": "thinking", "thinking": "", "signature": ""});
        head.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ));
        for delta in [
            json!({"type": "thinking_delta", "thinking": THINKING}),
            json!({"type": "signature_delta", "signature": SIGNATURE}),
        ] {
            head.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta})));
        }
        head.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        index = 1;
    }
    let block_start =
        json!({"type": "content_block_start", "index": index, "content_block": content_block(name, params, false)});
    head.push(ev("content_block_start", block_start));
    let content = streamed_pieces(name, params, pieces)
        .into_iter()
        .map(|piece| {
            let delta = match params.tool {
                Some(_) => json!({"type": "input_json_delta", "partial_json": piece}),
                None => json!({"type": "text_delta", "text": piece}),
            };
            ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
        })
        .collect();
    let tail = vec![
        ev("content_block_stop", json!({"type": "content_block_stop", "index": index})),
        ev(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(params), "stop_sequence": null},
                "usage": {"output_tokens": COMPLETION_TOKENS},
            }),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    (head, content, tail)
}

#[cfg(test)]
mod tests {
    use super::error_type;

    #[test]
    fn error_types() {
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(404), "not_found_error");
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(500), "api_error");
        assert_eq!(error_type(400), "invalid_request_error");
        assert_eq!(error_type(401), "authentication_error");
    }
}
