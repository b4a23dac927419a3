//! Server-sent events as LLM providers send them: split a byte stream into events, tell a
//! stream that starts with an error from one that starts with content, and read token usage
//! from the events that carry it (OpenAI's final usage chunk, Anthropic's message events).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// Incremental SSE splitter: feed bytes, take whole events (each with its blank-line end).
#[derive(Debug, Default)]
pub struct Splitter {
    buf: BytesMut,
    /// How far `buf` was searched for an event end without finding one.
    scanned: usize,
}

impl Splitter {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete event, terminator included, or `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Option<Bytes> {
        // Resume where the last search stopped (less the 2 bytes a terminator may have
        // started with), so a long event is not searched again from its start.
        let from = self.scanned.saturating_sub(2);
        match event_end(&self.buf[from..]) {
            Some(end) => {
                self.scanned = 0;
                Some(self.buf.split_to(from + end).freeze())
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Bytes of an unfinished event.
    pub fn take_rest(&mut self) -> Bytes {
        self.scanned = 0;
        self.buf.split().freeze()
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Offset just past the first blank line (`\n\n`, `\r\n\r\n`, or `\r\r`).
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The `event:` name and joined `data:` payload of one event.
pub fn parse_event(event: &[u8]) -> (Option<&str>, String) {
    let text = std::str::from_utf8(event).unwrap_or("");
    let mut name = None;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (name, data)
}

/// What an event says about the health of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Keep-alives, comments, Anthropic `message_start`/`ping`: not content yet.
    Preamble,
    /// The provider reports an error in-band.
    Error(String),
    /// Real output (or the end marker): the stream is healthy.
    Content,
}

pub fn classify(event: &[u8]) -> EventKind {
    let (name, data) = parse_event(event);
    // `response.failed`: a Responses API stream that failed after it was created.
    if matches!(name, Some("error" | "response.failed")) {
        return EventKind::Error(error_message(&data).unwrap_or(data));
    }
    // Anthropic's and the Responses API's openings carry no output yet.
    if matches!(name, Some("ping" | "message_start" | "response.created" | "response.in_progress" | "response.queued"))
    {
        return EventKind::Preamble;
    }
    if data.is_empty() {
        return EventKind::Preamble;
    }
    if data.starts_with('{') && data.contains("\"error\"") {
        #[derive(Deserialize)]
        struct MaybeError {
            error: Option<serde_json::Value>,
        }
        if let Ok(MaybeError { error: Some(e) }) = serde_json::from_str::<MaybeError>(&data) {
            let msg = e.get("message").and_then(|m| m.as_str()).map(str::to_string).unwrap_or_else(|| e.to_string());
            return EventKind::Error(msg);
        }
    }
    EventKind::Content
}

fn error_message(data: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    ["/error/message", "/response/error/message", "/message"]
        .iter()
        .find_map(|p| v.pointer(p).and_then(|m| m.as_str()))
        .map(str::to_string)
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

impl Usage {
    /// From a JSON body, reading nothing but `usage` (no tree is built for the rest).
    pub fn from_slice(body: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Body {
            usage: Option<Counts>,
        }
        Some(serde_json::from_slice::<Body>(body).ok()?.usage?.into())
    }

    fn add(&mut self, other: Usage) {
        self.input = self.input.max(other.input);
        self.output = self.output.max(other.output);
    }
}

/// Watches a stream's events for usage, and can hide OpenAI's usage-only chunk from a
/// client that did not ask for it.
#[derive(Debug, Default)]
pub struct UsageTap {
    pub usage: Option<Usage>,
}

impl UsageTap {
    /// Looks at one event; returns whether it should be forwarded when `hide_usage_chunk`.
    pub fn inspect(&mut self, event: &[u8], hide_usage_chunk: bool) -> bool {
        let (_, data) = parse_event(event);
        if !data.contains("\"usage\"") {
            return true;
        }
        // Typed, so only the counts are read: OpenAI chunks carry `"usage": null` in every
        // chunk once usage is asked for.
        #[derive(Deserialize)]
        struct Message {
            usage: Option<Counts>,
        }
        #[derive(Deserialize)]
        struct Event {
            usage: Option<Counts>,
            message: Option<Message>,
            choices: Option<Vec<serde::de::IgnoredAny>>,
        }
        let Ok(e) = serde_json::from_str::<Event>(&data) else {
            return true;
        };
        let usage_only = e.choices.as_ref().is_some_and(Vec::is_empty) && e.usage.is_some();
        if let Some(c) = e.usage.or(e.message.and_then(|m| m.usage)) {
            self.usage.get_or_insert_with(Usage::default).add(c.into());
        }
        !(hide_usage_chunk && usage_only)
    }
}

/// Token counts as OpenAI (`prompt_tokens`) or Anthropic (`input_tokens`) name them.
#[derive(Deserialize)]
struct Counts {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl From<Counts> for Usage {
    fn from(c: Counts) -> Usage {
        Usage {
            input: c.prompt_tokens.or(c.input_tokens).unwrap_or(0),
            output: c.completion_tokens.or(c.output_tokens).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_pushes() {
        let mut s = Splitter::default();
        s.push(b"data: {\"a\":1}\n");
        assert_eq!(s.next_event(), None);
        s.push(b"\ndata: [DONE]\n\nda");
        assert_eq!(s.next_event().as_deref(), Some(&b"data: {\"a\":1}\n\n"[..]));
        assert_eq!(s.next_event().as_deref(), Some(&b"data: [DONE]\n\n"[..]));
        assert_eq!(s.next_event(), None);
        assert_eq!(&s.take_rest()[..], b"da");
        let mut s = Splitter::default();
        s.push(b"event: ping\r\ndata: {}\r\n\r\n");
        assert!(s.next_event().is_some());
    }

    #[test]
    fn classifies_responses_api_events() {
        let created =
            b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"error\":null}}\n\n";
        assert_eq!(classify(created), EventKind::Preamble);
        let failed = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
        assert_eq!(classify(failed), EventKind::Error("boom".into()));
        let error =
            b"event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\"}\n\n";
        assert_eq!(classify(error), EventKind::Error("slow down".into()));
        let delta =
            b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n";
        assert_eq!(classify(delta), EventKind::Content);
    }

    #[test]
    fn classifies_first_events() {
        assert_eq!(classify(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"), EventKind::Content);
        assert_eq!(
            classify(b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n"),
            EventKind::Error("overloaded".into())
        );
        assert_eq!(
            classify(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"),
            EventKind::Error("Overloaded".into())
        );
        assert_eq!(classify(b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n"), EventKind::Preamble);
        assert_eq!(classify(b": keep-alive\n\n"), EventKind::Preamble);
        assert_eq!(classify(b"data: [DONE]\n\n"), EventKind::Content);
        assert_eq!(
            classify(b"data: {\"choices\":[{\"delta\":{\"content\":\"the \\\"error\\\" word\"}}]}\n\n"),
            EventKind::Content
        );
    }

    #[test]
    fn usage_from_openai_stream_and_hiding() {
        let mut tap = UsageTap::default();
        assert!(tap.inspect(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n", true));
        let last =
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n";
        assert!(!tap.inspect(last, true), "hidden from a client that did not ask");
        assert_eq!(tap.usage, Some(Usage { input: 9, output: 4 }));
        let mut tap = UsageTap::default();
        assert!(tap.inspect(last, false));
    }

    #[test]
    fn usage_from_anthropic_stream() {
        let mut tap = UsageTap::default();
        tap.inspect(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n", false);
        tap.inspect(
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n",
            false,
        );
        assert_eq!(tap.usage, Some(Usage { input: 25, output: 15 }));
    }

    #[test]
    fn usage_from_bytes_reads_only_usage() {
        let body =
            br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#;
        assert_eq!(Usage::from_slice(body), Some(Usage { input: 3, output: 5 }));
        let anthropic = br#"{"content":[],"usage":{"input_tokens":7,"output_tokens":2}}"#;
        assert_eq!(Usage::from_slice(anthropic), Some(Usage { input: 7, output: 2 }));
        assert_eq!(Usage::from_slice(br#"{"usage":null}"#), None);
        assert_eq!(Usage::from_slice(b"not json"), None);
    }
}
