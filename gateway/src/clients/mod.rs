//! Clients: who sends a request (its key), whether it may use the route, and whether it is
//! over its limits. Decided right after the route is matched, before the body is read.
//!
//! Keys are never kept: only their SHA-256. A presented key is hashed once, looked up in a
//! map keyed by that hash, and the stored hash is compared with it in constant time.
//! Limit windows live in a [`ClientRegistry`] keyed by client name, outside the per-config
//! [`ClientTable`], so a reload keeps the counts of clients whose name did not change.

pub mod window;

use crate::config::Route;
use crate::health::Millis;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
pub use window::{Counter, LimitKind, LocalCounter, Usage, Verdict};

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

/// The SHA-256 of `key`'s bytes.
pub fn digest(key: &[u8]) -> Digest32 {
    Sha256::digest(key).into()
}

/// Whether `presented` is the secret whose SHA-256 is `expected`, in constant time.
pub fn key_matches(presented: &[u8], expected: &Digest32) -> bool {
    bool::from(digest(presented).ct_eq(expected))
}

/// Per-client limits (`limits:`); `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientLimits {
    pub requests_per_minute: Option<NonZeroU64>,
    pub tokens_per_minute: Option<NonZeroU64>,
}

impl ClientLimits {
    pub fn any(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// One configured client (`clients[]`). Its `Debug` does not show the key's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub name: String,
    /// SHA-256 of the key's UTF-8 bytes.
    pub key_sha256: Digest32,
    /// Route names it may use; `None`: every route.
    pub routes: Option<Vec<String>>,
    pub limits: ClientLimits,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Limit windows by client name, kept across reloads.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    map: Mutex<HashMap<String, Arc<dyn Counter>>>,
}

impl ClientRegistry {
    fn counter(&self, name: &str) -> Arc<dyn Counter> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string()).or_insert_with(|| Arc::new(LocalCounter::default())).clone()
    }

    /// Drops the windows of clients no longer configured.
    fn retain(&self, clients: &[ClientConfig]) {
        let keep: std::collections::HashSet<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|name, _| keep.contains(name.as_str()));
    }
}

/// A client as the request path sees it.
#[derive(Debug)]
pub struct Client {
    pub name: String,
    key_sha256: Digest32,
    /// Indexes of the routes it may use; `None`: every route.
    routes: Option<Vec<usize>>,
    pub allowed_routes: Option<Vec<String>>,
    pub limits: ClientLimits,
    pub counter: Arc<dyn Counter>,
}

impl Client {
    pub fn may_use(&self, route: usize) -> bool {
        self.routes.as_ref().is_none_or(|r| r.contains(&route))
    }
}

/// The clients of one configuration, found by the hash of their key.
#[derive(Debug, Default)]
pub struct ClientTable {
    by_key: HashMap<Digest32, usize>,
    clients: Vec<Arc<Client>>,
}

impl ClientTable {
    /// `routes` are the configuration's routes (allow-lists name them; validation checked
    /// the names). Windows come from `registry`, which forgets clients not in `clients`.
    pub fn build(clients: &[ClientConfig], routes: &[Route], registry: &ClientRegistry) -> ClientTable {
        registry.retain(clients);
        let mut table = ClientTable::default();
        for c in clients {
            let indexes = c.routes.as_ref().map(|names| {
                routes.iter().enumerate().filter(|(_, r)| names.contains(&r.name)).map(|(i, _)| i).collect()
            });
            table.by_key.insert(c.key_sha256, table.clients.len());
            table.clients.push(Arc::new(Client {
                name: c.name.clone(),
                key_sha256: c.key_sha256,
                routes: indexes,
                allowed_routes: c.routes.clone(),
                limits: c.limits,
                counter: registry.counter(&c.name),
            }));
        }
        table
    }

    pub fn clients(&self) -> &[Arc<Client>] {
        &self.clients
    }

    fn find(&self, key: &[u8]) -> Option<&Arc<Client>> {
        let d = digest(key);
        let client = self.clients.get(*self.by_key.get(&d)?)?;
        bool::from(d.ct_eq(&client.key_sha256)).then_some(client)
    }

