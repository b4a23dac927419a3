//! Clients (issue 12): keys, per-client routes, request and token limits, admin token,
//! reload, and the official Python SDKs (tests/sdk/check_clients.py) against all of it.

use crate::harness::*;
use crate::sdk::sdk_python;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const KEY_A: &str = "sk-sy-team-a-51c2";
/// Configured by its SHA-256 only: `printf %s sk-sy-team-b-7f3a | sha256sum`.
const KEY_B: &str = "sk-sy-team-b-7f3a";
const KEY_B_SHA256: &str = "79f33b174900ebf6331b77b5a67422804629a8b7beeed1dabfba46736449b626";
const KEY_C: &str = "sk-sy-team-c-from-file";
const PROVIDER_KEY: &str = "sk-provider-secret";
const ADMIN_TOKEN: &str = "admin-token-9d1e";

/// Routes `chat` (OpenAI), `messages` (Anthropic) and `models` on one mock provider, the
/// access log in the gateway's directory, then `clients` as given.
fn body(mock: &MockLlm, clients: &str) -> String {
    let provider = provider_x("mock", mock.port(), "gpt-4o-mini", "auth: {apiKey: {env: PROVIDER_KEY}}");
    format!(
        "accessLog: {{path: \"{{DIR}}/access.log\"}}\nroutes:\n  \
         - {{name: chat, match: {{pathPrefix: /v1/chat}}, backend: main}}\n  \
         - {{name: messages, match: {{pathPrefix: /v1/messages}}, backend: main}}\n  \
         - {{name: models, match: {{pathPrefix: /v1/models}}, backend: main}}\n\
         backends:\n  main:\n    groups:\n      - providers: [{provider}]\nclients:\n{clients}"
    )
}

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("PROVIDER_KEY", PROVIDER_KEY), ("TEAM_A_KEY", KEY_A), (ADMIN_TOKEN_ENV, ADMIN_TOKEN)];
    env.extend_from_slice(extra);
    env
}

