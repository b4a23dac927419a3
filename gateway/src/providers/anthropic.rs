//! Anthropic Messages, both as the client's API and as a provider's: request ↔ neutral
//! model, replies, errors, and the SSE event sequence (`message_start` … `message_stop`)
//! in both directions.

use super::ir::{
    array, boolean, check_keys, count, insert_some, number, object, opt_str, present, req_str, string, unsigned,
    ErrorClass, ErrorInfo, Event, Finish, Image, ImageSource, Part, Reply, ReplyPart, Request, Role, Tool, ToolCall,
    ToolChoice, ToolResult, Usage,
};
use super::sse::SseEvent;
use super::stream::{json_data, write_event, ClientEncoder, EncoderState, Sink, SseMapper};
use super::{ReplyMeta, TranslateError};
use bytes::BytesMut;
use serde_json::{json, Map, Value};

/// `max_tokens` is required by Anthropic; used when the client gave none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

// ---- requests: Anthropic client → neutral -----------------------------------------------

/// Reads an Anthropic Messages request; `target` names the provider in errors.
pub fn parse_request(body: &Value, target: &'static str) -> Result<Request, TranslateError> {
    let obj = object(body, "request body")?;
    let unsupported = |field: String| Err(TranslateError::unsupported(field, target));
    let mut req = Request::default();
    let mut messages = None;
    for (key, value) in present(obj) {
        let key = key.as_str();
        match key {
            "model" => req.model = Some(string(value, key)?),
            "messages" => messages = Some(array(value, key)?),
            "system" => req.system = parse_system(value, target)?,
            "max_tokens" => req.max_tokens = Some(unsigned(value, key)?),
            "temperature" => req.temperature = Some(number(value, key)?),
            "top_p" => req.top_p = Some(number(value, key)?),
            "top_k" => req.top_k = Some(unsigned(value, key)?),
            "stop_sequences" => {
                req.stop = array(value, key)?
                    .iter()
                    .enumerate()
                    .map(|(i, s)| string(s, &format!("stop_sequences[{i}]")))
                    .collect::<Result<_, _>>()?
            }
            "stream" => req.stream = boolean(value, key)?,
            "tools" => req.tools = parse_tools(value, target)?,
            "tool_choice" => parse_tool_choice(&mut req, value, target)?,
            "metadata" => {
                for (k, v) in present(object(value, key)?) {
                    match k.as_str() {
                        "user_id" => req.user = Some(string(v, "metadata.user_id")?),
                        other => return unsupported(format!("metadata.{other}")),
                    }
                }
            }
            "thinking" if value.get("type").and_then(Value::as_str) == Some("disabled") => {}
            "service_tier" if value.as_str() == Some("auto") => {}
            other => return unsupported(other.to_string()),
        }
    }
    let messages = messages.ok_or_else(|| TranslateError::invalid("messages is required"))?;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let obj = object(message, &at)?;
        if let Some((key, _)) = present(obj).find(|(k, _)| !matches!(k.as_str(), "role" | "content")) {
            return unsupported(format!("{at}.{key}"));
        }
        let role = match req_str(obj, "role", &at)?.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => return Err(TranslateError::invalid(format!("{at}.role: unknown role {other:?}"))),
        };
        let content = obj.get("content").ok_or_else(|| TranslateError::invalid(format!("{at}.content is required")))?;
        let parts = blocks(&req, content, &format!("{at}.content"), target, role == Role::User)?;
        req.push(role, parts);
    }
    Ok(req)
}

fn parse_system(value: &Value, target: &'static str) -> Result<Vec<String>, TranslateError> {
    if let Value::String(s) = value {
        return Ok(if s.is_empty() { Vec::new() } else { vec![s.clone()] });
    }
    let mut out = Vec::new();
    for (i, block) in array(value, "system")?.iter().enumerate() {
        let at = format!("system[{i}]");
        let obj = object(block, &at)?;
        check_keys(obj, &["type", "text"], &at, target)?;
        let kind = req_str(obj, "type", &at)?;
        if kind != "text" {
            return Err(TranslateError::unsupported(format!("{at}.type = {kind}"), target));
        }
        out.push(req_str(obj, "text", &at)?);
    }
    Ok(out)
}

