//! The few things the gateway reads from a chat request body, and the `model` rewrite.
//!
//! The body is validated as one JSON object, but only `model` and `stream` are looked at,
//! as borrowed raw slices: no tree is built, and the rewrite splices the new model into the
//! original bytes, so a 1 MiB prompt costs one validation pass and one copy.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// What routing needs from a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// The client's `model`, if it sent a non-empty one.
    pub model: Option<String>,
    pub stream: bool,
    /// `stream_options.include_usage` was asked for.
    pub include_usage: bool,
    /// Byte range of the `model` value (quotes included) in the body.
    model_span: Option<Range<usize>>,
    /// Byte range of the `stream_options` value.
    stream_options_span: Option<Range<usize>>,
    /// Whether the object has no members.
    empty: bool,
    /// Byte offset just after the opening `{`.
    open_brace: usize,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// A present field, `null` included (plain `Option` would turn `null` into `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Why a body was refused; the message goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("\"model\" must be a string")]
    ModelType,
    #[error("\"stream\" must be a boolean")]
    StreamType,
}

impl ChatRequest {
    pub fn parse(body: &[u8]) -> Result<ChatRequest, BodyError> {
        let open = body.iter().position(|b| !b.is_ascii_whitespace());
        let Some(open) = open.filter(|&i| body[i] == b'{') else {
            // Let serde name the syntax problem when there is one.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| BodyError::Json(e.to_string()))?;
            return Err(BodyError::NotObject);
        };
        let peek: Peek<'_> = serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
        let (model, model_span) = match peek.model {
            None => (None, None),
            Some(raw) => {
                let text = raw.get();
                let span = span_of(body, text);
                match text.as_bytes().first() {
                    Some(b'"') => {
                        let m: String = serde_json::from_str(text).map_err(|_| BodyError::ModelType)?;
                        ((!m.is_empty()).then_some(m), Some(span))
                    }
                    Some(b'n') => (None, Some(span)),
                    _ => return Err(BodyError::ModelType),
                }
            }
        };
        let stream = match peek.stream.map(RawValue::get) {
            None | Some("false") | Some("null") => false,
            Some("true") => true,
            Some(_) => return Err(BodyError::StreamType),
        };
        let include_usage = peek
            .stream_options
            .and_then(|raw| serde_json::from_str::<StreamOptions>(raw.get()).ok())
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let stream_options_span = peek.stream_options.map(|raw| span_of(body, raw.get()));
        let empty = body[open + 1..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
        Ok(ChatRequest { model, stream, include_usage, model_span, stream_options_span, empty, open_brace: open + 1 })
    }

    /// The body with `model` set (when given) and, when `ask_usage`, `stream_options` set to
    /// ask for usage. Unchanged bodies are returned without copying.
    pub fn rewrite(&self, body: &Bytes, model: Option<&str>, ask_usage: bool) -> Bytes {
        match self.rewrite_parts(body, model, ask_usage).as_slice() {
            [one] => one.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                parts.iter().for_each(|p| out.put_slice(p));
                out.freeze()
            }
        }
    }

    /// [`rewrite`](Self::rewrite) as pieces to send one after the other: slices of the
    /// original body around the edits, so a large prompt is never copied.
    pub fn rewrite_parts(&self, body: &Bytes, model: Option<&str>, ask_usage: bool) -> Vec<Bytes> {
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        let mut inserts: Vec<Vec<u8>> = Vec::new();
        if let Some(model) = model {
            let quoted = serde_json::to_vec(model).unwrap_or_else(|_| b"\"\"".to_vec());
            match &self.model_span {
                Some(span) if body.get(span.clone()) == Some(&quoted[..]) => {}
                Some(span) => edits.push((span.clone(), quoted)),
                None => inserts.push([&b"\"model\":"[..], &quoted].concat()),
            }
        }
        if ask_usage && !self.include_usage {
            let value = b"{\"include_usage\":true}".to_vec();
            match &self.stream_options_span {
                Some(span) => edits.push((span.clone(), value)),
                None => inserts.push([&b"\"stream_options\":"[..], &value].concat()),
            }
        }
        if !inserts.is_empty() {
            let mut text = inserts.join(&b","[..]);
            if !self.empty {
                text.push(b',');
            }
            edits.push((self.open_brace..self.open_brace, text));
        }
        edits.sort_by_key(|(r, _)| r.start);
        let mut parts = Vec::with_capacity(edits.len() * 2 + 1);
        let mut at = 0;
        for (range, text) in edits {
            if range.start > at {
                parts.push(body.slice(at..range.start));
            }
            parts.push(Bytes::from(text));
            at = range.end;
        }
        if at < body.len() || parts.is_empty() {
            parts.push(body.slice(at..));
        }
        parts
    }

