//! Operations: reloads and a binary upgrade under load, graceful stop, the CLI.

use crate::harness::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn config(limited: &MockLlm, healthy: &MockLlm, version: u32) -> String {
    format!(
        "routes:\n  - name: r\n    match: {{pathPrefix: /v1}}\n    responseHeaders: {{set: {{x-config-version: \"{version}\"}}}}\n    backend: chat\n\
         backends:\n  chat:\n    groups:\n      - providers: [{}]\n      - providers: [{}]\n",
        provider("limited", limited, ""),
        provider("healthy", healthy, "")
    )
}

/// The full file the harness writes: its generated header plus `body`.
fn rewrite_config(gw: &Gateway, body: &str) {
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let header: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&gw.config_path, format!("{header}{body}")).unwrap();
}

#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Workers sending streamed and plain requests until stopped; every answer is checked whole.
fn start_load(url: String, workers: usize, load: Arc<Load>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (url, load) = (url.clone(), load.clone());
            tokio::spawn(async move {
                let client = client();
                let t0 = Instant::now();
                let mut n = 0u64;
                while !load.stop.load(Ordering::Relaxed) {
                    n += 1;
                    let stream = (n + w as u64).is_multiple_of(2);
                    let body = serde_json::json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
                    let result = async {
                        let resp = client.post(&url).body(body.to_string()).send().await.map_err(|e| format!("send: {e:?}"))?;
                        let status = resp.status();
                        let text = resp.text().await.map_err(|e| format!("body: {e:?}"))?;
                        let complete = if stream {
                            text.trim_end().ends_with("data: [DONE]")
                        } else {
                            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v["choices"][0]["message"]["content"].is_string())
                        };
                        if status == 200 && complete {
                            Ok(())
                        } else {
                            Err(format!("status {status}, stream {stream}, body {text:?}"))
                        }
                    }
                    .await;
                    match result {
                        Ok(()) => load.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            load.failures.lock().unwrap().push(format!("{e} at {:?}", t0.elapsed()));
                            load.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect()
}

async fn config_version(url: &str) -> Option<String> {
    let r = post_json(url, &chat(Some("m"))).await;
    r.header("x-config-version").map(str::to_string)
}

/// Five reloads with changed configs, one refused broken config and one binary upgrade,
/// all under continuous load: no request fails or is cut short, the new config takes
/// effect, and a provider ejected before the reloads stays ejected.
#[tokio::test(flavor = "multi_thread")]
async fn reloads_and_upgrade_under_load_lose_nothing() {
    let limited =
        MockLlm::start("limited", Behavior { status: 429, retry_after: Some("300".into()), ..Behavior::default() })
            .await
            .unwrap();
    let healthy = MockLlm::start("healthy", Behavior { stream_chunks: 3, ..Behavior::default() }).await.unwrap();
    let gw = Gateway::start(&config(&limited, &healthy, 0)).await;
    let url = gw.url("/v1/chat/completions");
    assert_eq!(post_json(&url, &chat(Some("m"))).await.provider(), "healthy");
    assert_eq!(gw.provider_status("limited").await["state"], "ejected");

    let load = Arc::new(Load::default());
    let started = Instant::now();
    let workers = start_load(url.clone(), 8, load.clone());

    for version in 1..=5u32 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        rewrite_config(&gw, &config(&limited, &healthy, version));
        gw.signal("HUP");
        let want = version.to_string();
        assert!(
            eventually(Duration::from_secs(5), || async {
                config_version(&url).await.as_deref() == Some(want.as_str())
            })
            .await,
            "reload {version} took effect"
        );
    }
    assert_eq!(limited.requests(), 1, "the ejected provider stayed ejected across reloads");
    assert_eq!(gw.provider_status("limited").await["state"], "ejected");

    // A broken file is refused: the running config stays, the error names its YAML path.
    rewrite_config(&gw, &config(&limited, &healthy, 6).replace("backend: chat", "backend: nope"));
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric(&gw.metrics().await, "switchyard_config_reloads_total", &[("result", "failure")]) == 1.0
        })
        .await
    );
    assert!(gw.stderr().contains("routes[0].backend"), "{}", gw.stderr());
    assert_eq!(config_version(&url).await.as_deref(), Some("5"));
    rewrite_config(&gw, &config(&limited, &healthy, 5));

    // Binary upgrade: the new process takes the sockets, the old one drains and exits.
    let old_pid = gw.pid();
    gw.signal("USR2");
    let new_pid = gw.wait_new_pid(old_pid, Duration::from_secs(15)).await;
    let _guard = PidGuard(new_pid);
    assert!(
        eventually(Duration::from_secs(20), || async { !pid_alive(old_pid) }).await,
        "old process exits after draining"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (load.ok.load(Ordering::Relaxed), load.failed.load(Ordering::Relaxed));
    let secs = started.elapsed().as_secs_f64();
    eprintln!("load: {ok} requests in {secs:.1}s ({:.0}/s), {failed} failed", ok as f64 / secs);
    assert_eq!(
        failed,
        0,
        "failures: {:?}",
        load.failures
            .lock()
            .unwrap()
            .iter()
            .map(|f| f.rsplit(" at ").next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    );
    assert!(ok as f64 / secs > 100.0, "sustained load ({ok} in {secs:.1}s)");
    assert_eq!(config_version(&url).await.as_deref(), Some("5"), "the upgraded process runs the current config");
}

/// SIGTERM with a long stream in flight: the stream completes, new connections are
/// refused, then the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_long_stream_finish() {
    let mock = MockLlm::start("slow", Behavior { stream_chunks: 8, chunk_delay_ms: 250, ..Behavior::default() })
        .await
        .unwrap();
    let mut gw = Gateway::start(&format!(
        "routes:\n  - {{name: r, match: {{pathPrefix: /v1}}, backend: chat}}\nbackends:\n  chat:\n    groups:\n      - providers: [{}]\n",
        provider("slow", &mock, "")
    ))
    .await;
    let body = serde_json::json!({"model": "m", "stream": true, "messages": []});
    let mut resp = client().post(gw.url("/v1/chat/completions")).body(body.to_string()).send().await.unwrap();
    let mut text = String::from_utf8(resp.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    gw.signal("TERM");
    let port = gw.port;
    assert!(
        eventually(Duration::from_secs(3), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err()
        })
        .await,
        "stops accepting"
    );
    while let Some(c) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    let finished = Instant::now();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(gw.wait_exit(Duration::from_secs(5)).await, Some(0));
    let exit_after = finished.elapsed();
    assert!(
        exit_after < Duration::from_secs(2),
        "exits once drained, not after the full drain timeout ({exit_after:?}); stderr:\n{}",
        gw.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_reload_endpoint() {
    let limited = MockLlm::start("limited", Behavior::default()).await.unwrap();
    let healthy = MockLlm::start("healthy", Behavior::default()).await.unwrap();
    let gw = Gateway::start(&config(&limited, &healthy, 0)).await;
    rewrite_config(&gw, &config(&limited, &healthy, 7));
    let r = client().post(gw.admin_url("/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(config_version(&gw.url("/v1/chat/completions")).await.as_deref(), Some("7"));
    rewrite_config(&gw, "routes: [{name: r}]\n");
    let r = client().post(gw.admin_url("/reload")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["errors"].to_string().contains("routes[0]"), "{v}");
    assert_eq!(config_version(&gw.url("/v1/chat/completions")).await.as_deref(), Some("7"));
    assert_eq!(client().get(gw.admin_url("/reload")).send().await.unwrap().status(), 405);
}

#[test]
fn cli_version_and_help() {
    let out = std::process::Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("switchyard {}", env!("CARGO_PKG_VERSION")));
    let out = std::process::Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--validate", "--upgrade", "--upgrade-sock", "--version"] {
        assert!(help.contains(flag), "{help}");
    }
    let out = std::process::Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "missing -c is a usage error");
}

/// The systemd unit passes `systemd-analyze verify` (with the binary path pointed at this
/// build, since nothing is installed under /usr/local here).
#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/switchyard.service")).unwrap();
    for needle in
        ["Type=notify", "ExecReload=", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE="]
    {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/switchyard", BIN)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) is needed; tests/run.sh installs it");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("switchyard.service:"), "warnings about the unit: {text}");

    // With the fleet drop-in (ordering after a local Redis) merged in, as systemd does.
    let dropin = std::fs::read_to_string(repo_root().join("systemd/switchyard.service.d/fleet.conf")).unwrap();
    assert!(dropin.contains("After=redis-server.service"), "{dropin}");
    std::fs::write(&path, format!("{}\n{dropin}", unit.replace("/usr/local/bin/switchyard", BIN))).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("switchyard.service:"), "with the fleet drop-in: {text}");
}
