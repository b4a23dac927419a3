//! Claude everywhere, end to end: what Claude Code sends (thinking, cache hints, tools, an
//! `anthropic-beta` header) fails over from Anthropic to Claude on Bedrock (InvokeModel)
//! and on Vertex AI without losing a field, and, with `translation: {unsupported: drop}`,
//! to OpenAI without what OpenAI cannot express.

use crate::harness::*;
use mock_llm::{TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub const BETA: &str = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14";
pub const BEDROCK_CLAUDE: &str = "bedrock: {model: \"us.anthropic.claude-sonnet-4-6-v1:0\", region: us-east-1}";
pub const VERTEX_CLAUDE: &str =
    "vertex: {project: my-project, region: us-east5, model: \"claude-sonnet-4-6@20250929\"}";

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = aws_smithy_types::base64::encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A fresh RSA key: (service-account private key PEM, public key PEM).
pub fn rsa_key_pair() -> (String, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use rsa::Generate;
    let key = rsa::PrivateKey::generate();
    let private = pem("PRIVATE KEY", key.to_pkcs8_der().unwrap().as_bytes());
    let public = pem("PUBLIC KEY", key.to_public_key().to_public_key_der().unwrap().as_bytes());
    (private, public)
}

/// Writes a service-account key file whose token endpoint is `token_mock`'s `/token`, and
/// makes the mock verify assertions with its public key. Returns the file's path.
pub fn service_account(dir: &Path, token_mock: &MockLlm) -> String {
    let (private, public) = rsa_key_pair();
    token_mock.set_behavior(Behavior { token_public_key: Some(public), ..token_mock.behavior() });
    let file = json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "key-1",
        "private_key": private,
        "client_email": "switchyard@my-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": format!("http://127.0.0.1:{}/token", token_mock.port()),
    });
    let path = dir.join("service-account.json");
    std::fs::write(&path, file.to_string()).unwrap();
    path.display().to_string()
}

/// What Claude Code sends.
pub fn claude_code_request(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 2048,
        "stream": stream,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Say hello.", "cache_control": {"type": "ephemeral"}},
        ]}],
        "tools": [{
            "name": "read_file",
            "description": "Reads a file.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }],
    })
}

fn backend(groups: &[String], translation: &str) -> String {
    let mut s = String::from(
        "accessLog: {path: \"{DIR}/access.log\"}\nroutes:\n  - {name: claude, match: {pathPrefix: /v1}, backend: claude}\nbackends:\n  claude:\n    groups:\n",
    );
    for g in groups {
        s.push_str(&format!("      - providers: [{g}]\n"));
    }
    s.push_str(&format!("    health: {{eviction: {{maxEjectionPercent: 0}}}}\n{translation}"));
    s
}

async fn send(gw: &Gateway, body: &Value) -> Reply {
    post_with(
        client()
            .post(gw.url("/v1/messages"))
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-client")
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", BETA)
            .body(body.to_string()),
    )
    .await
}

/// `(event, data)` of an SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap_or_else(|err| panic!("bad data ({err}): {data}")))
        })
        .collect()
}

/// The request as the client sent it, minus what a host's envelope changes.
fn unchanged_part(v: &Value) -> Value {
    let mut v = v.clone();
    for key in ["model", "stream", "anthropic_version", "anthropic_beta"] {
        v.as_object_mut().unwrap().remove(key);
    }
    v
}