/// Message content: a string or content blocks. Tool results only in user turns.
fn blocks(
    req: &Request,
    content: &Value,
    at: &str,
    target: &'static str,
    user: bool,
) -> Result<Vec<Part>, TranslateError> {
    if let Value::String(s) = content {
        return Ok(if s.is_empty() { Vec::new() } else { vec![Part::Text(s.clone())] });
    }
    let mut parts = Vec::new();
    for (j, block) in array(content, at)?.iter().enumerate() {
        let bat = format!("{at}[{j}]");
        let obj = object(block, &bat)?;
        let kind = req_str(obj, "type", &bat)?;
        match kind.as_str() {
            "text" => {
                check_keys(obj, &["type", "text"], &bat, target)?;
                let text = req_str(obj, "text", &bat)?;
                if !text.is_empty() {
                    parts.push(Part::Text(text));
                }
            }
            "image" => {
                check_keys(obj, &["type", "source"], &bat, target)?;
                parts.push(Part::Image(image(obj, &bat, target)?));
            }
            "tool_use" if !user => {
                check_keys(obj, &["type", "id", "name", "input"], &bat, target)?;
                let input = obj.get("input").cloned().unwrap_or_else(|| json!({}));
                if !input.is_object() {
                    return Err(TranslateError::invalid(format!("{bat}.input must be an object")));
                }
                parts.push(Part::ToolCall(ToolCall {
                    id: req_str(obj, "id", &bat)?,
                    name: req_str(obj, "name", &bat)?,
                    arguments: input,
                }));
            }
            "tool_result" if user => {
                check_keys(obj, &["type", "tool_use_id", "content", "is_error"], &bat, target)?;
                let id = req_str(obj, "tool_use_id", &bat)?;
                let content = match obj.get("content").filter(|c| !c.is_null()) {
                    None => Vec::new(),
                    Some(c) => result_content(c, &format!("{bat}.content"), target)?,
                };
                let is_error = match obj.get("is_error").filter(|c| !c.is_null()) {
                    None => false,
                    Some(v) => boolean(v, &format!("{bat}.is_error"))?,
                };
                parts.push(Part::ToolResult(ToolResult { name: req.tool_name(&id), id, content, is_error, at: bat }));
            }
            other => return Err(TranslateError::unsupported(format!("{bat}.type = {other}"), target)),
        }
    }
    Ok(parts)
}

/// The content of a tool result: a string, or text and image blocks.
fn result_content(content: &Value, at: &str, target: &'static str) -> Result<Vec<Part>, TranslateError> {
    if let Value::String(s) = content {
        return Ok(vec![Part::Text(s.clone())]);
    }
    let mut parts = Vec::new();
    for (j, block) in array(content, at)?.iter().enumerate() {
        let bat = format!("{at}[{j}]");
        let obj = object(block, &bat)?;
        match req_str(obj, "type", &bat)?.as_str() {
            "text" => {
                check_keys(obj, &["type", "text"], &bat, target)?;
                parts.push(Part::Text(req_str(obj, "text", &bat)?));
            }
            "image" => {
                check_keys(obj, &["type", "source"], &bat, target)?;
                parts.push(Part::Image(image(obj, &bat, target)?));
            }
            other => return Err(TranslateError::unsupported(format!("{bat}.type = {other}"), target)),
        }
    }
    Ok(parts)
}

fn image(obj: &Map<String, Value>, at: &str, target: &'static str) -> Result<Image, TranslateError> {
    let sat = format!("{at}.source");
    let source = object(obj.get("source").unwrap_or(&Value::Null), &sat)?;
    let source = match req_str(source, "type", &sat)?.as_str() {
        "base64" => {
            check_keys(source, &["type", "media_type", "data"], &sat, target)?;
            ImageSource::Base64 {
                media_type: req_str(source, "media_type", &sat)?,
                data: req_str(source, "data", &sat)?,
            }
        }
        "url" => {
            check_keys(source, &["type", "url"], &sat, target)?;
            ImageSource::Url(req_str(source, "url", &sat)?)
        }
        other => return Err(TranslateError::unsupported(format!("{sat}.type = {other}"), target)),
    };
    Ok(Image { source, at: at.to_string() })
}

fn parse_tools(value: &Value, target: &'static str) -> Result<Vec<Tool>, TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in array(value, "tools")?.iter().enumerate() {
        let at = format!("tools[{i}]");
        let obj = object(tool, &at)?;
        if let Some(kind) = opt_str(obj, "type", &at)? {
            if kind != "custom" {
                return Err(TranslateError::unsupported(format!("{at}.type = {kind}"), target));
            }
        }
        check_keys(obj, &["type", "name", "description", "input_schema"], &at, target)?;
        tools.push(Tool {
            name: req_str(obj, "name", &at)?,
            description: opt_str(obj, "description", &at)?,
            parameters: obj
                .get("input_schema")
                .cloned()
                .ok_or_else(|| TranslateError::invalid(format!("{at}.input_schema is required")))?,
        });
    }
    Ok(tools)
}

