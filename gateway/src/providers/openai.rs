//! OpenAI Chat Completions, both as the client's API and as a provider's: request ↔ neutral
//! model, replies, errors, and streamed `chat.completion.chunk`s in both directions.

use super::ir::{
    arguments_object, array, boolean, count, insert_some, number, object, opt_str, parse_data_url, present, req_str,
    string, unsigned, ErrorClass, ErrorInfo, Event, Finish, Image, ImageSource, Part, Reply, ReplyPart, Request,
    ResponseFormat, Role, Tool, ToolCall, ToolChoice, ToolResult, Usage,
};
use super::sse::SseEvent;
use super::stream::{chunk_json, write_data, ClientEncoder, EncoderState, Sink, SseMapper};
use super::{ReplyMeta, TranslateError};
use bytes::{BufMut, BytesMut};
use serde_json::{json, Map, Value};

// ---- requests: OpenAI client → neutral ------------------------------------------------

/// Reads an OpenAI chat request; `target` names the provider in errors.
pub fn parse_request(body: &Value, target: &'static str) -> Result<Request, TranslateError> {
    let obj = object(body, "request body")?;
    let unsupported = |field: &str| Err(TranslateError::unsupported(field, target));
    let mut req = Request::default();
    let mut messages = None;
    for (key, value) in present(obj) {
        let key = key.as_str();
        match key {
            "model" => req.model = Some(string(value, key)?),
            "messages" => messages = Some(array(value, key)?),
            "max_tokens" | "max_completion_tokens" => req.max_tokens = Some(unsigned(value, key)?),
            "temperature" => req.temperature = Some(number(value, key)?),
            "top_p" => req.top_p = Some(number(value, key)?),
            "stop" => {
                req.stop = match value {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| string(s, &format!("stop[{i}]")))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(TranslateError::invalid("stop must be a string or an array of strings")),
                }
            }
            "stream" => req.stream = boolean(value, key)?,
            "stream_options" => {
                for (k, v) in present(object(value, key)?) {
                    match k.as_str() {
                        "include_usage" => req.include_usage = boolean(v, "stream_options.include_usage")?,
                        other => return unsupported(&format!("stream_options.{other}")),
                    }
                }
            }
            "tools" => req.tools = parse_tools(value, target)?,
            "tool_choice" => req.tool_choice = Some(parse_tool_choice(value)?),
            "parallel_tool_calls" => req.parallel_tool_calls = Some(boolean(value, key)?),
            "user" => req.user = Some(string(value, key)?),
            "seed" => {
                req.seed = Some(value.as_i64().ok_or_else(|| TranslateError::invalid("seed must be an integer"))?)
            }
            "frequency_penalty" | "presence_penalty" => {
                let n = number(value, key)?;
                if n != 0.0 {
                    if key == "frequency_penalty" {
                        req.frequency_penalty = Some(n);
                    } else {
                        req.presence_penalty = Some(n);
                    }
                }
            }
            "response_format" => req.response_format = parse_response_format(value, target)?,
            // Values that ask for nothing beyond the default are fine anywhere.
            "n" if unsigned(value, key)? == 1 => {}
            "logprobs" if !boolean(value, key)? => {}
            "store" if !boolean(value, key)? => {}
            "logit_bias" | "metadata" if object(value, key)?.is_empty() => {}
            "service_tier" if matches!(value.as_str(), Some("auto" | "default")) => {}
            "modalities" if *value == json!(["text"]) => {}
            other => return unsupported(other),
        }
    }
    let messages = messages.ok_or_else(|| TranslateError::invalid("messages is required"))?;
    for (i, message) in messages.iter().enumerate() {
        parse_message(&mut req, message, &format!("messages[{i}]"), target)?;
    }
    Ok(req)
}

