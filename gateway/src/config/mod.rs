//! Configuration: YAML -> raw serde structs ([`raw`]) -> the validated, typed model here.
//!
//! Loading never stops at the first problem: every route, backend, group and provider is
//! deserialized on its own and then checked, and all errors come back together, each
//! prefixed with the YAML path it belongs to
//! (`backends.chat.groups[1].providers[0].openai: unknown field "modle"`).

pub mod raw;

use crate::clients::{ClientConfig, ClientLimits};
use crate::health::condition::Condition;
use http::{HeaderName, HeaderValue};
use raw::*;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Default cap on a request body; larger bodies are answered 413.
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;

/// A proxy listener: an address, plain (HTTP/1.1 and h2c) or TLS (ALPN h2 and http/1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
}

/// The certificate chain and key of a TLS listener, checked readable and matching at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: String,
    pub key_file: String,
}

/// What one client connection and request may cost (`limits:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_request_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long a request head may take once its first byte came.
    pub header_timeout: Duration,
    /// How long a whole request body may take.
    pub body_timeout: Duration,
    /// Request bodies held in memory across all requests at once.
    pub max_buffered_body_bytes: u64,
    /// Larger request bodies are never hedged (`retry.hedge`).
    pub max_hedge_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body_bytes: DEFAULT_MAX_BODY,
            max_header_bytes: 64 * 1024,
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(75),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(120),
            max_buffered_body_bytes: 1 << 30,
            max_hedge_body_bytes: 1 << 20,
        }
    }
}

/// Every problem found in a configuration file, each naming its YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Listener>,
    pub threads: usize,
    pub work_stealing: bool,
    pub admin_listen: Option<SocketAddr>,
    /// `admin.token`: every admin endpoint but `/healthz` and `/readyz` needs it.
    pub admin_token: Option<Secret>,
    pub limits: Limits,
    pub drain_timeout: Duration,
    pub access_log: crate::telemetry::access_log::Destination,
    pub routes: Vec<Route>,
    pub backends: Vec<Arc<Backend>>,
    /// `clients`: `None` means no client authentication.
    pub clients: Option<Vec<ClientConfig>>,
    /// `fleet`: `None` means this instance keeps its state to itself.
    pub fleet: Option<FleetConfig>,
}

/// `fleet`: where instances of the same name share ejections and client limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    pub name: String,
    /// `redis://` or `rediss://` URL, as written (without the password given apart).
    pub url: String,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    pub rewrite: Option<Rewrite>,
    pub request_headers: HeaderModifier,
    pub response_headers: HeaderModifier,
    pub timeouts: Timeouts,
    /// Index into [`Config::backends`].
    pub backend: usize,
}

/// Gateway API path rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// `ReplaceFullPath`: every request goes to this path.
    FullPath(String),
    /// `ReplacePrefixMatch`: the matched `pathPrefix` is replaced by this prefix.
    Prefix(String),
}

/// Gateway API header modifier.
#[derive(Debug, Clone, Default)]
pub struct HeaderModifier {
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Total budget for one client request, all attempts included.
    pub request: Duration,
    /// Per attempt: longest wait for the response head, and for any gap between body chunks.
    pub first_byte: Duration,
    /// Per attempt: TCP (and TLS) connection establishment.
    pub connect: Duration,
}

#[derive(Debug)]
pub struct Backend {
    pub name: String,
    /// First group = highest priority.
    pub groups: Vec<Vec<ProviderConfig>>,
    pub health: HealthPolicy,
    pub retry: RetryPolicy,
    pub translation: TranslationPolicy,
}

/// What happens to request fields a provider of another API cannot express.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TranslationPolicy {
    /// Skip that provider (and refuse the request when no provider can take it).
    #[default]
    Refuse,
    /// Send the request without them (cache hints, thinking, betas), and say so.
    Drop,
}

impl Backend {
    pub fn providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.groups.iter().flatten()
    }
}

/// The API a provider speaks, with what that API needs beyond host and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI Chat Completions, and any OpenAI-compatible server.
    OpenAi,
    /// Anthropic Messages; `version` goes in `anthropic-version`.
    Anthropic { version: String },
    /// AWS Bedrock, SigV4-signed: Converse / ConverseStream, or, for Anthropic Messages
    /// clients and an Anthropic model id (`anthropic` set), InvokeModel /
    /// InvokeModelWithResponseStream with the Anthropic body as is.
    Bedrock { region: String, anthropic: bool },
    /// Google Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
    /// Azure OpenAI: deployment in the path, `api-version` in the query, `api-key` header.
    Azure { deployment: String, api_version: String },
    /// Google Vertex AI: Claude (`anthropic`, rawPredict / streamRawPredict) or Gemini
    /// (generateContent / streamGenerateContent).
    Vertex { project: String, region: String, anthropic: bool },
}

