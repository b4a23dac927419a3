//! Incremental stream translation: a provider-side decoder turns raw upstream bytes into
//! neutral [`Event`]s, a client-side encoder turns those into the client's SSE bytes.
//! Nothing is buffered beyond one incomplete SSE event or event-stream frame.

use super::ir::{ErrorInfo, Event, Usage};
use super::sse::{SseEvent, SseParser};
use super::{anthropic, bedrock, gemini, openai, ClientApi, ReplyMeta, TranslateError};
use crate::config::ProviderKind;
use bytes::{BufMut, BytesMut};
use serde_json::Value;

/// Incremental stream translation. Feed raw upstream body chunks as they arrive; get
/// client-API SSE bytes out. A provider error event inside the stream becomes the client
/// API's error event (and no terminal events follow it). After an `Err` the stream is
/// broken: stop using the translator.
pub trait StreamTranslator: Send {
    fn push(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), TranslateError>;
    /// Upstream ended cleanly: flush, emit the terminal events (`[DONE]` / `message_stop`)
    /// if not yet emitted.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), TranslateError>;
}

/// Where decoded events go.
pub type Sink<'a> = dyn FnMut(Event) -> Result<(), TranslateError> + 'a;

/// Provider side: raw bytes → events.
pub trait Decoder: Send {
    fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), TranslateError>;
    /// The upstream body ended; an incomplete event is an error.
    fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), TranslateError>;
}

/// Client side: events → SSE bytes.
pub trait Encoder: Send {
    fn event(&mut self, event: Event, out: &mut BytesMut) -> Result<(), TranslateError>;
    /// Emits the terminal events unless already sent (or an error event ended the stream).
    fn end(&mut self, out: &mut BytesMut) -> Result<(), TranslateError>;
}

/// What every client-side encoder keeps about the answer: the id and model it shows (the
/// provider's once known, else [`ReplyMeta`]'s), the usage so far, and whether the stream
/// has ended.
#[derive(Debug)]
pub struct EncoderState {
    pub meta: ReplyMeta,
    pub id: String,
    pub usage: Usage,
    pub done: bool,
}

impl EncoderState {
    pub fn new(meta: ReplyMeta) -> Self {
        EncoderState { id: meta.fallback_id.clone(), meta, usage: Usage::default(), done: false }
    }
}

/// The part of an [`Encoder`] that differs between client APIs. The events every API treats
/// alike (the id, model and usage of [`Event::Start`], [`Event::Usage`], nothing after an
/// error or the end) are handled once, by the [`Encoder`] every `ClientEncoder` is.
pub trait ClientEncoder: Send {
    fn state(&mut self) -> &mut EncoderState;
    /// Writes the opening of the answer unless already written.
    fn start(&mut self, out: &mut BytesMut) -> Result<(), TranslateError>;
    /// [`Event::Text`], [`Event::ToolStart`], [`Event::ToolArgs`] and [`Event::Finish`].
    fn content(&mut self, event: Event, out: &mut BytesMut) -> Result<(), TranslateError>;
    /// Writes the client API's error event (nothing follows it).
    fn error(&mut self, info: &ErrorInfo, out: &mut BytesMut) -> Result<(), TranslateError>;
    /// Writes the terminal events of a stream that ended without an error.
    fn terminal(&mut self, out: &mut BytesMut) -> Result<(), TranslateError>;
}

impl<T: ClientEncoder> Encoder for T {
    fn event(&mut self, event: Event, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.state().done {
            return Ok(());
        }
        match event {
            Event::Start { id, model, usage } => {
                let state = self.state();
                if let Some(id) = id {
                    state.id = id;
                }
                if let Some(model) = model {
                    state.meta.model = model;
                }
                state.usage.merge(usage);
                self.start(out)
            }
            Event::Usage(usage) => {
                self.state().usage.merge(usage);
                Ok(())
            }
            Event::Error(info) => {
                self.state().done = true;
                self.error(&info, out)
            }
            Event::End => self.end(out),
            content => self.content(content, out),
        }
    }

    fn end(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        if self.state().done {
            return Ok(());
        }
        self.state().done = true;
        self.terminal(out)
    }
}

/// Maps one SSE event of a provider to neutral events.
pub trait SseMapper: Send {
    fn map(&mut self, event: SseEvent, sink: &mut Sink<'_>) -> Result<(), TranslateError>;
}

/// A [`Decoder`] for SSE-speaking providers.
pub struct SseDecoder<M> {
    parser: SseParser,
    mapper: M,
}

impl<M: SseMapper> SseDecoder<M> {
    pub fn new(mapper: M) -> Self {
        SseDecoder { parser: SseParser::new(), mapper }
    }
}

impl<M: SseMapper> Decoder for SseDecoder<M> {
    fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let mapper = &mut self.mapper;
        self.parser.push(input, &mut |event| mapper.map(event, sink))
    }

    fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), TranslateError> {
        let mapper = &mut self.mapper;
        self.parser.finish(&mut |event| mapper.map(event, sink))
    }
}

struct Translator {
    decoder: Box<dyn Decoder>,
    encoder: Box<dyn Encoder>,
}

impl StreamTranslator for Translator {
    fn push(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), TranslateError> {
        let encoder = &mut self.encoder;
        self.decoder.push(input, &mut |event| encoder.event(event, out))
    }

    fn finish(&mut self, out: &mut BytesMut) -> Result<(), TranslateError> {
        let encoder = &mut self.encoder;
        self.decoder.finish(&mut |event| encoder.event(event, out))?;
        self.encoder.end(out)
    }
}

/// The translator from `provider`'s stream to `client`'s (the APIs differ).
pub(crate) fn translator(
    client: ClientApi,
    provider: &ProviderKind,
    meta: ReplyMeta,
    include_usage: bool,
) -> Box<dyn StreamTranslator> {
    let decoder: Box<dyn Decoder> = match provider {
        ProviderKind::OpenAi | ProviderKind::Azure { .. } => Box::new(SseDecoder::new(openai::ChunkMapper::default())),
        ProviderKind::Anthropic { .. } | ProviderKind::Vertex { anthropic: true, .. } => {
            Box::new(SseDecoder::new(anthropic::EventMapper))
        }
        ProviderKind::Bedrock { .. } => Box::new(bedrock::EventStreamDecoder::new(client.name())),
        ProviderKind::Gemini | ProviderKind::Vertex { anthropic: false, .. } => {
            Box::new(SseDecoder::new(gemini::ChunkMapper::new(client.name())))
        }
    };
    let encoder: Box<dyn Encoder> = match client {
        ClientApi::OpenAiChat => Box::new(openai::ChunkEncoder::new(meta, include_usage)),
        ClientApi::AnthropicMessages => Box::new(anthropic::EventEncoder::new(meta)),
        ClientApi::OpenAiResponses => Box::new(super::responses::EventEncoder::new(meta)),
    };
    Box::new(Translator { decoder, encoder })
}

/// Writes `data: {json}\n\n`.
pub fn write_data(out: &mut BytesMut, value: &Value) -> Result<(), TranslateError> {
    out.put_slice(b"data: ");
    serde_json::to_writer(out.writer(), value).map_err(|e| TranslateError::invalid(e.to_string()))?;
    out.put_slice(b"\n\n");
    Ok(())
}

/// Writes `event: NAME\ndata: {json}\n\n`.
pub fn write_event(out: &mut BytesMut, name: &str, value: &Value) -> Result<(), TranslateError> {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    write_data(out, value)
}

/// A provider's `parse_error`: (its error type or code, message) of an error body.
pub type ErrorParser = fn(&Value) -> Option<(Option<String>, String)>;

/// Reads one event of a stream that sends a whole JSON object per SSE event (OpenAI chunks,
/// Gemini responses). An error object (by `parse_error`) becomes [`Event::Error`] and `None`;
/// the first other object is preceded by [`Event::Start`] with the strings under its
/// `id_key` and `model_key` (`started` records that it was sent).
pub fn chunk_json(
    event: &SseEvent,
    started: &mut bool,
    parse_error: ErrorParser,
    (id_key, model_key): (&str, &str),
    sink: &mut Sink<'_>,
) -> Result<Option<Value>, TranslateError> {
    let v = json_data(event)?;
    if let Some((kind, message)) = parse_error(&v) {
        sink(Event::Error(ErrorInfo { status: None, kind, message }))?;
        return Ok(None);
    }
    if !*started {
        *started = true;
        sink(Event::Start {
            id: v.get(id_key).and_then(Value::as_str).map(str::to_string),
            model: v.get(model_key).and_then(Value::as_str).map(str::to_string),
            usage: Usage::default(),
        })?;
    }
    Ok(Some(v))
}

/// Parses the JSON payload of an SSE event.
pub fn json_data(event: &SseEvent) -> Result<Value, TranslateError> {
    serde_json::from_str(&event.data)
        .map_err(|e| TranslateError::invalid(format!("provider stream event is not JSON: {e}")))
}