fn parse_tool_choice(req: &mut Request, value: &Value, target: &'static str) -> Result<(), TranslateError> {
    let at = "tool_choice";
    let obj = object(value, at)?;
    check_keys(obj, &["type", "name", "disable_parallel_tool_use"], at, target)?;
    req.tool_choice = Some(match req_str(obj, "type", at)?.as_str() {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Tool(req_str(obj, "name", at)?),
        other => return Err(TranslateError::invalid(format!("tool_choice.type: unknown value {other:?}"))),
    });
    if let Some(disable) = obj.get("disable_parallel_tool_use").filter(|v| !v.is_null()) {
        if boolean(disable, "tool_choice.disable_parallel_tool_use")? {
            req.parallel_tool_calls = Some(false);
        }
    }
    Ok(())
}

// ---- requests: neutral → Anthropic provider ---------------------------------------------

/// Writes an Anthropic Messages request.
pub fn emit_request(req: &Request, model: Option<&str>) -> Result<Value, TranslateError> {
    const TARGET: &str = "anthropic";
    let unsupported = |field: &str| Err(TranslateError::unsupported(field, TARGET));
    if let Some(field) = req.seed_penalty_or_format() {
        return unsupported(field);
    }
    if req.temperature.is_some_and(|t| t > 1.0) {
        return unsupported("temperature above 1.0");
    }
    let mut out = Map::new();
    insert_some(&mut out, "model", model.or(req.model.as_deref()));
    out.insert("max_tokens".into(), json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)));
    match req.system.as_slice() {
        [] => {}
        [one] => {
            out.insert("system".into(), json!(one));
        }
        many => {
            let blocks: Vec<Value> = many.iter().map(|t| json!({"type": "text", "text": t})).collect();
            out.insert("system".into(), Value::Array(blocks));
        }
    }
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": content(&m.parts)})
        })
        .collect();
    out.insert("messages".into(), Value::Array(messages));
    insert_some(&mut out, "temperature", req.temperature);
    insert_some(&mut out, "top_p", req.top_p);
    insert_some(&mut out, "top_k", req.top_k);
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut v = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    v["description"] = json!(d);
                }
                v
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        let mut choice = match &req.tool_choice {
            None => None,
            Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
            Some(ToolChoice::Required) => Some(json!({"type": "any"})),
            Some(ToolChoice::None) => Some(json!({"type": "none"})),
            Some(ToolChoice::Tool(name)) => Some(json!({"type": "tool", "name": name})),
        };
        if req.parallel_tool_calls == Some(false) && req.tool_choice != Some(ToolChoice::None) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            c["disable_parallel_tool_use"] = json!(true);
        }
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
    }
    if let Some(u) = &req.user {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    Ok(Value::Object(out))
}

fn content(parts: &[Part]) -> Value {
    if let [Part::Text(t)] = parts {
        return json!(t);
    }
    Value::Array(parts.iter().map(block).collect())
}

fn block(part: &Part) -> Value {
    match part {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(i) => {
            let source = match &i.source {
                ImageSource::Base64 { media_type, data } => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                ImageSource::Url(u) => json!({"type": "url", "url": u}),
            };
            json!({"type": "image", "source": source})
        }
        Part::ToolCall(c) => json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
        Part::ToolResult(r) => {
            let mut v = json!({"type": "tool_result", "tool_use_id": r.id});
            if !r.content.is_empty() {
                v["content"] = content(&r.content);
            }
            if r.is_error {
                v["is_error"] = json!(true);
            }
            v
        }
    }
}

// ---- replies ----------------------------------------------------------------------------

fn finish_from(reason: &str, stop_sequence: Option<&str>) -> Finish {
    match reason {
        "end_turn" => Finish::EndTurn,
        "max_tokens" => Finish::MaxTokens,
        "stop_sequence" => Finish::StopSequence(stop_sequence.map(str::to_string)),
        "tool_use" => Finish::ToolUse,
        "refusal" => Finish::ContentFilter,
        other => Finish::Other(other.to_string()),
    }
}

fn usage_from(u: &Value) -> Usage {
    Usage {
        input: count(u, "input_tokens"),
        output: count(u, "output_tokens"),
        cache_read: count(u, "cache_read_input_tokens"),
        cache_write: count(u, "cache_creation_input_tokens"),
    }
}

fn usage_value(u: &Usage) -> Value {
    let mut v = json!({"input_tokens": u.input.unwrap_or(0), "output_tokens": u.output.unwrap_or(0)});
    if let Some(n) = u.cache_read {
        v["cache_read_input_tokens"] = json!(n);
    }
    if let Some(n) = u.cache_write {
        v["cache_creation_input_tokens"] = json!(n);
    }
    v
}

