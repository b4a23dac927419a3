//! AWS Bedrock Converse wire format (`POST /model/{modelId}/converse` and
//! `/converse-stream`): the Converse answer, the binary event-stream frames of
//! ConverseStream (encoded with `aws-smithy-eventstream`: prelude, headers, both CRCs),
//! and Bedrock-shaped errors. Also InvokeModel / InvokeModelWithResponseStream for Claude
//! (`/model/{modelId}/invoke` and `/invoke-with-response-stream`): the Anthropic body and
//! answer, its events wrapped in `chunk` frames.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http::Response;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::anthropic::stop_reason;
use crate::api::StreamParts;
use crate::body::MockBody;
use crate::handler::json_response;
use crate::openai::{answer_text, streamed_pieces, ChatParams, COMPLETION_TOKENS};
use crate::tools;

/// Fixed id of every `toolUse` block.
const TOOL_USE_ID: &str = "tooluse_mock_1";

/// Content type of a ConverseStream answer.
pub(crate) const STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// (model id, stream) of a `/model/{modelId}/{op}` path whose `op` is `whole` or
/// `streamed`; the model id percent-decoded.
fn model_route(path: &str, whole: &str, streamed: &str) -> Option<(String, bool)> {
    let (model, op) = path.strip_prefix("/model/")?.rsplit_once('/')?;
    let stream = match op {
        op if op == whole => false,
        op if op == streamed => true,
        _ => return None,
    };
    let model = percent_decode_str(model).decode_utf8().ok()?.into_owned();
    (!model.is_empty()).then_some((model, stream))
}

/// (model id, stream) of a Converse path.
pub(crate) fn route(path: &str) -> Option<(String, bool)> {
    model_route(path, "converse", "converse-stream")
}

/// `anthropic_version` a Claude InvokeModel body must carry.
pub(crate) const INVOKE_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// (model id, stream) of an InvokeModel path.
pub(crate) fn invoke_route(path: &str) -> Option<(String, bool)> {
    model_route(path, "invoke", "invoke-with-response-stream")
}

/// Why a Claude InvokeModel body is refused, as Bedrock words it: the model and the
/// streaming choice belong in the path, and `anthropic_version` is required.
pub(crate) fn invoke_body_problem(body: &[u8]) -> Option<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Some("Malformed input request: not JSON".to_owned());
    };
    for key in ["model", "stream"] {
        if value.get(key).is_some() {
            return Some(format!("Malformed input request: extraneous key [{key}] is not permitted"));
        }
    }
    match value.get("anthropic_version").and_then(Value::as_str) {
        Some(INVOKE_ANTHROPIC_VERSION) => None,
        Some(other) => Some(format!("Malformed input request: anthropic_version {other:?} is not supported")),
        None => Some("Malformed input request: #: required key [anthropic_version] not found".to_owned()),
    }
}

/// One InvokeModelWithResponseStream `chunk` frame carrying one Anthropic event's JSON
/// (base64 in `bytes`, as Bedrock sends it).
///
/// The gateway's tests build their input with this too.
pub fn bedrock_chunk_frame(event_json: &[u8]) -> Bytes {
    let payload = json!({"bytes": aws_smithy_types::base64::encode(event_json)});
    let message = Message::new(payload.to_string())
        .add_header(string_header(":event-type", "chunk"))
        .add_header(string_header(":content-type", "application/json"))
        .add_header(string_header(":message-type", "event"));
    frame(&message)
}

/// The Anthropic stream of an InvokeModelWithResponseStream answer, in `chunk` frames.
pub(crate) fn invoke_stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    let (head, content, tail) = crate::anthropic::stream_events(name, params, pieces);
    let frames = |events: Vec<(String, Value)>| {
        events.iter().map(|(_, v)| bedrock_chunk_frame(v.to_string().as_bytes())).collect()
    };
    StreamParts { head: frames(head), content: frames(content), tail: frames(tail) }
}

/// Bedrock's error type (sent in `x-amzn-errortype`) for a status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerException",
        _ => "ValidationException",
    }
}

/// A Bedrock error answer: `{"message"}` with the type in `x-amzn-errortype`.
pub(crate) fn error_response(status: u16, kind: &'static str, message: &str) -> Response<MockBody> {
    let mut response = json_response(status, Bytes::from(json!({"message": message}).to_string()));
    response.headers_mut().insert("x-amzn-errortype", http::HeaderValue::from_static(kind));
    response
}

fn usage(prompt_tokens: u64) -> Value {
    json!({
        "inputTokens": prompt_tokens,
        "outputTokens": COMPLETION_TOKENS,
        "totalTokens": prompt_tokens + COMPLETION_TOKENS,
    })
}