fn anthropic_body() -> serde_json::Value {
    serde_json::json!({"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]})
}

/// POST to the gateway with these extra headers.
async fn send(gw: &Gateway, path: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().post(gw.url(path)).header("content-type", "application/json").body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    post_with(req).await
}

/// No header of the provider's last request carries `key`.
fn assert_not_forwarded(mock: &MockLlm, key: &str) {
    let seen = mock.last_request().expect("the provider got a request");
    for (name, value) in &seen.headers {
        assert!(!value.contains(key), "client key forwarded in {name}: {value}");
    }
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {PROVIDER_KEY}").as_str()));
    assert_eq!(seen.header("x-api-key"), None);
}

/// `Retry-After` of a 429 whose window filled at `first`: what is counted in a second counts
/// for 60 to 61 s from that second's start, rounded up to whole seconds.
fn assert_retry_after(r: &Reply, first: std::time::Instant) {
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    let lowest = 60 - first.elapsed().as_secs_f64().ceil() as u64;
    assert!((lowest..=61).contains(&retry), "Retry-After {retry}, expected {lowest}..=61");
}

fn access_log(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_routes_and_refusals_in_each_api_shape() {
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("team-c.key");
    std::fs::write(&key_file, format!("{KEY_C}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let clients = format!(
        "  - {{name: team-a, key: {{env: TEAM_A_KEY}}}}\n  \
         - {{name: team-b, key: {{sha256: {KEY_B_SHA256}}}, routes: [chat]}}\n  \
         - {{name: team-c, key: {{file: {}}}}}\n",
        key_file.display()
    );
    let listen = "[\"127.0.0.1:{PORT}\"]";
    let gw = Gateway::start_in(dir, listen, &body(&mock, &clients), &env(&[])).await;
    let chat = chat(Some("client-model"));

    // Missing and unknown keys: 401 in the client API's shape; nothing reaches the provider.
    let r = send(&gw, "/v1/chat/completions", &chat, &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(v["error"]["message"].as_str().unwrap().contains("missing API key"), "{v}");
    let r = send(&gw, "/v1/chat/completions", &chat, &[("authorization", "Bearer sk-wrong")]).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let r = send(&gw, "/v1/messages", &anthropic_body(), &[("x-api-key", "sk-wrong")]).await;
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("authentication_error")));
    // A large body with no key is answered without being forwarded.
    let big = serde_json::json!({"messages": [{"role": "user", "content": "x".repeat(2 << 20)}]});
    assert_eq!(send(&gw, "/v1/chat/completions", &big, &[]).await.status, 401);
    let r = post_with(client().get(gw.url("/v1/models"))).await;
    assert_eq!(r.status, 401, "listing models needs a key too");
    assert_eq!(mock.requests(), 0, "no refused request reached the provider");

    // Known keys in either header style, on both APIs; the key never goes upstream.
    for (key, headers) in [
        (KEY_A, vec![("authorization", format!("Bearer {KEY_A}"))]),
        (KEY_A, vec![("x-api-key", KEY_A.to_string())]),
        (KEY_B, vec![("authorization", format!("Bearer {KEY_B}"))]),
        (KEY_C, vec![("x-api-key", KEY_C.to_string())]),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(&gw, "/v1/chat/completions", &chat, &h).await;
        assert_eq!(r.status, 200, "{h:?}: {}", r.body);
        assert_not_forwarded(&mock, key);
        if key != KEY_B {
            let r = send(&gw, "/v1/messages", &anthropic_body(), &h).await;
            assert_eq!(r.status, 200, "{h:?}: {}", r.body);
            assert_eq!(r.json()["type"], "message");
            assert_not_forwarded(&mock, key);
        }
    }
    let served = mock.requests();

    // A known key on a route it may not use: 403, both shapes.
    let bearer_b = format!("Bearer {KEY_B}");
    let r = send(&gw, "/v1/messages", &anthropic_body(), &[("authorization", &bearer_b)]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "permission_error");
    assert_eq!(r.json()["type"], "error");
    let r = post_with(client().get(gw.url("/v1/models")).header("authorization", &bearer_b)).await;
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (403, Some("permission_error")));
    assert_eq!(mock.requests(), served, "a forbidden request reached the provider");

    // Access log names the client; neither log holds a key.
    assert!(
        eventually(Duration::from_secs(5), || async { access_log(&gw).lines().count() >= 14 }).await,
        "access log: {}",
        access_log(&gw)
    );
    let log = access_log(&gw);
    let names: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["client_name"].clone()).collect();
    assert_eq!(names.iter().filter(|n| n.is_null()).count(), 5, "unauthenticated requests have no client_name");
    assert_eq!(names.iter().filter(|n| *n == "team-a").count(), 4);
    assert_eq!(names.iter().filter(|n| *n == "team-b").count(), 3);
    assert!(log.contains("\"client\":\"127.0.0.1:"), "client stays the peer address");
    for key in [KEY_A, KEY_B, KEY_C, KEY_B_SHA256, PROVIDER_KEY, ADMIN_TOKEN] {
        assert!(!log.contains(key) && !gw.stderr().contains(key), "{key} in a log");
    }

    // Metrics by client; /status lists clients without keys.
    let m = gw.metrics().await;
    let requests = |client: &str, route: &str, class: &str| {
        metric(&m, "switchyard_client_requests_total", &[("client", client), ("route", route), ("status_class", class)])
    };
    assert_eq!(requests("none", "chat", "4xx"), 3.0);
    assert_eq!(requests("team-a", "chat", "2xx"), 2.0);
    assert_eq!(requests("team-a", "messages", "2xx"), 2.0);
    assert_eq!(requests("team-b", "messages", "4xx"), 1.0);
    assert_eq!(requests("team-b", "models", "4xx"), 1.0);
    assert!(metric(&m, "switchyard_client_tokens_total", &[("client", "team-a"), ("type", "output")]) > 0.0);
    let status = gw.status().await;
    let clients = status["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 3);
    assert_eq!(clients[1]["name"], "team-b");
    assert_eq!(clients[1]["routes"], serde_json::json!(["chat"]));
    assert_eq!(clients[0]["requestsLastMinute"], 4);
    let text = status.to_string();
    for key in [KEY_A, KEY_B, KEY_C, KEY_B_SHA256] {
        assert!(!text.contains(key), "{key} in /status");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_token_guards_every_endpoint_but_health() {
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let gw = Gateway::start_with_env(&body(&mock, "  - {name: team-a, key: {env: TEAM_A_KEY}}\n"), &env(&[])).await;
    for path in ["/status", "/metrics", "/reload"] {
        for auth in [None, Some("Bearer wrong"), Some(ADMIN_TOKEN)] {
            let method = if path == "/reload" { reqwest::Method::POST } else { reqwest::Method::GET };
            let mut req = client().request(method.clone(), gw.admin_url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = post_with(req).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.body);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
        let method = if path == "/reload" { reqwest::Method::POST } else { reqwest::Method::GET };
        let r = post_with(gw.admin_request(method, path)).await;
        assert_eq!(r.status, 200, "{path} with the token: {}", r.body);
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(post_with(client().get(gw.admin_url(path))).await.status, 200, "{path} stays open");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_limit_refuses_with_retry_after_and_spares_the_provider() {
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let clients = "  - {name: team-a, key: {env: TEAM_A_KEY}, limits: {requestsPerMinute: 5}}\n  \
                   - {name: free, key: {env: FREE_KEY}}\n";
    let gw = Gateway::start_with_env(&body(&mock, clients), &env(&[("FREE_KEY", "sk-free")])).await;
    let chat = chat(None);
    let auth = format!("Bearer {KEY_A}");
    let first = std::time::Instant::now();
    for n in 1..=5 {
        let r = send(&gw, "/v1/chat/completions", &chat, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "request {n}: {}", r.body);
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some((5 - n).to_string().as_str()), "request {n}");
        let reset = r.header("x-ratelimit-reset-requests").unwrap();
        assert!(reset.ends_with('s') && reset.len() > 1, "reset {reset}");
        assert_eq!(r.header("x-ratelimit-limit-tokens"), None, "no token limit configured");
    }
    // The 6th in the minute (the 601st of the issue, with a limit of 5).
    let r = send(&gw, "/v1/chat/completions", &chat, &[("authorization", &auth)]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_retry_after(&r, first);
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    let v = r.json();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("rate_limit_exceeded"), Some("requests"))
    );
    let r = send(&gw, "/v1/messages", &anthropic_body(), &[("x-api-key", KEY_A)]).await;
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (429, Some("rate_limit_error")), "Anthropic shape");
    assert!(r.header("retry-after").is_some());
    assert_eq!(mock.requests(), 5, "limited requests never reach the provider");

    // Another client goes on; no rate-limit headers for a client without limits.
    let r = send(&gw, "/v1/chat/completions", &chat, &[("authorization", "Bearer sk-free")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit-requests"), None);
    // The provider's health did not count the 429s.
    let p = gw.provider_status("mock").await;
    assert_eq!((p["state"].as_str(), p["failuresLastMinute"].as_u64()), (Some("healthy"), Some(0)));
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_client_limited_total", &[("client", "team-a"), ("limit", "requests")]), 2.0);
    assert_eq!(gw.status().await["clients"][0]["requestsLastMinute"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_limit_counts_streamed_usage() {
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let clients = "  - {name: team-a, key: {env: TEAM_A_KEY}, limits: {tokensPerMinute: 20}}\n";
    let gw = Gateway::start_with_env(&body(&mock, clients), &env(&[])).await;
    let auth = format!("Bearer {KEY_A}");
    // A stream that did not ask for usage: the gateway asks and reads it anyway.
    let mut stream = chat(None);
    stream["stream"] = true.into();
    let first = std::time::Instant::now();
    let r = send(&gw, "/v1/chat/completions", &stream, &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("data: [DONE]") && !r.body.contains("\"usage\""), "{}", r.body);
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("20"));
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("20"), "no tokens counted before the answer");
    assert_eq!(r.header("x-ratelimit-limit-requests"), None, "no request limit configured");
    // The mock reports body/4 input tokens and 5 output tokens.
    let sent = mock.last_request().unwrap().body.len() as u64;
    let tokens = (sent / 4).max(1) + 5;
    assert!(tokens >= 20, "the test needs one answer to reach the limit ({tokens})");
    let counted = eventually(Duration::from_secs(5), || async {
        gw.status().await["clients"][0]["tokensLastMinute"].as_u64() == Some(tokens)
    })
    .await;
    assert!(counted, "tokens of the stream counted: {}", gw.status().await);
    let r = send(&gw, "/v1/chat/completions", &chat(None), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("0"));
    assert_retry_after(&r, first);
    assert_eq!(mock.requests(), 1);
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "switchyard_client_limited_total", &[("client", "team-a"), ("limit", "tokens")]), 1.0);
    let counted = metric(&m, "switchyard_client_tokens_total", &[("client", "team-a"), ("type", "input")])
        + metric(&m, "switchyard_client_tokens_total", &[("client", "team-a"), ("type", "output")]);
    assert_eq!(counted, tokens as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_and_removes_keys_while_another_client_keeps_going() {
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let steady = "  - {name: steady, key: {env: STEADY_KEY}}\n";
    let limited = "  - {name: team-a, key: {env: TEAM_A_KEY}, limits: {requestsPerMinute: 3}}\n";
    let gone = "  - {name: gone, key: {env: GONE_KEY}}\n";
    let added = "  - {name: added, key: {env: ADDED_KEY}}\n";
    let keys = [("STEADY_KEY", "sk-steady"), ("GONE_KEY", "sk-gone"), ("ADDED_KEY", "sk-added")];
    let gw = Gateway::start_with_env(&body(&mock, &format!("{steady}{limited}{gone}")), &env(&keys)).await;
    let url = gw.url("/v1/chat/completions");
    let bearer_a = format!("Bearer {KEY_A}");

    // `steady` sends requests back to back through the whole reload.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_stop = stop.clone();
    let steady_loop = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while !loop_stop.load(std::sync::atomic::Ordering::SeqCst) {
            let req = client().post(&url).header("authorization", "Bearer sk-steady").body(chat(None).to_string());
            statuses.push(post_with(req).await.status);
        }
        statuses
    });
    for _ in 0..2 {
        assert_eq!(send(&gw, "/v1/chat/completions", &chat(None), &[("authorization", &bearer_a)]).await.status, 200);
    }
    assert_eq!(send(&gw, "/v1/chat/completions", &chat(None), &[("x-api-key", "sk-gone")]).await.status, 200);
    assert_eq!(send(&gw, "/v1/chat/completions", &chat(None), &[("x-api-key", "sk-added")]).await.status, 401);

    let config = std::fs::read_to_string(&gw.config_path).unwrap().replace(gone, added);
    std::fs::write(&gw.config_path, config).unwrap();
    let r = post_with(gw.admin_request(reqwest::Method::POST, "/reload")).await;
    assert_eq!(r.status, 200, "{}", r.body);

    assert_eq!(send(&gw, "/v1/chat/completions", &chat(None), &[("x-api-key", "sk-gone")]).await.status, 401);
    assert_eq!(send(&gw, "/v1/chat/completions", &chat(None), &[("x-api-key", "sk-added")]).await.status, 200);
    // team-a's two requests carried over: one left, then the limit.
    let r = send(&gw, "/v1/chat/completions", &chat(None), &[("authorization", &bearer_a)]).await;
    assert_eq!((r.status, r.header("x-ratelimit-remaining-requests")), (200, Some("0")));
    assert_eq!(send(&gw, "/v1/chat/completions", &chat(None), &[("authorization", &bearer_a)]).await.status, 429);
    let names: Vec<String> =
        gw.status().await["clients"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().into()).collect();
    assert_eq!(names, ["steady", "team-a", "added"]);

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = steady_loop.await.unwrap();
    assert!(statuses.len() >= 2, "the steady client kept sending: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "steady client refused during the reload: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_refuses_passthrough_with_clients() {
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let provider = provider_x("pass", mock.port(), "", "auth: {passthrough: {}}");
    let text = format!(
        "listen: [\"127.0.0.1:1\"]\nroutes: [{{name: chat, match: {{pathPrefix: /}}, backend: main}}]\n\
         backends: {{main: {{groups: [{{providers: [{provider}]}}]}}}}\n\
         clients: [{{name: a, key: {{sha256: {KEY_B_SHA256}}}, routes: [chat, nope]}}]\n"
    );
    std::fs::write(&path, text).unwrap();
    let (code, out) = validate(&path, &[]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("backends.main.groups[0].providers[0].auth: passthrough cannot be used with clients"),
        "{out}"
    );
    assert!(out.contains("clients[0].routes[1]: unknown route \"nope\""), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_with_client_keys() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap().unwrap_or_else(|why| panic!("{why}"));
    let mock = MockLlm::start("mock", Behavior::default()).await.unwrap();
    let clients = format!(
        "  - {{name: team-a, key: {{env: TEAM_A_KEY}}}}\n  \
         - {{name: chat-only, key: {{sha256: {KEY_B_SHA256}}}, routes: [chat]}}\n  \
         - {{name: limited, key: {{env: LIMITED_KEY}}, limits: {{requestsPerMinute: 2}}}}\n"
    );
    let gw = Gateway::start_with_env(&body(&mock, &clients), &env(&[("LIMITED_KEY", "sk-limited")])).await;
    let script = repo_root().join("tests/sdk/check_clients.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .env("OPENAI_BASE_URL", gw.url("/v1"))
        .env("ANTHROPIC_BASE_URL", gw.url(""))
        .env("GOOD_KEY", KEY_A)
        .env("CHAT_ONLY_KEY", KEY_B)
        .env("LIMITED_KEY", "sk-limited")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("check_clients.py timed out").unwrap();
    let report = format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check_clients.py failed: {report}\n--- gateway stderr\n{}", gw.stderr());
    println!("{report}");
    // team-a: text and stream per SDK (4); chat-only: one chat; limited: one per SDK.
    assert_eq!(mock.requests(), 7, "refused SDK calls never reach the provider");
    assert_not_forwarded(&mock, "sk-limited");
}