impl ProviderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic { .. } => "anthropic",
            ProviderKind::Bedrock { .. } => "bedrock",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Azure { .. } => "azure",
            ProviderKind::Vertex { .. } => "vertex",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Replaces the request's `model`; `None` passes the client's through.
    pub model: Option<String>,
    pub host: String,
    pub port: u16,
    /// Upstream path; `None` keeps the (rewritten) client path.
    pub path: Option<String>,
    pub tls: bool,
    pub auth: Auth,
}

impl ProviderConfig {
    /// The identity health state is kept under across reloads.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Send no credentials; the client's `Authorization` is dropped.
    None,
    /// Forward the client's `Authorization` header.
    Passthrough,
    /// The provider's own key, in the provider's auth header.
    ApiKey(Secret),
    /// AWS credentials for SigV4 (Bedrock without `auth`), from the environment or the
    /// shared credentials file.
    Aws(crate::providers::AwsCredentials),
    /// A Google service account (Vertex without `auth`): access tokens from its key file.
    Google(Arc<crate::providers::google_auth::ServiceAccount>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Passthrough => f.write_str("Passthrough"),
            Auth::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Auth::Aws(_) => f.write_str("Aws(<redacted>)"),
            Auth::Google(sa) => write!(f, "Google({})", sa.client_email()),
        }
    }
}

/// A credential. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// `None`: the default judgement (5xx and 429 are failures).
    pub condition: Option<Condition>,
    pub eviction: Eviction,
    pub recovery: Recovery,
    pub active: Option<ActiveProbe>,
    pub when_all_ejected: WhenAllEjected,
    /// Quota headroom: below this share (0..1) of its rate-limit budget left, a provider's
    /// weight drops. `None`: off (rate-limit headers are not read).
    pub headroom: Option<f64>,
}

/// Active health probes (off unless configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProbe {
    pub interval: Duration,
    pub timeout: Duration,
    pub method: http::Method,
    pub path: String,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eviction {
    pub duration: Duration,
    pub consecutive_failures: u32,
    pub growth: f64,
    pub max_duration: Duration,
    pub max_ejection_percent: u32,
    /// Ejection for an answer that says the account is out of credit or over a hard quota.
    pub quota_duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub trial_requests: u32,
    pub ramp_up: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllEjected {
    TryEarliest,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub on_status: Vec<u16>,
    pub on_transport: BTreeSet<TransportKind>,
    pub backoff: Backoff,
    /// Hedging a slow first byte; `None`: off.
    pub hedge: Option<Hedge>,
}

/// `retry.hedge`: after `after` without a first byte, the request also goes to the next
/// provider, up to `max_extra` more at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hedge {
    pub after: Duration,
    pub max_extra: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: bool,
}

/// Kinds of transport failure, as named in `retry.onTransport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransportKind {
    Connect,
    Reset,
    Dns,
    Tls,
    Timeout,
}

impl TransportKind {
    pub const ALL: [TransportKind; 5] =
        [TransportKind::Connect, TransportKind::Reset, TransportKind::Dns, TransportKind::Tls, TransportKind::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Connect => "connect",
            TransportKind::Reset => "reset",
            TransportKind::Dns => "dns",
            TransportKind::Tls => "tls",
            TransportKind::Timeout => "timeout",
        }
    }
}

/// Reads and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { errors: vec![format!("{}: cannot read: {e}", path.display())] })?;
    load_str(&text)
}

/// Parses and validates a configuration document.
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    let doc: Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError { errors: vec![format!("YAML syntax: {}", tidy(&e.to_string()))] })?;
    let mut cx = Errors::default();
    let config = build(doc, &mut cx);
    match config {
        Some(c) if cx.0.is_empty() => Ok(c),
        _ => Err(ConfigError { errors: cx.0 }),
    }
}

#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, path: &str, msg: impl fmt::Display) {
        if path.is_empty() {
            self.0.push(msg.to_string());
        } else {
            self.0.push(format!("{path}: {msg}"));
        }
    }

    /// Deserializes one YAML node, recording a path-qualified error on failure.
    fn de<T: DeserializeOwned>(&mut self, value: Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut inner = e.path().to_string();
                let msg = tidy(&e.inner().to_string());
                // For an unknown field, name the map that holds it, not the field itself.
                if let Some(field) = msg.strip_prefix("unknown field \"").and_then(|r| r.split('"').next()) {
                    if let Some(parent) = inner.strip_suffix(field).and_then(|p| p.strip_suffix('.')) {
                        inner = parent.to_string();
                    } else if inner == field {
                        inner = ".".to_string();
                    }
                }
                let full = match (path.is_empty(), inner.as_str()) {
                    (_, ".") => path.to_string(),
                    (true, _) => inner,
                    (false, i) if i.starts_with('[') => format!("{path}{i}"),
                    (false, i) => format!("{path}.{i}"),
                };
                self.push(&full, msg);
                None
            }
        }
    }

    fn duration(&mut self, value: Option<&str>, default: Duration, path: &str) -> Duration {
        match value {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.push(path, e);
                    default
                }
            },
        }
    }
}