/// A Converse answer: text, or a `toolUse` block.
pub(crate) fn converse(name: &str, params: &ChatParams) -> Bytes {
    let block = match &params.tool {
        Some(tool) => json!({"toolUse": {"toolUseId": TOOL_USE_ID, "name": tool, "input": tools::arguments()}}),
        None => json!({"text": answer_text(name)}),
    };
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [block]}},
        "stopReason": stop_reason(params),
        "usage": usage(params.prompt_tokens),
        "metrics": {"latencyMs": 0},
    });
    Bytes::from(body.to_string())
}

fn string_header(name: &'static str, value: &str) -> Header {
    Header::new(name, HeaderValue::String(value.to_string().into()))
}

/// The string value of a frame's header `name`, if it has one (tests read frames back).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn string_header_value(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .map(|h| h.value().as_string().unwrap().as_str().to_owned())
}

fn frame(message: &Message) -> Bytes {
    let mut buf = Vec::new();
    match aws_smithy_eventstream::frame::write_message_to(message, &mut buf) {
        Ok(()) => Bytes::from(buf),
        // Only headers or a payload beyond the format's limits fail; the mock's never are.
        Err(_) => Bytes::new(),
    }
}

/// One ConverseStream event frame: `:message-type event`, `:event-type`, JSON payload.
///
/// The gateway's tests build their input with this too.
pub fn bedrock_event_frame(event_type: &str, payload: &Value) -> Bytes {
    let message = Message::new(payload.to_string())
        .add_header(string_header(":event-type", event_type))
        .add_header(string_header(":content-type", "application/json"))
        .add_header(string_header(":message-type", "event"));
    frame(&message)
}

/// One exception frame (`:message-type exception`), e.g. `throttlingException`.
pub fn bedrock_exception_frame(exception_type: &str, message: &str) -> Bytes {
    let message = Message::new(json!({"message": message}).to_string())
        .add_header(string_header(":exception-type", exception_type))
        .add_header(string_header(":content-type", "application/json"))
        .add_header(string_header(":message-type", "exception"));
    frame(&message)
}

/// The in-stream exception for a status.
pub(crate) fn exception_event(message: &str, status: u16) -> Bytes {
    let kind = match status {
        429 => "throttlingException",
        503 => "serviceUnavailableException",
        400..=499 => "validationException",
        _ => "internalServerException",
    };
    bedrock_exception_frame(kind, message)
}

/// `messageStart` (and, for a tool call, a `contentBlockStart` naming the tool), one
/// `contentBlockDelta` per piece of the text or of the tool input's JSON, then
/// `contentBlockStop`, `messageStop` and `metadata` (usage).
pub(crate) fn stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    let mut head = vec![bedrock_event_frame("messageStart", &json!({"role": "assistant"}))];
    if let Some(tool) = &params.tool {
        let start = json!({"toolUse": {"toolUseId": TOOL_USE_ID, "name": tool}});
        head.push(bedrock_event_frame("contentBlockStart", &json!({"contentBlockIndex": 0, "start": start})));
    }
    let content = streamed_pieces(name, params, pieces)
        .into_iter()
        .map(|piece| {
            let delta = match params.tool {
                Some(_) => json!({"toolUse": {"input": piece}}),
                None => json!({"text": piece}),
            };
            bedrock_event_frame("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": delta}))
        })
        .collect();
    StreamParts {
        head,
        content,
        tail: vec![
            bedrock_event_frame("contentBlockStop", &json!({"contentBlockIndex": 0})),
            bedrock_event_frame("messageStop", &json!({"stopReason": stop_reason(params)})),
            bedrock_event_frame(
                "metadata",
                &json!({"usage": usage(params.prompt_tokens), "metrics": {"latencyMs": 0}}),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn frames_round_trip_with_checked_crcs() {
        let bytes = bedrock_event_frame("contentBlockDelta", &json!({"delta": {"text": "hé"}}));
        let total = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(total, bytes.len());
        let message = read_message_from(&mut bytes.clone()).unwrap();
        let header = |n: &str| string_header_value(&message, n);
        assert_eq!(header(":event-type").as_deref(), Some("contentBlockDelta"));
        assert_eq!(header(":message-type").as_deref(), Some("event"));
        let payload: Value = serde_json::from_slice(message.payload()).unwrap();
        assert_eq!(payload["delta"]["text"], "hé");
        let mut corrupt = bytes.to_vec();
        let last = corrupt.len() - 5;
        corrupt[last] ^= 1;
        assert!(read_message_from(&mut Bytes::from(corrupt)).is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(route("/model/a%3Ab/converse"), Some(("a:b".into(), false)));
        assert_eq!(route("/model/x/converse-stream"), Some(("x".into(), true)));
        assert_eq!(route("/model//converse"), None);
        assert_eq!(route("/v1/messages"), None);
    }
}
