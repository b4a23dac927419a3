//! Micro-benchmarks of the pure hot paths: provider selection with health, the body model
//! rewrite, condition evaluation, Retry-After parsing, client admission among 1,000 clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchyard::balancer::{Balancer, ProviderSet};
use switchyard::body::ChatRequest;
use switchyard::config::load_str;
use switchyard::health::condition::Condition;
use switchyard::health::{hints, FailureKind, Outcome, Permit, ProviderHealth};

fn balancer() -> Balancer {
    let yaml = "listen: [\"127.0.0.1:1\"]\nroutes: [{name: r, match: {pathPrefix: /}, backend: b}]\nbackends:\n  b:\n    groups:\n      - providers: [{name: a, openai: {}, host: 127.0.0.1, port: 1}, {name: b, openai: {}, host: 127.0.0.1, port: 2}]\n      - providers: [{name: c, openai: {}, host: 127.0.0.1, port: 3}, {name: d, openai: {}, host: 127.0.0.1, port: 4}]\n";
    let config = load_str(yaml).unwrap();
    Balancer::new(config.backends[0].clone(), |_| Arc::new(ProviderHealth::default()))
}

fn selection(c: &mut Criterion) {
    let b = balancer();
    c.bench_function("select/healthy", |bench| {
        bench.iter(|| b.select(black_box(ProviderSet::default()), ProviderSet::default(), 10, true))
    });
    // First group fully ejected: every selection skips it.
    let h = &b.backend.health;
    let fail = Outcome::Failure {
        kind: FailureKind::Status(429),
        hint: Some(Duration::from_secs(600)),
        detail: String::new(),
    };
    for i in 0..2 {
        b.providers[i].health.record(&fail, Permit::Normal, 10, &h.eviction, &h.recovery, || true);
    }
    c.bench_function("select/first_group_ejected", |bench| {
        bench.iter(|| b.select(black_box(ProviderSet::default()), ProviderSet::default(), 20, true))
    });
    c.bench_function("health/record_success", |bench| {
        bench.iter(|| {
            b.providers[2].health.record(&Outcome::Success, Permit::Normal, 20, &h.eviction, &h.recovery, || true)
        })
    });
}

fn body_rewrite(c: &mut Criterion) {
    let small = Bytes::from(
        serde_json::json!({"model": "gpt-4o", "messages": [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "x".repeat(480)}], "temperature": 0.7})
        .to_string(),
    );
    let big = Bytes::from(
        serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(1024 * 1024)}]})
            .to_string(),
    );
    c.bench_function("body/parse_and_rewrite_600B", |bench| {
        bench.iter(|| {
            let r = ChatRequest::parse(black_box(&small)).unwrap();
            r.rewrite(&small, Some("gpt-4o-mini"), false)
        })
    });
    c.bench_function("body/parse_and_rewrite_1MiB", |bench| {
        bench.iter(|| {
            let r = ChatRequest::parse(black_box(&big)).unwrap();
            r.rewrite(&big, Some("gpt-4o-mini"), false)
        })
    });
}

fn conditions(c: &mut Criterion) {
    let cond = Condition::compile("response.code == 404 || response.code == 429").unwrap();
    let with_headers =
        Condition::compile("response.code >= 500 || response.headers['x-overloaded'] == 'true'").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-overloaded", HeaderValue::from_static("false"));
    headers.insert("x-request-id", HeaderValue::from_static("abc"));
    c.bench_function("condition/status_only", |bench| bench.iter(|| cond.eval(black_box(200), &headers)));
    c.bench_function("condition/with_headers", |bench| bench.iter(|| with_headers.eval(black_box(200), &headers)));
}

fn retry_after(c: &mut Criterion) {
    let now = SystemTime::now();
    let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("60"));
    headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6m0s"));
    c.bench_function("retry_after/seconds", |bench| bench.iter(|| hints::retry_after(black_box("60"), now)));
    c.bench_function("retry_after/http_date", |bench| bench.iter(|| hints::retry_after(black_box(&date), now)));
    c.bench_function("retry_after/all_headers", |bench| bench.iter(|| hints::from_headers(black_box(&headers), now)));
}

/// Who is this, may they use the route, are they over a limit: 1,000 configured clients.
fn client_admission(c: &mut Criterion) {
    use switchyard::clients::{digest, ClientConfig, ClientLimits, ClientRegistry, ClientTable};
    let yaml = "listen: [\"127.0.0.1:1\"]\nroutes: [{name: r, match: {pathPrefix: /}, backend: b}]\nbackends: {b: {groups: [{providers: [{name: a, openai: {}, host: h, port: 1}]}]}}\n";
    let config = load_str(yaml).unwrap();
    let limits = ClientLimits { requests_per_minute: std::num::NonZeroU64::new(u64::MAX), tokens_per_minute: None };
    let clients: Vec<ClientConfig> = (0..1000)
        .map(|i| ClientConfig {
            name: format!("team-{i}"),
            key_sha256: digest(format!("sk-sy-team-{i}-0123456789abcdef").as_bytes()),
            routes: None,
            limits: if i == 1 { limits } else { ClientLimits::default() },
        })
        .collect();
    let table = ClientTable::build(&clients, &config.routes, &ClientRegistry::default());
    let route = &config.routes[0];
    let headers = |key: &str| {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(&format!("Bearer {key}")).unwrap());
        h
    };
    for (name, key) in [
        ("clients/admit_known", "sk-sy-team-0-0123456789abcdef"),
        ("clients/admit_with_limits", "sk-sy-team-1-0123456789abcdef"),
        ("clients/refuse_unknown", "sk-sy-nobody-0123456789abcdef"),
    ] {
        let h = headers(key);
        c.bench_function(name, |bench| bench.iter(|| table.admit(black_box(&h), route, 0, 10_000)));
    }
}

criterion_group!(benches, selection, body_rewrite, conditions, retry_after, client_admission);
criterion_main!(benches);
