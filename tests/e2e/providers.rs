//! Cross-provider failover with translation, end to end against the mock speaking each
//! provider's API.

use crate::harness::*;
use mock_llm::{TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};

const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", TEST_AWS_ACCESS_KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", TEST_AWS_SECRET_ACCESS_KEY),
    ("ANTHROPIC_API_KEY", "sk-ant-test"),
    ("GEMINI_API_KEY", "gm-test"),
    ("AZURE_KEY", "az-test"),
];

fn gateway_body(groups: &[String], health: &str) -> String {
    let mut s = String::from(
        "routes:\n  - {name: chat, match: {pathPrefix: /v1}, backend: mixed}\nbackends:\n  mixed:\n    groups:\n",
    );
    for g in groups {
        s.push_str(&format!("      - providers: [{g}]\n"));
    }
    s.push_str(&format!("    health: {health}\n"));
    s
}

fn stream_text(body: &str) -> String {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// Reference 002: an OpenAI client, an Anthropic primary answering 404 for the fake model,
/// an Anthropic fallback; the answer comes back in OpenAI's shape.
#[tokio::test(flavor = "multi_thread")]
async fn ref002_openai_client_anthropic_failover() {
    let opus = MockLlm::start("opus", Behavior { status: 404, ..Behavior::default() }).await.unwrap();
    let sonnet = MockLlm::start("sonnet", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &gateway_body(
            &[
                kind_provider("anthropic-opus-46", &opus, "anthropic: {model: claude-opus-4-6-FAKE}", "{apiKey: {env: ANTHROPIC_API_KEY}}"),
                kind_provider("anthropic-sonnet-46", &sonnet, "anthropic: {model: claude-sonnet-4-6}", "{apiKey: {env: ANTHROPIC_API_KEY}}"),
            ],
            "{unhealthyCondition: \"response.code == 404 || response.code == 429\", eviction: {duration: 10s, consecutiveFailures: 1}}",
        ),
        AWS_ENV,
    )
    .await;
    let body = serde_json::json!({"messages": [
        {"role": "system", "content": "You are a skilled cloud-native network engineer."},
        {"role": "user", "content": "Write me a paragraph about Istio Ambient Mesh"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), &body).await;
    assert_eq!((r.status, r.provider()), (200, "anthropic-sonnet-46"), "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from sonnet");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let seen = sonnet.last_request().unwrap();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    let sent = seen.json().unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-6");
    assert_eq!(sent["system"], "You are a skilled cloud-native network engineer.");
    assert!(sent["max_tokens"].as_u64().is_some());
    assert_eq!(opus.last_request().unwrap().json().unwrap()["model"], "claude-opus-4-6-FAKE");

    // Streaming through the translation, too.
    let stream = serde_json::json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), &stream).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    assert_eq!(stream_text(&r.body), "Hello from sonnet");
    assert!(r.body.trim_end().ends_with("data: [DONE]"), "{}", r.body);
}

/// Reference 004: primary 5xx, Bedrock fallback, SigV4-signed with the test credentials and
/// verified by the mock; whole and streamed (event-stream) answers.
#[tokio::test(flavor = "multi_thread")]
async fn ref004_bedrock_fallback_signed() {
    let failing = MockLlm::start("failing", Behavior { status: 503, ..Behavior::default() }).await.unwrap();
    let bedrock = MockLlm::start("bedrock", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &gateway_body(
            &[
                provider("always-failing", &failing, ""),
                kind_provider(
                    "aws",
                    &bedrock,
                    "bedrock: {model: \"us.meta.llama3-2-1b-instruct-v1:0\", region: us-east-1}",
                    "",
                ),
            ],
            "{eviction: {duration: 5s, consecutiveFailures: 1}}",
        ),
        AWS_ENV,
    )
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("anything"))).await;
    assert_eq!((r.status, r.provider()), (200, "aws"), "{}", r.body);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from bedrock");
    let seen = bedrock.last_request().unwrap();
    assert_eq!(seen.path, "/model/us.meta.llama3-2-1b-instruct-v1%3A0/converse");
    assert_eq!(seen.sigv4_valid, Some(true), "SigV4 verified by the mock");
    assert!(seen.header("authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential=AKIAMOCKLLMTEST00001/"));

    let stream = serde_json::json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), &stream).await;
    assert_eq!((r.status, r.provider()), (200, "aws"));
    assert_eq!(stream_text(&r.body), "Hello from bedrock");
    assert!(r.body.trim_end().ends_with("data: [DONE]"));
    assert!(bedrock.last_request().unwrap().path.ends_with("/converse-stream"));
    assert_eq!(bedrock.last_request().unwrap().sigv4_valid, Some(true));
}

