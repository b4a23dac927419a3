//! The neutral model every cross-API translation goes through, and small JSON helpers the
//! API modules share.

use super::TranslateError;
use crate::config::ProviderKind;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// A chat request, whatever API it came in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub model: Option<String>,
    /// System prompt blocks, in order.
    pub system: Vec<String>,
    /// Alternating user/assistant turns (consecutive turns of one role are merged).
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Anthropic `top_k`.
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    /// OpenAI `user` / Anthropic `metadata.user_id`.
    pub user: Option<String>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub response_format: Option<ResponseFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// Assistant turns only.
    ToolCall(ToolCall),
    /// User turns only.
    ToolResult(ToolResult),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub source: ImageSource,
    /// Where it was in the client's request, for error messages.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON object.
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub id: String,
    /// The called tool's name, found from the matching call earlier in the conversation.
    pub name: Option<String>,
    /// Text and images.
    pub content: Vec<Part>,
    pub is_error: bool,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// Some tool must be called.
    Required,
    None,
    Tool(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    JsonObject,
    JsonSchema { name: Option<String>, schema: Value },
}

impl Request {
    /// Appends a turn, merging it into the previous one when the role is the same (tool
    /// results followed by user text become one user turn). Empty turns are skipped.
    pub fn push(&mut self, role: Role, parts: Vec<Part>) {
        if parts.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => self.messages.push(Message { role, parts }),
        }
    }

    /// The first of `seed`, `frequency_penalty`, `presence_penalty` and `response_format`
    /// that is set: options Anthropic and Bedrock have no counterpart for.
    pub fn seed_penalty_or_format(&self) -> Option<&'static str> {
        [
            ("seed", self.seed.is_some()),
            ("frequency_penalty", self.frequency_penalty.is_some()),
            ("presence_penalty", self.presence_penalty.is_some()),
            ("response_format", self.response_format.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// The tool name of the call with `id` made earlier in the conversation.
    pub fn tool_name(&self, id: &str) -> Option<String> {
        self.messages.iter().rev().flat_map(|m| m.parts.iter()).find_map(|p| match p {
            Part::ToolCall(c) if c.id == id => Some(c.name.clone()),
            _ => None,
        })
    }
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub id: Option<String>,
    pub model: Option<String>,
    pub parts: Vec<ReplyPart>,
    pub finish: Option<Finish>,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplyPart {
    Text(String),
    ToolCall(ToolCall),
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    EndTurn,
    /// Stopped at a stop sequence (which one, when the provider says).
    StopSequence(Option<String>),
    MaxTokens,
    ToolUse,
    ContentFilter,
    /// A reason with no counterpart, passed on as the provider spelled it (lowercase).
    Other(String),
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn openai(&self) -> String {
        match self {
            Finish::EndTurn | Finish::StopSequence(_) => "stop".into(),
            Finish::MaxTokens => "length".into(),
            Finish::ToolUse => "tool_calls".into(),
            Finish::ContentFilter => "content_filter".into(),
            Finish::Other(s) => s.clone(),
        }
    }

    /// Anthropic's `stop_reason`.
    pub fn anthropic(&self) -> String {
        match self {
            Finish::EndTurn => "end_turn".into(),
            Finish::StopSequence(_) => "stop_sequence".into(),
            Finish::MaxTokens => "max_tokens".into(),
            Finish::ToolUse => "tool_use".into(),
            Finish::ContentFilter => "refusal".into(),
            Finish::Other(s) => s.clone(),
        }
    }

    pub fn stop_sequence(&self) -> Option<&str> {
        match self {
            Finish::StopSequence(s) => s.as_deref(),
            _ => None,
        }
    }
}

/// Token counts. `input` excludes cached tokens, which are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
}

impl Usage {
    /// Takes every count `newer` knows (providers report running totals).
    pub fn merge(&mut self, newer: Usage) {
        self.input = newer.input.or(self.input);
        self.output = newer.output.or(self.output);
        self.cache_read = newer.cache_read.or(self.cache_read);
        self.cache_write = newer.cache_write.or(self.cache_write);
    }

    /// All prompt tokens, cached ones included.
    pub fn prompt_total(&self) -> u64 {
        self.input
            .unwrap_or(0)
            .saturating_add(self.cache_read.unwrap_or(0))
            .saturating_add(self.cache_write.unwrap_or(0))
    }
}

/// One step of a streamed answer, whatever API it came in.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The answer began.
    Start {
        id: Option<String>,
        model: Option<String>,
        usage: Usage,
    },
    Text(String),
    /// A new tool call; following [`Event::ToolArgs`] belong to it.
    ToolStart {
        id: String,
        name: String,
    },
    /// A fragment of the current tool call's JSON arguments.
    ToolArgs(String),
    Finish(Finish),
    Usage(Usage),
    /// The provider reported an error inside the stream; nothing follows.
    Error(ErrorInfo),
    /// The provider said the answer is complete.
    End,
}

/// A provider error, API-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// The HTTP status, when the error came as a response (not inside a stream).
    pub status: Option<u16>,
    /// The provider's own error type or code (`rate_limit_error`, `ThrottlingException`,
    /// `RESOURCE_EXHAUSTED`).
    pub kind: Option<String>,
    pub message: String,
}

/// The broad class of an error, which each client API names its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    TooLarge,
    RateLimit,
    Overloaded,
    Server,
}