/// Parses `10s`, `120s`, `0ms`, `5m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use a number with a unit, e.g. 10s"))
}

/// serde messages quote names with backticks; operators read double quotes more easily.
fn tidy(msg: &str) -> String {
    msg.replace('`', "\"")
}

fn build(doc: Value, cx: &mut Errors) -> Option<Config> {
    let raw: RawConfig = cx.de(doc, "")?;

    let mut listen = Vec::new();
    if raw.listen.is_empty() {
        cx.push("listen", "at least one address is required");
    }
    for (i, value) in raw.listen.into_iter().enumerate() {
        if let Some(l) = build_listener(value, &format!("listen[{i}]"), cx) {
            listen.push(l);
        }
    }
    let admin_token = raw.admin.as_ref().and_then(|a| a.token.as_ref()).and_then(|t| match read_secret(t) {
        Ok(s) => Some(s),
        Err(e) => {
            cx.push("admin.token", e);
            None
        }
    });
    let admin_listen = raw.admin.and_then(|a| match a.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.push("admin.listen", format!("invalid address {:?}; expected IP:PORT", a.listen));
            None
        }
    });
    let threads = match raw.threads {
        Some(0) => {
            cx.push("threads", "must be at least 1");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let limits = build_limits(&raw.limits, cx);
    use crate::telemetry::access_log::Destination;
    let access_log = match (raw.access_log.enabled, raw.access_log.path.as_deref()) {
        (Some(false), _) => Destination::Off,
        (_, None | Some("stdout")) => Destination::Stdout,
        (_, Some("stderr")) => Destination::Stderr,
        (_, Some("")) => {
            cx.push("accessLog.path", "must not be empty");
            Destination::Stdout
        }
        (_, Some(p)) => Destination::File(p.to_string()),
    };
    let drain_timeout =
        cx.duration(raw.shutdown.drain_timeout.as_deref(), Duration::from_secs(30), "shutdown.drainTimeout");

    // Backends first, so routes can be checked against their names.
    let mut backends = Vec::new();
    let mut backend_index = HashMap::new();
    let mut provider_names: HashMap<String, String> = HashMap::new();
    for (key, value) in raw.backends {
        let Some(name) = key.as_str().map(str::to_string) else {
            cx.push("backends", format!("backend names must be strings, got {key:?}"));
            continue;
        };
        let path = format!("backends.{name}");
        if let Some(b) = build_backend(&name, value, &path, &mut provider_names, cx) {
            backend_index.insert(name, backends.len());
            backends.push(Arc::new(b));
        }
    }

    let mut routes = Vec::new();
    let mut route_names = BTreeSet::new();
    if raw.routes.is_empty() {
        cx.push("routes", "at least one route is required");
    }
    for (i, value) in raw.routes.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(r) = cx.de::<RawRoute>(value, &path) else {
            continue;
        };
        if !route_names.insert(r.name.clone()) {
            cx.push(&format!("{path}.name"), format!("duplicate route name {:?}", r.name));
        }
        if !r.matcher.path_prefix.starts_with('/') {
            cx.push(&format!("{path}.match.pathPrefix"), "must start with \"/\"");
        }
        let rewrite = match r.rewrite {
            None => None,
            Some(RawRewrite { full_path: Some(p), prefix: None }) => {
                if !p.starts_with('/') {
                    cx.push(&format!("{path}.rewrite.fullPath"), "must start with \"/\"");
                }
                Some(Rewrite::FullPath(p))
            }
            Some(RawRewrite { full_path: None, prefix: Some(p) }) => {
                if !p.starts_with('/') {
                    cx.push(&format!("{path}.rewrite.prefix"), "must start with \"/\"");
                }
                Some(Rewrite::Prefix(p))
            }
            Some(_) => {
                cx.push(&format!("{path}.rewrite"), "give exactly one of fullPath, prefix");
                None
            }
        };
        let request_headers = header_modifier(&r.request_headers, &format!("{path}.requestHeaders"), cx);
        let response_headers = header_modifier(&r.response_headers, &format!("{path}.responseHeaders"), cx);
        let t = &r.timeouts;
        let timeouts = Timeouts {
            request: cx.duration(t.request.as_deref(), Duration::from_secs(300), &format!("{path}.timeouts.request")),
            first_byte: cx.duration(
                t.first_byte.as_deref(),
                Duration::from_secs(60),
                &format!("{path}.timeouts.firstByte"),
            ),
            connect: cx.duration(t.connect.as_deref(), Duration::from_secs(5), &format!("{path}.timeouts.connect")),
        };
        for (field, d) in
            [("request", timeouts.request), ("firstByte", timeouts.first_byte), ("connect", timeouts.connect)]
        {
            if d.is_zero() {
                cx.push(&format!("{path}.timeouts.{field}"), "must be greater than 0");
            }
        }
        let Some(&backend) = backend_index.get(&r.backend) else {
            cx.push(
                &format!("{path}.backend"),
                format!(
                    "unknown backend {:?}; defined: {:?}",
                    r.backend,
                    backend_index.keys().collect::<BTreeSet<_>>()
                ),
            );
            continue;
        };
        if let Some(hedge) = backends[backend].retry.hedge {
            if hedge.after >= timeouts.first_byte {
                cx.push(
                    &format!("backends.{}.retry.hedge.after", r.backend),
                    format!(
                        "must be shorter than timeouts.firstByte ({:?}) of route {:?} that uses this backend",
                        timeouts.first_byte, r.name
                    ),
                );
            }
        }
        routes.push(Route {
            name: r.name,
            path_prefix: r.matcher.path_prefix,
            rewrite,
            request_headers,
            response_headers,
            timeouts,
            backend,
        });
    }

    let clients = raw.clients.map(|list| build_clients(list, &route_names, cx));
    if clients.is_some() {
        refuse_passthrough(&backends, cx);
    }
    let fleet = raw.fleet.and_then(|f| build_fleet(f, cx));

    Some(Config {
        listen,
        threads,
        work_stealing: raw.work_stealing.unwrap_or(true),
        admin_listen,
        admin_token,
        limits,
        drain_timeout,
        access_log,
        routes,
        backends,
        clients,
        fleet,
    })
}

