//! Google Gemini wire format (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`): the `GenerateContentResponse` the mock answers with,
//! its SSE stream (events end in CRLF pairs, as Gemini's do), and Gemini-shaped errors.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::StreamParts;
use crate::openai::{answer_text, split_content, ChatParams, COMPLETION_TOKENS};
use crate::tools;

/// Fixed `responseId` of every answer.
const RESPONSE_ID: &str = "mock-response";

/// (model, stream) of a Gemini path (`/v1beta/models/…` or `/v1/models/…`).
pub(crate) fn route(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    (!model.is_empty()).then(|| (model.to_owned(), stream))
}

/// Google's canonical error status for an HTTP status.
pub(crate) fn error_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

fn error_value(message: &str, status: u16) -> Value {
    json!({"error": {"code": status, "message": message, "status": error_status(status)}})
}

/// A Gemini-shaped error body.
pub(crate) fn error_body(message: &str, status: u16) -> Bytes {
    Bytes::from(error_value(message, status).to_string())
}

/// One SSE event, CRLF-terminated.
fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\r\n\r\n"))
}

/// The in-stream error event.
pub(crate) fn error_event(message: &str, status: u16) -> Bytes {
    sse(&error_value(message, status))
}

fn response(model: &str, part: Value, finish: Option<&str>, usage: Option<u64>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": [part]}, "index": 0});
    if let Some(reason) = finish {
        candidate["finishReason"] = json!(reason);
    }
    let mut body = json!({"candidates": [candidate], "modelVersion": model, "responseId": RESPONSE_ID});
    if let Some(prompt) = usage {
        body["usageMetadata"] = json!({
            "promptTokenCount": prompt,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": prompt + COMPLETION_TOKENS,
        });
    }
    body
}

fn text_part(text: &str) -> Value {
    json!({"text": text})
}

/// The complete answer: a response with the whole text, or with a `functionCall` of the
/// requested tool; finished, with usage.
fn whole(name: &str, params: &ChatParams) -> Value {
    let part = match &params.tool {
        Some(tool) => json!({"functionCall": {"name": tool, "args": tools::arguments()}}),
        None => text_part(&answer_text(name)),
    };
    response(&params.model, part, Some("STOP"), Some(params.prompt_tokens))
}

/// A `generateContent` answer.
pub(crate) fn generate(name: &str, params: &ChatParams) -> Bytes {
    Bytes::from(whole(name, params).to_string())
}

/// Text: one response per piece of the text, then a last one with `finishReason` and
/// usage. A tool call: Gemini streams a `functionCall` whole, so one finished response
/// carries it.
pub(crate) fn stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    if params.tool.is_some() {
        return StreamParts { head: Vec::new(), content: vec![sse(&whole(name, params))], tail: Vec::new() };
    }
    let content = split_content(&answer_text(name), pieces)
        .iter()
        .map(|piece| sse(&response(&params.model, text_part(piece), None, None)))
        .collect();
    StreamParts {
        head: Vec::new(),
        content,
        tail: vec![sse(&response(&params.model, text_part(""), Some("STOP"), Some(params.prompt_tokens)))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v1beta/models/g-1:generateContent"), Some(("g-1".into(), false)));
        assert_eq!(route("/v1/models/g:streamGenerateContent"), Some(("g".into(), true)));
        assert_eq!(route("/v1beta/models/g:countTokens"), None);
        assert_eq!(route("/v1beta/models/:generateContent"), None);
    }

    #[test]
    fn error_statuses() {
        assert_eq!(error_status(429), "RESOURCE_EXHAUSTED");
        assert_eq!(error_status(500), "INTERNAL");
        assert_eq!(error_status(404), "NOT_FOUND");
    }
}
