//! Provider translation: clients speak one API, each attempt may go to a provider that
//! speaks another.
//!
//! Everything here is pure (no sockets, no clock unless passed in): the proxy calls
//! [`prepare`] per attempt, [`translate_response`] for a whole answer and a
//! [`StreamTranslator`] for a streamed one.
//!
//! When the client's API and the provider's are the same nothing is re-serialized: the
//! model is spliced into the original bytes and answers pass through untouched. Across
//! APIs every conversion goes through one neutral model ([`ir`]): client request →
//! [`ir::Request`] → provider request, and provider answer → [`ir::Reply`] / stream
//! [`ir::Event`]s → client answer. A field the target cannot express is an error
//! ([`TranslateError::Unsupported`]), never dropped.
//!
//! Claude hosted on Bedrock (InvokeModel) or Vertex AI (rawPredict) takes the Anthropic
//! client's body as is ([`claude`]): only the envelope changes, nothing is translated.
//!
//! With the backend's `translation: {unsupported: drop}`, what only Anthropic's models
//! understand (thinking, cache hints, betas) is removed before translating to another API
//! instead of skipping that provider; [`UpstreamRequest::dropped`] names it.
//!
//! Modules: [`openai`] and [`anthropic`] (both directions), [`bedrock`] (Converse, binary
//! event-stream), [`claude`] (Claude on Bedrock and Vertex, the drop policy), [`gemini`],
//! [`vertex`] (paths), [`google_auth`] (service-account tokens), [`azure`] (path and header
//! only), [`sse`] (incremental SSE parser), [`sigv4`] (AWS signing and credentials),
//! [`stream`] (the translator glue).

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod claude;
pub mod gemini;
pub mod google_auth;
pub mod ir;
pub mod openai;
pub mod paths;
pub mod responses;
pub mod sigv4;
pub mod sse;
pub mod stream;
pub mod vertex;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_claude;
#[cfg(test)]
mod tests_mock;
#[cfg(test)]
mod tests_request;
#[cfg(test)]
mod tests_response;
#[cfg(test)]
mod tests_responses;
#[cfg(test)]
mod tests_stream;

use crate::body::ChatRequest;
use crate::config::{ProviderConfig, ProviderKind, TranslationPolicy};
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub use sigv4::AwsCredentials;
pub use stream::StreamTranslator;

/// The API a client speaks, known from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// OpenAI Chat Completions, `POST /v1/chat/completions`.
    OpenAiChat,
    /// Anthropic Messages, `POST /v1/messages`.
    AnthropicMessages,
    /// OpenAI Responses, `POST /v1/responses`.
    OpenAiResponses,
}

impl ClientApi {
    /// The API of a request path (a query string is allowed).
    pub fn from_path(path: &str) -> Option<ClientApi> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        match path {
            "/v1/chat/completions" => Some(ClientApi::OpenAiChat),
            "/v1/messages" => Some(ClientApi::AnthropicMessages),
            "/v1/responses" => Some(ClientApi::OpenAiResponses),
            _ => None,
        }
    }

    /// The name used in [`TranslateError::Unsupported`] when an answer cannot be expressed
    /// in this API.
    pub fn name(self) -> &'static str {
        match self {
            ClientApi::OpenAiChat => "openai",
            ClientApi::AnthropicMessages => "anthropic",
            ClientApi::OpenAiResponses => "responses",
        }
    }

    /// Whether a provider of `kind` takes this API's body as is, in another host's
    /// envelope: Claude on Bedrock (InvokeModel) and on Vertex AI (rawPredict).
    fn is_hosted(self, kind: &ProviderKind) -> bool {
        self == ClientApi::AnthropicMessages
            && matches!(
                kind,
                ProviderKind::Bedrock { anthropic: true, .. } | ProviderKind::Vertex { anthropic: true, .. }
            )
    }

    /// Whether a provider of `kind` speaks this API natively.
    fn is_native(self, kind: &ProviderKind) -> bool {
        matches!(
            (self, kind),
            (ClientApi::OpenAiChat | ClientApi::OpenAiResponses, ProviderKind::OpenAi | ProviderKind::Azure { .. })
                | (ClientApi::AnthropicMessages, ProviderKind::Anthropic { .. })
        )
    }
}