fn build_fleet(raw: raw::RawFleet, cx: &mut Errors) -> Option<FleetConfig> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !name_ok {
        cx.push(
            "fleet.name",
            format!("invalid fleet name {:?}; use 1 to 64 letters, digits, '.', '_' or '-'", raw.name),
        );
    }
    let url = raw.redis.url.trim().to_string();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        cx.push("fleet.redis.url", format!("invalid URL {url:?}; expected redis://HOST:PORT[/DB] or rediss://"));
    } else if let Err(e) = redis::Client::open(url.as_str()) {
        cx.push("fleet.redis.url", format!("invalid URL {url:?}: {e}"));
    }
    let password = match raw.redis.password.as_ref().map(read_secret) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            cx.push("fleet.redis.password", e);
            None
        }
        None => None,
    };
    name_ok.then_some(FleetConfig { name: raw.name, url, password })
}

fn build_clients(list: Vec<Value>, route_names: &BTreeSet<String>, cx: &mut Errors) -> Vec<ClientConfig> {
    let mut clients = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut keys: HashMap<crate::clients::Digest32, String> = HashMap::new();
    for (i, value) in list.into_iter().enumerate() {
        let path = format!("clients[{i}]");
        let Some(c) = cx.de::<RawClient>(value, &path) else {
            continue;
        };
        if c.name.is_empty() {
            cx.push(&format!("{path}.name"), "must not be empty");
        } else if let Some(first) = names.insert(c.name.clone(), path.clone()) {
            cx.push(&format!("{path}.name"), format!("duplicate client name {:?} (first used at {first})", c.name));
        }
        let key = client_key(&c.key, &format!("{path}.key"), cx);
        if let Some(routes) = &c.routes {
            for (ri, r) in routes.iter().enumerate() {
                if !route_names.contains(r) {
                    cx.push(&format!("{path}.routes[{ri}]"), format!("unknown route {r:?}; defined: {route_names:?}"));
                }
            }
        }
        let lpath = format!("{path}.limits");
        let mut limit = |value: Option<u64>, field: &str| match value {
            Some(0) => {
                cx.push(&format!("{lpath}.{field}"), "must be at least 1 (leave it out for no limit)");
                None
            }
            v => v.and_then(std::num::NonZeroU64::new),
        };
        let limits = ClientLimits {
            requests_per_minute: limit(c.limits.requests_per_minute, "requestsPerMinute"),
            tokens_per_minute: limit(c.limits.tokens_per_minute, "tokensPerMinute"),
        };
        let Some(key) = key else {
            continue;
        };
        if let Some(first) = keys.insert(key, path.clone()) {
            cx.push(&format!("{path}.key"), format!("the same key as {first}; each client needs its own key"));
        }
        clients.push(ClientConfig { name: c.name, key_sha256: key, routes: c.routes, limits });
    }
    clients
}

/// The SHA-256 of a client key: hashed from the environment or a private file, or given.
fn client_key(raw: &RawClientKey, path: &str, cx: &mut Errors) -> Option<crate::clients::Digest32> {
    let result = match (&raw.env, &raw.file, &raw.sha256) {
        (Some(_), None, None) | (None, Some(_), None) => {
            read_secret(&RawSecret { env: raw.env.clone(), file: raw.file.clone() })
                .map(|s| crate::clients::digest(s.expose().as_bytes()))
        }
        (None, None, Some(hex)) => parse_sha256(hex),
        _ => Err("give exactly one of env, file, sha256".to_string()),
    };
    result.map_err(|e| cx.push(path, e)).ok()
}

/// 64 lower-case hex digits.
fn parse_sha256(text: &str) -> Result<crate::clients::Digest32, String> {
    let wrong =
        || format!("sha256 must be 64 lower-case hex digits (the SHA-256 of the key), got {} characters", text.len());
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(wrong());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| wrong())?;
    Ok(out)
}

