//! Google Gemini wire format (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`): the `GenerateContentResponse` the mock answers with,
//! its SSE stream (events end in CRLF pairs, as Gemini's do), and Gemini-shaped errors.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::StreamParts;
use crate::openai::{answer_text, split_content, ChatParams, COMPLETION_TOKENS};

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

fn response(model: &str, text: &str, finish: Option<&str>, usage: Option<u64>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
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

/// A `generateContent` answer.
pub(crate) fn generate(name: &str, params: &ChatParams) -> Bytes {
    let body = response(&params.model, &answer_text(name), Some("STOP"), Some(params.prompt_tokens));
    Bytes::from(body.to_string())
}

/// One response per piece of the text, then a last one with `finishReason` and usage.
pub(crate) fn stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    let content = split_content(&answer_text(name), pieces)
        .iter()
        .map(|piece| sse(&response(&params.model, piece, None, None)))
        .collect();
    StreamParts {
        head: Vec::new(),
        content,
        tail: vec![sse(&response(&params.model, "", Some("STOP"), Some(params.prompt_tokens)))],
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
