//! The health engine end to end: ejection timing, growth, half-open trials, the ejection
//! floor, stream judgement, client disconnects, active probes and all-ejected modes.

use crate::harness::*;
use std::time::{Duration, Instant};

fn secs(v: &serde_json::Value) -> f64 {
    v["ejectedForSeconds"].as_f64().unwrap_or(-1.0)
}

/// `Retry-After` is honoured on any failing status, here a 503.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_on_503() {
    let failing = Behavior { status: 503, retry_after: Some("3".into()), ..Behavior::default() };
    let (primary, _fallback, gw) = primary_and_fallback(failing, "{eviction: {duration: 100ms}}", "{}").await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "fallback"));
    let st = gw.provider_status("primary").await;
    assert_eq!(st["state"], "ejected");
    assert!(secs(&st) > 2.0 && secs(&st) <= 3.0, "{st}");
    assert_eq!(
        post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await.header("x-switchyard-attempts"),
        Some("1")
    );
    assert_eq!(primary.requests(), 1);
}

/// Repeated ejections without a success grow by `growth`: 0.3s, 0.6s, 1.2s.
#[tokio::test(flavor = "multi_thread")]
async fn growth_across_three_ejections() {
    let (primary, _fallback, gw) = primary_and_fallback(
        Behavior { status: 500, ..Behavior::default() },
        "{eviction: {duration: 300ms, growth: 2.0, maxDuration: 10s}}",
        "{}",
    )
    .await;
    let url = gw.url("/v1/chat/completions");
    for (n, expected) in [(1u64, 0.3f64), (2, 0.6), (3, 1.2)] {
        // Wait for the previous ejection to end, so this request is the trial.
        assert!(
            eventually(Duration::from_secs(5), || async { gw.provider_status("primary").await["state"] != "ejected" })
                .await
        );
        let r = post_json(&url, &chat(Some("m"))).await;
        assert_eq!(r.provider(), "fallback");
        let st = gw.provider_status("primary").await;
        assert_eq!(st["timesEjected"], n, "{st}");
        assert_eq!(st["ejectionStreak"], n);
        assert!(secs(&st) <= expected && secs(&st) > expected - 0.25, "ejection {n}: {st}");
    }
    assert_eq!(primary.requests(), 3, "one trial request per ejection end");
}

/// Half-open: after an ejection, one trial request goes to the provider; concurrent
/// requests go elsewhere; its success brings the provider back.
#[tokio::test(flavor = "multi_thread")]
async fn half_open_trial() {
    let (primary, _fallback, gw) = primary_and_fallback(
        Behavior { status: 500, ..Behavior::default() },
        "{eviction: {duration: 200ms}, recovery: {trialRequests: 1}}",
        "{}",
    )
    .await;
    let url = gw.url("/v1/chat/completions");
    assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "fallback");
    primary.set_behavior(Behavior { first_byte_delay_ms: 800, ..Behavior::default() });
    assert!(
        eventually(Duration::from_secs(3), || async { gw.provider_status("primary").await["state"] == "trial" }).await
    );
    let trial = tokio::spawn({
        let url = url.clone();
        async move { post_json(&url, &chat(Some("m"))).await }
    });
    assert!(primary.wait_for_requests(2, Duration::from_secs(3)).await, "the trial reached the primary");
    let during = post_json(&url, &chat(Some("m"))).await;
    assert_eq!(during.provider(), "fallback", "a concurrent request does not join the trial");
    assert_eq!(primary.requests(), 2);
    let trial = trial.await.unwrap();
    assert_eq!((trial.status, trial.provider()), (200, "primary"));
    assert_eq!(gw.provider_status("primary").await["state"], "healthy");
    assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "primary");
}

/// `maxEjectionPercent: 50` keeps half of a group in service.
#[tokio::test(flavor = "multi_thread")]
async fn max_ejection_floor() {
    let a = MockLlm::start("a", Behavior { status: 500, ..Behavior::default() }).await.unwrap();
    let b = MockLlm::start("b", Behavior { status: 500, ..Behavior::default() }).await.unwrap();
    let c = MockLlm::start("c", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend(
        &[&[provider("a", &a, ""), provider("b", &b, "")], &[provider("c", &c, "")]],
        "{eviction: {duration: 60s, maxEjectionPercent: 50}}",
        "{attempts: 3}",
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider(), r.header("x-switchyard-attempts")), (200, "c", Some("3")));
    let states = [gw.provider_status("a").await["state"].clone(), gw.provider_status("b").await["state"].clone()];
    assert_eq!(states.iter().filter(|s| **s == "ejected").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == "healthy").count(), 1, "{states:?}");
    let m = gw.metrics().await;
    let kept = metric(&m, "switchyard_ejections_prevented_total", &[("provider", "a")])
        + metric(&m, "switchyard_ejections_prevented_total", &[("provider", "b")]);
    assert_eq!(kept, 1.0);
}

