//! Paths the gateway does not translate go only to providers whose API serves them (404 in
//! the client's shape otherwise); embeddings fail over between OpenAI and Azure; a route's
//! `rewrite: {prefix}` decides the client's API; `x-switchyard-model` is on every answer.

use crate::harness::*;
use serde_json::json;

const ENV: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-openai-test"),
    ("ANTHROPIC_API_KEY", "sk-ant-test"),
    ("AZURE_KEY", "az-test"),
    ("AWS_ACCESS_KEY_ID", mock_llm::TEST_AWS_ACCESS_KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", mock_llm::TEST_AWS_SECRET_ACCESS_KEY),
];
const OPENAI_AUTH: &str = "{apiKey: {env: OPENAI_API_KEY}}";
const BEDROCK: &str = "bedrock: {model: \"us.anthropic.claude-sonnet-4-6-v1:0\", region: us-east-1}";

fn config(route: &str, groups: &[String]) -> String {
    let mut s = format!("routes:\n  - {route}\nbackends:\n  b:\n    groups:\n");
    for g in groups {
        s.push_str(&format!("      - providers: [{g}]\n"));
    }
    s.push_str("    health: {eviction: {maxEjectionPercent: 0}}\n");
    s
}

const V1: &str = "{name: r, match: {pathPrefix: /v1}, backend: b}";

#[tokio::test(flavor = "multi_thread")]
async fn untranslated_paths_skip_providers_that_do_not_serve_them() {
    let bedrock = MockLlm::start("bedrock", Behavior::default()).await.unwrap();
    let gpt = MockLlm::start("gpt", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &config(
            V1,
            &[
                kind_provider("aws", &bedrock, BEDROCK, ""),
                kind_provider("openai", &gpt, "openai: {model: gpt-4o}", OPENAI_AUTH),
            ],
        ),
        ENV,
    )
    .await;
    // The Responses API reaches Bedrock only translated (Converse), never on its own path.
    let body = json!({"model": "client-model", "input": "Say hello.", "stream": true});
    let r = post_json(&gw.url("/v1/responses"), &body).await;
    assert_eq!((r.status, r.provider()), (200, "aws"), "{}", r.body);
    assert!(r.body.contains("event: response.completed"), "{}", r.body);
    let seen = bedrock.last_request().unwrap();
    assert_eq!(seen.path, "/model/us.anthropic.claude-sonnet-4-6-v1%3A0/converse-stream");
    assert_eq!(seen.sigv4_valid, Some(true));

    // Embeddings: Bedrock comes first but does not serve them, so they are never sent there.
    bedrock.reset_stats();
    let embed = json!({"model": "client-model", "input": "hello"});
    let r = post_json(&gw.url("/v1/embeddings"), &embed).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "openai", Some("1")), "{}", r.body);
    assert_eq!(bedrock.requests(), 0, "nothing reached Bedrock");
    let seen = gpt.last_request().unwrap();
    assert_eq!((seen.path.as_str(), seen.header("authorization")), ("/v1/embeddings", Some("Bearer sk-openai-test")));
    assert_eq!(seen.json().unwrap()["model"], "gpt-4o");
    drop(gw);

    // With no provider that serves it: 404 in the client's shape, nothing sent anywhere.
    let gw = Gateway::start_with_env(&config(V1, &[kind_provider("aws", &bedrock, BEDROCK, "")]), ENV).await;
    let r = post_json(&gw.url("/v1/embeddings"), &embed).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("/v1/embeddings"), "{}", r.body);
    assert_eq!(r.header("x-switchyard-model"), Some("client-model"), "the request's model, none was tried");
    let r = post_json(&gw.url("/v1/messages/count_tokens"), &json!({"model": "m", "messages": []})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["type"], "error", "Anthropic's shape for an Anthropic path: {}", r.body);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    assert_eq!(bedrock.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_streams_are_judged_on_their_first_event() {
    let gpt = MockLlm::start(
        "gpt",
        Behavior { stream_error_first: true, status: 500, failure_rate: 0.0, ..Behavior::default() },
    )
    .await
    .unwrap();
    let azure = MockLlm::start("azure", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &config(
            V1,
            &[
                kind_provider("openai", &gpt, "openai: {model: gpt-4.1}", OPENAI_AUTH),
                kind_provider(
                    "azure",
                    &azure,
                    "azure: {deployment: d, apiVersion: \"2024-10-21\"}",
                    "{apiKey: {env: AZURE_KEY}}",
                ),
            ],
        ),
        ENV,
    )
    .await;
    let body = json!({"model": "m", "input": "Say hello.", "stream": true});
    let r = post_json(&gw.url("/v1/responses"), &body).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "azure", Some("2")), "{}", r.body);
    assert!(r.body.contains("Hello from azure") && !r.body.contains("injected"), "{}", r.body);
    assert_eq!(gpt.last_request().unwrap().path, "/v1/responses");
    assert_eq!(azure.last_request().unwrap().path, "/openai/v1/responses");
    // The first provider answered 200 with an `error` event: a stream failure, failed over.
    let status = gw.provider_status("openai").await;
    assert_eq!(status["lastError"].as_str().map(|e| e.contains("injected stream error")), Some(true), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn count_tokens_goes_to_anthropic_and_embeddings_fail_over_to_azure() {
    let gpt = MockLlm::start("gpt", Behavior::failing(429)).await.unwrap();
    let claude = MockLlm::start("claude", Behavior::default()).await.unwrap();
    let azure = MockLlm::start("azure", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &config(
            V1,
            &[
                kind_provider("openai", &gpt, "openai: {model: text-embedding-3-small}", OPENAI_AUTH),
                kind_provider(
                    "claude",
                    &claude,
                    "anthropic: {model: claude-sonnet-4-6}",
                    "{apiKey: {env: ANTHROPIC_API_KEY}}",
                ),
                kind_provider(
                    "azure",
                    &azure,
                    "azure: {deployment: emb-prod, apiVersion: \"2024-10-21\"}",
                    "{apiKey: {env: AZURE_KEY}}",
                ),
            ],
        ),
        ENV,
    )
    .await;
    let count = json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_with(
        client()
            .post(gw.url("/v1/messages/count_tokens"))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(count.to_string()),
    )
    .await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "claude", Some("1")), "{}", r.body);
    let seen = claude.last_request().unwrap();
    assert_eq!((seen.path.as_str(), seen.header("x-api-key")), ("/v1/messages/count_tokens", Some("sk-ant-test")));
    assert_eq!(seen.json().unwrap()["model"], "claude-sonnet-4-6");
    assert_eq!(gpt.requests(), 0, "OpenAI does not count Anthropic tokens");

    let embed = json!({"model": "text-embedding-3-small", "input": "hello"});
    let r = post_json(&gw.url("/v1/embeddings"), &embed).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "azure", Some("2")), "{}", r.body);
    assert_eq!(r.header("x-switchyard-model"), Some("emb-prod"));
    assert_eq!(gpt.last_request().unwrap().path, "/v1/embeddings");
    let seen = azure.last_request().unwrap();
    assert_eq!(seen.path_and_query(), "/openai/deployments/emb-prod/embeddings?api-version=2024-10-21");
    assert_eq!(seen.header("api-key"), Some("az-test"));
    assert_eq!(claude.requests(), 1, "Anthropic serves no embeddings");
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_rewrite_decides_the_clients_api() {
    let claude = MockLlm::start("claude-down", Behavior::failing(529)).await.unwrap();
    let gpt = MockLlm::start("gpt", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &config(
            "{name: team-b, match: {pathPrefix: /team-b/v1}, rewrite: {prefix: /v1}, backend: b}",
            &[
                kind_provider("claude", &claude, "anthropic: {model: claude-sonnet-4-6}", ""),
                kind_provider("openai", &gpt, "openai: {model: gpt-4o}", OPENAI_AUTH),
            ],
        ),
        ENV,
    )
    .await;
    let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/team-b/v1/messages"), &body).await;
    assert_eq!((r.status, r.provider()), (200, "openai"), "{}", r.body);
    assert_eq!(r.json()["type"], "message", "translated back to Anthropic's shape: {}", r.body);
    assert_eq!(r.json()["content"][0]["text"], "Hello from gpt");
    assert_eq!(claude.last_request().unwrap().path, "/v1/messages");
    assert_eq!(gpt.last_request().unwrap().path, "/v1/chat/completions");
}

