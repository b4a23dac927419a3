//! Which provider API a request speaks, told by its path, and the answers in that API's
//! shape. Each API's wire format lives in its own module; this one only dispatches.

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;

use crate::body::MockBody;
use crate::handler::{json_response, response};
use crate::openai::{self, ChatParams};
use crate::state::RecordedRequest;
use crate::tools::ToolLayout;
use crate::{anthropic, bedrock, gemini, responses, vertex};

/// The API of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// OpenAI chat completions: every path no other API claims.
    OpenAi,
    /// `POST /openai/deployments/{d}/chat/completions?api-version=...`.
    Azure,
    /// The Responses API: `POST /v1/responses`, or Azure's `/openai/v1/responses`.
    Responses { azure: bool },
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /model/{modelId}/converse` or `/converse-stream`.
    Bedrock { model: String, stream: bool },
    /// `POST /v1beta/models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini { model: String, stream: bool, sse: bool },
    /// `POST /model/{modelId}/invoke` or `/invoke-with-response-stream` (Claude on Bedrock).
    BedrockInvoke { model: String, stream: bool },
    /// Vertex AI `rawPredict` / `streamRawPredict` (Claude).
    VertexClaude { model: String, stream: bool },
    /// Vertex AI `generateContent` / `streamGenerateContent` (Gemini).
    VertexGemini { model: String, stream: bool, sse: bool },
}

/// A streamed answer in three parts, so that a broken stream can stop inside the content.
#[derive(Debug, Default)]
pub(crate) struct StreamParts {
    /// Events before the content (e.g. `message_start`).
    pub(crate) head: Vec<Bytes>,
    /// One event per piece of the answer text.
    pub(crate) content: Vec<Bytes>,
    /// Events after the content of a complete stream.
    pub(crate) tail: Vec<Bytes>,
}

impl Api {
    /// The API a request path (and query) belongs to.
    pub(crate) fn of(path: &str, query: Option<&str>) -> Api {
        if path == "/v1/messages" {
            return Api::Anthropic;
        }
        if let Some(azure) = responses::is_route(path) {
            return Api::Responses { azure };
        }
        if path.starts_with("/openai/deployments/") && path.ends_with("/chat/completions") {
            return Api::Azure;
        }
        if let Some((model, stream)) = bedrock::route(path) {
            return Api::Bedrock { model, stream };
        }
        if let Some((model, stream)) = bedrock::invoke_route(path) {
            return Api::BedrockInvoke { model, stream };
        }
        if let Some(r) = vertex::route(path) {
            if r.anthropic {
                return Api::VertexClaude { model: r.model, stream: r.stream };
            }
            let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
            return Api::VertexGemini { model: r.model, stream: r.stream, sse };
        }
        if let Some((model, stream)) = gemini::route(path) {
            let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
            return Api::Gemini { model, stream, sse };
        }
        Api::OpenAi
    }

    /// An answer that refuses the request before anything else (missing credentials, a bad
    /// signature), if it must be refused.
    pub(crate) fn refuse(&self, name: &str, request: &RecordedRequest) -> Option<Response<MockBody>> {
        match self {
            Api::Azure | Api::Responses { azure: true } if request.header("api-key").is_none() => {
                Some(self.error(401, &format!("mock {name}: access denied due to a missing api-key header")))
            }
            Api::Bedrock { .. } | Api::BedrockInvoke { .. } if request.sigv4_valid == Some(false) => {
                Some(bedrock::error_response(
                    403,
                    "InvalidSignatureException",
                    &format!(
                        "mock {name}: the request signature we calculated does not match the signature you provided"
                    ),
                ))
            }
            Api::BedrockInvoke { .. } => bedrock::invoke_body_problem(&request.body)
                .map(|why| bedrock::error_response(400, "ValidationException", &format!("mock {name}: {why}"))),
            Api::VertexClaude { .. } => {
                vertex::claude_body_problem(&request.body).map(|why| self.error(400, &format!("mock {name}: {why}")))
            }
            Api::Gemini { stream: true, sse: false, .. } | Api::VertexGemini { stream: true, sse: false, .. } => {
                Some(self.error(400, &format!("mock {name}: streamGenerateContent is only served with alt=sse")))
            }
            _ => None,
        }
    }

    /// Whether this is a Vertex AI call (which needs a bearer token).
    pub(crate) fn is_vertex(&self) -> bool {
        matches!(self, Api::VertexClaude { .. } | Api::VertexGemini { .. })
    }

    /// An error answer in this API's shape.
    pub(crate) fn error(&self, status: u16, message: &str) -> Response<MockBody> {
        match self {
            Api::OpenAi | Api::Azure | Api::Responses { .. } => {
                json_response(status, openai::error_body(message, status))
            }
            Api::Anthropic | Api::VertexClaude { .. } => json_response(status, anthropic::error_body(message, status)),
            Api::Bedrock { .. } | Api::BedrockInvoke { .. } => {
                bedrock::error_response(status, bedrock::error_type(status), message)
            }
            Api::Gemini { .. } | Api::VertexGemini { .. } => json_response(status, gemini::error_body(message, status)),
        }
    }