    /// Who sends a request with these headers: the key of `Authorization: Bearer KEY` or of
    /// `x-api-key: KEY`, whichever names a client (both are tried when both are given).
    pub fn identify(&self, headers: &HeaderMap) -> Result<&Arc<Client>, Refusal> {
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| bearer_token(v.as_bytes()));
        let api_key = headers.get(&X_API_KEY).map(|v| v.as_bytes()).filter(|k| !k.is_empty());
        let mut presented = false;
        for key in [bearer, api_key].into_iter().flatten() {
            presented = true;
            if let Some(c) = self.find(key) {
                return Ok(c);
            }
        }
        Err(if presented { Refusal::UnknownKey } else { Refusal::MissingKey })
    }

    /// The whole decision for a request on route `route` at `now`: who it is, whether it
    /// may use the route, whether it is over a limit (a request admitted is counted).
    pub fn admit(&self, headers: &HeaderMap, route: &Route, route_index: usize, now: Millis) -> Admission {
        match self.check(headers, route, route_index) {
            // Counted for every client (`/status` shows the window); limited only with limits.
            Ok(client) => ClientTable::decide(client, &client.counter.admit(now, &client.limits)),
            Err(refused) => refused,
        }
    }

    /// The first half of [`ClientTable::admit`]: who it is and whether it may use the route.
    /// `Err` is the admission that refuses the request.
    pub fn check(&self, headers: &HeaderMap, route: &Route, route_index: usize) -> Result<&Arc<Client>, Admission> {
        let client = match self.identify(headers) {
            Ok(c) => c,
            Err(r) => return Err(Admission { client: None, refusal: Some(r), rate: None }),
        };
        if !client.may_use(route_index) {
            let refusal = Refusal::RouteNotAllowed { client: client.name.clone(), route: route.name.clone() };
            return Err(Admission { client: Some(client.clone()), refusal: Some(refusal), rate: None });
        }
        Ok(client)
    }

    /// The second half: the admission of `client` on a limit verdict (counted wherever the
    /// verdict came from: this process or the fleet).
    pub fn decide(client: &Arc<Client>, verdict: &Verdict) -> Admission {
        let refusal = verdict.limited.map(|limit| Refusal::Limited {
            client: client.name.clone(),
            limit,
            retry_after_secs: verdict.retry_after_ms().div_ceil(1000).max(1),
        });
        let rate = client.limits.any().then(|| rate_headers(&client.limits, verdict));
        Admission { client: Some(client.clone()), refusal, rate }
    }
}

/// The outcome of [`ClientTable::admit`].
#[derive(Debug)]
pub struct Admission {
    /// The client, when its key is known.
    pub client: Option<Arc<Client>>,
    /// Why the request is refused; `None`: it may go.
    pub refusal: Option<Refusal>,
    /// `x-ratelimit-*` headers for every answer to this request (clients with limits).
    pub rate: Option<Vec<(HeaderName, HeaderValue)>>,
}

/// Whether `headers` carry `Authorization: Bearer SECRET`, compared in constant time.
pub fn bearer_matches(headers: &HeaderMap, secret: &str) -> bool {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| bearer_token(v.as_bytes()));
    token.is_some_and(|t| key_matches(t, &digest(secret.as_bytes())))
}

