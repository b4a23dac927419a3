//! AWS Bedrock Converse / ConverseStream: requests from the neutral model, replies, errors,
//! and the binary `application/vnd.amazon.eventstream` answer of ConverseStream.
//!
//! Bedrock takes images as bytes only (base64 in JSON): URL images cannot be expressed.

use super::azure::UNRESERVED;
use super::ir::{
    count, insert_some, ErrorInfo, Event, Finish, ImageSource, Part, Reply, ReplyPart, Request, Role, ToolCall,
    ToolChoice, Usage,
};
use super::stream::{Decoder, Sink};
use super::TranslateError;
use aws_smithy_types::event_stream::Message;
use bytes::{Buf, BytesMut};
use percent_encoding::utf8_percent_encode;
use serde_json::{json, Map, Value};

const TARGET: &str = "bedrock";

/// The largest event-stream frame accepted (the format's own limit).
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Total length, headers length, prelude CRC.
const PRELUDE: usize = 12;
/// Prelude plus the message CRC.
const MIN_FRAME: usize = PRELUDE + 4;

/// `/model/{modelId}/converse` or `/converse-stream`, the model id percent-encoded (ARNs
/// and `:` versions included).
pub fn path(model: &str, stream: bool) -> String {
    let op = if stream { "converse-stream" } else { "converse" };
    format!("/model/{}/{op}", utf8_percent_encode(model, UNRESERVED))
}

// ---- requests ---------------------------------------------------------------------------

/// Writes a Converse request body (the model goes in the path).
pub fn emit_request(req: &Request) -> Result<Value, TranslateError> {
    let unsupported = |field: &str| Err(TranslateError::unsupported(field, TARGET));
    if req.top_k.is_some() {
        return unsupported("top_k");
    }
    if let Some(field) = req.seed_penalty_or_format() {
        return unsupported(field);
    }
    if req.user.is_some() {
        return unsupported("user");
    }
    if req.parallel_tool_calls == Some(false) {
        return unsupported("parallel_tool_calls = false");
    }
    let mut out = Map::new();
    let mut messages = Vec::new();
    for m in &req.messages {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let content = m.parts.iter().map(block).collect::<Result<Vec<_>, _>>()?;
        messages.push(json!({"role": role, "content": content}));
    }
    out.insert("messages".into(), Value::Array(messages));
    if !req.system.is_empty() {
        let system: Vec<Value> = req.system.iter().map(|t| json!({"text": t})).collect();
        out.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    insert_some(&mut inference, "maxTokens", req.max_tokens);
    insert_some(&mut inference, "temperature", req.temperature);
    insert_some(&mut inference, "topP", req.top_p);
    if !req.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(req.stop));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut spec = json!({"name": t.name, "inputSchema": {"json": t.parameters}});
                if let Some(d) = &t.description {
                    spec["description"] = json!(d);
                }
                json!({"toolSpec": spec})
            })
            .collect();
        let mut config = json!({"tools": tools});
        match &req.tool_choice {
            None => {}
            Some(ToolChoice::Auto) => config["toolChoice"] = json!({"auto": {}}),
            Some(ToolChoice::Required) => config["toolChoice"] = json!({"any": {}}),
            Some(ToolChoice::Tool(name)) => config["toolChoice"] = json!({"tool": {"name": name}}),
            Some(ToolChoice::None) => return unsupported("tool_choice = none"),
        }
        out.insert("toolConfig".into(), config);
    } else if matches!(req.tool_choice, Some(ToolChoice::Required | ToolChoice::Tool(_))) {
        return Err(TranslateError::invalid("tool_choice requires tools"));
    }
    Ok(Value::Object(out))
}

