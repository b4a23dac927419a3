//! Fleet: several gateway processes sharing ejections and client limits through a real
//! `redis-server` (installed by tests/run.sh) on an OS-chosen port; health across a binary
//! upgrade; the access log reopened on SIGHUP.

use crate::harness::*;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `redis-server` on 127.0.0.1, without persistence; killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    /// Extra arguments (TLS, a password); with them, readiness is an accepted connection.
    extra: Vec<String>,
}

impl Redis {
    async fn start() -> Redis {
        Redis::start_with(Vec::new()).await
    }

    async fn start_with(extra: Vec<String>) -> Redis {
        let mut r = Redis { child: None, port: free_port(), extra };
        r.restart().await;
        r
    }

    /// Starts the server (again) on its port, empty, and waits until it answers.
    async fn restart(&mut self) {
        let port = self.port.to_string();
        let tls = self.extra.iter().any(|a| a == "--tls-port");
        let mut args = vec!["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
        if tls {
            args.extend(["--port", "0", "--tls-port", &port]);
        } else {
            args.extend(["--port", &port]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .args(self.extra.iter().filter(|a| *a != "--tls-port"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/run.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        let up = eventually(Duration::from_secs(10), || async move {
            if tls {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
            } else {
                ping(port).await
            }
        })
        .await;
        assert!(up, "redis-server did not start on port {port}");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        let scheme = if self.extra.iter().any(|a| a == "--tls-port") { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis answers PING on `port` (spoken by hand: one inline command).
async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").await.is_ok() && s.read(&mut buf).await.is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

fn fleet(redis_url: &str) -> String {
    format!("fleet: {{name: test-fleet, redis: {{url: \"{redis_url}\"}}}}\n")
}

fn fleet_with_password(redis_url: &str) -> String {
    format!("fleet: {{name: test-fleet, redis: {{url: \"{redis_url}\", password: {{env: FLEET_REDIS_PASSWORD}}}}}}\n")
}

/// Health of the tests: one failure ejects, for as long as the provider asks.
const HEALTH: &str = "{eviction: {consecutiveFailures: 1, duration: 1s, maxDuration: 120s}}";

fn rate_limited(retry_after: &str) -> Behavior {
    Behavior { status: 429, retry_after: Some(retry_after.into()), ..Behavior::default() }
}

async fn start_member(redis: &Redis, primary: &MockLlm, fallback: &MockLlm, extra: &str) -> Gateway {
    let body = backend(&[&[provider("primary", primary, "")], &[provider("fallback", fallback, "")]], HEALTH, "{}");
    let gw = Gateway::start(&format!("{}{extra}{body}", fleet(&redis.url()))).await;
    wait_connected(&gw).await;
    gw
}

async fn wait_connected(gw: &Gateway) {
    let connected =
        eventually(Duration::from_secs(10), || async { gw.status().await["fleet"]["connected"] == true }).await;
    assert!(connected, "fleet never connected; stderr:\n{}", gw.stderr());
}

async fn phase(gw: &Gateway, provider: &str) -> String {
    gw.provider_status(provider).await["state"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_reaches_every_instance_and_a_restore_too() {
    let redis = Redis::start().await;
    let primary = MockLlm::start("primary", rate_limited("30")).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let a = start_member(&redis, &primary, &fallback, "").await;
    let b = start_member(&redis, &primary, &fallback, "").await;

    let reply = post_json(&a.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((reply.status, reply.header("x-switchyard-attempts")), (200, Some("2")));
    let answered = Instant::now();
    assert!(eventually(Duration::from_secs(2), || async { phase(&b, "primary").await == "ejected" }).await);
    let seen_in = answered.elapsed();
    eprintln!("fleet: B saw A's ejection {seen_in:?} after A answered");
    assert!(seen_in < Duration::from_millis(200), "B saw the ejection after {seen_in:?}");
    let hits = primary.requests();
    let reply = post_json(&b.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(
        (reply.status, reply.provider(), reply.header("x-switchyard-attempts")),
        (200, "fallback", Some("1")),
        "B goes straight to the fallback"
    );
    let status = b.provider_status("primary").await;
    assert_eq!(status["ejectionReason"], "status");
    let left = status["ejectedForSeconds"].as_f64().unwrap_or(0.0);
    assert!(left > 25.0 && left <= 30.0, "B honours A's Retry-After: {status}");

    // An instance started afterwards loads the ejection before it serves.
    let c = start_member(&redis, &primary, &fallback, "").await;
    let reply = post_json(&c.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((reply.provider(), reply.header("x-switchyard-attempts")), ("fallback", Some("1")));
    assert_eq!(primary.requests(), hits, "no instance hit the primary again");
    let m = b.metrics().await;
    assert!(metric(&m, "switchyard_fleet_events_total", &[("direction", "in")]) >= 1.0);
    assert_eq!(metric(&m, "switchyard_fleet_connected", &[]), 1.0);
    assert!(metric(&a.metrics().await, "switchyard_fleet_events_total", &[("direction", "out")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_success_on_one_instance_restores_the_provider_on_the_other() {
    let redis = Redis::start().await;
    let primary = MockLlm::start("primary", rate_limited("1")).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let a = start_member(&redis, &primary, &fallback, "").await;
    let b = start_member(&redis, &primary, &fallback, "").await;

    let reply = post_json(&a.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(reply.provider(), "fallback");
    assert!(eventually(Duration::from_secs(2), || async { phase(&b, "primary").await == "ejected" }).await);
    primary.set_behavior(Behavior::default());
    // After the second of the ejection, B's next request is the trial, and it succeeds.
    assert!(eventually(Duration::from_secs(5), || async { phase(&b, "primary").await == "trial" }).await);
    let reply = post_json(&b.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(reply.provider(), "primary", "the trial request");
    assert_eq!(phase(&b, "primary").await, "healthy");
    let restored = Instant::now();
    assert!(
        eventually(Duration::from_secs(2), || async { phase(&a, "primary").await == "healthy" }).await,
        "A still has the primary out: {}",
        a.provider_status("primary").await
    );
    assert!(restored.elapsed() < Duration::from_millis(500), "restored on A after {:?}", restored.elapsed());
    let reply = post_json(&a.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((reply.provider(), reply.header("x-switchyard-attempts")), ("primary", Some("1")));
}

const KEY: &str = "sk-fleet-client-1";

fn limited_client(limit: u64) -> String {
    format!("clients:\n  - {{name: team, key: {{env: FLEET_CLIENT_KEY}}, limits: {{requestsPerMinute: {limit}}}}}\n")
}

async fn start_limited(redis: &Redis, mock: &MockLlm, limit: u64) -> Gateway {
    let body = backend(&[&[provider("only", mock, "")]], "{}", "{}");
    let config = format!("{}{}{body}", fleet(&redis.url()), limited_client(limit));
    let gw = Gateway::start_with_env(&config, &[("FLEET_CLIENT_KEY", KEY)]).await;
    wait_connected(&gw).await;
    gw
}

async fn keyed(url: &str) -> Reply {
    post_with(client().post(url).bearer_auth(KEY).json(&chat(Some("m")))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_limit_is_one_budget_across_instances() {
    let redis = Redis::start().await;
    let mock = MockLlm::start("only", Behavior::default()).await.unwrap();
    let a = start_limited(&redis, &mock, 10).await;
    let b = start_limited(&redis, &mock, 10).await;
    let mut refused = 0;
    for gw in [&a, &b] {
        for _ in 0..6 {
            let reply = keyed(&gw.url("/v1/chat/completions")).await;
            match reply.status {
                200 => {}
                429 => refused += 1,
                s => panic!("unexpected {s}: {}", reply.body),
            }
        }
    }
    assert_eq!(refused, 2, "10 per minute across both instances");
    assert_eq!(mock.requests(), 10);
    let last = keyed(&b.url("/v1/chat/completions")).await;
    assert_eq!(last.status, 429);
    assert_eq!(last.header("x-ratelimit-remaining-requests"), Some("0"));
    for gw in [&a, &b] {
        assert_eq!(metric(&gw.metrics().await, "switchyard_fleet_local_limit_checks_total", &[]), 0.0);
    }
}

/// Load through both instances while Redis is killed and started again: nothing fails,
/// each instance says so once, reconnects and reconciles what happened meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_under_load_loses_nothing_and_reconciles() {
    let mut redis = Redis::start().await;
    let primary = MockLlm::start("primary", Behavior { stream_chunks: 5, ..Behavior::default() }).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let side = MockLlm::start("side", rate_limited("60")).await.unwrap();
    let side_fallback = MockLlm::start("side-fallback", Behavior::default()).await.unwrap();
    // A second route whose primary is ejected on A while Redis is away.
    let side_route = format!(
        "  - {{name: side, match: {{pathPrefix: /side}}, rewrite: {{fullPath: /v1/chat/completions}}, backend: side}}\n\
         backends:\n  side:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n    health: {HEALTH}\n",
        provider("side-primary", &side, ""),
        provider("side-fallback", &side_fallback, "")
    );
    let body = backend(&[&[provider("primary", &primary, "")], &[provider("fallback", &fallback, "")]], HEALTH, "{}")
        .replacen("backends:\n", &side_route, 1);
    let config = format!("{}{}{body}", fleet(&redis.url()), limited_client(1_000_000));
    let env = [("FLEET_CLIENT_KEY", KEY)];
    let a = Gateway::start_with_env(&config, &env).await;
    let b = Gateway::start_with_env(&config, &env).await;
    wait_connected(&a).await;
    wait_connected(&b).await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for (i, gw) in [&a, &b, &a, &b].into_iter().enumerate() {
        let url = gw.url("/v1/chat/completions");
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let stream = (i + n as usize).is_multiple_of(2);
                let body = if stream { stream_body() } else { chat(Some("m")).to_string() };
                let result = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let outcome = match result {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(t) if !stream || t.contains("[DONE]") => Ok(()),
                        Ok(t) => Err(format!("stream cut: {t}")),
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.lock().unwrap().push(e);
                        0
                    }
                };
            }
        }));
    }
    let started = Instant::now();
    let until = |secs: u64| tokio::time::sleep_until((started + Duration::from_secs(secs)).into());

    until(8).await;
    redis.kill();
    for gw in [&a, &b] {
        let down = eventually(Duration::from_secs(5), || async {
            metric(&gw.metrics().await, "switchyard_fleet_connected", &[]) == 0.0
        })
        .await;
        assert!(down, "the instance noticed Redis is gone");
        assert_eq!(gw.status().await["fleet"]["connected"], false);
    }
    // Meanwhile A ejects a provider; B cannot know yet.
    let reply = post_with(client().post(a.url("/side")).bearer_auth(KEY).json(&chat(Some("m")))).await;
    assert_eq!(reply.provider(), "side-fallback");
    assert_eq!(phase(&a, "side-primary").await, "ejected");
    assert_eq!(phase(&b, "side-primary").await, "healthy");

    until(18).await;
    redis.restart().await;
    for gw in [&a, &b] {
        wait_connected(gw).await;
    }
    assert!(
        eventually(Duration::from_secs(3), || async { phase(&b, "side-primary").await == "ejected" }).await,
        "reconciled: B takes A's ejection made while Redis was away"
    );
    until(30).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let done = ok.load(Ordering::Relaxed);
    eprintln!("fleet load: {done} requests in {:.1}s, {} failed", started.elapsed().as_secs_f64(), failures.len());
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(done > 500, "sustained load: {done}");
    for gw in [&a, &b] {
        let lost = gw.stderr().matches("Redis unreachable").count();
        assert_eq!(lost, 1, "one log line for the outage, not one per request:\n{}", gw.stderr());
        let m = gw.metrics().await;
        assert_eq!(metric(&m, "switchyard_fleet_connected", &[]), 1.0);
        assert!(metric(&m, "switchyard_fleet_local_limit_checks_total", &[]) > 0.0, "limits counted locally meanwhile");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_an_instance_starts_within_a_second_and_serves_alone() {
    let dead = free_port();
    let primary = MockLlm::start("primary", Behavior::default()).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let body = backend(&[&[provider("primary", &primary, "")], &[provider("fallback", &fallback, "")]], HEALTH, "{}");
    let config = format!("{}{}{body}", fleet(&format!("redis://127.0.0.1:{dead}/0")), limited_client(2));
    let started = Instant::now();
    let gw = Gateway::start_with_env(&config, &[("FLEET_CLIENT_KEY", KEY)]).await;
    assert!(started.elapsed() < Duration::from_secs(5), "started in {:?}", started.elapsed());
    let statuses = [
        keyed(&gw.url("/v1/chat/completions")).await.status,
        keyed(&gw.url("/v1/chat/completions")).await.status,
        keyed(&gw.url("/v1/chat/completions")).await.status,
    ];
    assert_eq!(statuses, [200, 200, 429], "limits counted by the instance itself");
    assert_eq!(
        gw.status().await["fleet"],
        serde_json::json!({"name": "test-fleet", "instance": gw.status().await["fleet"]["instance"], "connected": false})
    );
    assert_eq!(metric(&gw.metrics().await, "switchyard_fleet_connected", &[]), 0.0);
    assert_eq!(gw.stderr().matches("Redis unreachable").count(), 1, "{}", gw.stderr());
}

/// A graceful upgrade while the primary is ejected: the new process's first request goes to
/// the fallback (no fleet: the old process hands its health over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_survives_a_binary_upgrade() {
    let (primary, _fallback, gw) = primary_and_fallback(rate_limited("60"), HEALTH, "{}").await;
    let reply = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(reply.provider(), "fallback");
    let hits = primary.requests();
    let old_pid = gw.pid();
    gw.signal("USR2");
    let new_pid = gw.wait_new_pid(old_pid, Duration::from_secs(15)).await;
    let _guard = PidGuard(new_pid);
    let status = gw.provider_status("primary").await;
    assert_eq!(status["state"], "ejected", "the new process took the ejection over: {status}");
    let reply = post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!((reply.provider(), reply.header("x-switchyard-attempts")), ("fallback", Some("1")));
    assert_eq!(primary.requests(), hits, "the new process did not hit the primary");
    assert!(gw.stderr().contains("took over provider health"), "{}", gw.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_the_access_log_for_logrotate() {
    let mock = MockLlm::start("only", Behavior::default()).await.unwrap();
    let body = backend(&[&[provider("only", &mock, "")]], "{}", "{}");
    let gw = Gateway::start(&format!("accessLog: {{path: \"{{DIR}}/access.log\"}}\n{body}")).await;
    let log = gw.dir.path().join("access.log");
    let rotated = gw.dir.path().join("access.log.1");
    let lines = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert!(eventually(Duration::from_secs(2), || async { lines(log.clone()) == 1 }).await);
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || async { gw.stderr().contains("configuration reloaded") }).await);
    post_json(&gw.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert!(eventually(Duration::from_secs(2), || async { lines(log.clone()) == 1 }).await, "a new file after SIGHUP");
    assert_eq!(lines(rotated.clone()), 1, "the rotated file keeps its line and gets no more");
}

#[test]
fn fleet_configuration_errors_name_the_field() {
    let base = format!("listen: [\"127.0.0.1:1\"]\n{}", backend(&[&[provider_x("p", 1, "", "")]], "{}", "{}"));
    let (code, out) =
        validate_yaml(&format!("{base}fleet: {{name: \"bad name\", redis: {{url: \"redis://127.0.0.1:6379\"}}}}\n"));
    assert_eq!(code, 64);
    assert!(out.contains("fleet.name"), "{out}");
    let (code, out) = validate_yaml(&format!("{base}fleet: {{name: ok, redis: {{url: \"http://127.0.0.1:6379\"}}}}\n"));
    assert_eq!(code, 64);
    assert!(out.contains("fleet.redis.url"), "{out}");
    let (code, out) = validate_yaml(&format!(
        "{base}fleet: {{name: ok, redis: {{url: \"redis://127.0.0.1:6379\", password: {{env: SWITCHYARD_TEST_UNSET_PW}}}}}}\n"
    ));
    assert_eq!(code, 64);
    assert!(out.contains("fleet.redis.password") && out.contains("SWITCHYARD_TEST_UNSET_PW"), "{out}");
    let (code, out) =
        validate_yaml(&format!("{base}fleet: {{name: ok, redis: {{url: \"rediss://127.0.0.1:6380/1\"}}}}\n"));
    assert_eq!(code, 0, "{out}");
}

/// `rediss://` with the server's certificate checked against the system roots (here a test CA
/// given by `SSL_CERT_FILE`), and `fleet.redis.password`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::edge::TestCa::new(dir.path(), "redis");
    let (cert, key) = (dir.path().join("redis.pem"), dir.path().join("redis-key.pem"));
    ca.issue(&cert, &key);
    let path = |p: &std::path::Path| p.display().to_string();
    let redis = Redis::start_with(vec![
        "--tls-port".into(),
        "--tls-cert-file".into(),
        path(&cert),
        "--tls-key-file".into(),
        path(&key),
        "--tls-ca-cert-file".into(),
        path(&ca.ca_file),
        "--tls-auth-clients".into(),
        "no".into(),
        "--requirepass".into(),
        "fleet-secret-1".into(),
    ])
    .await;
    assert!(redis.url().starts_with("rediss://"));
    let primary = MockLlm::start("primary", rate_limited("30")).await.unwrap();
    let fallback = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let body = backend(&[&[provider("primary", &primary, "")], &[provider("fallback", &fallback, "")]], HEALTH, "{}");
    let config = format!("{}{body}", fleet_with_password(&redis.url()));
    let ca_file = path(&ca.ca_file);
    let env = [("SSL_CERT_FILE", ca_file.as_str()), ("FLEET_REDIS_PASSWORD", "fleet-secret-1")];
    let a = Gateway::start_with_env(&config, &env).await;
    let b = Gateway::start_with_env(&config, &env).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    assert_eq!(post_json(&a.url("/v1/chat/completions"), &chat(Some("m"))).await.provider(), "fallback");
    assert!(eventually(Duration::from_secs(2), || async { phase(&b, "primary").await == "ejected" }).await);

    // A wrong password: the instance serves alone and says why, once.
    let wrong = [("SSL_CERT_FILE", ca_file.as_str()), ("FLEET_REDIS_PASSWORD", "not-it")];
    let c = Gateway::start_with_env(&config, &wrong).await;
    assert_eq!(c.status().await["fleet"]["connected"], false);
    let reply = post_json(&c.url("/v1/chat/completions"), &chat(Some("m"))).await;
    assert_eq!(reply.status, 200);
    let log = c.stderr();
    assert_eq!(log.matches("Redis unreachable").count(), 1, "{log}");
    assert!(!log.contains("not-it"), "the password is never logged: {log}");
}