fn parse_message(req: &mut Request, message: &Value, at: &str, target: &'static str) -> Result<(), TranslateError> {
    let obj = object(message, at)?;
    let role = req_str(obj, "role", at)?;
    let allowed: &[&str] = match role.as_str() {
        "system" | "developer" | "user" => &["role", "content"],
        "assistant" => &["role", "content", "tool_calls", "refusal"],
        "tool" => &["role", "content", "tool_call_id"],
        other => return Err(TranslateError::unsupported(format!("{at}.role = {other}"), target)),
    };
    if let Some((key, _)) = present(obj).find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(TranslateError::unsupported(format!("{at}.{key}"), target));
    }
    let content = obj.get("content").filter(|c| !c.is_null());
    match role.as_str() {
        "system" | "developer" => {
            for part in content_parts(content, at, target, false)? {
                if let Part::Text(t) = part {
                    req.system.push(t);
                }
            }
        }
        "user" => {
            let parts = content_parts(content, at, target, true)?;
            req.push(Role::User, parts);
        }
        "assistant" => {
            let mut parts = content_parts(content, at, target, false)?;
            if let Some(refusal) = opt_str(obj, "refusal", at)? {
                parts.push(Part::Text(refusal));
            }
            if let Some(calls) = obj.get("tool_calls").filter(|c| !c.is_null()) {
                for (j, call) in array(calls, &format!("{at}.tool_calls"))?.iter().enumerate() {
                    parts.push(Part::ToolCall(parse_tool_call(call, &format!("{at}.tool_calls[{j}]"), target)?));
                }
            }
            req.push(Role::Assistant, parts);
        }
        _ => {
            let id = req_str(obj, "tool_call_id", at)?;
            let name = req.tool_name(&id);
            let content = content_parts(content, at, target, false)?;
            let result = ToolResult { id, name, content, is_error: false, at: at.to_string() };
            req.push(Role::User, vec![Part::ToolResult(result)]);
        }
    }
    Ok(())
}

/// `content`: a string or an array of parts; images only where `images` is set.
fn content_parts(
    content: Option<&Value>,
    at: &str,
    target: &'static str,
    images: bool,
) -> Result<Vec<Part>, TranslateError> {
    let Some(content) = content else {
        return Ok(Vec::new());
    };
    if let Value::String(s) = content {
        return Ok(if s.is_empty() { Vec::new() } else { vec![Part::Text(s.clone())] });
    }
    let mut parts = Vec::new();
    for (j, part) in array(content, &format!("{at}.content"))?.iter().enumerate() {
        let pat = format!("{at}.content[{j}]");
        let obj = object(part, &pat)?;
        let kind = req_str(obj, "type", &pat)?;
        let allowed: &[&str] = match kind.as_str() {
            "text" => &["type", "text"],
            "refusal" => &["type", "refusal"],
            "image_url" if images => &["type", "image_url"],
            other => return Err(TranslateError::unsupported(format!("{pat}.type = {other}"), target)),
        };
        if let Some((key, _)) = present(obj).find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(TranslateError::unsupported(format!("{pat}.{key}"), target));
        }
        match kind.as_str() {
            "text" => {
                let text = req_str(obj, "text", &pat)?;
                if !text.is_empty() {
                    parts.push(Part::Text(text));
                }
            }
            "refusal" => parts.push(Part::Text(req_str(obj, "refusal", &pat)?)),
            _ => {
                let iat = format!("{pat}.image_url");
                let image = object(obj.get("image_url").unwrap_or(&Value::Null), &iat)?;
                if let Some((key, v)) = present(image).find(|(k, _)| k.as_str() != "url") {
                    if !(key == "detail" && v.as_str() == Some("auto")) {
                        return Err(TranslateError::unsupported(format!("{iat}.{key}"), target));
                    }
                }
                let url = req_str(image, "url", &iat)?;
                parts.push(image_from_url(url, iat)?);
            }
        }
    }
    Ok(parts)
}

/// An image given by URL: a base64 `data:` URL, or a link.
pub(crate) fn image_from_url(url: String, at: String) -> Result<Part, TranslateError> {
    let source = match parse_data_url(&url) {
        Some((media_type, data)) => ImageSource::Base64 { media_type, data },
        None if url.starts_with("data:") => {
            return Err(TranslateError::invalid(format!("{at}.url: only base64 data URLs are supported")))
        }
        None => ImageSource::Url(url),
    };
    Ok(Part::Image(Image { source, at }))
}

