//! Routing issue: quota exhaustion told from throttling (and the capped `Retry-After`),
//! quota headroom, hedged first tokens.

use crate::harness::*;
use std::time::Duration;

/// `switchyard_hedges_total` as (won, lost), once the race is counted: the count is taken
/// after the winner's answer is delivered, so the client can read the answer first.
async fn hedge_outcomes(gw: &Gateway) -> (f64, f64) {
    let outcomes = |m: &str| {
        let count = |outcome| metric(m, "switchyard_hedges_total", &[("outcome", outcome)]);
        (count("won"), count("lost"))
    };
    eventually(Duration::from_secs(5), || async {
        let (won, lost) = outcomes(&gw.metrics().await);
        won + lost > 0.0
    })
    .await;
    outcomes(&gw.metrics().await)
}

fn ejected_for(v: &serde_json::Value) -> f64 {
    v["ejectedForSeconds"].as_f64().unwrap_or(-1.0)
}

/// `insufficient_quota` ejects for `eviction.quotaDuration` with reason `quota` (metrics,
/// `/status`, log); after a reload the provider is tried again, and a plain rate-limit 429
/// from it then keeps its own `Retry-After`.
#[tokio::test(flavor = "multi_thread")]
async fn insufficient_quota_ejects_for_the_quota_duration_a_rate_limit_does_not() {
    let health = "{eviction: {duration: 1s, maxDuration: 1m, quotaDuration: 2h}}";
    let (primary, fallback, gw) = primary_and_fallback(Behavior::out_of_quota(), health, "{}").await;
    let url = gw.url("/v1/chat/completions");
    let r = post_json(&url, &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "fallback"), "{}", r.body);
    let st = gw.provider_status("primary").await;
    assert_eq!((st["state"].as_str(), st["ejectionReason"].as_str()), (Some("ejected"), Some("quota")), "{st}");
    assert!(ejected_for(&st) > 7190.0 && ejected_for(&st) <= 7200.0, "two hours, not maxDuration: {st}");
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_ejections_total", &[("provider", "primary"), ("reason", "quota")]), 1.0);
    assert_eq!(metric(&m, "switchyard_ejections_total", &[("provider", "primary"), ("reason", "status")]), 0.0);
    assert!(gw.stderr().contains("quota"), "the ejection log names the reason");
    for _ in 0..3 {
        assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "fallback");
    }
    assert_eq!(primary.requests(), 1, "ejected: not asked again");

    // The operator adds credit and reloads: the next request is a trial on the primary. It
    // now throttles with a plain 429: ejected for its Retry-After, reason `status`.
    primary.set_behavior(Behavior { status: 429, retry_after: Some("3".into()), ..Behavior::default() });
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async { gw.provider_status("primary").await["state"] == "trial" }).await,
        "a reload ends a quota ejection"
    );
    assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "fallback");
    assert_eq!(primary.requests(), 2);
    let st = gw.provider_status("primary").await;
    assert_eq!(st["ejectionReason"], "status", "{st}");
    assert!(ejected_for(&st) > 2.0 && ejected_for(&st) <= 3.0, "its Retry-After, not the quota duration: {st}");
    assert_eq!(fallback.requests(), 5);
}

/// A 402 Payment Required is quota whatever its body, and fails over even though the
/// default health condition (5xx, 429) does not count 402.
#[tokio::test(flavor = "multi_thread")]
async fn payment_required_is_quota() {
    let (primary, _fallback, gw) = primary_and_fallback(Behavior::failing(402), "{}", "{}").await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "fallback"));
    let st = gw.provider_status("primary").await;
    assert_eq!(st["ejectionReason"], "quota", "{st}");
    assert!(ejected_for(&st) > 3500.0, "default quotaDuration is 1h: {st}");
    assert_eq!(primary.requests(), 1);
}

/// Only quota answers eject for long: the last provider's quota answer still reaches the
/// client as it came when nobody else can serve.
#[tokio::test(flavor = "multi_thread")]
async fn quota_answer_reaches_the_client_when_nobody_else_can_serve() {
    let p = MockLlm::start("only", Behavior::out_of_quota()).await.unwrap();
    let gw = Gateway::start(&backend(&[&[provider("only", &p, "")]], "{}", "{attempts: 1}")).await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "insufficient_quota", "{}", r.body);
}

/// A `Retry-After` longer than `eviction.maxDuration` is capped, and the cap is logged once
/// for that ejection (three requests, one ejection, one line).
#[tokio::test(flavor = "multi_thread")]
async fn long_retry_after_is_capped_and_logged_once() {
    let limited = Behavior { status: 429, retry_after: Some("86400".into()), ..Behavior::default() };
    let (_primary, _fallback, gw) = primary_and_fallback(limited, "{eviction: {maxDuration: 30s}}", "{}").await;
    let url = gw.url("/v1/chat/completions");
    for _ in 0..3 {
        assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "fallback");
    }
    let st = gw.provider_status("primary").await;
    assert!(ejected_for(&st) > 29.0 && ejected_for(&st) <= 30.0, "{st}");
    let log = gw.stderr();
    let capped: Vec<&str> = log.lines().filter(|l| l.contains("capped")).collect();
    assert_eq!(capped.len(), 1, "{log}");
    assert!(capped[0].contains("86400"), "the log says what was asked: {}", capped[0]);
}