/// Reads a Messages answer (for an OpenAI client).
pub fn parse_reply(v: &Value) -> Result<Reply, TranslateError> {
    let mut parts = Vec::new();
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("provider answer has no content array"))?;
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("content[{i}]");
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                parts.push(ReplyPart::Text(string(block.get("text").unwrap_or(&Value::Null), &format!("{at}.text"))?))
            }
            "tool_use" => parts.push(ReplyPart::ToolCall(ToolCall {
                id: string(block.get("id").unwrap_or(&Value::Null), &format!("{at}.id"))?,
                name: string(block.get("name").unwrap_or(&Value::Null), &format!("{at}.name"))?,
                arguments: block.get("input").cloned().unwrap_or_else(|| json!({})),
            })),
            other => return Err(TranslateError::unsupported(format!("{at}.type = {other}"), "openai")),
        }
    }
    let stop_sequence = v.get("stop_sequence").and_then(Value::as_str);
    Ok(Reply {
        id: v.get("id").and_then(Value::as_str).map(str::to_string),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        parts,
        finish: v.get("stop_reason").and_then(Value::as_str).map(|r| finish_from(r, stop_sequence)),
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
    })
}

/// Writes a Messages answer.
pub fn emit_reply(reply: &Reply, meta: &ReplyMeta) -> Result<Value, TranslateError> {
    let content: Vec<Value> = reply
        .parts
        .iter()
        .map(|p| match p {
            ReplyPart::Text(t) => json!({"type": "text", "text": t}),
            ReplyPart::ToolCall(c) => json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
        })
        .collect();
    Ok(json!({
        "id": reply.id.as_deref().unwrap_or(&meta.fallback_id),
        "type": "message",
        "role": "assistant",
        "model": reply.model.as_deref().unwrap_or(&meta.model),
        "content": content,
        "stop_reason": reply.finish.as_ref().map(Finish::anthropic),
        "stop_sequence": reply.finish.as_ref().and_then(Finish::stop_sequence),
        "usage": usage_value(&reply.usage),
    }))
}

// ---- errors -----------------------------------------------------------------------------

/// (type, message) of an Anthropic error body.
pub fn parse_error(v: &Value) -> Option<(Option<String>, String)> {
    let error = v.get("error")?;
    let message = error.get("message")?.as_str()?.to_string();
    Some((error.get("type").and_then(Value::as_str).map(str::to_string), message))
}

fn error_type(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::InvalidRequest => "invalid_request_error",
        ErrorClass::Authentication => "authentication_error",
        ErrorClass::Permission => "permission_error",
        ErrorClass::NotFound => "not_found_error",
        ErrorClass::TooLarge => "request_too_large",
        ErrorClass::RateLimit => "rate_limit_error",
        ErrorClass::Overloaded => "overloaded_error",
        ErrorClass::Server => "api_error",
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub fn error_value(info: &ErrorInfo) -> Value {
    error_envelope(error_type(info.class()), &info.message)
}

/// Anthropic's error shape, `{"type":"error","error":{"type": kind,"message": message}}`: the
/// one builder for provider errors, gateway errors and client refusals alike.
pub fn error_envelope(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

// ---- streams: Anthropic provider → events -----------------------------------------------

/// Maps the Messages SSE events.
#[derive(Debug, Default)]
pub struct EventMapper;

impl SseMapper for EventMapper {
    fn map(&mut self, event: SseEvent, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let v = json_data(&event)?;
        let kind = v.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                let message = v.get("message").unwrap_or(&Value::Null);
                sink(Event::Start {
                    id: message.get("id").and_then(Value::as_str).map(str::to_string),
                    model: message.get("model").and_then(Value::as_str).map(str::to_string),
                    usage: message.get("usage").map(usage_from).unwrap_or_default(),
                })
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" => match block.get("text").and_then(Value::as_str) {
                        Some(t) if !t.is_empty() => sink(Event::Text(t.to_string())),
                        _ => Ok(()),
                    },
                    "tool_use" => sink(Event::ToolStart {
                        id: string(block.get("id").unwrap_or(&Value::Null), "content_block.id")?,
                        name: string(block.get("name").unwrap_or(&Value::Null), "content_block.name")?,
                    }),
                    other => Err(TranslateError::unsupported(format!("content_block.type = {other}"), "openai")),
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text_delta" => match delta.get("text").and_then(Value::as_str) {
                        Some(t) if !t.is_empty() => sink(Event::Text(t.to_string())),
                        _ => Ok(()),
                    },
                    "input_json_delta" => match delta.get("partial_json").and_then(Value::as_str) {
                        Some(j) if !j.is_empty() => sink(Event::ToolArgs(j.to_string())),
                        _ => Ok(()),
                    },
                    other => Err(TranslateError::unsupported(format!("delta.type = {other}"), "openai")),
                }
            }
            "message_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                if let Some(reason) = delta.get("stop_reason").and_then(Value::as_str) {
                    let seq = delta.get("stop_sequence").and_then(Value::as_str);
                    sink(Event::Finish(finish_from(reason, seq)))?;
                }
                match v.get("usage") {
                    Some(u) => sink(Event::Usage(usage_from(u))),
                    None => Ok(()),
                }
            }
            "message_stop" => sink(Event::End),
            "error" => {
                let (kind, message) = parse_error(&v).unwrap_or_else(|| (None, "provider stream error".to_string()));
                sink(Event::Error(ErrorInfo { status: None, kind, message }))
            }
            // ping, content_block_stop and events added later carry nothing to translate.
            _ => Ok(()),
        }
    }
}