fn parse_tool_call(call: &Value, at: &str, target: &'static str) -> Result<ToolCall, TranslateError> {
    let obj = object(call, at)?;
    let kind = opt_str(obj, "type", at)?.unwrap_or_else(|| "function".into());
    if kind != "function" {
        return Err(TranslateError::unsupported(format!("{at}.type = {kind}"), target));
    }
    let fat = format!("{at}.function");
    let function = object(obj.get("function").unwrap_or(&Value::Null), &fat)?;
    let arguments = opt_str(function, "arguments", &fat)?.unwrap_or_default();
    Ok(ToolCall {
        id: req_str(obj, "id", at)?,
        name: req_str(function, "name", &fat)?,
        arguments: arguments_object(&arguments, &format!("{fat}.arguments"))?,
    })
}

fn parse_tools(value: &Value, target: &'static str) -> Result<Vec<Tool>, TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in array(value, "tools")?.iter().enumerate() {
        let at = format!("tools[{i}]");
        let obj = object(tool, &at)?;
        let kind = req_str(obj, "type", &at)?;
        if kind != "function" {
            return Err(TranslateError::unsupported(format!("{at}.type = {kind}"), target));
        }
        let fat = format!("{at}.function");
        let function = object(obj.get("function").unwrap_or(&Value::Null), &fat)?;
        tools.push(function_tool(function, &[], &fat, target)?);
    }
    Ok(tools)
}

/// A function tool's `name`, `description` and `parameters` (`strict` only when false);
/// `other_keys` may be present too.
pub(crate) fn function_tool(
    function: &Map<String, Value>,
    other_keys: &[&str],
    at: &str,
    target: &'static str,
) -> Result<Tool, TranslateError> {
    for (key, v) in present(function) {
        match key.as_str() {
            "name" | "description" | "parameters" => {}
            "strict" if v.as_bool() == Some(false) => {}
            other if other_keys.contains(&other) => {}
            other => return Err(TranslateError::unsupported(format!("{at}.{other}"), target)),
        }
    }
    Ok(Tool {
        name: req_str(function, "name", at)?,
        description: opt_str(function, "description", at)?,
        parameters: function
            .get("parameters")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
}

/// `auto`, `required` or `none`.
pub(crate) fn tool_choice_mode(mode: &str) -> Result<ToolChoice, TranslateError> {
    match mode {
        "auto" => Ok(ToolChoice::Auto),
        "required" => Ok(ToolChoice::Required),
        "none" => Ok(ToolChoice::None),
        other => Err(TranslateError::invalid(format!("tool_choice: unknown value {other:?}"))),
    }
}

fn parse_tool_choice(value: &Value) -> Result<ToolChoice, TranslateError> {
    match value {
        Value::String(s) => tool_choice_mode(s),
        Value::Object(obj) => {
            let function = object(obj.get("function").unwrap_or(&Value::Null), "tool_choice.function")?;
            Ok(ToolChoice::Tool(req_str(function, "name", "tool_choice.function")?))
        }
        _ => Err(TranslateError::invalid("tool_choice must be a string or an object")),
    }
}

fn parse_response_format(value: &Value, target: &'static str) -> Result<Option<ResponseFormat>, TranslateError> {
    let obj = object(value, "response_format")?;
    match req_str(obj, "type", "response_format")?.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let at = "response_format.json_schema";
            let schema = object(obj.get("json_schema").unwrap_or(&Value::Null), at)?;
            Ok(Some(ResponseFormat::JsonSchema {
                name: opt_str(schema, "name", at)?,
                schema: schema.get("schema").cloned().unwrap_or_else(|| json!({})),
            }))
        }
        other => Err(TranslateError::unsupported(format!("response_format.type = {other}"), target)),
    }
}

// ---- requests: neutral → OpenAI provider ----------------------------------------------

