//! Google Gemini `generateContent` / `streamGenerateContent?alt=sse`: requests from the
//! neutral model, replies, errors and streamed chunks.
//!
//! Images go inline (base64); by URL only `gs://` objects can be referenced (`fileData`),
//! so `http(s)` image URLs cannot be expressed. Gemini function calls carry no ids: the
//! translation numbers them `call_0`, `call_1`, … in the order they come.

use super::azure::UNRESERVED;
use super::ir::{
    count, insert_some, Event, Finish, ImageSource, Part, Reply, ReplyPart, Request, ResponseFormat, Role, ToolCall,
    ToolChoice, ToolResult, Usage,
};
use super::sse::SseEvent;
use super::stream::{chunk_json, Sink, SseMapper};
use super::TranslateError;
use percent_encoding::utf8_percent_encode;
use serde_json::{json, Map, Value};

const TARGET: &str = "gemini";

/// `/v1beta/models/{model}:generateContent` or `:streamGenerateContent?alt=sse`.
pub fn path(model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let model = utf8_percent_encode(model, UNRESERVED);
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

// ---- requests ---------------------------------------------------------------------------

/// Writes a `generateContent` request body (the model goes in the path).
pub fn emit_request(req: &Request) -> Result<Value, TranslateError> {
    if req.user.is_some() {
        return Err(TranslateError::unsupported("user", TARGET));
    }
    if req.parallel_tool_calls == Some(false) {
        return Err(TranslateError::unsupported("parallel_tool_calls = false", TARGET));
    }
    let mut out = Map::new();
    let mut contents = Vec::new();
    for m in &req.messages {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let parts = m.parts.iter().map(part).collect::<Result<Vec<_>, _>>()?;
        contents.push(json!({"role": role, "parts": parts}));
    }
    out.insert("contents".into(), Value::Array(contents));
    if !req.system.is_empty() {
        let parts: Vec<Value> = req.system.iter().map(|t| json!({"text": t})).collect();
        out.insert("systemInstruction".into(), json!({"parts": parts}));
    }
    let mut config = Map::new();
    insert_some(&mut config, "maxOutputTokens", req.max_tokens);
    insert_some(&mut config, "temperature", req.temperature);
    insert_some(&mut config, "topP", req.top_p);
    insert_some(&mut config, "topK", req.top_k);
    if !req.stop.is_empty() {
        config.insert("stopSequences".into(), json!(req.stop));
    }
    insert_some(&mut config, "seed", req.seed);
    insert_some(&mut config, "presencePenalty", req.presence_penalty);
    insert_some(&mut config, "frequencyPenalty", req.frequency_penalty);
    if let Some(format) = &req.response_format {
        config.insert("responseMimeType".into(), json!("application/json"));
        if let ResponseFormat::JsonSchema { schema, .. } = format {
            config.insert("responseJsonSchema".into(), schema.clone());
        }
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if !req.tools.is_empty() {
        let declarations: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name, "parametersJsonSchema": t.parameters});
                if let Some(desc) = &t.description {
                    d["description"] = json!(desc);
                }
                d
            })
            .collect();
        out.insert("tools".into(), json!([{"functionDeclarations": declarations}]));
    }
    if let Some(choice) = &req.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        out.insert("toolConfig".into(), json!({"functionCallingConfig": config}));
    }
    Ok(Value::Object(out))
}

/// The media type of a `gs://` object, from its extension.
fn media_type_of(uri: &str) -> Option<&'static str> {
    let ext = uri.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        "heic" => Some("image/heic"),
        "heif" => Some("image/heif"),
        _ => None,
    }
}

fn part(p: &Part) -> Result<Value, TranslateError> {
    Ok(match p {
        Part::Text(t) => json!({"text": t}),
        Part::Image(image) => match &image.source {
            ImageSource::Base64 { media_type, data } => json!({"inlineData": {"mimeType": media_type, "data": data}}),
            ImageSource::Url(url) if url.starts_with("gs://") => {
                let mime = media_type_of(url).ok_or_else(|| {
                    TranslateError::unsupported(format!("{} (gs:// object of unknown type)", image.at), TARGET)
                })?;
                json!({"fileData": {"mimeType": mime, "fileUri": url}})
            }
            ImageSource::Url(_) => return Err(TranslateError::unsupported(format!("{} (URL)", image.at), TARGET)),
        },
        Part::ToolCall(c) => json!({"functionCall": {"name": c.name, "args": c.arguments}}),
        Part::ToolResult(r) => json!({"functionResponse": function_response(r)?}),
    })
}

/// A tool result as `{name, response}`: a JSON-object result as is, other text under
/// `output`, an error under `error` (the keys Gemini documents).
fn function_response(r: &ToolResult) -> Result<Value, TranslateError> {
    let name = r.name.clone().ok_or_else(|| {
        TranslateError::invalid(format!(
            "{}: no earlier tool call has id {:?} (Gemini needs the function name)",
            r.at, r.id
        ))
    })?;
    let mut text = String::new();
    for p in &r.content {
        match p {
            Part::Text(t) => text.push_str(t),
            Part::Image(i) => return Err(TranslateError::unsupported(i.at.clone(), TARGET)),
            Part::ToolCall(_) | Part::ToolResult(_) => {
                return Err(TranslateError::invalid(format!("{}: unexpected content", r.at)))
            }
        }
    }
    let response = if r.is_error {
        json!({"error": text})
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({"output": text}),
        }
    };
    Ok(json!({"name": name, "response": response}))
}

// ---- replies ----------------------------------------------------------------------------

