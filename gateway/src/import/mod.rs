//! `switchyard import`: Kubernetes manifests of agentgateway, kgateway and Envoy AI Gateway
//! into one Switchyard configuration.
//!
//! The manifests are read into objects ([`documents`]); each source gateway's kinds are
//! mapped by their own module ([`gateway_api`], [`agentgateway`], [`kgateway`], [`envoy`])
//! into a [`Plan`], the Switchyard config in typed form; [`output`] writes it as commented
//! YAML and checks it with the same loader as `switchyard --validate`. Whatever cannot be
//! mapped becomes a [`Diagnostic`] naming file, object and field.

mod agentgateway;
mod common;
pub mod diagnostics;
mod documents;
mod envoy;
mod gateway_api;
mod kgateway;
mod output;

pub use diagnostics::{Diagnostic, Origin};
use documents::{Index, ObjKey, Object};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Exit status when the input cannot be read or is not YAML (sysexits `EX_USAGE`).
pub const EXIT_UNREADABLE: u8 = 64;
/// Exit status when no route (or no backend) could be mapped (sysexits `EX_DATAERR`).
pub const EXIT_NOTHING_MAPPED: u8 = 65;

/// Listener used when no `Gateway` object gives one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A successful import: the config text, what was not mapped, and the environment
/// variables the config reads its secrets from.
#[derive(Debug)]
pub struct Imported {
    pub yaml: String,
    pub diagnostics: Vec<Diagnostic>,
    /// Variable name and what it stands for.
    pub env: BTreeMap<String, String>,
}

/// A failed import: the exit status to use and everything found on the way.
#[derive(Debug)]
pub struct ImportFailure {
    pub code: u8,
    pub message: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads the manifest files and imports them.
pub fn import_files(paths: &[PathBuf]) -> Result<Imported, ImportFailure> {
    let mut sources = Vec::new();
    for path in paths {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(e) => {
                return Err(ImportFailure {
                    code: EXIT_UNREADABLE,
                    message: format!("{}: cannot read: {e}", path.display()),
                    diagnostics: Vec::new(),
                })
            }
        }
    }
    import_sources(&sources)
}

/// Imports manifests given as `(file name, text)`.
pub fn import_sources(sources: &[(String, String)]) -> Result<Imported, ImportFailure> {
    let mut diags = Vec::new();
    let objects = match documents::parse(sources, &mut diags) {
        Ok(o) => o,
        Err(d) => {
            return Err(ImportFailure { code: EXIT_UNREADABLE, message: d.to_string(), diagnostics: diags });
        }
    };
    let index = Index::new(objects, &mut diags);
    let mut cx = Ctx { index: &index, diags, plan: Plan::default(), built: HashMap::new() };

    for obj in index.all() {
        if let Some(why) = skipped_kind(&obj.key) {
            cx.warn(obj, "", why);
        }
    }
    gateway_api::listeners(&mut cx);
    gateway_api::routes(&mut cx);
    envoy::routes(&mut cx);
    agentgateway::policies(&mut cx);
    kgateway::policies(&mut cx);
    envoy::policies(&mut cx);
    cx.report_unreferenced();

    let Ctx { mut diags, mut plan, .. } = cx;
    if plan.routes.is_empty() || plan.backends.is_empty() {
        return Err(ImportFailure {
            code: EXIT_NOTHING_MAPPED,
            message: "no route could be mapped to a backend; nothing to write".to_string(),
            diagnostics: diags,
        });
    }
    if plan.listen.is_empty() {
        diags.push(Diagnostic {
            file: "(all inputs)".to_string(),
            object: "Gateway".to_string(),
            field: String::new(),
            message: format!("no Gateway listener among the inputs; listening on {DEFAULT_LISTEN}"),
        });
        plan.listen.push((DEFAULT_LISTEN.to_string(), None));
    }
    let yaml = output::write(&plan, sources);
    if let Err(errors) = output::validate(&yaml) {
        return Err(ImportFailure {
            code: EXIT_NOTHING_MAPPED,
            message: format!("the imported configuration does not load:\n  {}", errors.join("\n  ")),
            diagnostics: diags,
        });
    }
    Ok(Imported { yaml, diagnostics: diags, env: plan.env })
}

/// Why an object of this kind is skipped, or `None` for the kinds the importer maps.
fn skipped_kind(key: &ObjKey) -> Option<String> {
    const MAPPED: &[(&str, &str)] = &[
        (agentgateway::GROUP, "AgentgatewayBackend"),
        (agentgateway::GROUP, "AgentgatewayPolicy"),
        (gateway_api::GROUP, "Gateway"),
        (gateway_api::GROUP, "HTTPRoute"),
        (kgateway::GROUP, "Backend"),
        (kgateway::GROUP, "TrafficPolicy"),
        (envoy::AI_GROUP, "AIGatewayRoute"),
        (envoy::AI_GROUP, "AIServiceBackend"),
        (envoy::AI_GROUP, "BackendSecurityPolicy"),
        (envoy::EG_GROUP, "Backend"),
        (envoy::EG_GROUP, "BackendTrafficPolicy"),
    ];
    if MAPPED.iter().any(|(g, k)| key.group == *g && key.kind == *k) {
        return None;
    }
    Some(match (key.group.as_str(), key.kind.as_str()) {
        ("", "Secret") => {
            "skipped: secrets are never copied; a secretRef naming it becomes an environment variable".to_string()
        }
        _ => format!(
            "skipped: kind {} ({}) is not imported",
            key.kind,
            if key.group.is_empty() { "core" } else { key.group.as_str() }
        ),
    })
}

