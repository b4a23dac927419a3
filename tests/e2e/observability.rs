//! Metrics, `/status`, the access log and response headers after a failover.

use crate::harness::*;
use std::time::Duration;

const SECRET_KEY: &str = "sk-observability-secret-123";
const CLIENT_TOKEN: &str = "client-token-456";

async fn failover_gateway() -> (MockLlm, MockLlm, Gateway) {
    let primary =
        MockLlm::start("primary", Behavior { status: 429, retry_after: Some("60".into()), ..Behavior::default() })
            .await
            .unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(
        &format!(
            "accessLog: {{path: \"{{DIR}}/access.log\"}}\nroutes:\n  - {{name: chat-route, match: {{pathPrefix: /v1}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n",
            provider_x("primary", primary.port(), "gpt-4o", "auth: {apiKey: {env: OBS_KEY}}"),
            provider("fallback", &fallback, "gpt-4o-mini"),
        ),
        &[("OBS_KEY", SECRET_KEY)],
    )
    .await;
    (primary, fallback, gw)
}

fn access_lines(gw: &Gateway) -> Vec<serde_json::Value> {
    std::fs::read_to_string(gw.dir.path().join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad access log line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_shows_in_metrics_status_and_access_log() {
    let (_primary, _fallback, gw) = failover_gateway().await;
    let before = gw.metrics().await;
    let r = post_with(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {CLIENT_TOKEN}"))
            .header("cookie", "session=cookie-secret-789")
            .header("x-request-id", "req-abc-123")
            .body(chat(Some("client-model")).to_string()),
    )
    .await;
    assert_eq!((r.status, r.provider()), (200, "fallback"));
    assert_eq!(r.header("x-request-id"), Some("req-abc-123"), "a client's request id is kept");
    assert_eq!(r.header("x-switchyard-model"), Some("gpt-4o-mini"));
    // Request-level metrics are recorded once the response is complete, just after the
    // client has it: wait for them.
    let request_counted = |text: &str| {
        metric(text, "switchyard_requests_total", &[("route", "chat-route"), ("status_class", "2xx")]) >= 1.0
    };
    assert!(eventually(Duration::from_secs(2), || async { request_counted(&gw.metrics().await) }).await);
    let after = gw.metrics().await;
    let delta = |name: &str, labels: &[(&str, &str)]| metric(&after, name, labels) - metric(&before, name, labels);
    assert_eq!(delta("switchyard_requests_total", &[("route", "chat-route"), ("status_class", "2xx")]), 1.0);
    assert_eq!(delta("switchyard_attempts_total", &[("provider", "primary"), ("outcome", "unhealthy")]), 1.0);
    assert_eq!(delta("switchyard_attempts_total", &[("provider", "fallback"), ("outcome", "success")]), 1.0);
    assert_eq!(delta("switchyard_failovers_total", &[("from", "primary"), ("to", "fallback")]), 1.0);
    assert_eq!(delta("switchyard_ejections_total", &[("provider", "primary"), ("reason", "status")]), 1.0);
    assert_eq!(
        delta("switchyard_tokens_total", &[("provider", "fallback"), ("model", "gpt-4o-mini"), ("type", "output")]),
        5.0
    );
    assert!(
        delta("switchyard_tokens_total", &[("provider", "fallback"), ("model", "gpt-4o-mini"), ("type", "input")])
            >= 1.0
    );
    assert_eq!(metric(&after, "switchyard_provider_state", &[("provider", "primary"), ("state", "ejected")]), 1.0);
    assert_eq!(metric(&after, "switchyard_provider_state", &[("provider", "fallback"), ("state", "healthy")]), 1.0);
    assert_eq!(delta("switchyard_request_duration_seconds_count", &[("provider", "fallback")]), 1.0);
    assert_eq!(delta("switchyard_time_to_first_byte_seconds_count", &[("provider", "fallback")]), 1.0);

    let st = gw.provider_status("primary").await;
    assert_eq!(st["state"], "ejected");
    let left = st["ejectedForSeconds"].as_f64().unwrap();
    assert!(left > 58.0 && left <= 60.0, "ejected-until within the Retry-After window: {st}");
    assert!(st["ejectedUntil"].as_str().unwrap().ends_with('Z'));
    assert_eq!((st["consecutiveFailures"].as_u64(), st["timesEjected"].as_u64()), (Some(0), Some(1)));
    assert_eq!((st["requestsLastMinute"].as_u64(), st["failuresLastMinute"].as_u64()), (Some(1), Some(1)));
    assert_eq!(st["lastError"], "status 429");

    let lines = access_lines(&gw);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["request_id"], "req-abc-123");
    assert_eq!(
        (l["route"].as_str(), l["status"].as_u64(), l["provider"].as_str()),
        (Some("chat-route"), Some(200), Some("fallback"))
    );
    assert_eq!(
        (l["model_requested"].as_str(), l["model_served"].as_str()),
        (Some("client-model"), Some("gpt-4o-mini"))
    );
    assert_eq!(l["method"], "POST");
    assert_eq!(l["path"], "/v1/chat/completions");
    assert!(l["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(l["bytes_in"].as_u64().unwrap() > 0 && l["bytes_out"].as_u64().unwrap() > 0);
    assert!(l["duration_ms"].as_f64().unwrap() >= l["ttfb_ms"].as_f64().unwrap());
    let attempts = l["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[0]["provider"].as_str(), attempts[0]["status"].as_u64(), attempts[0]["ejected"].as_bool()),
        (Some("primary"), Some(429), Some(true))
    );
    assert_eq!(attempts[0]["endpoint"], format!("127.0.0.1:{}", _primary.port()));
    assert_eq!(
        (attempts[1]["provider"].as_str(), attempts[1]["status"].as_u64(), attempts[1]["ejected"].as_bool()),
        (Some("fallback"), Some(200), Some(false))
    );

    // Secrets never reach any log line or the status view.
    let log = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap();
    let status = gw.status().await.to_string();
    for text in [&log, &gw.stderr(), &status] {
        for secret in [SECRET_KEY, CLIENT_TOKEN, "cookie-secret-789"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_response_headers_and_usage() {
    let (_primary, fallback, gw) = failover_gateway().await;
    fallback.set_behavior(Behavior { stream_chunks: 3, ..Behavior::default() });
    let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let before = gw.metrics().await;
    let r = post(&gw.url("/v1/chat/completions"), body.to_string()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.provider(), "fallback");
    assert_eq!(r.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(r.header("x-switchyard-model"), Some("gpt-4o-mini"));
    assert_eq!(r.header("x-request-id").map(str::len), Some(32), "generated when the client sent none");
    assert!(!r.body.contains("\"usage\":{"), "usage chunk hidden from a client that did not ask: {}", r.body);
    assert!(r.body.trim_end().ends_with("data: [DONE]"));
    let asked = fallback.last_request().unwrap().json().unwrap();
    assert_eq!(asked["stream_options"]["include_usage"], true, "usage requested from the provider");
    let after = gw.metrics().await;
    let out = metric(&after, "switchyard_tokens_total", &[("provider", "fallback"), ("type", "output")])
        - metric(&before, "switchyard_tokens_total", &[("provider", "fallback"), ("type", "output")]);
    assert_eq!(out, 5.0, "tokens counted from the final usage chunk");

    // A client that asks for usage gets the chunk.
    let body =
        serde_json::json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let r = post(&gw.url("/v1/chat/completions"), body.to_string()).await;
    assert!(r.body.contains("\"usage\":{"), "{}", r.body);
    assert!(eventually(Duration::from_secs(2), || async { access_lines(&gw).len() == 2 }).await);
    let lines = access_lines(&gw);
    assert!(lines.iter().all(|l| l["stream"] == true));
    assert_eq!(lines.last().unwrap()["request_id"], r.header("x-request-id").unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints() {
    let (primary, _fallback, gw) = failover_gateway().await;
    let c = client();
    assert_eq!(c.get(gw.admin_url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(gw.admin_url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(gw.admin_url("/nope")).send().await.unwrap().status(), 404);
    // One backend with every provider ejected is not ready.
    let gw2 = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: solo}}\nbackends:\n  solo:\n    groups:\n      - providers: [{}]\n",
        provider("primary", &primary, "")
    ))
    .await;
    post_json(&gw2.url("/v1/chat/completions"), &chat(Some("m"))).await;
    let r = c.get(gw2.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["allEjected"], serde_json::json!(["solo"]));
}

/// Every metric the Grafana dashboard queries exists in `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn grafana_dashboard_uses_existing_metrics() {
    let (_primary, fallback, gw) = failover_gateway().await;
    fallback.set_behavior(Behavior::default());
    post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    // Request-level metrics are recorded just after the client has its answer: wait for them.
    let counted = |text: &str| text.lines().any(|l| l.starts_with("switchyard_requests_total{"));
    assert!(eventually(Duration::from_secs(2), || async { counted(&gw.metrics().await) }).await);
    let live = gw.metrics().await;
    let names: std::collections::BTreeSet<&str> =
        live.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let dashboard = std::fs::read_to_string(repo_root().join("conf/grafana/switchyard.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&v, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    let mut used = 0;
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("switchyard_") {
                assert!(names.contains(word), "dashboard uses {word}, not in /metrics");
                used += 1;
            }
        }
    }
    assert!(used >= exprs.len());
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "expr" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_exprs(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}