fn finish_from(reason: &str, tool_calls: bool) -> Option<Finish> {
    Some(match reason {
        "STOP" if tool_calls => Finish::ToolUse,
        "STOP" => Finish::EndTurn,
        "MAX_TOKENS" => Finish::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => Finish::ContentFilter,
        "FINISH_REASON_UNSPECIFIED" => return None,
        other => Finish::Other(other.to_ascii_lowercase()),
    })
}

fn usage_from(u: &Value) -> Usage {
    let cached = count(u, "cachedContentTokenCount");
    let thoughts = count(u, "thoughtsTokenCount").unwrap_or(0);
    Usage {
        input: count(u, "promptTokenCount").map(|p| p.saturating_sub(cached.unwrap_or(0))),
        output: count(u, "candidatesTokenCount")
            .map(|c| c.saturating_add(thoughts))
            .or((thoughts > 0).then_some(thoughts)),
        cache_read: cached,
        cache_write: None,
    }
}

/// What one `GenerateContentResponse` holds.
struct Chunk {
    parts: Vec<ReplyPart>,
    finish: Option<String>,
}

/// Reads the first candidate of a response; `next_call` numbers function calls.
fn read_chunk(v: &Value, client: &'static str, next_call: &mut u64) -> Result<Chunk, TranslateError> {
    let mut parts = Vec::new();
    let candidate = v.pointer("/candidates/0");
    let empty = Vec::new();
    let raw_parts = candidate.and_then(|c| c.pointer("/content/parts")).and_then(Value::as_array).unwrap_or(&empty);
    for (i, p) in raw_parts.iter().enumerate() {
        let at = format!("candidates[0].content.parts[{i}]");
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            return Err(TranslateError::unsupported(format!("{at}.thought"), client));
        }
        if let Some(text) = p.get("text").and_then(Value::as_str) {
            parts.push(ReplyPart::Text(text.to_string()));
        } else if let Some(call) = p.get("functionCall") {
            let name = call
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::invalid(format!("{at}.functionCall.name must be a string")))?;
            let id = match call.get("id").and_then(Value::as_str) {
                Some(id) => id.to_string(),
                None => format!("call_{next_call}"),
            };
            *next_call += 1;
            parts.push(ReplyPart::ToolCall(ToolCall {
                id,
                name: name.to_string(),
                arguments: call.get("args").cloned().unwrap_or_else(|| json!({})),
            }));
        } else {
            let key = p
                .as_object()
                .and_then(|o| o.keys().find(|k| k.as_str() != "thoughtSignature").cloned())
                .unwrap_or_default();
            return Err(TranslateError::unsupported(format!("{at}.{key}"), client));
        }
    }
    let mut finish = candidate.and_then(|c| c.get("finishReason")).and_then(Value::as_str).map(str::to_string);
    if candidate.is_none() && v.pointer("/promptFeedback/blockReason").is_some() {
        finish = Some("SAFETY".to_string());
    }
    Ok(Chunk { parts, finish })
}

/// Reads a `generateContent` answer; `client` names the client API in errors.
pub fn parse_reply(v: &Value, client: &'static str) -> Result<Reply, TranslateError> {
    let mut next_call = 0;
    let chunk = read_chunk(v, client, &mut next_call)?;
    let tool_calls = chunk.parts.iter().any(|p| matches!(p, ReplyPart::ToolCall(_)));
    Ok(Reply {
        id: v.get("responseId").and_then(Value::as_str).map(str::to_string),
        model: v.get("modelVersion").and_then(Value::as_str).map(str::to_string),
        finish: chunk.finish.as_deref().and_then(|r| finish_from(r, tool_calls)),
        parts: chunk.parts,
        usage: v.get("usageMetadata").map(usage_from).unwrap_or_default(),
    })
}

/// (status, message) of a Gemini error body.
pub fn parse_error(v: &Value) -> Option<(Option<String>, String)> {
    let error = v.get("error")?;
    let message = error.get("message")?.as_str()?.to_string();
    Some((error.get("status").and_then(Value::as_str).map(str::to_string), message))
}

// ---- streams ----------------------------------------------------------------------------

/// Maps `streamGenerateContent?alt=sse` events (each a whole `GenerateContentResponse`).
#[derive(Debug)]
pub struct ChunkMapper {
    client: &'static str,
    started: bool,
    next_call: u64,
}

impl ChunkMapper {
    pub fn new(client: &'static str) -> Self {
        ChunkMapper { client, started: false, next_call: 0 }
    }
}

impl SseMapper for ChunkMapper {
    fn map(&mut self, event: SseEvent, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let Some(v) = chunk_json(&event, &mut self.started, parse_error, ("responseId", "modelVersion"), sink)? else {
            return Ok(());
        };
        let chunk = read_chunk(&v, self.client, &mut self.next_call)?;
        for p in chunk.parts {
            match p {
                ReplyPart::Text(t) if t.is_empty() => {}
                ReplyPart::Text(t) => sink(Event::Text(t))?,
                ReplyPart::ToolCall(c) => {
                    sink(Event::ToolStart { id: c.id, name: c.name })?;
                    sink(Event::ToolArgs(c.arguments.to_string()))?;
                }
            }
        }
        if let Some(u) = v.get("usageMetadata") {
            sink(Event::Usage(usage_from(u)))?;
        }
        if let Some(finish) = chunk.finish.as_deref().and_then(|r| finish_from(r, self.next_call > 0)) {
            sink(Event::Finish(finish))?;
        }
        Ok(())
    }
}