/// Writes an OpenAI chat request (`target` is `openai` or `azure`).
pub fn emit_request(req: &Request, model: Option<&str>, target: &'static str) -> Result<Value, TranslateError> {
    if req.top_k.is_some() {
        return Err(TranslateError::unsupported("top_k", target));
    }
    let mut messages = Vec::new();
    match req.system.as_slice() {
        [] => {}
        [one] => messages.push(json!({"role": "system", "content": one})),
        many => messages.push(json!({"role": "system", "content": many.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>()})),
    }
    for message in &req.messages {
        match message.role {
            Role::User => emit_user(&mut messages, &message.parts, target)?,
            Role::Assistant => messages.push(emit_assistant(&message.parts, target)?),
        }
    }
    let mut out = Map::new();
    insert_some(&mut out, "model", model.or(req.model.as_deref()));
    out.insert("messages".into(), Value::Array(messages));
    insert_some(&mut out, "max_completion_tokens", req.max_tokens);
    insert_some(&mut out, "temperature", req.temperature);
    insert_some(&mut out, "top_p", req.top_p);
    if !req.stop.is_empty() {
        out.insert("stop".into(), json!(req.stop));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
        // Usage arrives only when asked for; the client-side encoder needs it.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), v);
    }
    insert_some(&mut out, "parallel_tool_calls", req.parallel_tool_calls);
    insert_some(&mut out, "user", req.user.as_ref());
    insert_some(&mut out, "seed", req.seed);
    insert_some(&mut out, "frequency_penalty", req.frequency_penalty);
    insert_some(&mut out, "presence_penalty", req.presence_penalty);
    match &req.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema { name, schema }) => {
            let name = name.as_deref().unwrap_or("response");
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
            );
        }
    }
    Ok(Value::Object(out))
}

/// A user turn: tool results become `tool` messages, in place; the rest user messages.
fn emit_user(messages: &mut Vec<Value>, parts: &[Part], target: &'static str) -> Result<(), TranslateError> {
    let mut pending: Vec<&Part> = Vec::new();
    let flush = |pending: &mut Vec<&Part>, messages: &mut Vec<Value>| {
        if !pending.is_empty() {
            messages.push(json!({"role": "user", "content": user_content(pending)}));
            pending.clear();
        }
    };
    for part in parts {
        match part {
            Part::ToolResult(r) => {
                flush(&mut pending, messages);
                if r.is_error {
                    return Err(TranslateError::unsupported(format!("{}.is_error", r.at), target));
                }
                let mut texts = Vec::new();
                for p in &r.content {
                    match p {
                        Part::Text(t) => texts.push(t.as_str()),
                        Part::Image(i) => return Err(TranslateError::unsupported(i.at.clone(), target)),
                        Part::ToolCall(_) | Part::ToolResult(_) => {
                            return Err(TranslateError::invalid(format!("{}: unexpected content", r.at)))
                        }
                    }
                }
                let content = match texts.as_slice() {
                    [one] => json!(one),
                    many => json!(many.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>()),
                };
                messages.push(json!({"role": "tool", "tool_call_id": r.id, "content": content}));
            }
            Part::ToolCall(_) => return Err(TranslateError::invalid("a user turn cannot hold a tool call")),
            other => pending.push(other),
        }
    }
    flush(&mut pending, messages);
    Ok(())
}

fn user_content(parts: &[&Part]) -> Value {
    if let [Part::Text(t)] = parts {
        return json!(t);
    }
    let items: Vec<Value> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::Image(i) => {
                let url = match &i.source {
                    ImageSource::Url(u) => u.clone(),
                    ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                };
                Some(json!({"type": "image_url", "image_url": {"url": url}}))
            }
            Part::ToolCall(_) | Part::ToolResult(_) => None,
        })
        .collect();
    Value::Array(items)
}

fn emit_assistant(parts: &[Part], target: &'static str) -> Result<Value, TranslateError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for part in parts {
        match part {
            Part::Text(t) => texts.push(t.as_str()),
            Part::ToolCall(c) => calls.push(json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments.to_string()},
            })),
            Part::Image(i) => return Err(TranslateError::unsupported(i.at.clone(), target)),
            Part::ToolResult(r) => {
                return Err(TranslateError::invalid(format!("{}: tool result in an assistant turn", r.at)))
            }
        }
    }
    let content = match texts.as_slice() {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>()),
    };
    let mut out = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
    }
    Ok(out)
}

// ---- replies ----------------------------------------------------------------------------