/// The Converse image `format` of a media type.
fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn block(part: &Part) -> Result<Value, TranslateError> {
    Ok(match part {
        Part::Text(t) => json!({"text": t}),
        Part::Image(image) => match &image.source {
            ImageSource::Base64 { media_type, data } => {
                let format = image_format(media_type).ok_or_else(|| {
                    TranslateError::unsupported(format!("{} (media type {media_type})", image.at), TARGET)
                })?;
                json!({"image": {"format": format, "source": {"bytes": data}}})
            }
            ImageSource::Url(_) => return Err(TranslateError::unsupported(format!("{} (URL)", image.at), TARGET)),
        },
        Part::ToolCall(c) => json!({"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}}),
        Part::ToolResult(r) => {
            let content = r.content.iter().map(block).collect::<Result<Vec<_>, _>>()?;
            let mut v = json!({"toolUseId": r.id, "content": content});
            if r.is_error {
                v["status"] = json!("error");
            }
            json!({"toolResult": v})
        }
    })
}

// ---- replies ----------------------------------------------------------------------------

fn finish_from(reason: &str) -> Finish {
    match reason {
        "end_turn" => Finish::EndTurn,
        "tool_use" => Finish::ToolUse,
        "max_tokens" => Finish::MaxTokens,
        "stop_sequence" => Finish::StopSequence(None),
        "guardrail_intervened" | "content_filtered" => Finish::ContentFilter,
        other => Finish::Other(other.to_string()),
    }
}

fn usage_from(u: &Value) -> Usage {
    Usage {
        input: count(u, "inputTokens"),
        output: count(u, "outputTokens"),
        cache_read: count(u, "cacheReadInputTokens"),
        cache_write: count(u, "cacheWriteInputTokens"),
    }
}

/// Reads a Converse answer; `client` names the client API in errors.
pub fn parse_reply(v: &Value, client: &'static str) -> Result<Reply, TranslateError> {
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("provider answer has no output.message.content"))?;
    let mut parts = Vec::new();
    for (i, block) in content.iter().enumerate() {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            parts.push(ReplyPart::Text(text.to_string()));
        } else if let Some(tool) = block.get("toolUse") {
            let at = format!("output.message.content[{i}].toolUse");
            let field = |k: &str| {
                tool.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| TranslateError::invalid(format!("{at}.{k} must be a string")))
            };
            parts.push(ReplyPart::ToolCall(ToolCall {
                id: field("toolUseId")?,
                name: field("name")?,
                arguments: tool.get("input").cloned().unwrap_or_else(|| json!({})),
            }));
        } else {
            let kind = block.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
            return Err(TranslateError::unsupported(format!("output.message.content[{i}].{kind}"), client));
        }
    }
    Ok(Reply {
        id: None,
        model: None,
        parts,
        finish: v.get("stopReason").and_then(Value::as_str).map(finish_from),
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
    })
}

/// (type, message) of a Bedrock error body (`{"message": ...}`; the type travels in the
/// `x-amzn-errortype` header, or `__type` when present).
pub fn parse_error(v: &Value) -> Option<(Option<String>, String)> {
    let message = v.get("message").or_else(|| v.get("Message"))?.as_str()?.to_string();
    let kind = v.get("__type").and_then(Value::as_str).map(|t| t.rsplit('#').next().unwrap_or(t).to_string());
    Some((kind, message))
}

// ---- streams ----------------------------------------------------------------------------

/// The string value of an event-stream message's header `name`.
pub(crate) fn string_header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str().to_string())
}

/// Cuts a binary event-stream into messages. Frames are checked (lengths, both CRCs) by
/// `aws-smithy-eventstream`; a frame is decoded once all its bytes are in.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: BytesMut,
}