fn ratelimit_headers(limit: u32, remaining: u32, reset: &str) -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-limit-requests".into(), limit.to_string()),
        ("x-ratelimit-remaining-requests".into(), remaining.to_string()),
        ("x-ratelimit-reset-requests".into(), reset.into()),
    ]
}

/// Headroom: a provider announcing 3% left (threshold 5%) gets weight 0.6 in its group (30%
/// of the traffic instead of half), none at 0% until its announced reset, then traffic again;
/// no ejection, no failed request. `switchyard_provider_headroom` shows remaining ÷ limit.
#[tokio::test(flavor = "multi_thread")]
async fn headroom_lowers_the_share_and_skips_at_zero_until_the_reset() {
    let low = MockLlm::start("low", Behavior { headers: ratelimit_headers(100, 3, "30s"), ..Behavior::default() })
        .await
        .unwrap();
    let full = MockLlm::start("full", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&backend(
        &[&[provider("low", &low, ""), provider("full", &full, "")]],
        "{headroom: {minRemainingPercent: 5}}",
        "{}",
    ))
    .await;
    let url = gw.url("/v1/chat/completions");
    // Until low answers once, nothing is known about it.
    while low.requests() == 0 {
        assert_eq!(post_json(&url, &chat(Some("m"))).await.status, 200);
    }
    low.reset_stats();
    full.reset_stats();
    for _ in 0..200 {
        assert_eq!(post_json(&url, &chat(Some("m"))).await.status, 200);
    }
    let share = low.requests();
    assert_eq!(share + full.requests(), 200);
    // Expected 60 (0.5 × 0.6 × 200), standard deviation ≈ 6.5; unreduced would be 100.
    assert!((35..=85).contains(&share), "low got {share} of 200");
    let m = gw.metrics().await;
    let announced = metric(&m, "switchyard_provider_headroom", &[("provider", "low"), ("kind", "requests")]);
    assert!((announced - 0.03).abs() < 1e-6, "{announced}");
    let st = gw.provider_status("low").await;
    assert_eq!(st["state"], "healthy", "not an ejection: {st}");
    assert_eq!(st["timesEjected"], 0);

    // Nothing left, reset in 2s: once low has said so, it gets nothing until then.
    low.set_behavior(Behavior { headers: ratelimit_headers(100, 0, "2s"), ..Behavior::default() });
    let before = low.requests();
    while low.requests() == before {
        assert_eq!(post_json(&url, &chat(Some("m"))).await.status, 200);
    }
    let said_zero = std::time::Instant::now();
    let at_zero = low.requests();
    for _ in 0..50 {
        assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "full");
    }
    assert_eq!(low.requests(), at_zero, "none at 0%");
    assert_eq!(gw.provider_status("low").await["weight"], 0.0);
    // After the announced reset the reading expires: traffic again.
    assert!(
        eventually(Duration::from_secs(6), || async { post_json(&url, &chat(Some("m"))).await.provider() == "low" })
            .await,
        "low is asked again after its reset"
    );
    assert!(said_zero.elapsed() >= Duration::from_millis(1900), "not before the reset: {:?}", said_zero.elapsed());
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_provider_headroom", &[("provider", "low"), ("kind", "requests")]), 0.0);
    assert_eq!(metric(&m, "switchyard_ejections_total", &[("provider", "low")]), 0.0);
}

fn hedged_backend(primary: &MockLlm, fallback: &MockLlm, hedge: &str, limits: &str) -> String {
    format!(
        "accessLog: {{path: \"{{DIR}}/access.log\"}}\n{limits}\n{}",
        backend(&[&[provider("primary", primary, "")], &[provider("fallback", fallback, "")]], "{}", hedge)
    )
}

fn last_access_line(gw: &Gateway) -> serde_json::Value {
    let text = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default();
    serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap()
}