/// With clients, a provider that forwards the client's credentials would forward
/// Switchyard client keys: refused, naming each such provider.
fn refuse_passthrough(backends: &[Arc<Backend>], cx: &mut Errors) {
    for b in backends {
        for (gi, group) in b.groups.iter().enumerate() {
            for (pi, p) in group.iter().enumerate() {
                if p.auth == Auth::Passthrough {
                    cx.push(
                        &format!("backends.{}.groups[{gi}].providers[{pi}].auth", b.name),
                        "passthrough cannot be used with clients: it would forward Switchyard client keys to the provider; use apiKey or none",
                    );
                }
            }
        }
    }
}

fn build_listener(value: Value, path: &str, cx: &mut Errors) -> Option<Listener> {
    let (address, tls) = match value {
        Value::String(s) => (s, None),
        v @ Value::Mapping(_) => {
            let l: RawListener = cx.de(v, path)?;
            (l.address, l.tls)
        }
        other => {
            cx.push(path, format!("expected \"IP:PORT\" or {{address, tls}}, got {other:?}"));
            return None;
        }
    };
    let addr_path = if tls.is_some() { format!("{path}.address") } else { path.to_string() };
    let Ok(addr) = address.parse::<SocketAddr>() else {
        cx.push(&addr_path, format!("invalid address {address:?}; expected IP:PORT"));
        return None;
    };
    let tls = match tls {
        None => None,
        Some(t) => {
            let files = TlsFiles { cert_file: t.cert_file, key_file: t.key_file };
            if let Err(e) = crate::edge::tls::load(&files) {
                cx.push(&format!("{path}.tls"), e);
                return None;
            }
            Some(files)
        }
    };
    Some(Listener { addr, tls })
}

fn build_limits(raw: &RawLimits, cx: &mut Errors) -> Limits {
    let d = Limits::default();
    let mut positive = |value: Option<usize>, default: usize, field: &str| match value {
        Some(0) => {
            cx.push(&format!("limits.{field}"), "must be greater than 0");
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_request_body_bytes = positive(raw.max_request_body_bytes, d.max_request_body_bytes, "maxRequestBodyBytes");
    let max_header_bytes = positive(raw.max_header_bytes, d.max_header_bytes, "maxHeaderBytes");
    let max_connections = positive(raw.max_connections, d.max_connections, "maxConnections");
    let max_hedge_body_bytes = positive(raw.max_hedge_body_bytes, d.max_hedge_body_bytes, "maxHedgeBodyBytes");
    let buffered = raw.max_buffered_body_bytes.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let max_buffered_body_bytes = positive(buffered, d.max_buffered_body_bytes as usize, "maxBufferedBodyBytes") as u64;
    if max_header_bytes > crate::edge::MAX_HEADER_BYTES {
        let max = crate::edge::MAX_HEADER_BYTES;
        cx.push("limits.maxHeaderBytes", format!("at most {max} (the HTTP/1 parser's own limit)"));
    }
    let mut limits = Limits {
        max_request_body_bytes,
        max_header_bytes,
        max_connections,
        idle_timeout: cx.duration(raw.idle_timeout.as_deref(), d.idle_timeout, "limits.idleTimeout"),
        header_timeout: cx.duration(raw.header_timeout.as_deref(), d.header_timeout, "limits.headerTimeout"),
        body_timeout: cx.duration(raw.body_timeout.as_deref(), d.body_timeout, "limits.bodyTimeout"),
        max_buffered_body_bytes,
        max_hedge_body_bytes,
    };
    for (field, value) in [
        ("idleTimeout", &mut limits.idle_timeout),
        ("headerTimeout", &mut limits.header_timeout),
        ("bodyTimeout", &mut limits.body_timeout),
    ] {
        if value.as_millis() < 1 {
            cx.push(&format!("limits.{field}"), "must be at least 1ms");
            *value = Duration::from_millis(1);
        }
    }
    limits
}

/// Headers that frame or route the message itself: route header modifiers may not touch them.
const FRAMING_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "upgrade"];

fn header_modifier(raw: &RawHeaderModifier, path: &str, cx: &mut Errors) -> HeaderModifier {
    let names = raw.add.keys().map(|k| ("add", k)).chain(raw.set.keys().map(|k| ("set", k)));
    for (field, name) in names.chain(raw.remove.iter().map(|k| ("remove", k))) {
        if FRAMING_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            cx.push(&format!("{path}.{field}"), format!("{name:?} frames the message and cannot be modified"));
        }
    }
    let mut pairs = |map: &std::collections::BTreeMap<String, String>, field: &str| {
        let mut out = Vec::new();
        for (k, v) in map {
            let name = HeaderName::from_bytes(k.as_bytes());
            let value = HeaderValue::from_str(v);
            match (name, value) {
                (Ok(n), Ok(v)) => out.push((n, v)),
                (Err(_), _) => cx.push(&format!("{path}.{field}"), format!("invalid header name {k:?}")),
                (_, Err(_)) => cx.push(&format!("{path}.{field}.{k}"), format!("invalid header value {v:?}")),
            }
        }
        out
    };
    let add = pairs(&raw.add, "add");
    let set = pairs(&raw.set, "set");
    let mut remove = Vec::new();
    for (i, k) in raw.remove.iter().enumerate() {
        match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => remove.push(n),
            Err(_) => cx.push(&format!("{path}.remove[{i}]"), format!("invalid header name {k:?}")),
        }
    }
    HeaderModifier { add, set, remove }
}

