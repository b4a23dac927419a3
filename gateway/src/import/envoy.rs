//! Envoy AI Gateway and Envoy Gateway: `AIGatewayRoute` rules become routes whose backend
//! holds the rule's backendRefs in priority groups; `AIServiceBackend` gives each one's API
//! schema and its Envoy Gateway `Backend` endpoints; `BackendSecurityPolicy` its
//! credentials; `BackendTrafficPolicy` retry, passive health (outlier detection) and timeouts.

use super::common;
use super::documents::{Node, Object};
use super::{gateway_api, Auth, BackendOut, Ctx, HealthOut, Kind, ProviderOut, RetryOut, RouteOut};
use std::collections::BTreeMap;

pub const AI_GROUP: &str = "aigateway.envoyproxy.io";
pub const EG_GROUP: &str = "gateway.envoyproxy.io";

/// The header Envoy AI Gateway copies the request's model into for matching.
const MODEL_HEADER: &str = "x-ai-eg-model";

pub fn routes(cx: &mut Ctx<'_>) {
    let routes: Vec<&Object> = cx.index.of(AI_GROUP, "AIGatewayRoute").collect();
    for obj in routes {
        ai_route(cx, obj);
    }
}

fn ai_route(cx: &mut Ctx<'_>, obj: &Object) {
    let Some(spec) = obj.spec() else {
        cx.missing(obj, "spec", "a mapping");
        return;
    };
    cx.unmapped(obj, &spec, &["schema", "targetRefs", "parentRefs", "rules"], "Switchyard has no equivalent");
    let rules = spec.get("rules").map(|n| n.items()).unwrap_or_default();
    if rules.is_empty() {
        cx.missing(obj, &spec.field("rules"), "a list of rules");
    }
    for (i, rule) in rules.iter().enumerate() {
        cx.unmapped(obj, rule, &["matches", "backendRefs", "timeouts", "name"], "Switchyard has no equivalent");
        let model = rule_model(cx, obj, rule);
        let mut by_priority: BTreeMap<u64, Vec<ProviderOut>> = BTreeMap::new();
        for r in rule.get("backendRefs").map(|n| n.items()).unwrap_or_default() {
            let priority = r.get("priority").and_then(|n| n.u64()).unwrap_or(0);
            cx.unmapped(obj, &r, &["name", "priority", "weight", "modelNameOverride"], "Switchyard has no equivalent");
            if r.get("weight").is_some() {
                cx.warn(obj, &r.field("weight"), "not mapped: providers of one priority share requests round-robin");
            }
            let model = r.get("modelNameOverride").and_then(|n| n.text()).or_else(|| model.clone());
            by_priority.entry(priority).or_default().extend(service_backend(cx, obj, &r, model));
        }
        let groups: Vec<Vec<ProviderOut>> = by_priority.into_values().filter(|g| !g.is_empty()).collect();
        if groups.is_empty() {
            cx.warn(obj, &rule.path, "skipped: no backendRef of this rule could be mapped");
            continue;
        }
        let name = if rules.len() > 1 { format!("{}-{i}", obj.key.name) } else { obj.key.name.clone() };
        let backend = BackendOut {
            notes: vec!["priority groups from the rule's backendRefs, lowest priority value first".to_string()],
            ..BackendOut::new(cx.backend_name(&name), obj.origin(), groups)
        };
        let backend = cx.push_backend(backend);
        let mut route = RouteOut {
            name,
            origin: obj.origin(),
            path_prefix: "/v1".to_string(),
            rewrite: None,
            request_headers: Default::default(),
            response_headers: Default::default(),
            timeout_request: None,
            timeout_first_byte: None,
            backend,
            notes: vec!["Envoy AI Gateway serves the OpenAI API under /v1".to_string()],
        };
        if let Some(t) = rule.get("timeouts") {
            gateway_api::timeouts(cx, obj, &t, &mut route);
        }
        gateway_api::push_route(cx, obj, &rule.path, route);
    }
}

/// The model a rule matches on (`x-ai-eg-model` header), reported as not routable.
fn rule_model(cx: &mut Ctx<'_>, obj: &Object, rule: &Node<'_>) -> Option<String> {
    let mut model = None;
    for m in rule.get("matches").map(|n| n.items()).unwrap_or_default() {
        for h in m.get("headers").map(|n| n.items()).unwrap_or_default() {
            let name = h.get("name").and_then(|n| n.str()).unwrap_or_default();
            if name.eq_ignore_ascii_case(MODEL_HEADER) {
                model = h.get("value").and_then(|n| n.text());
            }
            cx.warn(
                obj,
                &h.path,
                "not mapped: Switchyard routes by path, so this route serves every model; the matched model is used where a provider needs one",
            );
        }
    }
    model
}