    /// Where this API's requests keep their tools and turns.
    fn tool_layout(&self) -> ToolLayout {
        match self {
            Api::OpenAi | Api::Azure => ToolLayout::OPENAI,
            Api::Responses { .. } => ToolLayout::RESPONSES,
            Api::Anthropic | Api::BedrockInvoke { .. } | Api::VertexClaude { .. } => ToolLayout::ANTHROPIC,
            Api::Bedrock { .. } => ToolLayout::BEDROCK,
            Api::Gemini { .. } | Api::VertexGemini { .. } => ToolLayout::GEMINI,
        }
    }

    /// The request parameters; model and stream come from the path where the API puts
    /// them there.
    pub(crate) fn params(&self, body: &[u8]) -> Result<ChatParams, String> {
        let mut params = ChatParams::parse(body, self.tool_layout())?;
        if let Api::Bedrock { model, stream }
        | Api::Gemini { model, stream, .. }
        | Api::BedrockInvoke { model, stream }
        | Api::VertexClaude { model, stream }
        | Api::VertexGemini { model, stream, .. } = self
        {
            params.model.clone_from(model);
            params.stream = *stream;
            params.include_usage = false;
        }
        Ok(params)
    }

    /// A complete, non-streamed answer: text, or a call to the tool the request offers.
    pub(crate) fn completion(&self, name: &str, params: &ChatParams) -> Bytes {
        match self {
            Api::OpenAi | Api::Azure => openai::completion(name, params),
            Api::Responses { .. } => responses::message(name, params),
            Api::Anthropic | Api::BedrockInvoke { .. } | Api::VertexClaude { .. } => anthropic::message(name, params),
            Api::Bedrock { .. } => bedrock::converse(name, params),
            Api::Gemini { .. } | Api::VertexGemini { .. } => gemini::generate(name, params),
        }
    }

    pub(crate) fn stream_content_type(&self) -> &'static str {
        match self {
            Api::Bedrock { .. } | Api::BedrockInvoke { .. } => bedrock::STREAM_CONTENT_TYPE,
            _ => "text/event-stream",
        }
    }

    /// A streamed answer with its text (or its tool call's arguments) in `pieces` content
    /// events.
    pub(crate) fn stream_parts(&self, name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
        match self {
            Api::OpenAi | Api::Azure => openai::stream_parts(name, params, pieces),
            Api::Responses { .. } => responses::stream_parts(name, params, pieces),
            Api::Anthropic | Api::VertexClaude { .. } => anthropic::stream_parts(name, params, pieces),
            Api::Bedrock { .. } => bedrock::stream_parts(name, params, pieces),
            Api::BedrockInvoke { .. } => bedrock::invoke_stream_parts(name, params, pieces),
            Api::Gemini { .. } | Api::VertexGemini { .. } => gemini::stream_parts(name, params, pieces),
        }
    }

    /// The API's in-stream error event.
    pub(crate) fn stream_error(&self, message: &str, status: u16) -> Bytes {
        match self {
            Api::OpenAi | Api::Azure => openai::error_event(message, status),
            Api::Responses { .. } => responses::error_event(message, status),
            Api::Anthropic | Api::VertexClaude { .. } => anthropic::error_event(message, status),
            Api::Bedrock { .. } | Api::BedrockInvoke { .. } => bedrock::exception_event(message, status),
            Api::Gemini { .. } | Api::VertexGemini { .. } => gemini::error_event(message, status),
        }
    }
}

/// A response whose body is an answer stream of this content type.
pub(crate) fn stream_response(content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut response = response(200, content_type, body);
    response.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::Api;

    #[test]
    fn routes_by_path() {
        assert_eq!(Api::of("/v1/chat/completions", None), Api::OpenAi);
        assert_eq!(Api::of("/anything", None), Api::OpenAi);
        assert_eq!(Api::of("/v1/messages", None), Api::Anthropic);
        assert_eq!(Api::of("/v1/responses", None), Api::Responses { azure: false });
        assert_eq!(Api::of("/openai/v1/responses", None), Api::Responses { azure: true });
        assert_eq!(Api::of("/openai/deployments/d1/chat/completions", Some("api-version=1")), Api::Azure);
        assert_eq!(
            Api::of("/model/anthropic.claude-v2%3A1/converse", None),
            Api::Bedrock { model: "anthropic.claude-v2:1".into(), stream: false }
        );
        assert_eq!(Api::of("/model/m/converse-stream", None), Api::Bedrock { model: "m".into(), stream: true });
        assert_eq!(Api::of("/model/m/invoke", None), Api::BedrockInvoke { model: "m".into(), stream: false });
        assert_eq!(
            Api::of("/model/m/invoke-with-response-stream", None),
            Api::BedrockInvoke { model: "m".into(), stream: true }
        );
        assert_eq!(Api::of("/model/m/other", None), Api::OpenAi);
        assert_eq!(
            Api::of("/v1beta/models/gemini-2.5-flash:streamGenerateContent", Some("alt=sse")),
            Api::Gemini { model: "gemini-2.5-flash".into(), stream: true, sse: true }
        );
        assert_eq!(
            Api::of("/v1beta/models/g:generateContent", None),
            Api::Gemini { model: "g".into(), stream: false, sse: false }
        );
    }
}
