//! Helpers shared by the translation tests: providers, fixed reply metadata, and readable
//! renderings of requests and SSE output for the snapshots.

use super::{prepare, ClientApi, Credentials, ReplyMeta, StreamTranslator, UpstreamRequest};
use crate::config::{Auth, ProviderConfig, ProviderKind};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2024-01-02T03:04:05Z: requests are signed at this time.
pub fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_164_645)
}

pub fn meta() -> ReplyMeta {
    ReplyMeta { created: 1_700_000_000, fallback_id: "gen-fallback-id".into(), model: "requested-model".into() }
}

pub fn openai() -> ProviderKind {
    ProviderKind::OpenAi
}

pub fn anthropic() -> ProviderKind {
    ProviderKind::Anthropic { version: "2023-06-01".into() }
}

pub fn bedrock() -> ProviderKind {
    ProviderKind::Bedrock { region: "us-east-1".into(), anthropic: false }
}

pub fn gemini() -> ProviderKind {
    ProviderKind::Gemini
}

pub fn azure() -> ProviderKind {
    ProviderKind::Azure { deployment: "gpt-4o-prod".into(), api_version: "2024-10-21".into() }
}

/// Every client API with every provider layout that speaks another API.
pub fn cross_pairs() -> Vec<(ClientApi, ProviderKind)> {
    vec![
        (ClientApi::OpenAiChat, anthropic()),
        (ClientApi::OpenAiChat, bedrock()),
        (ClientApi::OpenAiChat, gemini()),
        (ClientApi::AnthropicMessages, openai()),
        (ClientApi::AnthropicMessages, azure()),
        (ClientApi::AnthropicMessages, bedrock()),
        (ClientApi::AnthropicMessages, gemini()),
        (ClientApi::OpenAiResponses, anthropic()),
        (ClientApi::OpenAiResponses, bedrock()),
        (ClientApi::OpenAiResponses, gemini()),
    ]
}

/// A provider of `kind` with the host its kind defaults to.
pub fn provider(kind: ProviderKind, model: Option<&str>) -> ProviderConfig {
    let host = match &kind {
        ProviderKind::OpenAi => "api.openai.com".to_string(),
        ProviderKind::Anthropic { .. } => "api.anthropic.com".to_string(),
        ProviderKind::Bedrock { region, .. } => format!("bedrock-runtime.{region}.amazonaws.com"),
        ProviderKind::Vertex { region, .. } => super::vertex::host(region),
        ProviderKind::Gemini => "generativelanguage.googleapis.com".to_string(),
        ProviderKind::Azure { .. } => "example.openai.azure.com".to_string(),
    };
    ProviderConfig {
        name: format!("{}-provider", kind.as_str()),
        kind,
        model: model.map(str::to_string),
        host,
        port: 443,
        path: None,
        tls: true,
        auth: Auth::None,
    }
}

pub fn test_aws() -> super::AwsCredentials {
    super::AwsCredentials {
        access_key_id: mock_llm::TEST_AWS_ACCESS_KEY_ID.into(),
        secret_access_key: mock_llm::TEST_AWS_SECRET_ACCESS_KEY.into(),
        session_token: None,
    }
}

/// Runs [`prepare`] with an API key (or AWS credentials for Bedrock) at [`fixed_now`].
pub fn prepare_for(client: ClientApi, body: &Value, provider: &ProviderConfig) -> UpstreamRequest {
    let aws = test_aws();
    let creds = match provider.kind {
        ProviderKind::Bedrock { .. } => Credentials::Aws(&aws),
        _ => Credentials::ApiKey("test-key"),
    };
    let body = Bytes::from(body.to_string());
    prepare(client, &body, provider, &creds, &Default::default(), fixed_now()).unwrap()
}

/// An upstream request as the snapshots show it: sensitive header values are marked.
pub fn render_request(req: &UpstreamRequest) -> Value {
    let mut headers = Map::new();
    for (name, value) in &req.headers {
        let mut shown = value.to_str().unwrap().to_string();
        if value.is_sensitive() {
            shown.push_str("  (sensitive)");
        }
        headers.insert(name.to_string(), json!(shown));
    }
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    json!({
        "method": req.method.as_str(),
        "path": req.path_and_query,
        "stream": req.stream,
        "headers": headers,
        "body": body,
    })
}

/// SSE output as a list of `{event, data}` with `data` parsed when it is JSON.
pub fn render_sse(bytes: &[u8]) -> Value {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "output ends between events: {text:?}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let mut name = None;
            let mut data = None;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(d).unwrap_or_else(|_| json!(d)));
                } else {
                    panic!("unexpected line {line:?}");
                }
            }
            match name {
                Some(n) => json!({"event": n, "data": data}),
                None => json!({"data": data}),
            }
        })
        .collect();
    Value::Array(events)
}

/// Feeds `input` in pieces of `piece` bytes (0: all at once), then finishes.
pub fn run_stream(mut t: Box<dyn StreamTranslator>, input: &[u8], piece: usize) -> Bytes {
    let mut out = BytesMut::new();
    if piece == 0 {
        t.push(input, &mut out).unwrap();
    } else {
        for chunk in input.chunks(piece) {
            t.push(chunk, &mut out).unwrap();
        }
    }
    t.finish(&mut out).unwrap();
    out.freeze()
}

/// Feeds `input` at the given cut points.
pub fn run_stream_cut(mut t: Box<dyn StreamTranslator>, input: &[u8], cuts: &[usize]) -> Bytes {
    let mut out = BytesMut::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        t.push(&input[start..cut], &mut out).unwrap();
        start = cut;
    }
    t.finish(&mut out).unwrap();
    out.freeze()
}

/// SSE text from `(event name, data)` pairs; `None` names give data-only events.
pub fn sse_input(events: &[(Option<&str>, Value)]) -> String {
    let mut s = String::new();
    for (name, data) in events {
        if let Some(n) = name {
            s.push_str(&format!("event: {n}\n"));
        }
        s.push_str(&format!("data: {data}\n\n"));
    }
    s
}