    /// The body with `model` set to `model` (added when absent).
    pub fn with_model(&self, body: &Bytes, model: &str) -> Bytes {
        self.rewrite(body, Some(model), false)
    }
}

/// Where `inner` (a sub-slice of `outer`) sits in `outer`.
fn span_of(outer: &[u8], inner: &str) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rewrite(body: &str, model: &str) -> Value {
        let b = Bytes::from(body.to_string());
        let req = ChatRequest::parse(&b).unwrap();
        serde_json::from_slice(&req.with_model(&b, model)).unwrap()
    }

    #[test]
    fn reads_model_and_stream() {
        let r = ChatRequest::parse(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert!(r.stream);
        let r = ChatRequest::parse(br#"{"messages":[]}"#).unwrap();
        assert_eq!(r.model, None);
        assert!(!r.stream);
        let r = ChatRequest::parse(br#"{"model":"","messages":[]}"#).unwrap();
        assert_eq!(r.model, None, "empty model counts as absent");
    }

    #[test]
    fn replaces_present_model() {
        let v = rewrite(r#"{"model": "gpt-4o", "messages": [{"role":"user","content":"model"}]}"#, "mini");
        assert_eq!(v, json!({"model":"mini","messages":[{"role":"user","content":"model"}]}));
    }

    #[test]
    fn adds_absent_model() {
        assert_eq!(rewrite(r#" { "messages": [] } "#, "m"), json!({"model":"m","messages":[]}));
        assert_eq!(rewrite("{}", "m"), json!({"model":"m"}));
        assert_eq!(rewrite(r#"{"model":null,"x":1}"#, "m"), json!({"model":"m","x":1}));
    }

    #[test]
    fn escapes_model_and_keeps_nested_model_keys() {
        let v = rewrite(r#"{"tools":[{"model":"keep"}],"model":"a"}"#, "we\"ird");
        assert_eq!(v, json!({"tools":[{"model":"keep"}],"model":"we\"ird"}));
    }

    #[test]
    fn same_model_is_not_copied() {
        let b = Bytes::from_static(br#"{"model":"a"}"#);
        let r = ChatRequest::parse(&b).unwrap();
        assert_eq!(r.with_model(&b, "a").as_ptr(), b.as_ptr());
    }

    #[test]
    fn asks_for_usage_once() {
        let b = Bytes::from_static(br#"{"model":"a","stream":true,"messages":[]}"#);
        let r = ChatRequest::parse(&b).unwrap();
        assert!(!r.include_usage);
        let v: Value = serde_json::from_slice(&r.rewrite(&b, Some("m"), true)).unwrap();
        assert_eq!(v, json!({"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}));
        let b = Bytes::from_static(br#"{"stream":true,"stream_options":{"include_usage":false}}"#);
        let r = ChatRequest::parse(&b).unwrap();
        let v: Value = serde_json::from_slice(&r.rewrite(&b, Some("m"), true)).unwrap();
        assert_eq!(v, json!({"model":"m","stream":true,"stream_options":{"include_usage":true}}));
        let b = Bytes::from_static(br#"{"stream_options":{"include_usage":true}}"#);
        let r = ChatRequest::parse(&b).unwrap();
        assert!(r.include_usage);
        assert_eq!(r.rewrite(&b, None, true).as_ptr(), b.as_ptr(), "nothing to change");
    }

    #[test]
    fn parts_are_slices_of_the_original() {
        let b = Bytes::from_static(br#"{"model":"gpt-4o","messages":[{"content":"long prompt"}]}"#);
        let r = ChatRequest::parse(&b).unwrap();
        let parts = r.rewrite_parts(&b, Some("mini"), false);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].as_ptr(), b.as_ptr(), "the head is not copied");
        assert_eq!(&parts[1][..], b"\"mini\"");
        assert_eq!(parts.concat(), r.rewrite(&b, Some("mini"), false).to_vec());
        assert_eq!(r.rewrite_parts(&b, None, false), vec![b.clone()]);
    }

    #[test]
    fn rejects_bad_bodies() {
        assert!(matches!(ChatRequest::parse(b"{\"model\":"), Err(BodyError::Json(_))));
        assert!(matches!(ChatRequest::parse(b"not json"), Err(BodyError::Json(_))));
        assert_eq!(ChatRequest::parse(b"[1,2]"), Err(BodyError::NotObject));
        assert_eq!(ChatRequest::parse(br#"{"model":5}"#), Err(BodyError::ModelType));
        assert_eq!(ChatRequest::parse(br#"{"stream":"yes"}"#), Err(BodyError::StreamType));
        assert!(matches!(ChatRequest::parse(br#"{"a":1} {"b":2}"#), Err(BodyError::Json(_))));
    }
}