impl ErrorInfo {
    /// Reads an error answer of `provider`; a body that is not the provider's error shape
    /// becomes the message as is.
    pub fn from_body(provider: &ProviderKind, status: u16, body: &[u8]) -> ErrorInfo {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let found = parsed.as_ref().and_then(|v| match provider {
            ProviderKind::OpenAi | ProviderKind::Azure { .. } => super::openai::parse_error(v),
            ProviderKind::Anthropic { .. } => super::anthropic::parse_error(v),
            ProviderKind::Bedrock { .. } => super::bedrock::parse_error(v),
            ProviderKind::Gemini => super::gemini::parse_error(v),
            // Claude on Vertex answers Anthropic errors, Vertex itself Google's.
            ProviderKind::Vertex { .. } => super::gemini::parse_error(v)
                .filter(|(status, _)| status.is_some())
                .or_else(|| super::anthropic::parse_error(v)),
        });
        match found {
            Some((kind, message)) => ErrorInfo { status: Some(status), kind, message },
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message =
                    if text.is_empty() { format!("provider answered {status}") } else { truncate(text, 2000) };
                ErrorInfo { status: Some(status), kind: None, message }
            }
        }
    }

    /// The class, from the status when known, else from the provider's error type.
    pub fn class(&self) -> ErrorClass {
        if let Some(status) = self.status {
            return match status {
                401 => ErrorClass::Authentication,
                403 => ErrorClass::Permission,
                404 => ErrorClass::NotFound,
                413 => ErrorClass::TooLarge,
                429 => ErrorClass::RateLimit,
                503 | 529 => ErrorClass::Overloaded,
                400..=499 => ErrorClass::InvalidRequest,
                _ => ErrorClass::Server,
            };
        }
        let kind = self.kind.as_deref().unwrap_or("").to_ascii_lowercase();
        if kind.contains("throttl") || kind.contains("rate_limit") || kind.contains("resource_exhausted") {
            ErrorClass::RateLimit
        } else if kind.contains("overload") || kind.contains("unavailable") {
            ErrorClass::Overloaded
        } else if kind.contains("validation") || kind.contains("invalid") {
            ErrorClass::InvalidRequest
        } else if kind.contains("access") || kind.contains("permission") {
            ErrorClass::Permission
        } else if kind.contains("not_found") || kind.contains("notfound") {
            ErrorClass::NotFound
        } else {
            ErrorClass::Server
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

// ---- JSON reading helpers -------------------------------------------------------------

/// The object at `at`, or an error naming it.
pub fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>, TranslateError> {
    value.as_object().ok_or_else(|| TranslateError::invalid(format!("{at} must be an object")))
}

/// The array at `at`, or an error naming it.
pub fn array<'a>(value: &'a Value, at: &str) -> Result<&'a Vec<Value>, TranslateError> {
    value.as_array().ok_or_else(|| TranslateError::invalid(format!("{at} must be an array")))
}

pub fn string(value: &Value, at: &str) -> Result<String, TranslateError> {
    value.as_str().map(str::to_string).ok_or_else(|| TranslateError::invalid(format!("{at} must be a string")))
}

pub fn number(value: &Value, at: &str) -> Result<f64, TranslateError> {
    value.as_f64().ok_or_else(|| TranslateError::invalid(format!("{at} must be a number")))
}

pub fn unsigned(value: &Value, at: &str) -> Result<u64, TranslateError> {
    value.as_u64().ok_or_else(|| TranslateError::invalid(format!("{at} must be a non-negative integer")))
}

pub fn boolean(value: &Value, at: &str) -> Result<bool, TranslateError> {
    value.as_bool().ok_or_else(|| TranslateError::invalid(format!("{at} must be a boolean")))
}

/// A required string field of `obj`.
pub fn req_str(obj: &Map<String, Value>, key: &str, at: &str) -> Result<String, TranslateError> {
    match obj.get(key) {
        Some(v) => string(v, &format!("{at}.{key}")),
        None => Err(TranslateError::invalid(format!("{at}.{key} is required"))),
    }
}

/// An optional string field of `obj` (`null` counts as absent).
pub fn opt_str(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, TranslateError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, &format!("{at}.{key}")).map(Some),
    }
}

/// A token count of a usage object, if present.
pub fn count(obj: &Value, key: &str) -> Option<u64> {
    obj.get(key).and_then(Value::as_u64)
}

/// The entries of a request object that are not `null`.
pub fn present(obj: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    obj.iter().filter(|(_, v)| !v.is_null())
}

/// Inserts `key` into a JSON object being written when `value` is set.
pub fn insert_some<T: Serialize>(out: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        out.insert(key.into(), json!(v));
    }
}

/// Fails on the first present key of `obj` not in `allowed`, naming it as unsupported by
/// `target`.
pub fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    at: &str,
    target: &'static str,
) -> Result<(), TranslateError> {
    match present(obj).find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((key, _)) => Err(TranslateError::unsupported(format!("{at}.{key}"), target)),
        None => Ok(()),
    }
}

/// `data:image/png;base64,AAAA` → (`image/png`, `AAAA`).
pub fn parse_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    if media_type.is_empty() {
        return None;
    }
    Some((media_type.to_string(), data.to_string()))
}

/// Tool call arguments given as JSON text (OpenAI), as an object; empty text is `{}`.
pub fn arguments_object(text: &str, at: &str) -> Result<Value, TranslateError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(TranslateError::invalid(format!("{at} must be a JSON object"))),
        Err(e) => Err(TranslateError::invalid(format!("{at} is not valid JSON: {e}"))),
    }
}
