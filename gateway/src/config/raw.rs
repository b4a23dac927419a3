//! The YAML shape of the configuration, exactly as an operator writes it.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently ignored key.
//! Collections whose items are validated one by one (routes, backends, groups, providers)
//! are kept as raw YAML values here: `super::load` deserializes each item on its own so that
//! one bad item does not hide the errors of the others.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    /// Each item is `"IP:PORT"` or `{address, tls}` ([`RawListener`]), read one by one.
    pub listen: Vec<Value>,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub work_stealing: Option<bool>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub access_log: RawAccessLog,
    #[serde(default)]
    pub routes: Vec<Value>,
    #[serde(default)]
    pub backends: Mapping,
    /// Each item is a [`RawClient`], read one by one. Absent: no client authentication.
    #[serde(default)]
    pub clients: Option<Vec<Value>>,
    /// Instances sharing ejections and client limits through Redis.
    #[serde(default)]
    pub fleet: Option<RawFleet>,
}

/// `fleet`: instances with the same name share state in one Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawFleet {
    pub name: String,
    pub redis: RawRedis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRedis {
    /// `redis://host:port/db` or `rediss://` for TLS.
    pub url: String,
    #[serde(default)]
    pub password: Option<RawSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAdmin {
    pub listen: String,
    /// Bearer token every admin endpoint but `/healthz` and `/readyz` then requires.
    #[serde(default)]
    pub token: Option<RawSecret>,
}

/// `clients[]`: a client of the gateway, known by its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClient {
    pub name: String,
    pub key: RawClientKey,
    /// Route names the client may use; default every route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    #[serde(default)]
    pub limits: RawClientLimits,
}

/// Exactly one of the fields must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClientKey {
    pub env: Option<String>,
    pub file: Option<String>,
    /// Lower-case hex SHA-256 of the key's UTF-8 bytes.
    pub sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawClientLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// A listener written as a map: `{address: "0.0.0.0:8443", tls: {certFile, keyFile}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawListener {
    pub address: String,
    #[serde(default)]
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLimits {
    pub max_request_body_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub idle_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_buffered_body_bytes: Option<u64>,
    pub max_hedge_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
    /// `stdout` (default), `stderr`, or a file path.
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawShutdown {
    /// How long a stopping or upgrading process lets in-flight requests finish.
    pub drain_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub rewrite: Option<RawRewrite>,
    #[serde(default)]
    pub request_headers: RawHeaderModifier,
    #[serde(default)]
    pub response_headers: RawHeaderModifier,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub backend: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMatch {
    pub path_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRewrite {
    /// Gateway API `ReplaceFullPath`.
    pub full_path: Option<String>,
    /// Gateway API `ReplacePrefixMatch`: replaces the matched `pathPrefix`.
    pub prefix: Option<String>,
}

/// Gateway API header modifier: `add` appends, `set` replaces, `remove` deletes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHeaderModifier {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTimeouts {
    pub request: Option<String>,
    pub first_byte: Option<String>,
    pub connect: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBackend {
    pub groups: Vec<RawGroup>,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub translation: RawTranslation,
}

/// What to do with request fields a provider of another API cannot express.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTranslation {
    /// `refuse` (default: skip that provider) or `drop` (send without those fields).
    pub unsupported: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGroup {
    pub providers: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProvider {
    pub name: String,
    #[serde(default)]
    pub openai: Option<RawOpenAi>,
    #[serde(default)]
    pub anthropic: Option<RawAnthropic>,
    #[serde(default)]
    pub bedrock: Option<RawBedrock>,
    #[serde(default)]
    pub gemini: Option<RawGemini>,
    #[serde(default)]
    pub azure: Option<RawAzure>,
    #[serde(default)]
    pub vertex: Option<RawVertex>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub tls: Option<bool>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOpenAi {
    pub model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAnthropic {
    pub model: Option<String>,
    /// `anthropic-version` header; default 2023-06-01.
    pub version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBedrock {
    pub model: String,
    pub region: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawGemini {
    pub model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAzure {
    pub deployment: String,
    pub api_version: String,
    /// `{resource}.openai.azure.com`; required unless `host` is given.
    pub resource: Option<String>,
}

/// Google Vertex AI: Claude (`claude-*` models, rawPredict) or Gemini (generateContent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawVertex {
    pub project: String,
    /// e.g. `us-east5`, or `global`.
    pub region: String,
    pub model: String,
}

/// Exactly one of the fields must be given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAuth {
    /// Forward the client's `Authorization` header unchanged.
    pub passthrough: Option<EmptyMap>,
    /// Use this key in the provider's auth header; the client's is dropped.
    pub api_key: Option<RawSecret>,
    /// Send no credentials at all.
    pub none: Option<EmptyMap>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyMap {}

/// Exactly one of the fields must be given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHealth {
    pub unhealthy_condition: Option<String>,
    #[serde(default)]
    pub eviction: RawEviction,
    #[serde(default)]
    pub recovery: RawRecovery,
    #[serde(default)]
    pub active: Option<RawActive>,
    pub when_all_ejected: Option<String>,
    #[serde(default)]
    pub headroom: Option<RawHeadroom>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHeadroom {
    pub min_remaining_percent: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawActive {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub request: RawProbeRequest,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProbeRequest {
    pub method: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEviction {
    pub duration: Option<String>,
    pub consecutive_failures: Option<u32>,
    pub growth: Option<f64>,
    pub max_duration: Option<String>,
    pub max_ejection_percent: Option<u32>,
    pub quota_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRecovery {
    pub trial_requests: Option<u32>,
    pub ramp_up: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub on_status: Option<Vec<u16>>,
    pub on_transport: Option<Vec<String>>,
    #[serde(default)]
    pub backoff: RawBackoff,
    #[serde(default)]
    pub hedge: Option<RawHedge>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHedge {
    pub after: Option<String>,
    pub max_extra: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBackoff {
    pub base: Option<String>,
    pub max: Option<String>,
    pub jitter: Option<bool>,
}
