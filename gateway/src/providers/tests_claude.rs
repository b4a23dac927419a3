//! Claude everywhere: the Anthropic body on Bedrock (InvokeModel) and Vertex AI unchanged
//! but for its envelope, OpenAI and Anthropic clients to Vertex, the `drop` policy, and
//! answers of Claude's hosts back to the client.

use super::test_support::*;
use super::{
    check_supported, prepare, stream_translator, translate_reply, ClientApi, ClientContext, Credentials,
    UpstreamRequest,
};
use crate::config::{ProviderKind, TranslationPolicy};
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Value};

/// What Claude Code sends: thinking, cache hints on system, content and tools, tools.
pub fn claude_code_request(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 32000,
        "stream": stream,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is the weather in Paris?", "cache_control": {"type": "ephemeral"}},
            ]},
        ],
        "tools": [{
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        }],
        "metadata": {"user_id": "user-1"},
    })
}

fn bedrock_claude() -> ProviderKind {
    ProviderKind::Bedrock { region: "us-east-1".into(), anthropic: true }
}

fn vertex(anthropic: bool) -> ProviderKind {
    ProviderKind::Vertex { project: "my-project".into(), region: "us-east5".into(), anthropic }
}

fn prepared(
    client: ClientApi,
    body: &Value,
    kind: ProviderKind,
    model: &str,
    beta: Option<&HeaderValue>,
    policy: TranslationPolicy,
) -> UpstreamRequest {
    let p = provider(kind, Some(model));
    let aws = test_aws();
    let token = HeaderValue::from_static("Bearer ya29.test-token");
    let creds = match p.kind {
        ProviderKind::Bedrock { .. } => Credentials::Aws(&aws),
        _ => Credentials::Bearer(&token),
    };
    let cx = ClientContext { passthrough_auth: None, anthropic_beta: beta, policy };
    prepare(client, &Bytes::from(body.to_string()), &p, &creds, &cx, fixed_now()).unwrap()
}

fn snapshot(name: &str, input: &Value, req: &UpstreamRequest) {
    let removed: Vec<String> = req.remove_headers.iter().map(|h| h.to_string()).collect();
    let out = json!({"request": render_request(req), "remove_headers": removed, "dropped": req.dropped});
    insta::assert_yaml_snapshot!(name, json!({"input": input, "output": out}));
}

/// The body without what the host's envelope changes.
fn without_envelope(body: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    let obj = v.as_object_mut().unwrap();
    for key in ["model", "stream", "anthropic_version", "anthropic_beta"] {
        obj.remove(key);
    }
    v
}

#[test]
fn claude_code_to_bedrock_invoke() {
    let beta = HeaderValue::from_static("interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14");
    let input = claude_code_request(true);
    let model = "us.anthropic.claude-sonnet-4-6-v1:0";
    let req = prepared(ClientApi::AnthropicMessages, &input, bedrock_claude(), model, Some(&beta), Default::default());
    assert_eq!(req.path_and_query, "/model/us.anthropic.claude-sonnet-4-6-v1%3A0/invoke-with-response-stream");
    assert!(req.stream);
    assert_eq!(without_envelope(&req.body), without_envelope(input.to_string().as_bytes()), "nothing else changed");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        body["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"])
    );
    assert!(req.dropped.is_empty());
    snapshot("claude_code_to_bedrock_invoke", &input, &req);

    let whole = prepared(
        ClientApi::AnthropicMessages,
        &claude_code_request(false),
        bedrock_claude(),
        model,
        None,
        Default::default(),
    );
    assert_eq!(whole.path_and_query, "/model/us.anthropic.claude-sonnet-4-6-v1%3A0/invoke");
    assert!(serde_json::from_slice::<Value>(&whole.body).unwrap().get("anthropic_beta").is_none());
}