/// The providers of one `AIGatewayRoute` backendRef.
fn service_backend(cx: &mut Ctx<'_>, obj: &Object, r: &Node<'_>, model: Option<String>) -> Vec<ProviderOut> {
    let Some(name) = r.get("name").and_then(|n| n.str()) else {
        cx.missing(obj, &r.field("name"), "a string");
        return Vec::new();
    };
    let ns = obj.key.namespace.clone();
    let index = cx.index;
    let (schema, target, security) = match index.get(AI_GROUP, "AIServiceBackend", &ns, name) {
        Some(sb) => {
            let spec = sb.spec();
            let text = |p: &[&str]| {
                let mut n = spec.clone()?;
                for k in p {
                    n = n.get(k)?;
                }
                n.str().map(str::to_string)
            };
            let schema = text(&["schema", "name"]).unwrap_or_else(|| "OpenAI".to_string());
            let backend_name = text(&["backendRef", "name"]).unwrap_or_else(|| name.to_string());
            let bsp = security_policy(index, sb, text(&["backendSecurityPolicyRef", "name"]));
            (Some(schema), index.get(EG_GROUP, "Backend", &ns, &backend_name), bsp)
        }
        None => {
            let eg = index.get(EG_GROUP, "Backend", &ns, name);
            if eg.is_some() {
                cx.warn(obj, &r.path, format!("no AIServiceBackend {ns}/{name} among the inputs; used the Envoy Gateway Backend of that name, its API inferred from its host"));
            }
            (None, eg, None)
        }
    };
    let Some(target) = target else {
        cx.warn(obj, &r.path, format!("skipped: neither AIServiceBackend nor Backend {ns}/{name} is among the inputs"));
        return Vec::new();
    };
    endpoints(cx, target, schema.as_deref(), model, security, name)
}

/// The `BackendSecurityPolicy` for an `AIServiceBackend`: the one it names, or one whose
/// targetRefs name it.
fn security_policy<'i>(index: &'i super::Index, sb: &Object, named: Option<String>) -> Option<&'i Object> {
    let ns = &sb.key.namespace;
    if let Some(n) = named {
        return index.get(AI_GROUP, "BackendSecurityPolicy", ns, &n);
    }
    index.of(AI_GROUP, "BackendSecurityPolicy").find(|p| {
        p.key.namespace == *ns
            && common::target_refs(p)
                .iter()
                .any(|(_, kind, name, _, _)| kind == "AIServiceBackend" && *name == sb.key.name)
    })
}

/// An Envoy Gateway `Backend` referenced straight from an `HTTPRoute`: OpenAI-compatible.
pub fn plain_backend(cx: &mut Ctx<'_>, obj: &Object) -> Option<usize> {
    let providers = endpoints(cx, obj, Some("OpenAI"), None, None, &obj.key.name);
    if providers.is_empty() {
        return None;
    }
    let out = BackendOut::new(cx.backend_name(&obj.key.name), obj.origin(), vec![providers]);
    Some(cx.push_backend(out))
}