/// The token of `Bearer TOKEN` (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Why a client's request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    MissingKey,
    UnknownKey,
    RouteNotAllowed { client: String, route: String },
    Limited { client: String, limit: LimitKind, retry_after_secs: u64 },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MissingKey | Refusal::UnknownKey => 401,
            Refusal::RouteNotAllowed { .. } => 403,
            Refusal::Limited { .. } => 429,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::MissingKey => {
                "missing API key: send a Switchyard client key as \"Authorization: Bearer KEY\" or \"x-api-key: KEY\""
                    .to_string()
            }
            Refusal::UnknownKey => "invalid API key: the key given is not a Switchyard client key".to_string(),
            Refusal::RouteNotAllowed { client, route } => format!("client {client} may not use route {route}"),
            Refusal::Limited { client, limit, retry_after_secs } => {
                format!("client {client} reached its {} per minute limit; retry in {retry_after_secs}s", limit.as_str())
            }
        }
    }

    /// The JSON body in the client API's error shape: Anthropic's when `anthropic` (an
    /// Anthropic path), else OpenAI's.
    pub fn body(&self, anthropic: bool) -> Vec<u8> {
        let message = self.message();
        let value = if anthropic {
            let kind = match self {
                Refusal::MissingKey | Refusal::UnknownKey => "authentication_error",
                Refusal::RouteNotAllowed { .. } => "permission_error",
                Refusal::Limited { .. } => "rate_limit_error",
            };
            crate::providers::anthropic::error_envelope(kind, &message)
        } else {
            let (kind, code) = match self {
                Refusal::MissingKey | Refusal::UnknownKey => ("invalid_request_error", "invalid_api_key"),
                Refusal::RouteNotAllowed { .. } => ("permission_error", "route_not_allowed"),
                Refusal::Limited { limit, .. } => (limit.as_str(), "rate_limit_exceeded"),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        };
        value.to_string().into_bytes()
    }

    /// Headers of the refusal itself (`Retry-After` on a 429).
    pub fn headers(&self) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Refusal::Limited { retry_after_secs, .. } => {
                Some((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)))
            }
            Refusal::MissingKey | Refusal::UnknownKey => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Refusal::RouteNotAllowed { .. } => None,
        }
    }
}

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// OpenAI-style rate-limit headers: for each configured limit its value, what is left
/// (the current request counted as used) and when the count next goes down.
pub fn rate_headers(limits: &ClientLimits, v: &Verdict) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    let mut trio = |names: [&HeaderName; 3], limit: NonZeroU64, used: u64, reset: Millis| {
        out.push((names[0].clone(), HeaderValue::from(limit.get())));
        out.push((names[1].clone(), HeaderValue::from(limit.get().saturating_sub(used))));
        let reset = HeaderValue::from_str(&go_duration(reset)).unwrap_or(HeaderValue::from_static("0s"));
        out.push((names[2].clone(), reset));
    };
    if let Some(l) = limits.requests_per_minute {
        // A refused request counts as used too: nothing remains.
        let used = if v.limited == Some(LimitKind::Requests) { l.get() } else { v.usage.requests };
        trio([&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS], l, used, v.requests_reset_ms);
    }
    if let Some(l) = limits.tokens_per_minute {
        trio([&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS], l, v.usage.tokens, v.tokens_reset_ms);
    }
    out
}