/// A primary 3 s from its first byte loses to the hedge sent after 200 ms: the client gets
/// the fallback's answer fast, the primary's upstream connection is closed at once (within
/// 100 ms of the answer), and the primary is not held against for it.
#[tokio::test(flavor = "multi_thread")]
async fn slow_first_byte_loses_to_the_hedge_and_is_closed() {
    let primary =
        MockLlm::start("primary", Behavior { first_byte_delay_ms: 3000, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&hedged_backend(&primary, &fallback, "{hedge: {after: 200ms}}", "")).await;
    let started = std::time::Instant::now();
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    let answered = started.elapsed();
    assert_eq!((r.status, r.provider()), (200, "fallback"), "{}", r.body);
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert!(answered >= Duration::from_millis(200), "not before the hedge delay: {answered:?}");
    assert!(answered < Duration::from_millis(1500), "well before the primary's 3 s: {answered:?}");
    assert!(primary.wait_for_cancelled(1, Duration::from_millis(100)).await, "the loser's connection is closed");
    assert_eq!(primary.requests(), 1);
    let st = gw.provider_status("primary").await;
    assert_eq!((st["state"].as_str(), st["consecutiveFailures"].as_u64()), (Some("healthy"), Some(0)), "{st}");
    assert_eq!(hedge_outcomes(&gw).await, (1.0, 0.0), "hedges won, lost");
    assert!(
        eventually(Duration::from_secs(2), || async { last_access_line(&gw)["attempts"].as_array().is_some() }).await
    );
    let line = last_access_line(&gw);
    let attempts = line["attempts"].as_array().unwrap();
    let summary: Vec<(&str, &str)> =
        attempts.iter().map(|a| (a["provider"].as_str().unwrap(), a["race"].as_str().unwrap_or(""))).collect();
    assert_eq!(summary.len(), 2, "{line}");
    assert!(summary.contains(&("primary", "lost")) && summary.contains(&("fallback", "won")), "{line}");
}

/// A stream whose head comes at once but whose first content is slow is hedged too; here the
/// first provider's content comes first after all: it wins, the hedge is closed.
#[tokio::test(flavor = "multi_thread")]
async fn streaming_hedge_where_the_first_provider_wins_after_all() {
    let slow_token = Behavior { chunk_delay_ms: 400, stream_comment_first: true, ..Behavior::default() };
    let primary = MockLlm::start("primary", slow_token).await.unwrap();
    let fallback =
        MockLlm::start("fallback", Behavior { first_byte_delay_ms: 3000, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&hedged_backend(&primary, &fallback, "{hedge: {after: 100ms}}", "")).await;
    let r = post(&gw.url("/v1/chat/completions"), stream_body()).await;
    assert_eq!((r.status, r.provider()), (200, "primary"), "{}", r.body);
    assert!(r.body.trim_end().ends_with("data: [DONE]"), "{}", r.body);
    assert!(fallback.wait_for_requests(1, Duration::from_secs(1)).await, "the hedge was sent");
    assert!(fallback.wait_for_cancelled(1, Duration::from_secs(1)).await, "and closed when the primary won");
    assert_eq!(hedge_outcomes(&gw).await, (0.0, 1.0), "hedges won, lost");
    assert_eq!(gw.provider_status("fallback").await["consecutiveFailures"], 0);
}

/// A hedge that fails is judged like any attempt (held against its provider) while the slow
/// first attempt keeps running and is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_hedge_is_judged_and_the_slow_attempt_still_wins() {
    let primary =
        MockLlm::start("primary", Behavior { first_byte_delay_ms: 700, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::failing(500)).await.unwrap();
    let gw = Gateway::start(&hedged_backend(&primary, &fallback, "{hedge: {after: 100ms}}", "")).await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "primary"), "{}", r.body);
    assert_eq!(fallback.requests(), 1);
    assert_eq!(primary.cancelled(), 0, "the first attempt was not cut off");
    let st = gw.provider_status("fallback").await;
    assert_eq!(st["state"], "ejected", "{st}");
    assert_eq!(hedge_outcomes(&gw).await, (0.0, 1.0), "hedges won, lost");
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_attempts_total", &[("provider", "fallback"), ("outcome", "unhealthy")]), 1.0);
}

/// A request body above `limits.maxHedgeBodyBytes` is never hedged.
#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_not_hedged() {
    let primary =
        MockLlm::start("primary", Behavior { first_byte_delay_ms: 600, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let limits = "limits: {maxHedgeBodyBytes: 16}";
    let gw = Gateway::start(&hedged_backend(&primary, &fallback, "{hedge: {after: 100ms}}", limits)).await;
    let r = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((r.status, r.provider()), (200, "primary"));
    assert_eq!(fallback.requests(), 0);
}

/// Bad settings of the three features are named by their YAML path, all at once.
#[test]
fn routing_settings_are_validated() {
    let (code, out) = validate_yaml(
        r#"
listen: ["127.0.0.1:8080"]
routes:
  - {name: r, match: {pathPrefix: /v1}, timeouts: {firstByte: 2s}, backend: chat}
backends:
  chat:
    groups:
      - providers:
          - {name: a, openai: {model: m}, host: 127.0.0.1, port: 1, tls: false}
    health: {headroom: {minRemainingPercent: 0}, eviction: {quotaDuration: 0s}}
    retry: {hedge: {after: 2s, maxExtra: 0}}
"#,
    );
    assert_eq!(code, 64, "{out}");
    for needle in [
        "backends.chat.health.headroom.minRemainingPercent: must be greater than 0",
        "backends.chat.health.eviction.quotaDuration: must be greater than 0",
        "backends.chat.retry.hedge.maxExtra: must be at least 1",
        "backends.chat.retry.hedge.after: must be shorter than timeouts.firstByte",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}
