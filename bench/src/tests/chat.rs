//! Non-streamed chat answers, injected failures and health endpoints.

use serde_json::json;

use super::client::{call, chat_request, Client};
use super::start;
use crate::Behavior;

#[tokio::test]
async fn answers_a_chat_completion_echoing_the_model() {
    let mock = start("alpha", Behavior::default()).await;
    assert!(mock.addr().ip().is_loopback());
    assert_eq!(mock.port(), mock.addr().port());
    assert_eq!(mock.name(), "alpha");
    let body = chat_request("gpt-test", false).to_string();
    let answer = call(mock.addr(), "POST", "/v1/chat/completions", body.clone()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let p = (body.len() / 4) as u64;
    assert_eq!(
        answer.json(),
        json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-test",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from alpha"},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": p, "completion_tokens": 5, "total_tokens": p + 5},
        })
    );
    assert_eq!(mock.requests(), 1);
    assert_eq!(mock.health_requests(), 0);
    assert_eq!(mock.cancelled(), 0);
    assert_eq!(mock.connections(), 1);
}

#[tokio::test]
async fn any_post_path_answers_and_model_defaults() {
    let mock = start("beta", Behavior::default()).await;
    let answer = call(mock.addr(), "POST", "/model", "{}").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["model"], "mock-model");
    assert_eq!(answer.json()["usage"]["prompt_tokens"], 1);
    assert_eq!(mock.last_request().unwrap().path, "/model");
}

#[tokio::test]
async fn records_the_request() {
    let mock = start("rec", Behavior::default()).await;
    let mut client = Client::connect(mock.addr()).await;
    let body = chat_request("m", false).to_string();
    let response = client
        .send(
            "POST",
            "/v1/chat/completions?x=1",
            &[("X-Custom-Thing", "v1"), ("authorization", "Bearer k")],
            body.clone(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let recorded = mock.last_request().unwrap();
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/v1/chat/completions");
    assert_eq!(recorded.header("x-custom-thing"), Some("v1"));
    assert_eq!(recorded.header("X-Custom-Thing"), Some("v1"));
    assert_eq!(recorded.header("authorization"), Some("Bearer k"));
    assert!(recorded.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert_eq!(recorded.body, body.as_bytes());
    assert_eq!(recorded.json().unwrap()["model"], "m");
}

#[tokio::test]
async fn records_a_1_mib_body_intact() {
    let mock = start("big", Behavior::default()).await;
    let content: String = (0..1024 * 1024).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let body = json!({"model": "big", "messages": [{"role": "user", "content": content}]}).to_string();
    assert!(body.len() > 1024 * 1024);
    let answer = call(mock.addr(), "POST", "/v1/chat/completions", body.clone()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["usage"]["prompt_tokens"], (body.len() / 4) as u64);
    let recorded = mock.last_request().unwrap();
    assert_eq!(recorded.body.len(), body.len());
    assert_eq!(recorded.body, body.as_bytes());
}

#[tokio::test]
async fn bad_json_is_a_400_openai_error() {
    let mock = start("bad", Behavior::default()).await;
    let answer = call(mock.addr(), "POST", "/v1/chat/completions", "{not json").await;
    assert_eq!(answer.status, 400);
    let error = &answer.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], 400);
    assert!(error["message"].as_str().unwrap().starts_with("mock bad:"));
    assert_eq!(mock.requests(), 1);
    assert_eq!(mock.last_request().unwrap().body, "{not json".as_bytes());
}

#[tokio::test]
async fn injects_429_with_retry_after_and_extra_headers() {
    let behavior = Behavior {
        retry_after: Some("7".into()),
        headers: vec![("x-ratelimit-remaining".into(), "0".into())],
        ..Behavior::failing(429)
    };
    let mock = start("gamma", behavior).await;
    let answer = Client::connect(mock.addr()).await.chat(&chat_request("m", false)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), Some("7"));
    assert_eq!(answer.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.json(),
        json!({"error": {
            "message": "mock gamma: injected 429",
            "type": "rate_limit_error",
            "code": 429,
        }})
    );
    // Injection applies to streamed requests too.
    let answer = call(mock.addr(), "POST", "/v1/chat/completions", chat_request("m", true).to_string()).await;
    assert_eq!(answer.status, 429);
}

#[tokio::test]
async fn out_of_quota_sends_openais_insufficient_quota_body() {
    let mock = start("broke", Behavior::out_of_quota()).await;
    let answer = Client::connect(mock.addr()).await.chat(&chat_request("m", false)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json()["error"]["code"], "insufficient_quota");
    assert_eq!(answer.json()["error"]["type"], "insufficient_quota");
}

#[tokio::test]
async fn error_types_follow_the_status() {
    for (status, kind) in
        [(500, "server_error"), (503, "server_error"), (404, "not_found_error"), (401, "invalid_request_error")]
    {
        let mock = start("e", Behavior::failing(status)).await;
        let answer = call(mock.addr(), "POST", "/v1/chat/completions", "{}").await;
        assert_eq!(answer.status, status);
        assert_eq!(answer.json()["error"]["type"], kind);
        assert_eq!(answer.header("retry-after"), None);
    }
}

#[tokio::test]
async fn failure_rate_half_gives_both_outcomes() {
    let behavior = Behavior { failure_rate: 0.5, ..Behavior::failing(503) };
    let mock = start("half", behavior).await;
    let mut client = Client::connect(mock.addr()).await;
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..200 {
        match client.chat(&chat_request("m", false)).await.status {
            200 => ok += 1,
            503 => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
    assert_eq!(mock.requests(), 200);
    assert_eq!(mock.connections(), 1, "keep-alive reuses the connection");
}

#[tokio::test]
async fn first_byte_delay_delays_the_answer() {
    let behavior = Behavior { first_byte_delay_ms: 150, ..Behavior::default() };
    let mock = start("slow", behavior).await;
    let started = std::time::Instant::now();
    let answer = call(mock.addr(), "POST", "/v1/chat/completions", "{}").await;
    assert_eq!(answer.status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(mock.cancelled(), 0);
}

#[tokio::test]
async fn other_methods_get_404_but_are_counted() {
    let mock = start("m", Behavior::default()).await;
    let answer = call(mock.addr(), "GET", "/v1/other", "").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["type"], "not_found_error");
    assert_eq!(mock.requests(), 1);
    assert_eq!(mock.health_requests(), 0);
}

#[tokio::test]
async fn health_endpoints_follow_health_status_only() {
    let behavior = Behavior { headers: vec![("x-mock".into(), "yes".into())], ..Behavior::failing(500) };
    let mock = start("h", behavior.clone()).await;
    let mut client = Client::connect(mock.addr()).await;
    for path in ["/v1/models", "/health"] {
        let answer = client.call("GET", path, "").await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("x-mock"), Some("yes"));
        assert_eq!(answer.json(), json!({"object": "list", "data": [{"id": "mock-model", "object": "model"}]}));
    }
    assert_eq!(mock.requests(), 2);
    assert_eq!(mock.health_requests(), 2);
    assert!(mock.last_request().is_none(), "health checks are not recorded");

    mock.set_behavior(Behavior { health_status: 503, ..Behavior::default() });
    assert_eq!(client.call("GET", "/health", "").await.status, 503);
    assert_eq!(client.chat(&chat_request("m", false)).await.status, 200);
    assert_eq!(mock.health_requests(), 3);
    assert_eq!(mock.requests(), 4);
}