// ---- streams: events → Anthropic client -------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool,
}

/// Writes the Messages SSE sequence.
#[derive(Debug)]
pub struct EventEncoder {
    state: EncoderState,
    started: bool,
    /// The open content block and its index.
    open: Option<(u64, Block)>,
    next_index: u64,
    finish: Option<Finish>,
}

impl EventEncoder {
    pub fn new(meta: ReplyMeta) -> Self {
        EventEncoder { state: EncoderState::new(meta), started: false, open: None, next_index: 0, finish: None }
    }

    fn close(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        match self.open.take() {
            Some((index, _)) => {
                write_event(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}))
            }
            None => Ok(()),
        }
    }

    fn open(&mut self, kind: Block, content_block: Value, out: &mut BytesMut) -> Result<u64, TranslateError> {
        self.close(out)?;
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        write_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        )?;
        Ok(index)
    }

    fn delta(&self, index: u64, delta: Value, out: &mut BytesMut) -> Result<(), TranslateError> {
        write_event(out, "content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}))
    }
}

impl ClientEncoder for EventEncoder {
    fn state(&mut self) -> &mut EncoderState {
        &mut self.state
    }

    fn start(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let message = json!({
            "id": self.state.id,
            "type": "message",
            "role": "assistant",
            "model": self.state.meta.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {"input_tokens": self.state.usage.input.unwrap_or(0), "output_tokens": 0},
        });
        write_event(out, "message_start", &json!({"type": "message_start", "message": message}))
    }

    fn content(&mut self, event: Event, out: &mut BytesMut) -> Result<(), TranslateError> {
        match event {
            Event::Text(text) => {
                self.start(out)?;
                let index = match self.open {
                    Some((index, Block::Text)) => index,
                    _ => self.open(Block::Text, json!({"type": "text", "text": ""}), out)?,
                };
                self.delta(index, json!({"type": "text_delta", "text": text}), out)
            }
            Event::ToolStart { id, name } => {
                self.start(out)?;
                self.open(Block::Tool, json!({"type": "tool_use", "id": id, "name": name, "input": {}}), out)
                    .map(|_| ())
            }
            Event::ToolArgs(args) => match self.open {
                Some((index, Block::Tool)) => {
                    self.delta(index, json!({"type": "input_json_delta", "partial_json": args}), out)
                }
                _ => Err(TranslateError::invalid("provider stream: tool arguments outside a tool call")),
            },
            Event::Finish(finish) => {
                self.finish = Some(finish);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn error(&mut self, info: &ErrorInfo, out: &mut BytesMut) -> Result<(), TranslateError> {
        write_event(out, "error", &error_value(info))
    }

    fn terminal(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        self.start(out)?;
        self.close(out)?;
        let mut usage = json!({"output_tokens": self.state.usage.output.unwrap_or(0)});
        if let Some(n) = self.state.usage.input {
            usage["input_tokens"] = json!(n);
        }
        if let Some(n) = self.state.usage.cache_read {
            usage["cache_read_input_tokens"] = json!(n);
        }
        let delta = json!({
            "stop_reason": self.finish.as_ref().map(Finish::anthropic),
            "stop_sequence": self.finish.as_ref().and_then(Finish::stop_sequence),
        });
        write_event(out, "message_delta", &json!({"type": "message_delta", "delta": delta, "usage": usage}))?;
        write_event(out, "message_stop", &json!({"type": "message_stop"}))
    }
}