fn build_backend(
    name: &str,
    value: Value,
    path: &str,
    provider_names: &mut HashMap<String, String>,
    cx: &mut Errors,
) -> Option<Backend> {
    let raw: RawBackend = cx.de(value, path)?;
    let mut groups = Vec::new();
    if raw.groups.is_empty() {
        cx.push(&format!("{path}.groups"), "at least one group is required");
    }
    for (gi, group) in raw.groups.into_iter().enumerate() {
        let gpath = format!("{path}.groups[{gi}]");
        if group.providers.is_empty() {
            cx.push(&format!("{gpath}.providers"), "at least one provider is required");
        }
        let mut providers = Vec::new();
        for (pi, value) in group.providers.into_iter().enumerate() {
            if providers.len() + groups.iter().map(Vec::len).sum::<usize>() >= crate::balancer::MAX_PROVIDERS {
                cx.push(&gpath, format!("a backend may have at most {} providers", crate::balancer::MAX_PROVIDERS));
                break;
            }
            let ppath = format!("{gpath}.providers[{pi}]");
            let Some(p) = build_provider(value, &ppath, cx) else {
                continue;
            };
            if let Some(first) = provider_names.insert(p.name.clone(), ppath.clone()) {
                cx.push(
                    &format!("{ppath}.name"),
                    format!("duplicate provider name {:?} (first used at {first})", p.name),
                );
            }
            providers.push(p);
        }
        groups.push(providers);
    }
    let health = build_health(&raw.health, &format!("{path}.health"), cx);
    let retry = build_retry(&raw.retry, &format!("{path}.retry"), cx);
    let translation = match raw.translation.unsupported.as_deref() {
        None | Some("refuse") => TranslationPolicy::Refuse,
        Some("drop") => TranslationPolicy::Drop,
        Some(other) => {
            cx.push(&format!("{path}.translation.unsupported"), format!("unknown value {other:?}; use refuse or drop"));
            TranslationPolicy::Refuse
        }
    };
    Some(Backend { name: name.to_string(), groups, health, retry, translation })
}

fn build_provider(value: Value, path: &str, cx: &mut Errors) -> Option<ProviderConfig> {
    let raw: RawProvider = cx.de(value, path)?;
    if raw.name.is_empty() {
        cx.push(&format!("{path}.name"), "must not be empty");
    }
    let mut kinds = Vec::new();
    if let Some(o) = raw.openai {
        kinds.push((ProviderKind::OpenAi, o.model, "api.openai.com".to_string()));
    }
    if let Some(a) = raw.anthropic {
        let version = a.version.unwrap_or_else(|| "2023-06-01".to_string());
        kinds.push((ProviderKind::Anthropic { version }, a.model, "api.anthropic.com".to_string()));
    }
    if let Some(b) = raw.bedrock {
        let host = format!("bedrock-runtime.{}.amazonaws.com", b.region);
        let anthropic = crate::providers::claude::is_bedrock_anthropic(&b.model);
        kinds.push((ProviderKind::Bedrock { region: b.region, anthropic }, Some(b.model), host));
    }
    if let Some(g) = raw.gemini {
        kinds.push((ProviderKind::Gemini, g.model, "generativelanguage.googleapis.com".to_string()));
    }
    if let Some(az) = raw.azure {
        let host = match (&az.resource, &raw.host) {
            (Some(r), _) => format!("{r}.openai.azure.com"),
            (None, Some(_)) => String::new(),
            (None, None) => {
                cx.push(&format!("{path}.azure.resource"), "required unless host is given");
                String::new()
            }
        };
        let kind = ProviderKind::Azure { deployment: az.deployment.clone(), api_version: az.api_version };
        kinds.push((kind, Some(az.deployment), host));
    }
    if let Some(v) = raw.vertex {
        let host = crate::providers::vertex::host(&v.region);
        let anthropic = crate::providers::vertex::is_claude(&v.model);
        kinds.push((ProviderKind::Vertex { project: v.project, region: v.region, anthropic }, Some(v.model), host));
    }
    if kinds.len() != 1 {
        cx.push(path, "give exactly one provider kind: openai, anthropic, bedrock, gemini, azure or vertex");
        return None;
    }
    let (kind, model, default_host) = kinds.pop()?;
    // The public API speaks TLS on 443; an overridden host defaults to TLS only on 443.
    let tls = raw.tls.unwrap_or(raw.host.is_none() || raw.port == Some(443));
    let host = raw.host.unwrap_or(default_host);
    let port = raw.port.unwrap_or(if tls { 443 } else { 80 });
    if raw.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
        cx.push(&format!("{path}.path"), "must start with \"/\"");
    }
    let path_ = raw.path;
    if host.is_empty() {
        cx.push(&format!("{path}.host"), "must not be empty");
    }
    if port == 0 {
        cx.push(&format!("{path}.port"), "must be between 1 and 65535");
    }
    let auth = match raw.auth {
        None if matches!(kind, ProviderKind::Bedrock { .. }) => match crate::providers::AwsCredentials::load() {
            Ok(c) => Auth::Aws(c),
            Err(e) => {
                cx.push(&format!("{path}.auth"), format!("bedrock needs AWS credentials: {e}"));
                Auth::None
            }
        },
        None if matches!(kind, ProviderKind::Vertex { .. }) => {
            match crate::providers::google_auth::ServiceAccount::from_environment() {
                Ok(sa) => Auth::Google(Arc::new(sa)),
                Err(e) => {
                    cx.push(&format!("{path}.auth"), format!("vertex needs Google credentials: {e}"));
                    Auth::None
                }
            }
        }
        None => Auth::None,
        Some(a) => match (a.passthrough, a.api_key, a.none) {
            (Some(_), None, None) => Auth::Passthrough,
            (None, None, Some(_)) => Auth::None,
            (None, Some(secret), None) => match read_secret(&secret) {
                Ok(s) => Auth::ApiKey(s),
                Err(e) => {
                    cx.push(&format!("{path}.auth.apiKey"), e);
                    Auth::None
                }
            },
            _ => {
                cx.push(&format!("{path}.auth"), "give exactly one of passthrough, apiKey, none");
                Auth::None
            }
        },
    };
    Some(ProviderConfig {
        name: raw.name,
        kind,
        model: model.filter(|m| !m.is_empty()),
        host,
        port,
        path: path_,
        tls,
        auth,
    })
}

