//! One test per reference scenario (shared/reference 000-004).

use crate::harness::*;

/// 000: a `/model` route rewritten to `/v1/chat/completions`; a request without `model`
/// gets the first priority group's model.
#[tokio::test(flavor = "multi_thread")]
async fn ref000_route_rewrite_and_default_model() {
    let primary = MockLlm::start("primary", Behavior::default()).await.unwrap();
    let backup = MockLlm::start("backup", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: model-failover, match: {{pathPrefix: /model}}, rewrite: {{fullPath: /v1/chat/completions}}, backend: chat}}\n\
         backends:\n  chat:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n",
        provider("primary", &primary, "gpt-4o"),
        provider("backup", &backup, "gpt-4o-mini"),
    ))
    .await;
    let r = post_json(&gw.url("/model"), &chat(None)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.provider(), "primary");
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    let seen = primary.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.json().unwrap()["model"], "gpt-4o");
    assert_eq!(r.json()["model"], "gpt-4o", "the response's model field is the provider's, untouched");
    assert_eq!(backup.requests(), 0);
}

/// 001: three OpenAI models in priority order; the first serves while healthy, the next
/// takes over when it fails.
#[tokio::test(flavor = "multi_thread")]
async fn ref001_three_priorities() {
    let a = MockLlm::start("a", Behavior::default()).await.unwrap();
    let b = MockLlm::start("b", Behavior::default()).await.unwrap();
    let c = MockLlm::start("c", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /model}}, rewrite: {{fullPath: /v1/chat/completions}}, backend: multipool}}\n\
         backends:\n  multipool:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n      - providers: [{}]\n",
        provider("gpt-4o", &a, "gpt-4o"),
        provider("gpt-4-turbo", &b, "gpt-4.0-turbo"),
        provider("gpt-3.5", &c, "gpt-3.5-turbo"),
    ))
    .await;
    let r = post_json(&gw.url("/model"), &chat(Some("anything"))).await;
    assert_eq!((r.status, r.provider()), (200, "gpt-4o"));
    assert_eq!(a.last_request().unwrap().json().unwrap()["model"], "gpt-4o", "provider model replaces the client's");
    a.set_behavior(Behavior { status: 500, ..Behavior::default() });
    let r = post_json(&gw.url("/model"), &chat(None)).await;
    assert_eq!((r.status, r.provider()), (200, "gpt-4-turbo"));
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(b.last_request().unwrap().json().unwrap()["model"], "gpt-4.0-turbo");
    b.set_behavior(Behavior { status: 503, ..Behavior::default() });
    let r = post_json(&gw.url("/model"), &chat(None)).await;
    assert_eq!((r.status, r.provider()), (200, "gpt-3.5"));
}

/// 002: a fake model name makes the primary answer 404; the health policy counts 404 as
/// unhealthy, so the same request is answered by the fallback.
#[tokio::test(flavor = "multi_thread")]
async fn ref002_unhealthy_condition_404() {
    let opus = MockLlm::start("opus", Behavior { status: 404, ..Behavior::default() }).await.unwrap();
    let sonnet = MockLlm::start("sonnet", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /v1/chat/completions}}, backend: anthropic}}\n\
         backends:\n  anthropic:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n\
         \x20   health:\n      unhealthyCondition: \"response.code == 404 || response.code == 429\"\n      eviction: {{duration: 10s, consecutiveFailures: 1}}\n",
        provider("opus", &opus, "claude-opus-4-6-FAKE"),
        provider("sonnet", &sonnet, "claude-sonnet-4-6"),
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
    assert_eq!((r.status, r.provider()), (200, "sonnet"), "{}", r.body);
    assert_eq!(r.json()["model"], "claude-sonnet-4-6");
    // Ejected for 10s: the next request goes straight to the fallback.
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
    assert_eq!((r.status, r.header("x-switchyard-attempts")), (200, Some("1")));
    assert_eq!(opus.requests(), 1);
}

/// 003: the primary always answers 429; the route adds `Retry-After: 60` to responses,
/// which sets the ejection. Unlike the reference, the first request is already answered by
/// the fallback.
#[tokio::test(flavor = "multi_thread")]
async fn ref003_retry_after_from_route_header() {
    let mock = MockLlm::start("mock-gpt-4o", Behavior { status: 429, ..Behavior::default() }).await.unwrap();
    let openai = MockLlm::start("openai", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - name: failover-route\n    match: {{pathPrefix: /openai}}\n    rewrite: {{fullPath: /v1/chat/completions}}\n    responseHeaders: {{add: {{Retry-After: \"60\"}}}}\n    timeouts: {{request: 120s}}\n    backend: failover\n\
         backends:\n  failover:\n    groups:\n      - providers:\n          - {{name: mock-ratelimit-provider, openai: {{model: mock-gpt-4o}}, host: 127.0.0.1, port: {}, path: /v1/chat/completions, auth: {{passthrough: {{}}}}}}\n      - providers: [{}]\n",
        mock.port(),
        provider("openai-fallback", &openai, "gpt-4o-mini"),
    ))
    .await;
    let body = serde_json::json!({"model": "", "messages": [{"role": "user", "content": "What is 2+2?"}]});
    let r = post_with(
        client().post(gw.url("/openai")).header("authorization", "Bearer client-token").body(body.to_string()),
    )
    .await;
    assert_eq!(
        (r.status, r.provider(), r.header("x-switchyard-attempts")),
        (200, "openai-fallback", Some("2")),
        "{}",
        r.body
    );
    assert_eq!(mock.last_request().unwrap().header("authorization"), Some("Bearer client-token"), "passthrough auth");
    assert_eq!(
        openai.last_request().unwrap().header("authorization"),
        None,
        "client credentials are not forwarded without passthrough"
    );
    for _ in 0..3 {
        let r = post_json(&gw.url("/openai"), &body).await;
        assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "openai-fallback", Some("1")));
    }
    assert_eq!(mock.requests(), 1, "ejected for the 60s Retry-After");
    assert_eq!(openai.requests(), 4);
}

/// 004: prioritized backends with a failing primary (5xx) and a retry policy; the fallback
/// answers. (The Bedrock fallback of the reference comes with the provider translation.)
#[tokio::test(flavor = "multi_thread")]
async fn ref004_primary_5xx_falls_back() {
    let failing = MockLlm::start("always-failing", Behavior { status: 500, ..Behavior::default() }).await.unwrap();
    let aws = MockLlm::start("aws", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: provider-fallback, match: {{pathPrefix: /}}, backend: fallback}}\n\
         backends:\n  fallback:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n\
         \x20   health: {{eviction: {{duration: 5s, consecutiveFailures: 1, maxEjectionPercent: 100}}}}\n\
         \x20   retry: {{attempts: 5, onStatus: [500], backoff: {{base: 100ms, max: 10s}}}}\n",
        provider("always-failing", &failing, ""),
        provider("aws", &aws, "us.meta.llama3-2-1b-instruct-v1:0"),
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("us.meta.llama3-2-1b-instruct-v1:0"))).await;
    assert_eq!((r.status, r.provider()), (200, "aws"), "{}", r.body);
    assert_eq!(failing.requests(), 1);
}
