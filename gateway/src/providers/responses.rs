//! The OpenAI Responses API (`POST /v1/responses`) as a client's API: requests into the
//! neutral model (text, instructions, multi-turn input, function tools and their outputs,
//! images), and answers out of it, whole (a `response` object) or streamed (the
//! `response.*` event sequence). OpenAI and Azure providers take it natively.
//!
//! Everything the neutral model cannot carry (stored conversations, reasoning settings,
//! built-in tools, ...) is refused naming the field, like chat.

use super::ir::{
    array, boolean, check_keys, number, object, opt_str, present, req_str, string, unsigned, ErrorInfo, Event, Finish,
    Part, Reply, ReplyPart, Request, ResponseFormat, Role, Tool, ToolCall, ToolChoice, ToolResult, Usage,
};
use super::openai::{error_value, function_tool, image_from_url, tool_choice_mode};
use super::stream::{write_event, ClientEncoder, EncoderState};
use super::{ReplyMeta, TranslateError};
use bytes::BytesMut;
use serde_json::{json, Value};

// ---- requests ---------------------------------------------------------------------------

/// Reads a Responses API request; `target` names the provider in errors.
pub fn parse_request(body: &Value, target: &'static str) -> Result<Request, TranslateError> {
    let obj = object(body, "request body")?;
    let unsupported = |field: &str| Err(TranslateError::unsupported(field, target));
    let mut req = Request::default();
    let mut input = None;
    for (key, value) in present(obj) {
        let key = key.as_str();
        match key {
            "model" => req.model = Some(string(value, key)?),
            "input" => input = Some(value),
            "instructions" => {
                let text = string(value, key)?;
                if !text.is_empty() {
                    req.system.push(text);
                }
            }
            "max_output_tokens" => req.max_tokens = Some(unsigned(value, key)?),
            "temperature" => req.temperature = Some(number(value, key)?),
            "top_p" => req.top_p = Some(number(value, key)?),
            "stream" => req.stream = boolean(value, key)?,
            "tools" => req.tools = parse_tools(value, target)?,
            "tool_choice" => req.tool_choice = Some(parse_tool_choice(value)?),
            "parallel_tool_calls" => req.parallel_tool_calls = Some(boolean(value, key)?),
            "user" => req.user = Some(string(value, key)?),
            "text" => req.response_format = parse_text(value, target)?,
            // Values that ask for nothing beyond the default are fine anywhere.
            "store" if !boolean(value, key)? => {}
            "metadata" if object(value, key)?.is_empty() => {}
            "include" if array(value, key)?.is_empty() => {}
            "truncation" if value.as_str() == Some("disabled") => {}
            "service_tier" if matches!(value.as_str(), Some("auto" | "default")) => {}
            other => return unsupported(other),
        }
    }
    match input {
        None => return Err(TranslateError::invalid("input is required")),
        Some(Value::String(text)) => req.push(Role::User, vec![Part::Text(text.clone())]),
        Some(items) => {
            for (i, item) in array(items, "input")?.iter().enumerate() {
                parse_item(&mut req, item, &format!("input[{i}]"), target)?;
            }
        }
    }
    Ok(req)
}