/// Reads an API key from the environment or a file. Key files must not be readable by
/// group or others.
fn read_secret(secret: &RawSecret) -> Result<Secret, String> {
    let key = match (&secret.env, &secret.file) {
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
            Ok(_) => return Err(format!("environment variable {var} is empty")),
            Err(_) => return Err(format!("environment variable {var} is not set")),
        },
        (None, Some(file)) => {
            check_private_file(file)?;
            let text = std::fs::read_to_string(file).map_err(|e| format!("key file {file}: {e}"))?;
            let key = text.trim();
            if key.is_empty() {
                return Err(format!("key file {file} is empty"));
            }
            key.to_string()
        }
        _ => return Err("give exactly one of env, file".to_string()),
    };
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the key contains characters that cannot go in an HTTP header".to_string());
    }
    Ok(Secret(key))
}

/// A file holding a secret must not be readable, writable or runnable by group or others.
pub fn check_private_file(file: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).map_err(|e| format!("key file {file}: {e}"))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!("key file {file} is readable by group or others (mode {:o}); chmod 600 it", mode & 0o777));
    }
    Ok(())
}

fn build_health(raw: &RawHealth, path: &str, cx: &mut Errors) -> HealthPolicy {
    let condition = raw.unhealthy_condition.as_deref().and_then(|src| match Condition::compile(src) {
        Ok(c) => Some(c),
        Err(e) => {
            cx.push(&format!("{path}.unhealthyCondition"), e);
            None
        }
    });
    let e = &raw.eviction;
    let epath = format!("{path}.eviction");
    let eviction = Eviction {
        duration: cx.duration(e.duration.as_deref(), Duration::from_secs(5), &format!("{epath}.duration")),
        consecutive_failures: e.consecutive_failures.unwrap_or(1),
        growth: e.growth.unwrap_or(2.0),
        max_duration: cx.duration(e.max_duration.as_deref(), Duration::from_secs(300), &format!("{epath}.maxDuration")),
        max_ejection_percent: e.max_ejection_percent.unwrap_or(100),
        quota_duration: cx.duration(
            e.quota_duration.as_deref(),
            Duration::from_secs(3600),
            &format!("{epath}.quotaDuration"),
        ),
    };
    if eviction.quota_duration.is_zero() {
        cx.push(&format!("{epath}.quotaDuration"), "must be greater than 0");
    }
    if eviction.consecutive_failures == 0 {
        cx.push(&format!("{epath}.consecutiveFailures"), "must be at least 1");
    }
    if !(eviction.growth >= 1.0 && eviction.growth <= 100.0) {
        cx.push(&format!("{epath}.growth"), "must be between 1.0 and 100.0");
    }
    if eviction.max_ejection_percent > 100 {
        cx.push(&format!("{epath}.maxEjectionPercent"), "must be between 0 and 100");
    }
    if eviction.max_duration < eviction.duration {
        cx.push(&format!("{epath}.maxDuration"), "must not be shorter than duration");
    }
    let r = &raw.recovery;
    let recovery = Recovery {
        trial_requests: r.trial_requests.unwrap_or(1),
        ramp_up: cx.duration(r.ramp_up.as_deref(), Duration::ZERO, &format!("{path}.recovery.rampUp")),
    };
    if recovery.trial_requests == 0 {
        cx.push(&format!("{path}.recovery.trialRequests"), "must be at least 1");
    }
    let active = raw.active.as_ref().map(|a| {
        let apath = format!("{path}.active");
        let probe = ActiveProbe {
            interval: cx.duration(a.interval.as_deref(), Duration::from_secs(10), &format!("{apath}.interval")),
            timeout: cx.duration(a.timeout.as_deref(), Duration::from_secs(2), &format!("{apath}.timeout")),
            method: match a.request.method.as_deref().unwrap_or("GET").parse::<http::Method>() {
                Ok(m) => m,
                Err(_) => {
                    cx.push(&format!("{apath}.request.method"), "invalid HTTP method");
                    http::Method::GET
                }
            },
            path: a.request.path.clone().unwrap_or_else(|| "/v1/models".to_string()),
            healthy_threshold: a.healthy_threshold.unwrap_or(2),
            unhealthy_threshold: a.unhealthy_threshold.unwrap_or(2),
        };
        if !probe.path.starts_with('/') {
            cx.push(&format!("{apath}.request.path"), "must start with \"/\"");
        }
        if probe.interval.is_zero() || probe.timeout.is_zero() {
            cx.push(&apath, "interval and timeout must be greater than 0");
        }
        if probe.healthy_threshold == 0 || probe.unhealthy_threshold == 0 {
            cx.push(&apath, "healthyThreshold and unhealthyThreshold must be at least 1");
        }
        probe
    });
    let when_all_ejected = match raw.when_all_ejected.as_deref() {
        None | Some("tryEarliest") => WhenAllEjected::TryEarliest,
        Some("reject") => WhenAllEjected::Reject,
        Some(other) => {
            cx.push(
                &format!("{path}.whenAllEjected"),
                format!("unknown value {other:?}; expected tryEarliest or reject"),
            );
            WhenAllEjected::TryEarliest
        }
    };
    let headroom = raw.headroom.as_ref().map(|h| {
        let pct = h.min_remaining_percent.unwrap_or(5.0);
        if !(pct > 0.0 && pct <= 100.0) {
            cx.push(&format!("{path}.headroom.minRemainingPercent"), "must be greater than 0 and at most 100");
        }
        pct.clamp(0.001, 100.0) / 100.0
    });
    HealthPolicy { condition, eviction, recovery, active, when_all_ejected, headroom }
}