fn access_lines(gw: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.path().join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_fails_over_anthropic_bedrock_vertex_losslessly() {
    let anthropic = MockLlm::start("claude-down", Behavior::failing(529)).await.unwrap();
    let bedrock = MockLlm::start("bedrock", Behavior::default()).await.unwrap();
    let vertex = MockLlm::start("vertex", Behavior::default()).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let credentials = service_account(keys.path(), &vertex);
    let gw = Gateway::start_with_env(
        &backend(
            &[
                kind_provider(
                    "anthropic",
                    &anthropic,
                    "anthropic: {model: claude-sonnet-4-6}",
                    "{apiKey: {env: ANTHROPIC_API_KEY}}",
                ),
                kind_provider("aws", &bedrock, BEDROCK_CLAUDE, ""),
                kind_provider("gcp", &vertex, VERTEX_CLAUDE, ""),
            ],
            "",
        ),
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("AWS_ACCESS_KEY_ID", TEST_AWS_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", TEST_AWS_SECRET_ACCESS_KEY),
            ("GOOGLE_APPLICATION_CREDENTIALS", &credentials),
        ],
    )
    .await;

    // Anthropic 529 → Claude on Bedrock, streamed.
    let sent = claude_code_request(true);
    let r = send(&gw, &sent).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "aws", Some("2")), "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("x-switchyard-dropped"), None, "nothing was dropped");
    let got = events(&r.body);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    for (name, data) in &got {
        assert_eq!(data["type"].as_str(), Some(name.as_str()), "event name and type agree");
    }
    let deltas: Vec<&str> = got.iter().filter_map(|(_, d)| d["delta"]["type"].as_str()).collect();
    assert!(deltas.contains(&"thinking_delta") && deltas.contains(&"signature_delta"), "{deltas:?}");
    // The mock calls the first tool offered.
    let tool = got.iter().find(|(_, d)| d["content_block"]["type"] == "tool_use").expect("a tool_use block");
    assert_eq!(tool.1["content_block"]["name"], "read_file");
    let args: String = got.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str()).collect();
    assert_eq!(args, r#"{"location":"Paris"}"#);
    assert_eq!(got[0].1["message"]["model"], "us.anthropic.claude-sonnet-4-6-v1:0", "{}", r.body);
    let seen = bedrock.last_request().unwrap();
    assert_eq!(seen.path, "/model/us.anthropic.claude-sonnet-4-6-v1%3A0/invoke-with-response-stream");
    assert_eq!(seen.sigv4_valid, Some(true), "SigV4 verified by the mock");
    assert_eq!(seen.header("anthropic-beta"), None, "the betas travel in the body");
    assert_eq!(seen.header("x-api-key"), None, "no client credentials");
    let body = seen.json().unwrap();
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        body["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"])
    );
    assert_eq!((body.get("model"), body.get("stream")), (None, None));
    assert_eq!(unchanged_part(&body), unchanged_part(&sent), "thinking, cache_control, tools arrived unchanged");
    assert_eq!(anthropic.last_request().unwrap().json().unwrap()["thinking"], sent["thinking"]);

    // Bedrock down too → Claude on Vertex with a token from the service account.
    bedrock.set_behavior(Behavior::failing(503));
    let r = send(&gw, &sent).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "gcp", Some("3")), "{}", r.body);
    let got = events(&r.body);
    assert!(got.iter().any(|(_, d)| d["delta"]["type"] == "thinking_delta"));
    assert!(got.iter().any(|(_, d)| d["content_block"]["name"] == "read_file"), "{}", r.body);
    assert_eq!(got[0].1["message"]["model"], "claude-sonnet-4-6@20250929");
    let seen = vertex.last_request().unwrap();
    assert_eq!(
        seen.path,
        "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6%4020250929:streamRawPredict"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer ya29.mock-vertex-1"), "the token the mock issued");
    let body = seen.json().unwrap();
    assert_eq!((body["anthropic_version"].as_str(), body["stream"].as_bool()), (Some("vertex-2023-10-16"), Some(true)));
    assert_eq!(unchanged_part(&body), unchanged_part(&sent));

    // A whole answer, and the token is reused rather than fetched again.
    let r = send(&gw, &claude_code_request(false)).await;
    assert_eq!((r.status, r.provider()), (200, "gcp"), "{}", r.body);
    let message = r.json();
    assert_eq!(message["content"][0]["type"], "thinking");
    assert_eq!(
        (message["content"][1]["type"].as_str(), message["stop_reason"].as_str()),
        (Some("tool_use"), Some("tool_use"))
    );
    assert!(vertex.last_request().unwrap().path.ends_with(":rawPredict"));
    assert_eq!(vertex.tokens_issued(), 1, "the access token is cached");
}

