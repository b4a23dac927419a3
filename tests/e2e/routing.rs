//! Routing issue: quota exhaustion told from throttling (and the capped `Retry-After`),
//! quota headroom, hedged first tokens.

use crate::harness::*;
use std::time::Duration;

fn backend(groups: &[&[String]], health: &str, retry: &str) -> String {
    let mut s = String::from("routes:\n  - {name: r, match: {pathPrefix: /v1}, timeouts: {firstByte: 5s}, backend: chat}\nbackends:\n  chat:\n    groups:\n");
    for g in groups {
        s.push_str(&format!("      - providers: [{}]\n", g.join(", ")));
    }
    s.push_str(&format!("    health: {health}\n    retry: {retry}\n"));
    s
}

async fn primary_and_fallback(primary: Behavior, health: &str, retry: &str) -> (MockLlm, MockLlm, Gateway) {
    let p = MockLlm::start("primary", primary).await.unwrap();
    let f = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw =
        Gateway::start(&backend(&[&[provider("primary", &p, "")], &[provider("fallback", &f, "")]], health, retry))
            .await;
    (p, f, gw)
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