fn build_retry(raw: &RawRetry, path: &str, cx: &mut Errors) -> RetryPolicy {
    let attempts = raw.attempts.unwrap_or(3);
    if attempts == 0 {
        cx.push(&format!("{path}.attempts"), "must be at least 1");
    }
    let on_status = raw.on_status.clone().unwrap_or_else(|| vec![429, 500, 502, 503, 504]);
    for (i, s) in on_status.iter().enumerate() {
        if !(100..=599).contains(s) {
            cx.push(&format!("{path}.onStatus[{i}]"), format!("{s} is not an HTTP status"));
        }
    }
    let on_transport = match &raw.on_transport {
        None => TransportKind::ALL.into_iter().collect(),
        Some(list) => {
            let mut set = BTreeSet::new();
            for (i, name) in list.iter().enumerate() {
                match TransportKind::ALL.into_iter().find(|k| k.as_str() == name) {
                    Some(k) => {
                        set.insert(k);
                    }
                    None => cx.push(
                        &format!("{path}.onTransport[{i}]"),
                        format!("unknown kind {name:?}; expected one of connect, reset, dns, tls, timeout"),
                    ),
                }
            }
            set
        }
    };
    let b = &raw.backoff;
    let backoff = Backoff {
        base: cx.duration(b.base.as_deref(), Duration::ZERO, &format!("{path}.backoff.base")),
        max: cx.duration(b.max.as_deref(), Duration::from_secs(2), &format!("{path}.backoff.max")),
        jitter: b.jitter.unwrap_or(true),
    };
    let hedge = raw.hedge.as_ref().map(|h| {
        let hedge = Hedge {
            after: cx.duration(h.after.as_deref(), Duration::from_secs(2), &format!("{path}.hedge.after")),
            max_extra: h.max_extra.unwrap_or(1),
        };
        if hedge.after.is_zero() {
            cx.push(&format!("{path}.hedge.after"), "must be greater than 0");
        }
        if hedge.max_extra == 0 {
            cx.push(&format!("{path}.hedge.maxExtra"), "must be at least 1");
        }
        hedge
    });
    RetryPolicy { attempts: attempts.max(1), on_status, on_transport, backoff, hedge }
}