/// Gemini and Azure layouts: path, query and key headers; answers translated (Gemini) or
/// passed (Azure).
#[tokio::test(flavor = "multi_thread")]
async fn gemini_and_azure_layouts() {
    let gemini = MockLlm::start("gemini", Behavior::default()).await.unwrap();
    let azure = MockLlm::start("azure", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &gateway_body(
            &[
                kind_provider("gem", &gemini, "gemini: {model: gemini-2.5-flash}", "{apiKey: {env: GEMINI_API_KEY}}"),
                kind_provider(
                    "az",
                    &azure,
                    "azure: {deployment: gpt4o-prod, apiVersion: 2024-10-21}",
                    "{apiKey: {env: AZURE_KEY}}",
                ),
            ],
            "{}",
        ),
        AWS_ENV,
    )
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
    assert_eq!((r.status, r.provider()), (200, "gem"), "{}", r.body);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello from gemini");
    let seen = gemini.last_request().unwrap();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.header("x-goog-api-key"), Some("gm-test"));
    let stream = serde_json::json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/chat/completions"), &stream).await;
    assert_eq!(stream_text(&r.body), "Hello from gemini");
    assert_eq!(gemini.last_request().unwrap().query.as_deref(), Some("alt=sse"));

    gemini.set_behavior(Behavior { status: 500, ..Behavior::default() });
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
    assert_eq!((r.status, r.provider()), (200, "az"), "{}", r.body);
    let seen = azure.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(seen.header("api-key"), Some("az-test"));
    assert_eq!(seen.header("authorization"), None);
}

/// An Anthropic client (`/v1/messages`): native to Anthropic, translated to OpenAI, with
/// a stream that starts with an error event failing over.
#[tokio::test(flavor = "multi_thread")]
async fn anthropic_client_fails_over_to_openai() {
    let claude = MockLlm::start("claude", Behavior { stream_error_first: true, status: 529, ..Behavior::default() })
        .await
        .unwrap();
    let gpt = MockLlm::start("gpt", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &gateway_body(
            &[
                kind_provider(
                    "claude",
                    &claude,
                    "anthropic: {model: claude-sonnet-4-6}",
                    "{apiKey: {env: ANTHROPIC_API_KEY}}",
                ),
                provider("gpt", &gpt, "gpt-4o"),
            ],
            "{}",
        ),
        AWS_ENV,
    )
    .await;
    let body = serde_json::json!({"model": "claude-x", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/messages"), &body).await;
    assert_eq!((r.status, r.provider()), (200, "gpt"), "{}", r.body);
    assert!(r.body.contains("event: message_start"), "{}", r.body);
    let text: String = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v["type"] == "content_block_delta")
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "Hello from gpt");
    assert!(r.body.contains("event: message_stop"));
    assert!(!r.body.contains("event: error"));
    assert_eq!(gpt.last_request().unwrap().path, "/v1/chat/completions");
    assert_eq!(gpt.last_request().unwrap().json().unwrap()["model"], "gpt-4o");

    claude.set_behavior(Behavior::default());
    let gw2 = Gateway::start_with_env(
        &gateway_body(
            &[kind_provider("claude", &claude, "anthropic: {model: claude-sonnet-4-6}", "{passthrough: {}}")],
            "{}",
        ),
        AWS_ENV,
    )
    .await;
    let body =
        serde_json::json!({"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_with(client().post(gw2.url("/v1/messages")).header("x-api-key", "client-key").body(body.to_string()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["content"][0]["text"], "Hello from claude");
    assert_eq!(
        claude.last_request().unwrap().header("x-api-key"),
        Some("client-key"),
        "passthrough keeps the client's key"
    );
}

/// A field a provider cannot express: that provider is skipped, or, when no provider of
/// the route can take the request, it is refused with 400 before any attempt.
#[tokio::test(flavor = "multi_thread")]
async fn unsupported_fields_skip_or_refuse() {
    let bedrock = MockLlm::start("bedrock", Behavior::default()).await.unwrap();
    let gpt = MockLlm::start("gpt", Behavior::default()).await.unwrap();
    let image = serde_json::json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let gw = Gateway::start_with_env(
        &gateway_body(
            &[
                kind_provider("aws", &bedrock, "bedrock: {model: m1, region: us-east-1}", ""),
                provider("gpt", &gpt, "gpt-4o"),
            ],
            "{}",
        ),
        AWS_ENV,
    )
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &image).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "gpt", Some("1")), "{}", r.body);
    assert_eq!(bedrock.requests(), 0, "the provider that cannot take an image URL is skipped");

    let only_bedrock = Gateway::start_with_env(
        &gateway_body(&[kind_provider("aws", &bedrock, "bedrock: {model: m1, region: us-east-1}", "")], "{}"),
        AWS_ENV,
    )
    .await;
    let r = post_json(&only_bedrock.url("/v1/chat/completions"), &image).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("aws") && msg.contains("bedrock"), "{msg}");
    assert_eq!(bedrock.requests(), 0);
}

/// `GET /v1/models` lists the route's providers' models.
#[tokio::test(flavor = "multi_thread")]
async fn models_list() {
    let a = MockLlm::start("a", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &gateway_body(
            &[
                kind_provider(
                    "claude",
                    &a,
                    "anthropic: {model: claude-sonnet-4-6}",
                    "{apiKey: {env: ANTHROPIC_API_KEY}}",
                ),
                provider("gpt", &a, "gpt-4o"),
            ],
            "{}",
        ),
        AWS_ENV,
    )
    .await;
    let r = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["claude-sonnet-4-6", "gpt-4o"]);
    assert_eq!(a.requests(), 0);
}