/// The Switchyard configuration being built, in typed form.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Address and the Gateway it came from.
    pub listen: Vec<(String, Option<Origin>)>,
    pub routes: Vec<RouteOut>,
    pub backends: Vec<BackendOut>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Headers {
    pub add: Vec<(String, String)>,
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RouteOut {
    pub name: String,
    pub origin: Origin,
    pub path_prefix: String,
    pub rewrite: Option<String>,
    pub request_headers: Headers,
    pub response_headers: Headers,
    pub timeout_request: Option<String>,
    pub timeout_first_byte: Option<String>,
    /// Index into `Plan::backends`.
    pub backend: usize,
    /// Comment lines written above the route.
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct HealthOut {
    pub unhealthy_condition: Option<String>,
    pub duration: Option<String>,
    pub consecutive_failures: Option<u64>,
    pub max_ejection_percent: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RetryOut {
    pub attempts: Option<u64>,
    pub on_status: Option<Vec<u64>>,
    pub on_transport: Option<Vec<&'static str>>,
    pub backoff_base: Option<String>,
    pub backoff_max: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct BackendOut {
    pub name: String,
    pub origin: Origin,
    pub groups: Vec<Vec<ProviderOut>>,
    pub health: HealthOut,
    pub health_from: Option<Origin>,
    pub retry: RetryOut,
    pub retry_from: Option<Origin>,
    /// An agentgateway AI backend: it sends each provider its own API path.
    pub provider_paths: bool,
    pub notes: Vec<String>,
}

impl BackendOut {
    /// A backend with no policies yet.
    pub fn new(name: String, origin: Origin, groups: Vec<Vec<ProviderOut>>) -> BackendOut {
        BackendOut {
            name,
            origin,
            groups,
            health: HealthOut::default(),
            health_from: None,
            retry: RetryOut::default(),
            retry_from: None,
            provider_paths: false,
            notes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    OpenAi { model: Option<String> },
    Anthropic { model: Option<String>, version: Option<String> },
    Gemini { model: Option<String> },
    Bedrock { model: String, region: String },
    Azure { resource: Option<String>, deployment: String, api_version: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The provider kind's default (none; AWS credentials for Bedrock).
    Default,
    Env(String),
    Passthrough,
}

#[derive(Debug, Clone)]
pub(crate) struct ProviderOut {
    pub name: String,
    pub kind: Kind,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<bool>,
    pub path: Option<String>,
    pub auth: Auth,
}

/// Mapping state shared by the per-gateway modules.
pub(crate) struct Ctx<'a> {
    pub index: &'a Index,
    pub diags: Vec<Diagnostic>,
    pub plan: Plan,
    /// Source backend object -> its backend in the plan (`None`: could not be mapped).
    pub built: HashMap<ObjKey, Option<usize>>,
}

impl Ctx<'_> {
    pub fn warn(&mut self, obj: &Object, field: &str, message: impl Into<String>) {
        self.diags.push(obj.origin().diagnostic(field, message));
    }

    /// Reports a required field that is missing or has the wrong type.
    pub fn missing(&mut self, obj: &Object, field: &str, expected: &str) {
        self.warn(obj, field, format!("missing or not {expected}"));
    }

    /// Reports every key of the mapping at `node` that is not in `mapped`.
    pub fn unmapped(&mut self, obj: &Object, node: &documents::Node<'_>, mapped: &[&str], why: &str) {
        for key in node.keys() {
            if !mapped.contains(&key) {
                self.warn(obj, &node.field(key), format!("not mapped: {why}"));
            }
        }
    }

    /// A name not yet used by a provider in the plan: `base`, `base-2`, ...
    pub fn provider_name(&self, base: &str) -> String {
        let taken = |n: &str| self.plan.backends.iter().flat_map(|b| b.groups.iter().flatten()).any(|p| p.name == n);
        unique(base, taken)
    }

    /// A backend name not yet used in the plan.
    pub fn backend_name(&self, base: &str) -> String {
        unique(base, |n| self.plan.backends.iter().any(|b| b.name == n))
    }

    /// Registers the environment variable a secret reference becomes.
    pub fn secret_env(&mut self, secret: &str, key: &str, namespace: &str) -> String {
        let var = common::env_name(&[secret, key]);
        self.plan
            .env
            .entry(var.clone())
            .or_insert_with(|| format!("the value of key {key} of Secret {namespace}/{secret}"));
        var
    }

    /// Adds a backend; its index.
    pub fn push_backend(&mut self, backend: BackendOut) -> usize {
        if backend.groups.iter().flatten().any(|p| matches!(p.kind, Kind::Bedrock { .. }) && p.auth == Auth::Default) {
            for (var, what) in common::AWS_ENV {
                self.plan.env.entry(var.to_string()).or_insert_with(|| what.to_string());
            }
        }
        self.plan.backends.push(backend);
        self.plan.backends.len() - 1
    }

    fn report_unreferenced(&mut self) {
        let backend_kinds = [(agentgateway::GROUP, "AgentgatewayBackend"), (kgateway::GROUP, "Backend")];
        let unused: Vec<&Object> = self
            .index
            .all()
            .filter(|o| backend_kinds.iter().any(|(g, k)| o.key.group == *g && o.key.kind == *k))
            .filter(|o| !self.built.contains_key(&o.key))
            .collect();
        for obj in unused {
            self.warn(obj, "", "skipped: no imported route refers to this backend");
        }
    }
}

fn unique(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    (2..).map(|i| format!("{base}-{i}")).find(|n| !taken(n)).unwrap_or_else(|| base.to_string())
}