fn finish_from(reason: &str) -> Finish {
    match reason {
        "stop" => Finish::EndTurn,
        "length" => Finish::MaxTokens,
        "tool_calls" | "function_call" => Finish::ToolUse,
        "content_filter" => Finish::ContentFilter,
        other => Finish::Other(other.to_string()),
    }
}

fn usage_from(u: &Value) -> Usage {
    let cached = u.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64);
    Usage {
        input: count(u, "prompt_tokens").map(|p| p.saturating_sub(cached.unwrap_or(0))),
        output: count(u, "completion_tokens"),
        cache_read: cached,
        cache_write: None,
    }
}

/// The OpenAI `usage` object.
pub fn usage_value(u: &Usage) -> Value {
    let prompt = u.prompt_total();
    let completion = u.output.unwrap_or(0);
    let mut v = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)});
    if let Some(cached) = u.cache_read {
        v["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    v
}

/// Reads a `chat.completion`.
pub fn parse_reply(v: &Value) -> Result<Reply, TranslateError> {
    let choice = v.pointer("/choices/0").ok_or_else(|| TranslateError::invalid("provider answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut parts = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        if !text.is_empty() {
            parts.push(ReplyPart::Text(text.to_string()));
        }
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        parts.push(ReplyPart::Text(refusal.to_string()));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, call) in calls.iter().enumerate() {
            let at = format!("choices[0].message.tool_calls[{i}]");
            let function = call.get("function").unwrap_or(&Value::Null);
            let args = function.get("arguments").and_then(Value::as_str).unwrap_or("");
            parts.push(ReplyPart::ToolCall(ToolCall {
                id: call.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                name: string(function.get("name").unwrap_or(&Value::Null), &format!("{at}.function.name"))?,
                arguments: arguments_object(args, &format!("{at}.function.arguments"))?,
            }));
        }
    }
    Ok(Reply {
        id: v.get("id").and_then(Value::as_str).map(str::to_string),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
        parts,
        finish: choice.get("finish_reason").and_then(Value::as_str).map(finish_from),
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
    })
}

/// Writes a `chat.completion`.
pub fn emit_reply(reply: &Reply, meta: &ReplyMeta) -> Result<Value, TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in &reply.parts {
        match part {
            ReplyPart::Text(t) => text.push_str(t),
            ReplyPart::ToolCall(c) => calls.push(json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments.to_string()},
            })),
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    Ok(json!({
        "id": reply.id.as_deref().unwrap_or(&meta.fallback_id),
        "object": "chat.completion",
        "created": meta.created,
        "model": reply.model.as_deref().unwrap_or(&meta.model),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": reply.finish.as_ref().map(Finish::openai),
            "logprobs": null,
        }],
        "usage": usage_value(&reply.usage),
    }))
}

// ---- errors -----------------------------------------------------------------------------

/// (type or code, message) of an OpenAI error body.
pub fn parse_error(v: &Value) -> Option<(Option<String>, String)> {
    let error = v.get("error")?;
    let message = error.get("message")?.as_str()?.to_string();
    let kind = ["type", "code"].iter().find_map(|k| error.get(*k).and_then(Value::as_str)).map(str::to_string);
    Some((kind, message))
}

fn error_type(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::InvalidRequest | ErrorClass::TooLarge => "invalid_request_error",
        ErrorClass::Authentication => "authentication_error",
        ErrorClass::Permission => "permission_error",
        ErrorClass::NotFound => "not_found_error",
        ErrorClass::RateLimit => "rate_limit_error",
        ErrorClass::Overloaded | ErrorClass::Server => "server_error",
    }
}

/// `{"error":{"message","type","code"}}`; `code` is the provider's own error type.
pub fn error_value(info: &ErrorInfo) -> Value {
    json!({"error": {"message": info.message, "type": error_type(info.class()), "code": info.kind}})
}

// ---- streams: OpenAI provider → events --------------------------------------------------

/// Maps `chat.completion.chunk` events.
#[derive(Debug, Default)]
pub struct ChunkMapper {
    started: bool,
    /// `index` of the tool call being streamed.
    tool_index: Option<u64>,
}