/// One input item: a message, a function call the model made, or its output.
fn parse_item(req: &mut Request, item: &Value, at: &str, target: &'static str) -> Result<(), TranslateError> {
    let obj = object(item, at)?;
    let kind = opt_str(obj, "type", at)?.unwrap_or_else(|| "message".into());
    match kind.as_str() {
        "message" => {
            check_keys(obj, &["type", "role", "content", "id", "status"], at, target)?;
            let role = req_str(obj, "role", at)?;
            let parts = content(obj.get("content"), &format!("{at}.content"), target)?;
            match role.as_str() {
                "user" => req.push(Role::User, parts),
                "assistant" => req.push(Role::Assistant, parts),
                "system" | "developer" => {
                    for part in parts {
                        match part {
                            Part::Text(t) => req.system.push(t),
                            _ => return Err(TranslateError::unsupported(format!("{at}.content (an image)"), target)),
                        }
                    }
                }
                other => return Err(TranslateError::invalid(format!("{at}.role: unknown role {other:?}"))),
            }
        }
        "function_call" => {
            check_keys(obj, &["type", "call_id", "name", "arguments", "id", "status"], at, target)?;
            let arguments = opt_str(obj, "arguments", at)?.unwrap_or_default();
            let call = ToolCall {
                id: req_str(obj, "call_id", at)?,
                name: req_str(obj, "name", at)?,
                arguments: super::ir::arguments_object(&arguments, &format!("{at}.arguments"))?,
            };
            req.push(Role::Assistant, vec![Part::ToolCall(call)]);
        }
        "function_call_output" => {
            check_keys(obj, &["type", "call_id", "output", "id", "status"], at, target)?;
            let id = req_str(obj, "call_id", at)?;
            let oat = format!("{at}.output");
            let output = match obj.get("output") {
                Some(Value::String(s)) => vec![Part::Text(s.clone())],
                Some(v @ Value::Array(_)) => content(Some(v), &oat, target)?,
                _ => return Err(TranslateError::invalid(format!("{oat} must be a string or a list of parts"))),
            };
            let result =
                ToolResult { name: req.tool_name(&id), id, content: output, is_error: false, at: at.to_string() };
            req.push(Role::User, vec![Part::ToolResult(result)]);
        }
        other => return Err(TranslateError::unsupported(format!("{at}.type = {other}"), target)),
    }
    Ok(())
}

/// Message content: a string, or `input_text` / `output_text` / `input_image` parts.
fn content(value: Option<&Value>, at: &str, target: &'static str) -> Result<Vec<Part>, TranslateError> {
    let Some(value) = value else {
        return Err(TranslateError::invalid(format!("{at} is required")));
    };
    if let Value::String(s) = value {
        return Ok(if s.is_empty() { Vec::new() } else { vec![Part::Text(s.clone())] });
    }
    let mut parts = Vec::new();
    for (j, part) in array(value, at)?.iter().enumerate() {
        let pat = format!("{at}[{j}]");
        let obj = object(part, &pat)?;
        match req_str(obj, "type", &pat)?.as_str() {
            "input_text" | "output_text" => {
                check_keys(obj, &["type", "text", "annotations"], &pat, target)?;
                if obj.get("annotations").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
                    return Err(TranslateError::unsupported(format!("{pat}.annotations"), target));
                }
                let text = req_str(obj, "text", &pat)?;
                if !text.is_empty() {
                    parts.push(Part::Text(text));
                }
            }
            "input_image" => {
                check_keys(obj, &["type", "image_url", "detail"], &pat, target)?;
                if let Some(detail) = obj.get("detail").filter(|d| !d.is_null()) {
                    if detail.as_str() != Some("auto") {
                        return Err(TranslateError::unsupported(format!("{pat}.detail"), target));
                    }
                }
                let url = req_str(obj, "image_url", &pat)?;
                parts.push(image_from_url(url, pat)?);
            }
            other => return Err(TranslateError::unsupported(format!("{pat}.type = {other}"), target)),
        }
    }
    Ok(parts)
}

/// Function tools (`{type: function, name, description, parameters}`); built-in tools
/// (web search, file search, ...) have no counterpart.
fn parse_tools(value: &Value, target: &'static str) -> Result<Vec<Tool>, TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in array(value, "tools")?.iter().enumerate() {
        let at = format!("tools[{i}]");
        let obj = object(tool, &at)?;
        let kind = req_str(obj, "type", &at)?;
        if kind != "function" {
            return Err(TranslateError::unsupported(format!("{at}.type = {kind}"), target));
        }
        tools.push(function_tool(obj, &["type"], &at, target)?);
    }
    Ok(tools)
}

fn parse_tool_choice(value: &Value) -> Result<ToolChoice, TranslateError> {
    match value {
        Value::String(s) => tool_choice_mode(s),
        Value::Object(obj) if obj.get("type").and_then(Value::as_str) == Some("function") => {
            Ok(ToolChoice::Tool(req_str(obj, "name", "tool_choice")?))
        }
        _ => Err(TranslateError::invalid("tool_choice must be auto, none, required or {type: function, name}")),
    }
}