/// Everything one attempt needs to send.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: http::Method,
    pub path_and_query: String,
    /// Headers to set on the upstream request, replacing any of the same name: content
    /// type, credentials (marked sensitive), `anthropic-version`, SigV4 headers. `host` is
    /// not among them: send [`host_header`] (SigV4 signs that value).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Whether the upstream answer will be a stream.
    pub stream: bool,
    /// Client headers that must not go upstream (carried in the body, or dropped).
    pub remove_headers: Vec<HeaderName>,
    /// What the `drop` policy removed for this provider (empty otherwise).
    pub dropped: Vec<&'static str>,
}

/// What of the client's request, besides its body, shapes an upstream request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientContext<'a> {
    /// The client's `Authorization`, when the provider's auth is passthrough.
    pub passthrough_auth: Option<&'a HeaderValue>,
    /// The client's `anthropic-beta` header.
    pub anthropic_beta: Option<&'a HeaderValue>,
    /// The backend's translation policy.
    pub policy: TranslationPolicy,
}

/// The `anthropic-beta` header name.
pub static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("{target} cannot express {field}")]
    Unsupported { field: String, target: &'static str },
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl TranslateError {
    pub(crate) fn unsupported(field: impl Into<String>, target: &'static str) -> TranslateError {
        TranslateError::Unsupported { field: field.into(), target }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> TranslateError {
        TranslateError::Invalid(message.into())
    }
}

/// Credentials resolved at config load. `Debug` never shows a key.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    None,
    ApiKey(&'a str),
    Aws(&'a AwsCredentials),
    /// A ready `authorization` value (a Google access token).
    Bearer(&'a HeaderValue),
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credentials::Aws(aws) => f.debug_tuple("Aws").field(aws).finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// The `host` header value for `provider`: `host`, or `host:port` when the port is not the
/// scheme's default.
pub fn host_header(provider: &ProviderConfig) -> String {
    let default_port = if provider.tls { 443 } else { 80 };
    if provider.port == default_port {
        provider.host.clone()
    } else {
        format!("{}:{}", provider.host, provider.port)
    }
}

/// Builds the upstream request for `provider` from the client's body (a JSON object).
///
/// The model is the provider's when configured, else the client's. The path is
/// `provider.path` verbatim when set (for Bedrock and Gemini, whose paths differ between
/// streamed and whole answers, the override then has to suit the request), else the
/// kind's own. `cx.passthrough_auth` is the client's `Authorization` value when the
/// provider's auth is passthrough; it is forwarded as `authorization` unless `creds`
/// holds a key. `now` is the SigV4 signing time.
pub fn prepare(
    client: ClientApi,
    body: &Bytes,
    provider: &ProviderConfig,
    creds: &Credentials<'_>,
    cx: &ClientContext<'_>,
    now: SystemTime,
) -> Result<UpstreamRequest, TranslateError> {
    let peek = ChatRequest::parse(body).map_err(|e| TranslateError::Invalid(e.to_string()))?;
    let model = provider.model.clone().or_else(|| peek.model.clone());
    let mut remove_headers = Vec::new();
    let mut dropped = Vec::new();
    let (body, stream) = if client.is_native(&provider.kind) {
        // Hot path: no tree, only the model spliced into the original bytes.
        let body = match &model {
            Some(m) => peek.with_model(body, m),
            None => body.clone(),
        };
        (body, peek.stream)
    } else if client.is_hosted(&provider.kind) {
        let betas = claude::beta_flags(cx.anthropic_beta);
        remove_headers.push(ANTHROPIC_BETA.clone());
        (hosted_body(&provider.kind, body, &betas)?, peek.stream)
    } else {
        let mut value: Value = serde_json::from_slice(body).map_err(|e| TranslateError::Invalid(e.to_string()))?;
        if cx.policy == TranslationPolicy::Drop && client == ClientApi::AnthropicMessages {
            dropped = claude::strip_anthropic_only(&mut value);
            if cx.anthropic_beta.is_some() {
                dropped.push("anthropic-beta");
                remove_headers.push(ANTHROPIC_BETA.clone());
            }
        }
        let request = parse_client(client, &value, target_name(&provider.kind))?;
        let out = emit_provider(&request, &provider.kind, model.as_deref())?;
        let bytes = Bytes::from(serde_json::to_vec(&out).map_err(|e| TranslateError::Invalid(e.to_string()))?);
        let bytes = match &provider.kind {
            // Written as an Anthropic request; Vertex wants it in its envelope.
            ProviderKind::Vertex { anthropic: true, .. } => hosted_body(&provider.kind, &bytes, &[])?,
            _ => bytes,
        };
        (bytes, request.stream)
    };
    let path_and_query = match &provider.path {
        Some(p) => p.clone(),
        None => default_path(client, &provider.kind, model.as_deref(), stream)?,
    };
    let mut headers = vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    if let ProviderKind::Anthropic { version } = &provider.kind {
        let v = HeaderValue::from_str(version)
            .map_err(|_| TranslateError::invalid("anthropic version is not a valid header value"))?;
        headers.push((HeaderName::from_static("anthropic-version"), v));
    }
    match creds {
        Credentials::ApiKey(key) => headers.push(api_key_header(&provider.kind, key)?),
        Credentials::Bearer(v) => headers.push(sensitive(http::header::AUTHORIZATION, (*v).clone())),
        Credentials::Aws(aws) => {
            if let ProviderKind::Bedrock { region, .. } = &provider.kind {
                let scheme = if provider.tls { "https" } else { "http" };
                let host = host_header(provider);
                let uri = format!("{scheme}://{host}{path_and_query}");
                let signed = [("content-type", "application/json"), ("host", host.as_str())];
                headers.extend(sigv4::sign(aws, region, "bedrock", "POST", &uri, &signed, &body, now)?);
            } else if let Some(v) = cx.passthrough_auth {
                headers.push(sensitive(http::header::AUTHORIZATION, v.clone()));
            }
        }
        Credentials::None => {
            if let Some(v) = cx.passthrough_auth {
                headers.push(sensitive(http::header::AUTHORIZATION, v.clone()));
            }
        }
    }
    Ok(UpstreamRequest { method: http::Method::POST, path_and_query, headers, body, stream, remove_headers, dropped })
}

/// An Anthropic body in the envelope of the host of a Claude provider.
fn hosted_body(kind: &ProviderKind, body: &[u8], betas: &[String]) -> Result<Bytes, TranslateError> {
    match kind {
        ProviderKind::Vertex { .. } => claude::host_body(body, claude::VERTEX_VERSION, betas, true),
        _ => claude::host_body(body, claude::BEDROCK_VERSION, betas, false),
    }
}

fn sensitive(name: HeaderName, mut value: HeaderValue) -> (HeaderName, HeaderValue) {
    value.set_sensitive(true);
    (name, value)
}

/// The header a provider of `kind` reads its API key from.
pub fn api_key_header(kind: &ProviderKind, key: &str) -> Result<(HeaderName, HeaderValue), TranslateError> {
    let bad = |_| TranslateError::invalid("the API key is not a valid header value");
    let (name, value) = match kind {
        ProviderKind::OpenAi | ProviderKind::Bedrock { .. } | ProviderKind::Vertex { .. } => {
            (http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).map_err(bad)?)
        }
        ProviderKind::Anthropic { .. } => {
            (HeaderName::from_static("x-api-key"), HeaderValue::from_str(key).map_err(bad)?)
        }
        ProviderKind::Gemini => (HeaderName::from_static("x-goog-api-key"), HeaderValue::from_str(key).map_err(bad)?),
        ProviderKind::Azure { .. } => (HeaderName::from_static("api-key"), HeaderValue::from_str(key).map_err(bad)?),
    };
    Ok(sensitive(name, value))
}

/// The provider's own path when the config gives none.
fn default_path(
    client: ClientApi,
    kind: &ProviderKind,
    model: Option<&str>,
    stream: bool,
) -> Result<String, TranslateError> {
    let need_model = || {
        model.ok_or_else(|| {
            TranslateError::invalid(format!(
                "no model: the request names none and the {} provider sets none",
                kind.as_str()
            ))
        })
    };
    Ok(match kind {
        ProviderKind::OpenAi => match client {
            ClientApi::OpenAiResponses => "/v1/responses".to_string(),
            ClientApi::OpenAiChat | ClientApi::AnthropicMessages => "/v1/chat/completions".to_string(),
        },
        ProviderKind::Anthropic { .. } => "/v1/messages".to_string(),
        ProviderKind::Bedrock { .. } if client.is_hosted(kind) => claude::bedrock_path(need_model()?, stream),
        ProviderKind::Bedrock { .. } => bedrock::path(need_model()?, stream),
        ProviderKind::Vertex { project, region, anthropic } => {
            vertex::path(project, region, *anthropic, need_model()?, stream)
        }
        ProviderKind::Gemini => gemini::path(need_model()?, stream),
        ProviderKind::Azure { .. } if client == ClientApi::OpenAiResponses => "/openai/v1/responses".to_string(),
        ProviderKind::Azure { deployment, api_version } => azure::path(deployment, api_version),
    })
}

/// The name used in [`TranslateError::Unsupported`] for a provider kind.
fn target_name(kind: &ProviderKind) -> &'static str {
    kind.as_str()
}

/// Reads the client's body into the neutral model; `target` names the provider in errors.
fn parse_client(client: ClientApi, body: &Value, target: &'static str) -> Result<ir::Request, TranslateError> {
    match client {
        ClientApi::OpenAiChat => openai::parse_request(body, target),
        ClientApi::AnthropicMessages => anthropic::parse_request(body, target),
        ClientApi::OpenAiResponses => responses::parse_request(body, target),
    }
}

/// Writes the neutral request in the provider's API.
fn emit_provider(request: &ir::Request, kind: &ProviderKind, model: Option<&str>) -> Result<Value, TranslateError> {
    match kind {
        ProviderKind::OpenAi => openai::emit_request(request, model, "openai"),
        ProviderKind::Azure { .. } => openai::emit_request(request, model, "azure"),
        ProviderKind::Anthropic { .. } => anthropic::emit_request(request, model),
        ProviderKind::Bedrock { .. } => bedrock::emit_request(request),
        ProviderKind::Gemini | ProviderKind::Vertex { anthropic: false, .. } => gemini::emit_request(request),
        ProviderKind::Vertex { anthropic: true, .. } => anthropic::emit_request(request, model),
    }
}

/// Whether `provider` can take this request at all. Same-API providers (and Claude on
/// Bedrock and Vertex for Anthropic clients) always can; under the `drop` policy what
/// [`claude::strip_anthropic_only`] removes does not count.
pub fn check_supported(
    client: ClientApi,
    body: &Value,
    provider: &ProviderKind,
    policy: TranslationPolicy,
) -> Result<(), TranslateError> {
    if client.is_native(provider) || client.is_hosted(provider) {
        return Ok(());
    }
    let request = if policy == TranslationPolicy::Drop && client == ClientApi::AnthropicMessages {
        let mut stripped = body.clone();
        claude::strip_anthropic_only(&mut stripped);
        parse_client(client, &stripped, target_name(provider))?
    } else {
        parse_client(client, body, target_name(provider))?
    };
    emit_provider(&request, provider, Some("model")).map(|_| ())
}

/// Whether an answer from `provider` needs translating for `client` (false: pass the bytes
/// through untouched).
pub fn needs_translation(client: ClientApi, provider: &ProviderKind) -> bool {
    !client.is_native(provider)
}

/// What a reply needs that the provider may not say: when it was made and an id.
#[derive(Debug, Clone)]
pub struct ReplyMeta {
    pub created: u64,
    /// Used when the provider's answer carries no id.
    pub fallback_id: String,
    /// Used when the provider's answer names no model.
    pub model: String,
}

impl ReplyMeta {
    fn now(client: ClientApi, model: &str) -> ReplyMeta {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let prefix = match client {
            ClientApi::OpenAiChat => "chatcmpl-",
            ClientApi::AnthropicMessages => "msg_",
            ClientApi::OpenAiResponses => "resp_",
        };
        ReplyMeta {
            created,
            fallback_id: format!("{prefix}{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
            model: model.to_string(),
        }
    }
}

/// Non-streaming answer → the client's API. Error statuses (anything but 2xx) become the
/// client API's error shape, keeping the message; successes are converted. A provider
/// whose answer names no model (Bedrock) gets `""` here: see
/// [`translate_response_with_model`].
pub fn translate_response(
    client: ClientApi,
    provider: &ProviderKind,
    status: u16,
    body: &[u8],
) -> Result<Bytes, TranslateError> {
    translate_response_with_model(client, provider, "", status, body)
}

/// [`translate_response`], naming the model that was asked for (used when the provider's
/// answer does not say).
pub fn translate_response_with_model(
    client: ClientApi,
    provider: &ProviderKind,
    model: &str,
    status: u16,
    body: &[u8],
) -> Result<Bytes, TranslateError> {
    if !needs_translation(client, provider) {
        return Ok(Bytes::copy_from_slice(body));
    }
    translate_reply(client, provider, status, body, &ReplyMeta::now(client, model))
}

/// The pure core of [`translate_response`].
pub(crate) fn translate_reply(
    client: ClientApi,
    provider: &ProviderKind,
    status: u16,
    body: &[u8],
    meta: &ReplyMeta,
) -> Result<Bytes, TranslateError> {
    if client.is_hosted(provider) && (200..300).contains(&status) {
        // Claude's own answer, as Claude gave it.
        return Ok(Bytes::copy_from_slice(body));
    }
    let value = if (200..300).contains(&status) {
        let parsed: Value = serde_json::from_slice(body)
            .map_err(|e| TranslateError::invalid(format!("provider answer is not JSON: {e}")))?;
        let reply = match provider {
            ProviderKind::OpenAi | ProviderKind::Azure { .. } => openai::parse_reply(&parsed)?,
            ProviderKind::Anthropic { .. } | ProviderKind::Vertex { anthropic: true, .. } => {
                anthropic::parse_reply(&parsed)?
            }
            ProviderKind::Bedrock { .. } => bedrock::parse_reply(&parsed, client.name())?,
            ProviderKind::Gemini | ProviderKind::Vertex { anthropic: false, .. } => {
                gemini::parse_reply(&parsed, client.name())?
            }
        };
        match client {
            ClientApi::OpenAiChat => openai::emit_reply(&reply, meta)?,
            ClientApi::AnthropicMessages => anthropic::emit_reply(&reply, meta)?,
            ClientApi::OpenAiResponses => responses::emit_reply(&reply, meta)?,
        }
    } else {
        let info = ir::ErrorInfo::from_body(provider, status, body);
        emit_error(client, &info)
    };
    serde_json::to_vec(&value).map(Bytes::from).map_err(|e| TranslateError::invalid(e.to_string()))
}

/// An error in the client's API shape.
pub(crate) fn emit_error(client: ClientApi, info: &ir::ErrorInfo) -> Value {
    match client {
        ClientApi::OpenAiChat | ClientApi::OpenAiResponses => openai::error_value(info),
        ClientApi::AnthropicMessages => anthropic::error_value(info),
    }
}

/// An incremental translator from `provider`'s stream to `client`'s, or `None` when the
/// APIs are the same. OpenAI clients get a final usage chunk only if `include_usage`.
pub fn stream_translator(
    client: ClientApi,
    provider: &ProviderKind,
    model: &str,
    include_usage: bool,
) -> Option<Box<dyn StreamTranslator>> {
    if !needs_translation(client, provider) {
        return None;
    }
    if client.is_hosted(provider) {
        return Some(match provider {
            ProviderKind::Bedrock { .. } => Box::new(claude::InvokeStream::default()),
            _ => Box::new(claude::Unchanged),
        });
    }
    Some(stream::translator(client, provider, ReplyMeta::now(client, model), include_usage))
}

/// The SSE event that ends a stream whose provider failed mid-way, in the client's API
/// (`None`: an untranslated stream, OpenAI's shape).
pub fn mid_stream_error(client: Option<ClientApi>, detail: &str) -> Bytes {
    let message = format!("provider failed mid-stream: {}", detail.trim());
    let text = match client {
        Some(ClientApi::AnthropicMessages) => {
            let data = anthropic::error_envelope("api_error", &message);
            format!("event: error\ndata: {data}\n\n")
        }
        Some(ClientApi::OpenAiResponses) => responses::mid_stream_error(&message),
        Some(ClientApi::OpenAiChat) | None => {
            let data = json!({"error": {"message": message, "type": "upstream_error", "code": 502}});
            format!("data: {data}\n\n")
        }
    };
    Bytes::from(text)
}

/// `GET /v1/models` for a route: the providers' configured models, first owner wins.
pub fn models_list(providers: &[&ProviderConfig]) -> Bytes {
    let mut seen = std::collections::HashSet::new();
    let data: Vec<Value> = providers
        .iter()
        .filter_map(|p| p.model.as_deref().map(|m| (m, p.name.as_str())))
        .filter(|(m, _)| seen.insert(*m))
        .map(|(m, owner)| json!({"id": m, "object": "model", "owned_by": owner}))
        .collect();
    Bytes::from(json!({"object": "list", "data": data}).to_string())
}