#[test]
fn claude_code_to_vertex_claude() {
    let beta = HeaderValue::from_static("interleaved-thinking-2025-05-14");
    let input = claude_code_request(true);
    let req = prepared(
        ClientApi::AnthropicMessages,
        &input,
        vertex(true),
        "claude-sonnet-4-6@20250929",
        Some(&beta),
        Default::default(),
    );
    assert_eq!(
        req.path_and_query,
        "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6%4020250929:streamRawPredict"
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!((body["anthropic_version"].as_str(), body["stream"].as_bool()), (Some("vertex-2023-10-16"), Some(true)));
    assert_eq!(without_envelope(&req.body), without_envelope(input.to_string().as_bytes()));
    snapshot("claude_code_to_vertex_claude", &input, &req);
}

#[test]
fn openai_to_vertex_claude_and_anthropic_to_vertex_gemini() {
    let input = json!({
        "model": "gpt-4o",
        "stream": true,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 100,
    });
    let req = prepared(ClientApi::OpenAiChat, &input, vertex(true), "claude-sonnet-4-6", None, Default::default());
    snapshot("openai_to_vertex_claude", &input, &req);

    let input = json!({"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let req =
        prepared(ClientApi::AnthropicMessages, &input, vertex(false), "gemini-2.5-flash", None, Default::default());
    assert!(req.path_and_query.ends_with("/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"));
    snapshot("anthropic_to_vertex_gemini", &input, &req);
}

#[test]
fn drop_policy_sends_claude_code_to_openai_without_what_it_cannot_express() {
    let input = claude_code_request(false);
    assert!(check_supported(ClientApi::AnthropicMessages, &input, &openai(), TranslationPolicy::Refuse).is_err());
    check_supported(ClientApi::AnthropicMessages, &input, &openai(), TranslationPolicy::Drop).unwrap();
    // Hosted Claude takes everything, whatever the policy.
    check_supported(ClientApi::AnthropicMessages, &input, &bedrock_claude(), TranslationPolicy::Refuse).unwrap();
    check_supported(ClientApi::AnthropicMessages, &input, &vertex(true), TranslationPolicy::Refuse).unwrap();

    let beta = HeaderValue::from_static("interleaved-thinking-2025-05-14");
    let p = provider(openai(), Some("gpt-4o"));
    let cx = ClientContext { passthrough_auth: None, anthropic_beta: Some(&beta), policy: TranslationPolicy::Drop };
    let body = Bytes::from(input.to_string());
    let req = prepare(ClientApi::AnthropicMessages, &body, &p, &Credentials::ApiKey("k"), &cx, fixed_now()).unwrap();
    assert_eq!(req.dropped, ["thinking", "cache_control", "anthropic-beta"]);
    snapshot("claude_code_to_openai_dropped", &input, &req);
    // Refused under the default policy.
    let cx = ClientContext { policy: TranslationPolicy::Refuse, ..cx };
    assert!(prepare(ClientApi::AnthropicMessages, &body, &p, &Credentials::ApiKey("k"), &cx, fixed_now()).is_err());
}

#[test]
fn hosted_claude_answers_pass_through_and_errors_take_anthropics_shape() {
    let message = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"Hi"}],"model":"claude","stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#;
    for kind in [bedrock_claude(), vertex(true)] {
        let out = translate_reply(ClientApi::AnthropicMessages, &kind, 200, message, &meta()).unwrap();
        assert_eq!(&out[..], &message[..], "{kind:?}: byte for byte");
    }
    let bedrock_error = br#"{"message":"Too many requests, please wait before trying again."}"#;
    let out = translate_reply(ClientApi::AnthropicMessages, &bedrock_claude(), 429, bedrock_error, &meta()).unwrap();
    let google_error = br#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#;
    let out2 = translate_reply(ClientApi::AnthropicMessages, &vertex(true), 401, google_error, &meta()).unwrap();
    let claude_error = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let out3 = translate_reply(ClientApi::AnthropicMessages, &vertex(true), 529, claude_error, &meta()).unwrap();
    let parse = |b: &Bytes| serde_json::from_slice::<Value>(b).unwrap();
    insta::assert_yaml_snapshot!(
        "hosted_claude_errors",
        json!({"bedrock_429": parse(&out), "vertex_401": parse(&out2), "vertex_529": parse(&out3)})
    );
    // A whole answer for an OpenAI client from Claude on Vertex is translated.
    let plain = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"model":"claude","stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let out = translate_reply(ClientApi::OpenAiChat, &vertex(true), 200, plain, &meta()).unwrap();
    assert_eq!(parse(&out)["choices"][0]["message"]["content"], "Hi");
    assert!(stream_translator(ClientApi::AnthropicMessages, &vertex(true), "m", false).is_some());
}
