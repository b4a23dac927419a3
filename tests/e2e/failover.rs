//! In-request failover and health, end to end.

use crate::harness::*;
use std::time::{Duration, Instant};

fn two_groups(primary: &str, fallback: &str, health: &str, route_extra: &str) -> String {
    format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /v1}}{route_extra}, backend: chat}}\n\
         backends:\n  chat:\n    groups:\n      - providers: [{primary}]\n      - providers: [{fallback}]\n    health: {health}\n"
    )
}

/// A 1 MiB prompt fails over from a 429 primary and arrives intact at the fallback.
#[tokio::test(flavor = "multi_thread")]
async fn one_mib_body_fails_over() {
    let primary = MockLlm::start("primary", Behavior { status: 429, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&two_groups(
        &provider("primary", &primary, "big"),
        &provider("fallback", &fallback, "small"),
        "{}",
        "",
    ))
    .await;
    let content = "x".repeat(1024 * 1024);
    let body = serde_json::json!({"model": "client", "messages": [{"role": "user", "content": content}]}).to_string();
    assert!(body.len() > 1024 * 1024);
    let r = post(&gw.url("/v1/chat/completions"), body.clone()).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "fallback", Some("2")), "{}", r.body);
    let at_primary = primary.last_request().unwrap();
    let at_fallback = fallback.last_request().unwrap();
    assert_eq!(at_primary.json().unwrap()["messages"][0]["content"].as_str().unwrap().len(), content.len());
    let v = at_fallback.json().unwrap();
    assert_eq!(v["model"], "small");
    assert_eq!(v["messages"][0]["content"].as_str().unwrap(), content, "body arrives intact");
}

/// A primary that refuses connections is skipped within the same request.
#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_fails_over() {
    let dead = free_port();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw =
        Gateway::start(&two_groups(&provider_x("dead", dead, "", ""), &provider("fallback", &fallback, ""), "{}", ""))
            .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "fallback", Some("2")), "{}", r.body);
}

/// A primary that resets the connection is skipped within the same request.
#[tokio::test(flavor = "multi_thread")]
async fn connection_reset_fails_over() {
    let primary = MockLlm::start("primary", Behavior { reset: true, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw =
        Gateway::start(&two_groups(&provider("primary", &primary, ""), &provider("fallback", &fallback, ""), "{}", ""))
            .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "fallback"), "{}", r.body);
    assert_eq!(primary.requests(), 1);
}

/// No response head within `timeouts.firstByte` fails over to the next provider.
#[tokio::test(flavor = "multi_thread")]
async fn first_byte_timeout_fails_over() {
    let slow = MockLlm::start("slow", Behavior { first_byte_delay_ms: 10_000, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&two_groups(
        &provider("slow", &slow, ""),
        &provider("fallback", &fallback, ""),
        "{}",
        ", timeouts: {firstByte: 300ms}",
    ))
    .await;
    let t = Instant::now();
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "fallback"), "{}", r.body);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "took {took:?}");
    assert!(slow.wait_for_cancelled(1, Duration::from_secs(2)).await, "the slow attempt's connection is closed");
}

/// `Retry-After` on a 429 ejects the provider for that long; afterwards it is tried again
/// and, once healthy, serves again.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_ejection_and_recovery() {
    let primary =
        MockLlm::start("primary", Behavior { status: 429, retry_after: Some("1".into()), ..Behavior::default() })
            .await
            .unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&two_groups(
        &provider("primary", &primary, ""),
        &provider("fallback", &fallback, ""),
        "{eviction: {duration: 200ms}}",
        "",
    ))
    .await;
    let url = gw.url("/v1/chat/completions");
    let ejected_at = Instant::now();
    let r = post_json(&url, &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "fallback"));
    // Longer than the 200ms configured duration, shorter than Retry-After: still ejected.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = post_json(&url, &chat(Some("m"))).await;
    assert_eq!((r.provider(), r.header("x-switchyard-attempts")), ("fallback", Some("1")));
    assert_eq!(primary.requests(), 1);
    primary.set_behavior(Behavior::default());
    let back = eventually(Duration::from_secs(5), || async {
        post_json(&url, &chat(Some("m"))).await.provider() == "primary"
    })
    .await;
    assert!(back, "primary serves again after its Retry-After");
    assert!(ejected_at.elapsed() >= Duration::from_secs(1), "not before Retry-After passed");
}

/// Round-robin inside a group spreads sequential requests evenly.
#[tokio::test(flavor = "multi_thread")]
async fn round_robin_inside_a_group() {
    let mocks = [
        MockLlm::start("a", Behavior::default()).await.unwrap(),
        MockLlm::start("b", Behavior::default()).await.unwrap(),
        MockLlm::start("c", Behavior::default()).await.unwrap(),
    ];
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}, {}, {}]\n",
        provider("a", &mocks[0], ""),
        provider("b", &mocks[1], ""),
        provider("c", &mocks[2], ""),
    ))
    .await;
    for _ in 0..30 {
        assert_eq!(post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await.status, 200);
    }
    let counts: Vec<u64> = mocks.iter().map(MockLlm::requests).collect();
    assert_eq!(counts, vec![10, 10, 10]);
}

