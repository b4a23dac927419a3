//! Test harness: the real `switchyard` binary on OS-chosen ports, mock providers in process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use mock_llm::{Behavior, MockLlm};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A port nobody listens on right now, chosen by the OS.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running gateway; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// `admin.token`, when the gateway was started with `SWITCHYARD_ADMIN_TOKEN` set: the
    /// admin helpers send it.
    pub admin_token: Option<String>,
}

/// The environment variable whose value, given to a `start*` call, becomes `admin.token`.
pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

/// The YAML of an OpenAI-kind provider pointing at `mock`; `model` "" passes the client's.
pub fn provider(name: &str, mock: &MockLlm, model: &str) -> String {
    provider_x(name, mock.port(), model, "")
}

/// A provider of `kind` (`anthropic: {model: x}` style) pointing at `mock`, with `auth`
/// when not empty.
pub fn kind_provider(name: &str, mock: &MockLlm, kind: &str, auth: &str) -> String {
    let auth = if auth.is_empty() { String::new() } else { format!(", auth: {auth}") };
    format!("{{name: {name}, {kind}, host: 127.0.0.1, port: {}, tls: false{auth}}}", mock.port())
}

/// Like [`provider`], on any port, with extra fields (`"auth: {passthrough: {}}"`).
pub fn provider_x(name: &str, port: u16, model: &str, extra: &str) -> String {
    let kind = if model.is_empty() { "openai: {}".to_string() } else { format!("openai: {{model: \"{model}\"}}") };
    let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
    format!("{{name: {name}, {kind}, host: 127.0.0.1, port: {port}, tls: false{extra}}}")
}

impl Gateway {
    /// Starts the gateway with `body` (routes, backends, ...) under generated listen/admin
    /// lines, with `env` set for the process. Waits until it answers.
    pub async fn start(body: &str) -> Gateway {
        Self::start_with_env(body, &[]).await
    }

    pub async fn start_with_env(body: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_in(tempfile::tempdir().expect("tempdir"), "[\"127.0.0.1:{PORT}\"]", body, env).await
    }

    /// Starts the gateway in `dir` with `listen` as the value of `listen:` (`{PORT}` is the
    /// plain listener the harness waits for, `{DIR}` the directory).
    pub async fn start_in(dir: tempfile::TempDir, listen: &str, body: &str, env: &[(&str, &str)]) -> Gateway {
        let port = free_port();
        let admin_port = free_port();
        // `{DIR}` in the body stands for the gateway's own temporary directory.
        let body = body.replace("{DIR}", &dir.path().display().to_string());
        let listen = listen.replace("{PORT}", &port.to_string()).replace("{DIR}", &dir.path().display().to_string());
        let admin_token = env.iter().find(|(k, _)| *k == ADMIN_TOKEN_ENV).map(|(_, v)| v.to_string());
        let token = if admin_token.is_some() { format!(", token: {{env: {ADMIN_TOKEN_ENV}}}") } else { String::new() };
        let config = format!("listen: {listen}\nadmin: {{listen: \"127.0.0.1:{admin_port}\"{token}}}\nthreads: 2\nshutdown: {{drainTimeout: 5s}}\n{body}");
        let config_path = dir.path().join("switchyard.yaml");
        std::fs::write(&config_path, &config).expect("write config");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let mut cmd = Command::new(BIN);
        cmd.arg("-c")
            .arg(&config_path)
            .arg("--upgrade-sock")
            .arg(dir.path().join("upgrade.sock"))
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn switchyard");
        let gw = Gateway { child, port, admin_port, dir, config_path, admin_token };
        gw.wait_ready().await;
        gw
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = client();
        loop {
            let admin = client.get(format!("http://127.0.0.1:{}/healthz", self.admin_port)).send().await;
            // The proxy listener is tried only once the admin one answers: fewer probe
            // connections for tests that count connections.
            if admin.is_ok_and(|r| r.status() == 200)
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "gateway did not start; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// A request to the admin listener, with the admin token when one is configured.
    pub fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = client().request(method, self.admin_url(path));
        match &self.admin_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        self.admin_request(reqwest::Method::GET, "/status").send().await.unwrap().json().await.unwrap()
    }

    /// One provider's entry in `/status`.
    pub async fn provider_status(&self, name: &str) -> serde_json::Value {
        let status = self.status().await;
        for b in status["backends"].as_array().unwrap() {
            for g in b["groups"].as_array().unwrap() {
                for p in g["providers"].as_array().unwrap() {
                    if p["name"] == name {
                        return p.clone();
                    }
                }
            }
        }
        panic!("no provider {name} in {status}");
    }

    pub async fn metrics(&self) -> String {
        self.admin_request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap()
    }

    /// Waits up to `timeout` for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, `"USR2"`) to the gateway process.
    pub fn signal(&self, sig: &str) {
        signal_pid(self.child.id(), sig);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// After a binary upgrade: waits until a process other than `old_pid` answers the
    /// admin `/healthz`, and returns its pid.
    pub async fn wait_new_pid(&self, old_pid: u32, timeout: Duration) -> u32 {
        let health = self.admin_url("/healthz");
        let deadline = Instant::now() + timeout;
        loop {
            let pid = match client().get(&health).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| v["pid"].as_u64()).unwrap_or(0) as u32,
                Err(_) => 0,
            };
            if pid != 0 && pid != old_pid {
                return pid;
            }
            assert!(Instant::now() < deadline, "no new process answered; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client")
}

/// A minimal chat request body.
pub fn chat(model: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"messages": [{"role": "user", "content": "What is 2+2?"}]});
    if let Some(m) = model {
        v["model"] = m.into();
    }
    v
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn provider(&self) -> &str {
        self.header("x-switchyard-provider").unwrap_or("")
    }
}

pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> Reply {
    post_with(client().post(url).header("content-type", "application/json").body(body)).await
}

pub async fn post_json(url: &str, v: &serde_json::Value) -> Reply {
    post(url, v.to_string()).await
}

pub async fn post_with(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Reply { status, headers, body }
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Writes `yaml` to a temporary file and validates it (no environment): (exit code, output).
pub fn validate_yaml(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).expect("write config");
    validate(&path, &[])
}

/// The config body (routes and one backend `chat` on `/v1`, firstByte 5s) for provider
/// groups in priority order, with the backend's `health` and `retry` maps.
pub fn backend(groups: &[&[String]], health: &str, retry: &str) -> String {
    let mut s = String::from("routes:\n  - {name: r, match: {pathPrefix: /v1}, timeouts: {firstByte: 5s}, backend: chat}\nbackends:\n  chat:\n    groups:\n");
    for g in groups {
        s.push_str(&format!("      - providers: [{}]\n", g.join(", ")));
    }
    s.push_str(&format!("    health: {health}\n    retry: {retry}\n"));
    s
}

/// A primary behaving as told in the first group, a healthy fallback in the second.
pub async fn primary_and_fallback(primary: Behavior, health: &str, retry: &str) -> (MockLlm, MockLlm, Gateway) {
    let p = MockLlm::start("primary", primary).await.unwrap();
    let f = MockLlm::start("fallback", Behavior::default()).await.unwrap();
    let gw =
        Gateway::start(&backend(&[&[provider("primary", &p, "")], &[provider("fallback", &f, "")]], health, retry))
            .await;
    (p, f, gw)
}

/// A streamed chat request body.
pub fn stream_body() -> String {
    serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// Runs `switchyard --validate -c path` and returns (exit code, stdout+stderr).
pub fn validate(path: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--validate").arg("-c").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf()
}

/// The value of the sample `name{labels}` in Prometheus text (labels in any order), 0 if absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        let all = labels.iter().all(|(k, v)| label_part.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all {
            return value.trim().parse().unwrap_or(0.0);
        }
    }
    0.0
}

pub fn signal_pid(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "kill -{sig} {pid} failed");
}

/// Kills a process this test did not spawn directly (an upgraded gateway) when dropped.
pub struct PidGuard(pub u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-KILL").arg(self.0.to_string()).status();
    }
}

pub fn pid_alive(pid: u32) -> bool {
    Command::new("kill").arg("-0").arg(pid.to_string()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}
