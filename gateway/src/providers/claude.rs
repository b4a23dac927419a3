//! Claude hosted elsewhere, losslessly: the Anthropic Messages body as the client sent it,
//! on Bedrock (InvokeModel / InvokeModelWithResponseStream) and Vertex AI (rawPredict /
//! streamRawPredict). Only the envelope changes: `model` moves to the path, the host's
//! `anthropic_version` is set, the `anthropic-beta` header becomes an `anthropic_beta`
//! list; every other member is copied byte for byte, in its order. Bedrock's event
//! stream is turned back into Anthropic SSE, each event's JSON as Bedrock carried it.
//!
//! Also here: what the `drop` translation policy removes from an Anthropic request before
//! it is translated for a provider of another API.

use super::azure::UNRESERVED;
use super::bedrock::FrameBuffer;
use super::ir::ErrorInfo;
use super::stream::StreamTranslator;
use super::TranslateError;
use aws_smithy_types::event_stream::Message;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use percent_encoding::utf8_percent_encode;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::fmt;

/// `anthropic_version` of Claude on Bedrock.
pub const BEDROCK_VERSION: &str = "bedrock-2023-05-31";
/// `anthropic_version` of Claude on Vertex AI.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// Whether a Bedrock model id names an Anthropic model: `anthropic.…`, a cross-region
/// inference profile (`us.anthropic.…`), or an ARN ending in one.
pub fn is_bedrock_anthropic(model: &str) -> bool {
    let id = model.rsplit('/').next().unwrap_or(model);
    id.starts_with("anthropic.") || id.contains(".anthropic.")
}

/// `/model/{modelId}/invoke` or `/invoke-with-response-stream`.
pub fn bedrock_path(model: &str, stream: bool) -> String {
    let op = if stream { "invoke-with-response-stream" } else { "invoke" };
    format!("/model/{}/{op}", utf8_percent_encode(model, UNRESERVED))
}

/// The top-level members of a JSON object, in order, values untouched.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The `anthropic-beta` header's flags (comma separated, possibly repeated).
pub fn beta_flags<'a>(header: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<String> {
    header
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The client's Anthropic body for a host: without `model` (and without `stream` unless
/// `keep_stream`), with `anthropic_version: version` and the beta flags (the body's own
/// `anthropic_beta` first) as `anthropic_beta`.
pub fn host_body(body: &[u8], version: &str, betas: &[String], keep_stream: bool) -> Result<Bytes, TranslateError> {
    let Members(members) =
        serde_json::from_slice(body).map_err(|e| TranslateError::invalid(format!("request body: {e}")))?;
    let mut flags: Vec<String> = Vec::new();
    let mut out = BytesMut::with_capacity(body.len() + 64);
    out.put_u8(b'{');
    let mut first = true;
    let mut put = |out: &mut BytesMut, key: &str, value: &str| {
        if !first {
            out.put_u8(b',');
        }
        first = false;
        out.put_slice(json!(key).to_string().as_bytes());
        out.put_u8(b':');
        out.put_slice(value.as_bytes());
    };
    for (key, value) in &members {
        match key.as_str() {
            "model" | "anthropic_version" => {}
            "stream" if !keep_stream => {}
            "anthropic_beta" => {
                let own: Vec<String> = serde_json::from_str(value.get())
                    .map_err(|_| TranslateError::invalid("anthropic_beta must be a list of strings"))?;
                flags.extend(own);
            }
            _ => put(&mut out, key, value.get()),
        }
    }
    put(&mut out, "anthropic_version", &json!(version).to_string());
    flags.extend(betas.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    flags.retain(|f| seen.insert(f.clone()));
    if !flags.is_empty() {
        put(&mut out, "anthropic_beta", &json!(flags).to_string());
    }
    out.put_u8(b'}');
    Ok(out.freeze())
}

// ---- the drop policy --------------------------------------------------------------------

/// Removes from an Anthropic request what only Anthropic's models understand: `thinking`
/// (and the thinking blocks of earlier turns) and `cache_control` hints. Returns the names
/// of what was there, in a fixed order.
pub fn strip_anthropic_only(body: &mut Value) -> Vec<&'static str> {
    let mut thinking = false;
    let mut cache = false;
    if let Some(obj) = body.as_object_mut() {
        if let Some(t) = obj.remove("thinking") {
            thinking |= t.get("type").and_then(Value::as_str) != Some("disabled");
        }
        for key in ["system", "tools"] {
            if let Some(Value::Array(items)) = obj.get_mut(key) {
                for item in items {
                    cache |= remove_cache_control(item);
                }
            }
        }
        if let Some(Value::Array(messages)) = obj.get_mut("messages") {
            for message in messages {
                let Some(Value::Array(blocks)) = message.get_mut("content") else {
                    continue;
                };
                let before = blocks.len();
                blocks.retain(|b| {
                    !matches!(b.get("type").and_then(Value::as_str), Some("thinking" | "redacted_thinking"))
                });
                thinking |= blocks.len() != before;
                for block in blocks {
                    cache |= remove_cache_control(block);
                    if let Some(Value::Array(inner)) = block.get_mut("content") {
                        for b in inner {
                            cache |= remove_cache_control(b);
                        }
                    }
                }
            }
        }
    }
    let mut dropped = Vec::new();
    if thinking {
        dropped.push("thinking");
    }
    if cache {
        dropped.push("cache_control");
    }
    dropped
}