impl FrameBuffer {
    /// Adds `input` and hands every complete message to `each`.
    pub fn push(
        &mut self,
        input: &[u8],
        each: &mut dyn FnMut(&Message) -> Result<(), TranslateError>,
    ) -> Result<(), TranslateError> {
        self.buf.extend_from_slice(input);
        while self.buf.len() >= PRELUDE {
            let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let total = usize::try_from(total).unwrap_or(usize::MAX);
            if !(MIN_FRAME..=MAX_FRAME).contains(&total) {
                return Err(TranslateError::invalid(format!(
                    "provider stream: invalid event-stream frame length {total}"
                )));
            }
            if self.buf.len() < total {
                break;
            }
            let mut frame = self.buf.split_to(total).freeze();
            let message = aws_smithy_eventstream::frame::read_message_from(&mut frame)
                .map_err(|e| TranslateError::invalid(format!("provider stream: bad event-stream frame: {e}")))?;
            if frame.has_remaining() {
                return Err(TranslateError::invalid("provider stream: event-stream frame length mismatch"));
            }
            each(&message)?;
        }
        Ok(())
    }

    /// The stream ended: an incomplete frame is an error.
    pub fn finish(&self) -> Result<(), TranslateError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(TranslateError::invalid("provider stream ended inside an event-stream frame"))
        }
    }
}

/// Decodes ConverseStream's binary event-stream into events.
#[derive(Debug)]
pub struct EventStreamDecoder {
    frames: FrameBuffer,
    client: &'static str,
}

impl EventStreamDecoder {
    pub fn new(client: &'static str) -> Self {
        EventStreamDecoder { frames: FrameBuffer::default(), client }
    }

    fn message(client: &'static str, message: &Message, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let header = |name: &str| string_header(message, name);
        let payload = || -> Result<Value, TranslateError> {
            serde_json::from_slice(message.payload())
                .map_err(|e| TranslateError::invalid(format!("provider stream event is not JSON: {e}")))
        };
        match header(":message-type").as_deref() {
            Some("event") => {
                let kind = header(":event-type").unwrap_or_default();
                EventStreamDecoder::event(client, &kind, &payload()?, sink)
            }
            Some("exception") => {
                let v = payload().unwrap_or(Value::Null);
                let message = parse_error(&v).map_or_else(|| "provider stream exception".to_string(), |(_, m)| m);
                sink(Event::Error(ErrorInfo { status: None, kind: header(":exception-type"), message }))
            }
            Some("error") => sink(Event::Error(ErrorInfo {
                status: None,
                kind: header(":error-code"),
                message: header(":error-message").unwrap_or_else(|| "provider stream error".to_string()),
            })),
            other => {
                Err(TranslateError::invalid(format!("provider stream: unknown event-stream message type {other:?}")))
            }
        }
    }

    fn event(client: &'static str, kind: &str, v: &Value, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        match kind {
            "messageStart" => sink(Event::Start { id: None, model: None, usage: Usage::default() }),
            "contentBlockStart" => match v.pointer("/start/toolUse") {
                Some(tool) => {
                    let field = |k: &str| {
                        tool.get(k)
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| TranslateError::invalid(format!("contentBlockStart: toolUse.{k} missing")))
                    };
                    sink(Event::ToolStart { id: field("toolUseId")?, name: field("name")? })
                }
                None => Ok(()),
            },
            "contentBlockDelta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    if text.is_empty() {
                        return Ok(());
                    }
                    sink(Event::Text(text.to_string()))
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
                    if input.is_empty() {
                        return Ok(());
                    }
                    sink(Event::ToolArgs(input.to_string()))
                } else {
                    let key = delta.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
                    Err(TranslateError::unsupported(format!("contentBlockDelta.delta.{key}"), client))
                }
            }
            "messageStop" => match v.get("stopReason").and_then(Value::as_str) {
                Some(reason) => sink(Event::Finish(finish_from(reason))),
                None => Ok(()),
            },
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    sink(Event::Usage(usage_from(u)))?;
                }
                sink(Event::End)
            }
            // contentBlockStop and events added later carry nothing to translate.
            _ => Ok(()),
        }
    }
}

impl Decoder for EventStreamDecoder {
    fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let client = self.client;
        self.frames.push(input, &mut |m| EventStreamDecoder::message(client, m, sink))
    }

    fn finish(&mut self, _sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        self.frames.finish()
    }
}