/// `text: {format: {type: text | json_object | json_schema}}`.
fn parse_text(value: &Value, target: &'static str) -> Result<Option<ResponseFormat>, TranslateError> {
    let obj = object(value, "text")?;
    check_keys(obj, &["format"], "text", target)?;
    let Some(format) = obj.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let at = "text.format";
    let format = object(format, at)?;
    match req_str(format, "type", at)?.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => Ok(Some(ResponseFormat::JsonSchema {
            name: opt_str(format, "name", at)?,
            schema: format.get("schema").cloned().unwrap_or_else(|| json!({})),
        })),
        other => Err(TranslateError::unsupported(format!("{at}.type = {other}"), target)),
    }
}

// ---- answers ----------------------------------------------------------------------------

fn usage_value(u: &Usage) -> Value {
    let input = u.prompt_total();
    let output = u.output.unwrap_or(0);
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": u.cache_read.unwrap_or(0)},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// The `response` object: `status` is `completed`, or `incomplete` when the output was cut
/// at the token limit.
fn response_value(
    id: &str,
    meta: &ReplyMeta,
    model: &str,
    output: Vec<Value>,
    finish: Option<&Finish>,
    usage: Option<&Usage>,
    status: &str,
) -> Value {
    let (status, incomplete) = match finish {
        Some(Finish::MaxTokens) if status == "completed" => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(Finish::ContentFilter) if status == "completed" => ("incomplete", json!({"reason": "content_filter"})),
        _ => (status, Value::Null),
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": meta.created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.map_or(Value::Null, usage_value),
    })
}

/// A whole answer as a `response` object.
pub fn emit_reply(reply: &Reply, meta: &ReplyMeta) -> Result<Value, TranslateError> {
    let id = reply.id.as_deref().map_or_else(|| meta.fallback_id.clone(), |id| format!("resp_{id}"));
    let mut output = Vec::new();
    let mut text = String::new();
    for part in &reply.parts {
        match part {
            ReplyPart::Text(t) => text.push_str(t),
            ReplyPart::ToolCall(c) => {
                output.push(call_item(&format!("fc_{}", c.id), &c.id, &c.name, &c.arguments.to_string(), "completed"))
            }
        }
    }
    if !text.is_empty() {
        output.insert(0, message_item(&format!("msg_{id}"), &text, "completed"));
    }
    let model = reply.model.as_deref().unwrap_or(&meta.model);
    Ok(response_value(&id, meta, model, output, reply.finish.as_ref(), Some(&reply.usage), "completed"))
}

// ---- streams ----------------------------------------------------------------------------

/// The output item being streamed.
enum Open {
    None,
    Message { text: String },
    Call { call_id: String, name: String, arguments: String },
}

/// Neutral events → the Responses event sequence: `response.created`,
/// `response.in_progress`, per output item `response.output_item.added`, its deltas
/// (`response.output_text.delta` / `response.function_call_arguments.delta`) and `.done`
/// events, then `response.completed` with the whole response.
pub struct EventEncoder {
    state: EncoderState,
    started: bool,
    sequence: u64,
    open: Open,
    /// Finished output items, for `response.completed`.
    output: Vec<Value>,
    finish: Option<Finish>,
}

impl EventEncoder {
    pub fn new(meta: ReplyMeta) -> Self {
        EventEncoder {
            state: EncoderState::new(meta),
            started: false,
            sequence: 0,
            open: Open::None,
            output: Vec::new(),
            finish: None,
        }
    }