#[tokio::test(flavor = "multi_thread")]
async fn vertex_token_endpoint_refusal_fails_over_and_api_key_auth_works() {
    let vertex = MockLlm::start("vertex", Behavior::default()).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let credentials = service_account(keys.path(), &vertex);
    // The token endpoint now knows another key: the assertion does not verify.
    let (_, other_public) = rsa_key_pair();
    vertex.set_behavior(Behavior {
        token_public_key: Some(other_public),
        accept_tokens: vec!["ya29.static".into()],
        ..Behavior::default()
    });
    let gw = Gateway::start_with_env(
        &backend(
            &[
                kind_provider("gcp", &vertex, VERTEX_CLAUDE, ""),
                kind_provider(
                    "gemini-on-vertex",
                    &vertex,
                    "vertex: {project: p, region: global, model: gemini-2.5-flash}",
                    "{apiKey: {env: VERTEX_TOKEN}}",
                ),
                kind_provider("fallback", &fallback, "anthropic: {model: claude-sonnet-4-6}", ""),
            ],
            "",
        ),
        &[("GOOGLE_APPLICATION_CREDENTIALS", &credentials), ("VERTEX_TOKEN", "ya29.static")],
    )
    .await;
    let plain = json!({"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let r = send(&gw, &plain).await;
    assert_eq!((r.status, r.provider()), (200, "gemini-on-vertex"), "{}", r.body);
    assert_eq!(r.json()["content"][0]["text"], "Hello from vertex", "Gemini's answer in Anthropic's shape");
    let seen = vertex.last_request().unwrap();
    assert_eq!(seen.path, "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.header("authorization"), Some("Bearer ya29.static"));
    assert_eq!(vertex.tokens_issued(), 0);
    assert!(eventually(Duration::from_secs(2), || async { !access_lines(&gw).is_empty() }).await);
    let line = &access_lines(&gw)[0];
    assert_eq!(line["attempts"][0]["provider"], "gcp");
    assert_eq!(line["attempts"][0]["error"], "auth", "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_policy_lets_claude_code_fail_over_to_openai() {
    let anthropic = MockLlm::start("claude-down", Behavior::failing(529)).await.unwrap();
    let gpt = MockLlm::start("gpt", Behavior::default()).await.unwrap();
    let groups = [
        kind_provider("anthropic", &anthropic, "anthropic: {model: claude-sonnet-4-6}", ""),
        kind_provider("openai", &gpt, "openai: {model: gpt-4o}", ""),
    ];

    // Default (refuse): OpenAI cannot express thinking, so it is skipped: the 529 stands.
    let gw = Gateway::start(&backend(&groups, "")).await;
    let r = send(&gw, &claude_code_request(false)).await;
    assert_eq!(r.status, 529, "{}", r.body);
    assert_eq!(gpt.requests(), 0, "OpenAI was never tried");
    drop(gw);

    let gw = Gateway::start(&backend(&groups, "    translation: {unsupported: drop}\n")).await;
    let r = send(&gw, &claude_code_request(false)).await;
    assert_eq!((r.status, r.provider()), (200, "openai"), "{}", r.body);
    assert_eq!(r.header("x-switchyard-dropped"), Some("thinking, cache_control, anthropic-beta"));
    assert_eq!(r.json()["content"][0]["name"], "read_file", "{}", r.body);
    let seen = gpt.last_request().unwrap();
    assert_eq!(seen.header("anthropic-beta"), None);
    let body = seen.json().unwrap();
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "You are Claude Code."}));
    assert!(!seen.body.windows(13).any(|w| w == b"cache_control"), "no cache hint reached OpenAI");
    assert!(eventually(Duration::from_secs(2), || async { !access_lines(&gw).is_empty() }).await);
    let line = &access_lines(&gw)[0];
    assert_eq!(line["attempts"][0].get("dropped"), None, "nothing dropped for Anthropic");
    assert_eq!(line["attempts"][1]["dropped"], "thinking, cache_control, anthropic-beta", "{line}");

    // The stream too.
    let r = send(&gw, &claude_code_request(true)).await;
    assert_eq!((r.status, r.provider()), (200, "openai"), "{}", r.body);
    assert_eq!(r.header("x-switchyard-dropped"), Some("thinking, cache_control, anthropic-beta"));
    assert!(r.body.contains("event: message_stop"), "{}", r.body);
}