fn sse_content(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// A stream whose first event is an error event, or that ends before content, fails over.
#[tokio::test(flavor = "multi_thread")]
async fn stream_error_event_fails_over() {
    for bad in [
        Behavior { stream_error_first: true, status: 200, ..Behavior::default() },
        Behavior { stream_close_early: true, ..Behavior::default() },
    ] {
        let (_primary, _fallback, gw) = primary_and_fallback(bad.clone(), "{}", "{}").await;
        let r = post(&gw.url("/v1/chat/completions"), stream_body()).await;
        assert_eq!(
            (r.status, r.provider(), r.header("x-switchyard-attempts")),
            (200, "fallback", Some("2")),
            "{bad:?}: {}",
            r.body
        );
        assert!(!r.body.contains("\"error\""), "{}", r.body);
        assert_eq!(sse_content(&r.body), "Hello from fallback");
        assert!(r.body.trim_end().ends_with("data: [DONE]"));
        assert_eq!(gw.provider_status("primary").await["state"], "ejected");
    }
}

/// After content went to the client, a provider failure ends the stream with an explicit
/// error event (never a clean end) and counts against the provider.
#[tokio::test(flavor = "multi_thread")]
async fn mid_stream_failure_ends_with_error_event() {
    let primary =
        MockLlm::start("primary", Behavior { stream_chunks: 4, stream_fail_after: Some(2), ..Behavior::default() })
            .await
            .unwrap();
    let gw =
        Gateway::start(&backend(&[&[provider("primary", &primary, "")]], "{eviction: {consecutiveFailures: 1}}", "{}"))
            .await;
    let r = post(&gw.url("/v1/chat/completions"), stream_body()).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("[DONE]"), "{}", r.body);
    let last = r.body.trim_end().lines().last().unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("mid-stream"), "{last}");
    assert!(!sse_content(&r.body).is_empty(), "content before the failure was delivered");
    let st = gw.provider_status("primary").await;
    assert_eq!(st["state"], "ejected", "{st}");
}

/// A client that goes away while waiting closes the upstream request within a second, and
/// that is not held against the provider.
#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_cancels_upstream() {
    let primary = MockLlm::start("primary", Behavior { hang: true, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&backend(&[&[provider("primary", &primary, "")]], "{}", "{}")).await;
    let quick = reqwest::Client::builder().no_proxy().timeout(Duration::from_millis(300)).build().unwrap();
    let sent = quick.post(gw.url("/v1/chat/completions")).body(chat(Some("m")).to_string()).send().await;
    assert!(sent.is_err(), "the client gave up");
    let t = Instant::now();
    assert!(primary.wait_for_cancelled(1, Duration::from_secs(1)).await, "upstream closed within 1s");
    assert!(t.elapsed() < Duration::from_secs(1));
    let st = gw.provider_status("primary").await;
    assert_eq!((st["state"].as_str(), st["consecutiveFailures"].as_u64()), (Some("healthy"), Some(0)));

    // The same while streaming.
    primary.set_behavior(Behavior { stream_chunks: 50, chunk_delay_ms: 200, ..Behavior::default() });
    let mut resp = client().post(gw.url("/v1/chat/completions")).body(stream_body()).send().await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    assert!(primary.wait_for_cancelled(2, Duration::from_secs(1)).await, "stream closed upstream within 1s");
    assert_eq!(gw.provider_status("primary").await["state"], "healthy");
}

/// Active probes eject a provider that fails only its health endpoint, and bring it back.
#[tokio::test(flavor = "multi_thread")]
async fn active_probe_ejects_and_restores() {
    let (primary, _fallback, gw) = primary_and_fallback(Behavior { health_status: 503, ..Behavior::default() }, "{eviction: {duration: 60s}, active: {interval: 100ms, timeout: 1s, request: {method: GET, path: /v1/models}, healthyThreshold: 2, unhealthyThreshold: 2}}", "{}").await;
    assert!(
        eventually(Duration::from_secs(5), || async { gw.provider_status("primary").await["state"] == "ejected" })
            .await
    );
    let st = gw.provider_status("primary").await;
    assert!(st["lastError"].as_str().unwrap().starts_with("probe"), "{st}");
    let before = primary.requests() - primary.health_requests();
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(r.provider(), "fallback");
    assert_eq!(primary.requests() - primary.health_requests(), before, "no chat request reached the ejected provider");
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_ejections_total", &[("provider", "primary"), ("reason", "probe")]), 1.0);
    primary.set_behavior(Behavior::default());
    assert!(
        eventually(Duration::from_secs(5), || async { gw.provider_status("primary").await["state"] == "healthy" })
            .await
    );
    assert_eq!(post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await.provider(), "primary");
}