fn remove_cache_control(v: &mut Value) -> bool {
    v.as_object_mut().and_then(|o: &mut Map<String, Value>| o.remove("cache_control")).is_some()
}

// ---- Bedrock's event stream back to Anthropic SSE ---------------------------------------

/// InvokeModelWithResponseStream → Anthropic SSE: each `chunk` event's `bytes` (base64 of
/// one Anthropic event's JSON) becomes `event: {type}` / `data: {that JSON}`; an exception
/// becomes Anthropic's `error` event.
#[derive(Default)]
pub struct InvokeStream {
    frames: FrameBuffer,
}

impl InvokeStream {
    fn message(message: &Message, out: &mut BytesMut) -> Result<(), TranslateError> {
        let header = |name: &str| super::bedrock::string_header(message, name);
        match header(":message-type").as_deref() {
            Some("event") if header(":event-type").as_deref() == Some("chunk") => {
                let payload: Value = serde_json::from_slice(message.payload())
                    .map_err(|e| TranslateError::invalid(format!("provider stream chunk is not JSON: {e}")))?;
                let encoded = payload
                    .get("bytes")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid("provider stream chunk without bytes"))?;
                let bytes = aws_smithy_types::base64::decode(encoded)
                    .map_err(|e| TranslateError::invalid(format!("provider stream chunk bytes: {e}")))?;
                let event: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| TranslateError::invalid(format!("provider stream event is not JSON: {e}")))?;
                let name = event
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TranslateError::invalid("provider stream event without a type"))?;
                out.put_slice(b"event: ");
                out.put_slice(name.as_bytes());
                out.put_slice(b"\ndata: ");
                if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
                    // An SSE data line cannot hold a line break: the same JSON, compact.
                    out.put_slice(event.to_string().as_bytes());
                } else {
                    out.put_slice(&bytes);
                }
                out.put_slice(b"\n\n");
                Ok(())
            }
            // Other events (none today) carry nothing for the client.
            Some("event") => Ok(()),
            Some("exception") | Some("error") => {
                let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
                let message_text = super::bedrock::parse_error(&payload)
                    .map(|(_, m)| m)
                    .or_else(|| header(":error-message"))
                    .unwrap_or_else(|| "provider stream exception".to_string());
                let kind = header(":exception-type").or_else(|| header(":error-code"));
                let info = ErrorInfo { status: None, kind, message: message_text };
                super::stream::write_event(out, "error", &super::anthropic::error_value(&info))
            }
            other => {
                Err(TranslateError::invalid(format!("provider stream: unknown event-stream message type {other:?}")))
            }
        }
    }
}

impl StreamTranslator for InvokeStream {
    fn push(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), TranslateError> {
        self.frames.push(input, &mut |m| InvokeStream::message(m, out))
    }

    fn finish(&mut self, _out: &mut BytesMut) -> Result<(), TranslateError> {
        self.frames.finish()
    }
}

/// A stream already in the client's API (Claude on Vertex): passed on as it comes.
pub struct Unchanged;

impl StreamTranslator for Unchanged {
    fn push(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), TranslateError> {
        out.extend_from_slice(input);
        Ok(())
    }

    fn finish(&mut self, _out: &mut BytesMut) -> Result<(), TranslateError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn anthropic_model_ids() {
        assert!(is_bedrock_anthropic("anthropic.claude-3-5-sonnet-20240620-v1:0"));
        assert!(is_bedrock_anthropic("us.anthropic.claude-sonnet-4-6-v1:0"));
        assert!(is_bedrock_anthropic(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(!is_bedrock_anthropic("meta.llama3-70b-instruct-v1:0"));
        assert!(!is_bedrock_anthropic("amazon.nova-pro-v1:0"));
    }

    #[test]
    fn host_body_keeps_every_other_member_as_sent() {
        let body = br#"{"model":"claude","max_tokens":10,"stream":true,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}"#;
        let out = host_body(body, BEDROCK_VERSION, &["a".into(), "b".into()], false).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"max_tokens":10,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}],"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a","b"]}"#
        );
        let out = host_body(body, VERTEX_VERSION, &[], true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["stream"].clone(), v.get("model"), v.get("anthropic_beta")), (json!(true), None, None));
        assert!(host_body(b"[1]", BEDROCK_VERSION, &[], false).is_err());
    }

    #[test]
    fn beta_flags_split_and_trim() {
        let values = [HeaderValue::from_static("a, b"), HeaderValue::from_static("c")];
        assert_eq!(beta_flags(&values), ["a", "b", "c"]);
    }

    #[test]
    fn drop_policy_strips_thinking_and_cache_hints() {
        let mut body = json!({
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "x"}, {"type": "text", "text": "a"}]},
            ],
        });
        assert_eq!(strip_anthropic_only(&mut body), ["thinking", "cache_control"]);
        assert_eq!(body["messages"][1]["content"], json!([{"type": "text", "text": "a"}]));
        assert_eq!(body["system"][0], json!({"type": "text", "text": "s"}));
        let mut plain = json!({"messages": [{"role": "user", "content": "q"}]});
        assert!(strip_anthropic_only(&mut plain).is_empty());
    }
}