#[tokio::test(flavor = "multi_thread")]
async fn model_header_on_failures_and_gateway_errors() {
    let down = MockLlm::start("down", Behavior::failing(503)).await.unwrap();
    let down_then_gone = config(
        V1,
        &[
            kind_provider("down", &down, "openai: {model: gpt-4o}", OPENAI_AUTH),
            provider_x("gone", free_port(), "gpt-4o-mini", "auth: {apiKey: {env: OPENAI_API_KEY}}"),
        ],
    ) + "    retry: {attempts: 2}\n";
    let gw = Gateway::start_with_env(&down_then_gone, ENV).await;
    // 503, then a refused connection: the gateway's own 502 names the last provider's model.
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("client-model"))).await;
    assert_eq!((r.status, r.header("x-switchyard-attempts")), (502, Some("2")), "{}", r.body);
    assert_eq!(r.header("x-switchyard-model"), Some("gpt-4o-mini"));
    // A request refused before any attempt (no provider can express `thinking`): the
    // request's model.
    let thinking = json!({"model": "client-model", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&gw.url("/v1/messages"), &thinking).await;
    assert_eq!((r.status, r.header("x-switchyard-attempts")), (400, Some("0")), "{}", r.body);
    assert_eq!(r.json()["type"], "error", "Anthropic's shape: {}", r.body);
    assert_eq!(r.header("x-switchyard-model"), Some("client-model"));
    drop(gw);

    // A provider's own failure, passed on: its model.
    let only_down = config(V1, &[kind_provider("down", &down, "openai: {model: gpt-4o}", OPENAI_AUTH)])
        + "    retry: {attempts: 1}\n";
    let gw = Gateway::start_with_env(&only_down, ENV).await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("client-model"))).await;
    assert_eq!((r.status, r.provider()), (503, "down"), "{}", r.body);
    assert_eq!(r.header("x-switchyard-model"), Some("gpt-4o"));
}