/// One provider per endpoint of an Envoy Gateway `Backend`, of the API `schema` (inferred
/// from the host when `None`).
fn endpoints(
    cx: &mut Ctx<'_>,
    obj: &Object,
    schema: Option<&str>,
    model: Option<String>,
    security: Option<&Object>,
    base: &str,
) -> Vec<ProviderOut> {
    let Some(spec) = obj.spec() else {
        cx.missing(obj, "spec", "a mapping");
        return Vec::new();
    };
    cx.unmapped(obj, &spec, &["endpoints"], "Switchyard has no equivalent");
    let list = spec.get("endpoints").map(|n| n.items()).unwrap_or_default();
    if list.is_empty() {
        cx.missing(obj, &spec.field("endpoints"), "a list of endpoints");
    }
    let mut out = Vec::new();
    for ep in &list {
        let addr = ep.get("fqdn").map(|f| ("hostname", f)).or_else(|| ep.get("ip").map(|i| ("address", i)));
        let Some((field, node)) = addr else {
            cx.warn(obj, &ep.path, "skipped: only fqdn and ip endpoints are imported");
            continue;
        };
        let (Some(host), Some(port)) = (node.get(field).and_then(|n| n.str()), node.get("port").and_then(|n| n.u64()))
        else {
            cx.missing(obj, &node.path, &format!("{field} and port"));
            continue;
        };
        let Ok(port) = u16::try_from(port) else {
            cx.missing(obj, &node.field("port"), "a port number");
            continue;
        };
        if host.ends_with(".svc.cluster.local") || host.ends_with(".svc") {
            cx.warn(
                obj,
                &node.path,
                format!("{host} is a Kubernetes service name: replace it with an address this machine reaches"),
            );
        }
        let name = if list.len() > 1 { format!("{base}-{}", out.len()) } else { base.to_string() };
        if let Some(p) = provider(cx, obj, &node.path, schema, model.clone(), host, port, security, name) {
            out.push(p);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn provider(
    cx: &mut Ctx<'_>,
    obj: &Object,
    path: &str,
    schema: Option<&str>,
    model: Option<String>,
    host: &str,
    port: u16,
    security: Option<&Object>,
    name: String,
) -> Option<ProviderOut> {
    let region_of_host = host.strip_prefix("bedrock-runtime.").and_then(|r| r.strip_suffix(".amazonaws.com"));
    let azure_resource = host.strip_suffix(".openai.azure.com");
    let schema = schema.unwrap_or(match (region_of_host, azure_resource, host) {
        (Some(_), _, _) => "AWSBedrock",
        (_, Some(_), _) => "AzureOpenAI",
        (_, _, "api.anthropic.com") => "Anthropic",
        _ => "OpenAI",
    });
    let security_spec = security.and_then(Object::spec);
    let (kind, public) = match schema {
        "OpenAI" => (Kind::OpenAi { model: None }, host == "api.openai.com"),
        "Anthropic" => (Kind::Anthropic { model: None, version: None }, host == "api.anthropic.com"),
        "AWSBedrock" => {
            let bsp_region = security_spec
                .as_ref()
                .and_then(|s| s.get("awsCredentials"))
                .and_then(|a| a.get("region"))
                .and_then(|n| n.text());
            let region = bsp_region.or(region_of_host.map(str::to_string)).unwrap_or_else(|| "us-east-1".to_string());
            let Some(model) = model.clone() else {
                cx.warn(obj, path, "skipped: Switchyard's bedrock provider needs a model: give the route rule a modelNameOverride or an x-ai-eg-model match");
                return None;
            };
            let public = region_of_host.is_some();
            (Kind::Bedrock { model, region }, public)
        }
        "AzureOpenAI" => {
            let Some(deployment) = model.clone() else {
                cx.warn(
                    obj,
                    path,
                    "skipped: Switchyard's azure provider needs a deployment: give the route rule a modelNameOverride",
                );
                return None;
            };
            let api_version = "2024-10-21".to_string();
            cx.warn(
                obj,
                path,
                format!("azure apiVersion set to {api_version}; adjust it to the version the AIServiceBackend used"),
            );
            (
                Kind::Azure { resource: azure_resource.map(str::to_string), deployment, api_version },
                azure_resource.is_some(),
            )
        }
        other => {
            cx.warn(obj, path, format!("skipped: API schema {other} is not a Switchyard provider kind"));
            return None;
        }
    };
    let mut out = ProviderOut {
        name: cx.provider_name(&name),
        kind,
        host: None,
        port: None,
        tls: None,
        path: None,
        auth: Auth::Default,
    };
    if !(public && port == 443) {
        out.host = Some(host.to_string());
        out.port = Some(port);
        out.tls = Some(port == 443);
    }
    if let (Some(bsp), Some(spec)) = (security, security_spec) {
        out.auth = security_auth(cx, bsp, &spec);
    }
    Some(out)
}

fn security_auth(cx: &mut Ctx<'_>, bsp: &Object, spec: &Node<'_>) -> Auth {
    let kind = spec.get("type").and_then(|n| n.str()).unwrap_or_default();
    let field = match kind {
        "APIKey" => "apiKey",
        "AnthropicAPIKey" => "anthropicAPIKey",
        "AzureAPIKey" => "azureAPIKey",
        "AWSCredentials" => return Auth::Default,
        other => {
            cx.warn(bsp, "spec.type", format!("not mapped: credentials of type {other} are not supported"));
            return Auth::Default;
        }
    };
    let secret = spec.get(field).and_then(|k| k.get("secretRef"));
    let Some(name) = secret.as_ref().and_then(|s| s.get("name")).and_then(|n| n.str()) else {
        cx.missing(bsp, &format!("spec.{field}.secretRef.name"), "a string");
        return Auth::Default;
    };
    let ns = secret
        .as_ref()
        .and_then(|s| s.get("namespace"))
        .and_then(|n| n.str())
        .unwrap_or(&bsp.key.namespace)
        .to_string();
    // Envoy AI Gateway reads the key from the secret's `apiKey` entry.
    Auth::Env(cx.secret_env(name, "apiKey", &ns))
}

/// Applies every `BackendTrafficPolicy` (retry, passive health, timeouts).
pub fn policies(cx: &mut Ctx<'_>) {
    let policies: Vec<&Object> = cx.index.of(EG_GROUP, "BackendTrafficPolicy").collect();
    for obj in policies {
        let Some(spec) = obj.spec() else {
            cx.missing(obj, "spec", "a mapping");
            continue;
        };
        cx.unmapped(
            obj,
            &spec,
            &["targetRefs", "targetRef", "retry", "healthCheck", "timeout"],
            "Switchyard has no equivalent",
        );
        let (routes, backends) = common::targets(cx, obj);
        let mut per_try = None;
        if let Some(r) = spec.get("retry") {
            let (retry, timeout) = retry(cx, obj, &r);
            per_try = timeout;
            for &b in &backends {
                common::attach_retry(cx, obj, b, &retry);
            }
        }
        if let Some(hc) = spec.get("healthCheck") {
            cx.unmapped(obj, &hc, &["passive"], "active checks are not imported; see health.active in the README");
            if let Some(p) = hc.get("passive") {
                let health = passive(cx, obj, &p);
                for &b in &backends {
                    common::attach_health(cx, obj, b, &health);
                }
            }
        }
        let request = spec.get("timeout").and_then(|t| t.get("http")).and_then(|h| h.get("requestTimeout"));
        let request = request.and_then(|n| common::duration(cx, obj, &n));
        common::set_route_timeouts(cx, &routes, per_try, request);
    }
}

/// Envoy Gateway retry: `numRetries` (default 2) counts retries, so N + 1 attempts. Also
/// returns the per-try timeout.
fn retry(cx: &mut Ctx<'_>, obj: &Object, r: &Node<'_>) -> (RetryOut, Option<String>) {
    cx.unmapped(obj, r, &["numRetries", "perRetry", "retryOn"], "Switchyard has no equivalent");
    let mut retry =
        RetryOut { attempts: Some(r.get("numRetries").and_then(|n| n.u64()).unwrap_or(2) + 1), ..Default::default() };
    let mut timeout = None;
    if let Some(pr) = r.get("perRetry") {
        cx.unmapped(obj, &pr, &["backOff", "timeout"], "Switchyard has no equivalent");
        if let Some(b) = pr.get("backOff") {
            retry.backoff_base = b.get("baseInterval").and_then(|n| common::duration(cx, obj, &n));
            retry.backoff_max = b.get("maxInterval").and_then(|n| common::duration(cx, obj, &n));
        }
        timeout = pr.get("timeout").and_then(|n| common::duration(cx, obj, &n));
    }
    if let Some(on) = r.get("retryOn") {
        cx.unmapped(obj, &on, &["httpStatusCodes", "triggers"], "Switchyard has no equivalent");
        let codes = on.get("httpStatusCodes").map(|n| common::statuses(cx, obj, &n)).unwrap_or_default();
        match on.get("triggers") {
            Some(t) => common::envoy_retry_on(cx, obj, &t, &codes, &mut retry),
            None => retry.on_status = Some(codes),
        }
    }
    (retry, timeout)
}

/// Envoy outlier detection, with Envoy's defaults for the fields not given.
fn passive(cx: &mut Ctx<'_>, obj: &Object, p: &Node<'_>) -> HealthOut {
    let num = |k: &str, default: u64| p.get(k).and_then(|n| n.u64()).unwrap_or(default);
    let (c5xx, cgw) = (num("consecutive5XxErrors", 5), num("consecutiveGatewayErrors", 0));
    let (condition, failures) = if c5xx > 0 {
        ("response.code >= 500", c5xx)
    } else if cgw > 0 {
        ("response.code >= 502 && response.code <= 504", cgw)
    } else {
        cx.warn(
            obj,
            &p.path,
            "no status ejects (consecutive5XxErrors and consecutiveGatewayErrors are 0): only transport failures will",
        );
        ("false", num("consecutiveLocalOriginFailures", 5))
    };
    for (k, why) in [
        ("interval", "Switchyard judges every answer as it arrives; there is no sweep interval"),
        ("consecutiveLocalOriginFailures", "transport failures always count toward consecutiveFailures"),
        ("splitExternalLocalOriginErrors", "transport failures always count toward consecutiveFailures"),
    ] {
        if p.get(k).is_some() {
            cx.warn(obj, &p.field(k), format!("not mapped: {why}"));
        }
    }
    cx.unmapped(
        obj,
        p,
        &[
            "baseEjectionTime",
            "maxEjectionPercent",
            "consecutive5XxErrors",
            "consecutiveGatewayErrors",
            "interval",
            "consecutiveLocalOriginFailures",
            "splitExternalLocalOriginErrors",
        ],
        "Switchyard has no equivalent",
    );
    HealthOut {
        unhealthy_condition: Some(condition.to_string()),
        duration: Some(
            p.get("baseEjectionTime").and_then(|n| common::duration(cx, obj, &n)).unwrap_or_else(|| "30s".to_string()),
        ),
        consecutive_failures: Some(failures),
        // Envoy's default (10%) still ejects at least one host; Switchyard's percentage has
        // no such floor, so only an explicit value is carried over.
        max_ejection_percent: p.get("maxEjectionPercent").and_then(|n| n.u64()),
    }
}