/// `whenAllEjected: reject` answers 503 at once with the earliest recovery as Retry-After.
#[tokio::test(flavor = "multi_thread")]
async fn reject_mode_when_all_ejected() {
    let a = MockLlm::start("a", Behavior { status: 429, retry_after: Some("20".into()), ..Behavior::default() })
        .await
        .unwrap();
    let b = MockLlm::start("b", Behavior { status: 429, retry_after: Some("5".into()), ..Behavior::default() })
        .await
        .unwrap();
    let gw = Gateway::start(&backend(
        &[&[provider("a", &a, "")], &[provider("b", &b, "")]],
        "{whenAllEjected: reject}",
        "{}",
    ))
    .await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (429, "b"), "the last answer, as it came");
    let t = Instant::now();
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(r.status, 503, "{}", r.body);
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((4..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(r.json()["error"]["type"], "service_unavailable");
    assert_eq!((a.requests(), b.requests()), (1, 1), "nothing was sent");
}

/// `tryEarliest` (the default) sends the request to the provider whose ejection ends first.
#[tokio::test(flavor = "multi_thread")]
async fn try_earliest_when_all_ejected() {
    let a = MockLlm::start("a", Behavior { status: 429, retry_after: Some("20".into()), ..Behavior::default() })
        .await
        .unwrap();
    let b = MockLlm::start("b", Behavior { status: 429, retry_after: Some("5".into()), ..Behavior::default() })
        .await
        .unwrap();
    let gw =
        Gateway::start(&backend(&[&[provider("a", &a, "")], &[provider("b", &b, "")]], "{}", "{attempts: 1}")).await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (429, "a"), "attempts: 1 — the first request only reached a");
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (429, "b"));
    b.set_behavior(Behavior::default());
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    // Both ejected now (a: 20s, b: 5s): b's ejection ends first.
    assert_eq!((r.status, r.provider()), (200, "b"), "{}", r.body);
}

/// The mid-stream error event is in the client's API shape: an Anthropic client on a `/v1`
/// route gets `event: error`.
#[tokio::test(flavor = "multi_thread")]
async fn mid_stream_failure_error_event_in_anthropic_shape() {
    let primary =
        MockLlm::start("primary", Behavior { stream_chunks: 4, stream_fail_after: Some(1), ..Behavior::default() })
            .await
            .unwrap();
    let gw = Gateway::start_with_env(
        &format!(
            "routes:\n  - {{name: r, match: {{pathPrefix: /v1}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{{name: claude, anthropic: {{model: c}}, host: 127.0.0.1, port: {}, tls: false, auth: {{apiKey: {{env: K}}}}}}]\n",
            primary.port()
        ),
        &[("K", "k")],
    )
    .await;
    let body = serde_json::json!({"model": "c", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(&gw.url("/v1/messages"), body.to_string()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("event: content_block_delta"), "{}", r.body);
    let tail: Vec<&str> = r.body.trim_end().lines().rev().take(2).collect();
    assert_eq!(tail[1], "event: error", "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(tail[0].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["type"], "error");
    assert!(!r.body.contains("message_stop"));
}

/// The request budget bounds the whole request: slow providers do not get a full
/// `firstByte` each once `timeouts.request` is spent.
#[tokio::test(flavor = "multi_thread")]
async fn request_budget_caps_attempts() {
    let a = MockLlm::start("a", Behavior { first_byte_delay_ms: 3000, ..Behavior::default() }).await.unwrap();
    let b = MockLlm::start("b", Behavior { first_byte_delay_ms: 3000, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /v1}}, timeouts: {{request: 600ms, firstByte: 5s}}, backend: chat}}\n\
         backends:\n  chat:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n    retry: {{attempts: 3}}\n",
        provider("a", &a, ""),
        provider("b", &b, "")
    ))
    .await;
    let t = Instant::now();
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(took >= Duration::from_millis(550) && took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(r.header("x-switchyard-attempts"), Some("1"), "no attempt starts after the budget is spent");
}

/// Backoff applies only before retrying a provider this request already tried.
#[tokio::test(flavor = "multi_thread")]
async fn backoff_only_before_a_retry_of_the_same_provider() {
    let failing = MockLlm::start("failing", Behavior { status: 500, ..Behavior::default() }).await.unwrap();
    let healthy = MockLlm::start("healthy", Behavior::default()).await.unwrap();
    let retry = "{attempts: 3, backoff: {base: 150ms, max: 1s, jitter: false}}";
    let health = "{eviction: {consecutiveFailures: 5}}";
    let solo = Gateway::start(&backend(&[&[provider("failing", &failing, "")]], health, retry)).await;
    let t = Instant::now();
    let r = post_json(&solo.url("/v1/chat/completions"), &chat(Some("m"))).await;
    let took = t.elapsed();
    assert_eq!((r.status, r.header("x-switchyard-attempts")), (500, Some("3")));
    assert!(took >= Duration::from_millis(450), "150ms + 300ms of backoff, took {took:?}");
    assert_eq!(failing.requests(), 3);

    let pair = Gateway::start(&backend(
        &[&[provider("failing", &failing, "")], &[provider("healthy", &healthy, "")]],
        health,
        retry,
    ))
    .await;
    let t = Instant::now();
    let r = post_json(&pair.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "healthy"));
    assert!(t.elapsed() < Duration::from_millis(140), "no wait before an untried provider: {:?}", t.elapsed());
}