impl SseMapper for ChunkMapper {
    fn map(&mut self, event: SseEvent, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        if event.data.trim() == "[DONE]" {
            return sink(Event::End);
        }
        let Some(v) = chunk_json(&event, &mut self.started, parse_error, ("id", "model"), sink)? else {
            return Ok(());
        };
        if let Some(choice) = v.pointer("/choices/0") {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            for key in ["content", "refusal"] {
                if let Some(text) = delta.get(key).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    sink(Event::Text(text.to_string()))?;
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    self.tool_call(call, sink)?;
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                sink(Event::Finish(finish_from(reason)))?;
            }
        }
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            sink(Event::Usage(usage_from(usage)))?;
        }
        Ok(())
    }
}

impl ChunkMapper {
    fn tool_call(&mut self, call: &Value, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let function = call.get("function").unwrap_or(&Value::Null);
        if id.is_some() || self.tool_index != Some(index) {
            let (Some(id), Some(name)) = (id, function.get("name").and_then(Value::as_str)) else {
                return Err(TranslateError::invalid("provider stream: a tool call starts without an id and a name"));
            };
            self.tool_index = Some(index);
            sink(Event::ToolStart { id: id.to_string(), name: name.to_string() })?;
        }
        match function.get("arguments").and_then(Value::as_str) {
            Some(args) if !args.is_empty() => sink(Event::ToolArgs(args.to_string())),
            _ => Ok(()),
        }
    }
}

// ---- streams: events → OpenAI client ----------------------------------------------------

/// Writes `chat.completion.chunk` events, a usage chunk when asked, and `[DONE]`.
#[derive(Debug)]
pub struct ChunkEncoder {
    state: EncoderState,
    include_usage: bool,
    started: bool,
    tools: u64,
}

impl ChunkEncoder {
    pub fn new(meta: ReplyMeta, include_usage: bool) -> Self {
        ChunkEncoder { state: EncoderState::new(meta), include_usage, started: false, tools: 0 }
    }

    fn chunk(&self, delta: Value, finish: Option<String>, out: &mut BytesMut) -> Result<(), TranslateError> {
        self.write_chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish}]), None, out)
    }

    /// Writes a `chat.completion.chunk` with `choices` and, when given, `usage`.
    fn write_chunk(&self, choices: Value, usage: Option<Value>, out: &mut BytesMut) -> Result<(), TranslateError> {
        let mut chunk = json!({
            "id": self.state.id,
            "object": "chat.completion.chunk",
            "created": self.state.meta.created,
            "model": self.state.meta.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        write_data(out, &chunk)
    }
}

impl ClientEncoder for ChunkEncoder {
    fn state(&mut self) -> &mut EncoderState {
        &mut self.state
    }

    fn start(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        if !self.started {
            self.started = true;
            self.chunk(json!({"role": "assistant", "content": ""}), None, out)?;
        }
        Ok(())
    }

    fn content(&mut self, event: Event, out: &mut BytesMut) -> Result<(), TranslateError> {
        match event {
            Event::Text(text) => {
                self.start(out)?;
                self.chunk(json!({"content": text}), None, out)
            }
            Event::ToolStart { id, name } => {
                self.start(out)?;
                let index = self.tools;
                self.tools += 1;
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                    out,
                )
            }
            Event::ToolArgs(args) => {
                let Some(index) = self.tools.checked_sub(1) else {
                    return Err(TranslateError::invalid("provider stream: tool arguments before any tool call"));
                };
                self.chunk(json!({"tool_calls": [{"index": index, "function": {"arguments": args}}]}), None, out)
            }
            Event::Finish(finish) => {
                self.start(out)?;
                self.chunk(json!({}), Some(finish.openai()), out)
            }
            _ => Ok(()),
        }
    }

    fn error(&mut self, info: &ErrorInfo, out: &mut BytesMut) -> Result<(), TranslateError> {
        write_data(out, &error_value(info))
    }

    fn terminal(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.include_usage {
            self.write_chunk(json!([]), Some(usage_value(&self.state.usage)), out)?;
        }
        out.put_slice(b"data: [DONE]\n\n");
        Ok(())
    }
}