/// Two providers on the same host:port with different models are distinct providers.
#[tokio::test(flavor = "multi_thread")]
async fn providers_on_one_endpoint_are_distinct() {
    let mock = MockLlm::start("shared", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}, {}]\n",
        provider("one", &mock, "model-one"),
        provider("two", &mock, "model-two"),
    ))
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let r = post_json(&gw.url("/v1/chat/completions"), &chat(None)).await;
        seen.insert((r.provider().to_string(), r.json()["model"].as_str().unwrap().to_string()));
    }
    let expected: std::collections::BTreeSet<_> =
        [("one".to_string(), "model-one".to_string()), ("two".to_string(), "model-two".to_string())].into();
    assert_eq!(seen, expected);
}

/// Streaming responses pass through chunk by chunk, with the gateway's headers.
#[tokio::test(flavor = "multi_thread")]
async fn streaming_is_unbuffered_and_fails_over() {
    let primary = MockLlm::start("primary", Behavior { status: 503, ..Behavior::default() }).await.unwrap();
    let fallback =
        MockLlm::start("fallback", Behavior { stream_chunks: 4, chunk_delay_ms: 300, ..Behavior::default() })
            .await
            .unwrap();
    let gw =
        Gateway::start(&two_groups(&provider("primary", &primary, ""), &provider("fallback", &fallback, ""), "{}", ""))
            .await;
    let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let t = Instant::now();
    let mut resp = client().post(gw.url("/v1/chat/completions")).body(body.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-provider"], "fallback");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let first = resp.chunk().await.unwrap().unwrap();
    let first_at = t.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    let mut all = first.to_vec();
    while let Some(c) = resp.chunk().await.unwrap() {
        all.extend_from_slice(&c);
    }
    let total = t.elapsed();
    assert!(total - first_at >= Duration::from_millis(600), "first chunk came {first_at:?}, end {total:?}: buffered?");
    let text = String::from_utf8(all).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(content, "Hello from fallback");
}

/// Route header modifiers and provider auth reach the provider.
#[tokio::test(flavor = "multi_thread")]
async fn headers_and_api_key() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &format!(
            "routes:\n  - name: r\n    match: {{pathPrefix: /}}\n    requestHeaders: {{add: {{x-added: yes}}, set: {{x-set: new}}, remove: [x-secret]}}\n    responseHeaders: {{set: {{x-served-by: switchyard}}}}\n    backend: chat\n\
             backends:\n  chat:\n    groups:\n      - providers: [{}]\n",
            provider_x("p", mock.port(), "", "auth: {apiKey: {env: TEST_KEY}}")
        ),
        &[("TEST_KEY", "sk-test-123")],
    )
    .await;
    let r = post_with(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", "Bearer client")
            .header("x-set", "old")
            .header("x-secret", "s")
            .body(chat(Some("m")).to_string()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by"), Some("switchyard"));
    let seen = mock.last_request().unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer sk-test-123"));
    assert_eq!(seen.header("x-added"), Some("yes"));
    assert_eq!(seen.header("x-set"), Some("new"));
    assert_eq!(seen.header("x-secret"), None);
    assert_eq!(seen.header("host"), Some(format!("127.0.0.1:{}", mock.port()).as_str()));
    assert_eq!(seen.json().unwrap()["model"], "m", "no provider model: the client's passes through");
    assert!(!gw.stderr().contains("sk-test-123"), "the key never reaches the log");
}

/// Many sequential requests on one keep-alive client connection: none is lost (the gateway
/// must not read into the client's next request while finishing a response).
#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connection_serves_many_requests() {
    let mock = MockLlm::start("p", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n",
        provider("p", &mock, "")
    ))
    .await;
    let c = client();
    for i in 0..300 {
        let stream = (i as u32).is_multiple_of(3);
        let body = serde_json::json!({"model": "m", "stream": stream, "messages": []});
        let r = post_with(c.post(gw.url("/v1/chat/completions")).body(body.to_string())).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert!(mock.connections() <= 2, "upstream connections are pooled: {}", mock.connections());
}

/// Upstream TLS verifies certificates: a provider presenting a self-signed certificate is a
/// TLS failure (the request fails over), never a silently trusted connection.
#[tokio::test(flavor = "multi_thread")]
async fn tls_certificates_are_verified() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (hellos, completed) = (std::sync::Arc::new(AtomicU64::new(0)), std::sync::Arc::new(AtomicU64::new(0)));
    let (h, c) = (hellos.clone(), completed.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            if acceptor.accept(tcp).await.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&two_groups(
        &format!("{{name: selfsigned, openai: {{}}, host: 127.0.0.1, port: {port}, tls: true}}"),
        &provider("fallback", &fallback, ""),
        "{}",
        "",
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "fallback", Some("2")), "{}", r.body);
    assert!(hellos.load(Ordering::SeqCst) >= 1, "the gateway did connect");
    assert_eq!(completed.load(Ordering::SeqCst), 0, "no TLS session with an untrusted certificate");
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_attempts_total", &[("provider", "selfsigned"), ("outcome", "tls")]), 1.0, "{m}");
}