    fn emit(&mut self, kind: &str, mut value: Value, out: &mut BytesMut) -> Result<(), TranslateError> {
        value["type"] = json!(kind);
        value["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        write_event(out, kind, &value)
    }

    fn response(&self, status: &str, output: Vec<Value>, usage: bool) -> Value {
        let s = &self.state;
        let usage = usage.then_some(&s.usage);
        response_value(&s.id, &s.meta, &s.meta.model, output, self.finish.as_ref(), usage, status)
    }

    fn item_id(&self) -> String {
        format!("item_{}_{}", self.state.id, self.output.len())
    }

    /// Closes the open output item with its `.done` events.
    fn close(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        let index = self.output.len();
        let id = self.item_id();
        let item = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return Ok(()),
            Open::Message { text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = base.clone();
                done["text"] = json!(text);
                self.emit("response.output_text.done", done, out)?;
                let mut part_done = base;
                part_done["part"] = part;
                self.emit("response.content_part.done", part_done, out)?;
                message_item(&id, &text, "completed")
            }
            Open::Call { call_id, name, arguments } => {
                let done = json!({"item_id": id, "output_index": index, "arguments": arguments});
                self.emit("response.function_call_arguments.done", done, out)?;
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit("response.output_item.done", json!({"output_index": index, "item": item.clone()}), out)?;
        self.output.push(item);
        Ok(())
    }
}

impl ClientEncoder for EventEncoder {
    fn state(&mut self) -> &mut EncoderState {
        &mut self.state
    }

    fn start(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        if !self.started {
            self.started = true;
            let response = self.response("in_progress", Vec::new(), false);
            self.emit("response.created", json!({"response": response.clone()}), out)?;
            self.emit("response.in_progress", json!({"response": response}), out)?;
        }
        Ok(())
    }

    fn content(&mut self, event: Event, out: &mut BytesMut) -> Result<(), TranslateError> {
        self.start(out)?;
        match event {
            Event::Text(delta) => {
                if !matches!(self.open, Open::Message { .. }) {
                    self.close(out)?;
                    let (id, index) = (self.item_id(), self.output.len());
                    let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                    self.emit("response.output_item.added", json!({"output_index": index, "item": item}), out)?;
                    let part = json!({"type": "output_text", "text": "", "annotations": []});
                    let added = json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
                    self.emit("response.content_part.added", added, out)?;
                    self.open = Open::Message { text: String::new() };
                }
                let (id, index) = (self.item_id(), self.output.len());
                if let Open::Message { text } = &mut self.open {
                    text.push_str(&delta);
                }
                let value = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta});
                self.emit("response.output_text.delta", value, out)
            }
            Event::ToolStart { id: call_id, name } => {
                self.close(out)?;
                let (id, index) = (self.item_id(), self.output.len());
                let item = call_item(&id, &call_id, &name, "", "in_progress");
                self.emit("response.output_item.added", json!({"output_index": index, "item": item}), out)?;
                self.open = Open::Call { call_id, name, arguments: String::new() };
                Ok(())
            }
            Event::ToolArgs(delta) => {
                let (id, index) = (self.item_id(), self.output.len());
                let Open::Call { arguments, .. } = &mut self.open else {
                    return Err(TranslateError::invalid("provider stream: tool arguments before any tool call"));
                };
                arguments.push_str(&delta);
                let value = json!({"item_id": id, "output_index": index, "delta": delta});
                self.emit("response.function_call_arguments.delta", value, out)
            }
            Event::Finish(finish) => {
                self.finish = Some(finish);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn error(&mut self, info: &ErrorInfo, out: &mut BytesMut) -> Result<(), TranslateError> {
        let error = error_value(info);
        let e = error.get("error").cloned().unwrap_or(Value::Null);
        let value = json!({"code": e.get("code").cloned().unwrap_or(Value::Null), "message": e.get("message").cloned().unwrap_or(Value::Null), "param": null});
        self.emit("error", value, out)
    }

    fn terminal(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        self.start(out)?;
        self.close(out)?;
        let response = self.response("completed", self.output.clone(), true);
        let kind = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(kind, json!({"response": response}), out)
    }
}

/// The SSE event that ends a Responses stream whose provider failed mid-way.
pub fn mid_stream_error(message: &str) -> String {
    let data = json!({"type": "error", "code": "upstream_error", "message": message, "param": null});
    format!("event: error\ndata: {data}\n\n")
}
