//! The `/__mock/` control endpoints.

use serde_json::{json, Value};

use super::client::{chat_request, Client};
use super::start;
use crate::Behavior;

#[tokio::test]
async fn behavior_endpoint_sets_and_shows_the_behavior() {
    let mock = start("ctl", Behavior::default()).await;
    let mut client = Client::connect(mock.addr()).await;
    let answer = client.call("POST", "/__mock/behavior", r#"{"status":503,"retry_after":"3"}"#).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), json!({"ok": true}));
    let expected = Behavior { retry_after: Some("3".into()), ..Behavior::failing(503) };
    assert_eq!(mock.behavior(), expected);
    let shown = client.call("GET", "/__mock/behavior", "").await;
    assert_eq!(serde_json::from_value::<Behavior>(shown.json()).unwrap(), expected);

    let answer = client.chat(&chat_request("m", false)).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("3"));
    assert_eq!(answer.json()["error"]["type"], "server_error");
    assert_eq!(mock.requests(), 1, "control requests are not counted");
}

#[tokio::test]
async fn behavior_endpoint_rejects_bad_json() {
    let mock = start("ctl", Behavior::default()).await;
    let mut client = Client::connect(mock.addr()).await;
    for bad in ["{not json", r#"{"statuz":500}"#, r#"{"status":"x"}"#] {
        let answer = client.call("POST", "/__mock/behavior", bad).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.json()["ok"], false);
        assert!(answer.json()["error"].as_str().unwrap().contains("invalid behavior"));
    }
    assert_eq!(mock.behavior(), Behavior::default());
    assert_eq!(client.call("GET", "/__mock/nope", "").await.status, 404);
    assert_eq!(mock.requests(), 0);
}

#[tokio::test]
async fn stats_and_reset() {
    let mock = start("stats", Behavior::default()).await;
    let mut client = Client::connect(mock.addr()).await;
    let stats = client.call("GET", "/__mock/stats", "").await.json();
    assert_eq!(stats["last_request"], Value::Null);
    assert_eq!(stats["requests"], 0);

    let body = chat_request("m", false);
    client.send("POST", "/v1/chat/completions", &[("x-trace", "a"), ("x-trace", "b")], body.to_string()).await;
    assert_eq!(client.call("GET", "/health", "").await.status, 200);
    let stats = client.call("GET", "/__mock/stats", "").await.json();
    assert_eq!(stats["name"], "stats");
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["health_requests"], 1);
    assert_eq!(stats["cancelled"], 0);
    assert_eq!(stats["connections"], 1);
    let last = &stats["last_request"];
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(last["headers"]["x-trace"], "a, b");
    assert_eq!(last["headers"]["host"], "mock");
    assert_eq!(last["body"], body.to_string());

    let answer = client.call("POST", "/__mock/reset", "").await;
    assert_eq!(answer.json(), json!({"ok": true}));
    let stats = client.call("GET", "/__mock/stats", "").await.json();
    assert_eq!(
        stats,
        json!({
            "name": "stats",
            "requests": 0,
            "health_requests": 0,
            "cancelled": 0,
            "connections": 0,
            "last_request": null,
        })
    );
    assert!(mock.last_request().is_none());

    client.chat(&body).await;
    mock.reset_stats();
    assert_eq!(mock.requests(), 0);
    assert!(mock.last_request().is_none());
}