/// Milliseconds as OpenAI writes its resets: `250ms`, `1.5s`, `1m0.25s`.
pub fn go_duration(ms: Millis) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, rest) = (ms / 60_000, ms % 60_000);
    let secs = if rest % 1000 == 0 {
        format!("{}s", rest / 1000)
    } else {
        let frac = format!("{:03}", rest % 1000);
        format!("{}.{}s", rest / 1000, frac.trim_end_matches('0'))
    };
    if minutes > 0 {
        format!("{minutes}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::hints;
    use std::time::Duration;

    fn route(name: &str) -> Route {
        crate::config::load_str(&format!(
            "listen: [\"127.0.0.1:1\"]\nroutes: [{{name: {name}, match: {{pathPrefix: /}}, backend: b}}]\n\
             backends: {{b: {{groups: [{{providers: [{{name: p, openai: {{}}, host: h, tls: false}}]}}]}}}}\n"
        ))
        .map(|c| c.routes[0].clone())
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn config(name: &str, key: &str, routes: Option<&[&str]>, rpm: u64, tpm: u64) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            key_sha256: digest(key.as_bytes()),
            routes: routes.map(|r| r.iter().map(|s| s.to_string()).collect()),
            limits: ClientLimits { requests_per_minute: NonZeroU64::new(rpm), tokens_per_minute: NonZeroU64::new(tpm) },
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn digest_is_the_sha256_of_the_bytes() {
        assert_eq!(hex::encode(digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(key_matches(b"abc", &digest(b"abc")));
        assert!(!key_matches(b"abd", &digest(b"abc")));
    }

    #[test]
    fn identifies_by_either_header_and_refuses_missing_or_unknown_keys() {
        let routes = [route("chat")];
        let reg = ClientRegistry::default();
        let t =
            ClientTable::build(&[config("a", "key-a", None, 0, 0), config("b", "key-b", None, 0, 0)], &routes, &reg);
        assert_eq!(t.identify(&headers(&[("authorization", "Bearer key-a")])).unwrap().name, "a");
        assert_eq!(t.identify(&headers(&[("authorization", "bearer   key-b ")])).unwrap().name, "b");
        assert_eq!(t.identify(&headers(&[("x-api-key", "key-b")])).unwrap().name, "b");
        // An SDK sending a stale bearer and a good x-api-key is still known.
        assert_eq!(t.identify(&headers(&[("authorization", "Bearer old"), ("x-api-key", "key-a")])).unwrap().name, "a");
        assert_eq!(t.identify(&headers(&[])).unwrap_err(), Refusal::MissingKey);
        assert_eq!(t.identify(&headers(&[("authorization", "Basic a2V5LWE=")])).unwrap_err(), Refusal::MissingKey);
        assert_eq!(t.identify(&headers(&[("authorization", "Bearerkey-a")])).unwrap_err(), Refusal::MissingKey);
        assert_eq!(t.identify(&headers(&[("authorization", "Bearer key-c")])).unwrap_err(), Refusal::UnknownKey);
        assert_eq!(t.identify(&headers(&[("x-api-key", "key-a ")])).unwrap_err(), Refusal::UnknownKey);
    }

    #[test]
    fn admin_bearer_token() {
        assert!(bearer_matches(&headers(&[("authorization", "Bearer s3cret")]), "s3cret"));
        assert!(!bearer_matches(&headers(&[("authorization", "Bearer s3cre")]), "s3cret"));
        assert!(!bearer_matches(&headers(&[("x-api-key", "s3cret")]), "s3cret"));
        assert!(!bearer_matches(&headers(&[]), "s3cret"));
    }

    #[test]
    fn route_allow_list_and_limits_decide_with_headers() {
        let routes = [route("chat"), route("embed")];
        let reg = ClientRegistry::default();
        let t = ClientTable::build(&[config("a", "k", Some(&["chat"]), 2, 0)], &routes, &reg);
        let h = headers(&[("x-api-key", "k")]);
        let a = t.admit(&h, &routes[1], 1, 1_000);
        assert_eq!(a.refusal, Some(Refusal::RouteNotAllowed { client: "a".into(), route: "embed".into() }));
        assert_eq!(a.refusal.as_ref().unwrap().status(), 403);
        let a = t.admit(&h, &routes[0], 0, 1_000);
        assert_eq!(a.refusal, None);
        let rate = a.rate.unwrap();
        let get = |rate: &[(HeaderName, HeaderValue)], n: &str| {
            rate.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(get(&rate, "x-ratelimit-limit-requests").as_deref(), Some("2"));
        assert_eq!(get(&rate, "x-ratelimit-remaining-requests").as_deref(), Some("1"), "this request is used");
        assert_eq!(get(&rate, "x-ratelimit-reset-requests").as_deref(), Some("1m1s"));
        assert_eq!(get(&rate, "x-ratelimit-limit-tokens"), None, "no token limit configured");
        t.admit(&h, &routes[0], 0, 1_500);
        let a = t.admit(&h, &routes[0], 0, 2_300);
        let r = a.refusal.unwrap();
        assert_eq!(r, Refusal::Limited { client: "a".into(), limit: LimitKind::Requests, retry_after_secs: 60 });
        assert_eq!(r.headers(), Some((header::RETRY_AFTER, HeaderValue::from(60u64))), "59.7 s rounded up");
        assert_eq!(get(&a.rate.unwrap(), "x-ratelimit-remaining-requests").as_deref(), Some("0"));
    }

    #[test]
    fn windows_carry_over_a_rebuild_for_the_same_name_only() {
        let routes = [route("chat")];
        let reg = ClientRegistry::default();
        let t = ClientTable::build(&[config("a", "k1", None, 1, 0)], &routes, &reg);
        assert_eq!(t.admit(&headers(&[("x-api-key", "k1")]), &routes[0], 0, 0).refusal, None);
        // Same name, new key: the window stays. A removed name loses it.
        let t = ClientTable::build(&[config("a", "k2", None, 1, 0)], &routes, &reg);
        assert!(matches!(
            t.admit(&headers(&[("x-api-key", "k2")]), &routes[0], 0, 10).refusal,
            Some(Refusal::Limited { .. })
        ));
        assert_eq!(t.identify(&headers(&[("x-api-key", "k1")])).unwrap_err(), Refusal::UnknownKey);
        ClientTable::build(&[], &routes, &reg);
        let t = ClientTable::build(&[config("a", "k2", None, 1, 0)], &routes, &reg);
        assert_eq!(t.admit(&headers(&[("x-api-key", "k2")]), &routes[0], 0, 20).refusal, None);
    }

    #[test]
    fn refusal_bodies_follow_the_client_api() {
        let body = |r: &Refusal, anthropic| serde_json::from_slice::<serde_json::Value>(&r.body(anthropic)).unwrap();
        let v = body(&Refusal::UnknownKey, false);
        assert_eq!(
            (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
            (Some("invalid_request_error"), Some("invalid_api_key"))
        );
        let v = body(&Refusal::MissingKey, true);
        assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("authentication_error")));
        let forbidden = Refusal::RouteNotAllowed { client: "a".into(), route: "r".into() };
        assert_eq!(body(&forbidden, false)["error"]["type"], "permission_error");
        assert_eq!(body(&forbidden, true)["error"]["type"], "permission_error");
        let limited = Refusal::Limited { client: "a".into(), limit: LimitKind::Tokens, retry_after_secs: 3 };
        assert_eq!(limited.status(), 429);
        assert_eq!(body(&limited, true)["error"]["type"], "rate_limit_error");
        assert_eq!(body(&limited, false)["error"]["code"], "rate_limit_exceeded");
    }

    const BASE: &str = "listen: [\"127.0.0.1:1\"]\nroutes: [{name: chat, match: {pathPrefix: /}, backend: b}]\n";

    fn load(backend_auth: &str, clients: &str) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            "{BASE}backends: {{b: {{groups: [{{providers: [{{name: p, openai: {{}}, host: h, tls: false{backend_auth}}}]}}]}}}}\n{clients}"
        );
        crate::config::load_str(&text).map_err(|e| e.errors)
    }

    #[test]
    fn config_reads_keys_routes_and_limits_and_names_every_mistake() {
        let hash = hex::encode(digest(b"team-key"));
        let c = load("", &format!("clients:\n  - {{name: team, key: {{sha256: {hash}}}, routes: [chat], limits: {{requestsPerMinute: 5, tokensPerMinute: 100}}}}\n")).unwrap();
        let clients = c.clients.unwrap();
        assert_eq!(clients[0].key_sha256, digest(b"team-key"));
        assert_eq!(clients[0].routes.as_deref(), Some(&["chat".to_string()][..]));
        assert_eq!(clients[0].limits.requests_per_minute, NonZeroU64::new(5));
        assert!(load("", "").unwrap().clients.is_none(), "absent: no authentication");
        assert!(!format!("{clients:?}").contains(&hash[..16]), "Debug hides the hash");

        let errors = load(
            ", auth: {passthrough: {}}",
            &format!(
                "clients:\n  - {{name: a, key: {{sha256: {}}}, routes: [nope], limits: {{requestsPerMinute: 0}}}}\n  \
                 - {{name: a, key: {{sha256: {hash}}}}}\n  - {{name: b, key: {{sha256: {hash}}}}}\n  \
                 - {{name: c, key: {{env: SWITCHYARD_TEST_UNSET_KEY}}}}\n  - {{name: d, key: {{}}}}\n  - {{name: e, keys: 1}}\n",
                hash.to_uppercase()
            ),
        )
        .unwrap_err();
        let expect = [
            "backends.b.groups[0].providers[0].auth: passthrough cannot be used with clients",
            "clients[0].key: sha256 must be 64 lower-case hex digits",
            "clients[0].routes[0]: unknown route \"nope\"",
            "clients[0].limits.requestsPerMinute: must be at least 1",
            "clients[1].name: duplicate client name \"a\"",
            "clients[2].key: the same key as clients[1]",
            "clients[3].key: environment variable SWITCHYARD_TEST_UNSET_KEY is not set",
            "clients[4].key: give exactly one of env, file, sha256",
            "clients[5]: unknown field \"keys\"",
        ];
        for e in expect {
            assert!(errors.iter().any(|got| got.starts_with(e)), "missing {e:?} in {errors:#?}");
        }
    }

    #[test]
    fn resets_are_go_durations_the_hint_parser_reads() {
        for (ms, text) in
            [(0, "0ms"), (250, "250ms"), (1_000, "1s"), (1_500, "1.5s"), (60_000, "1m0s"), (61_250, "1m1.25s")]
        {
            assert_eq!(go_duration(ms), text);
            assert_eq!(hints::go_duration(text), Some(Duration::from_millis(ms)), "{text}");
        }
    }
}
