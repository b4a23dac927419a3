//! Mapping pieces shared by several source gateways: secret names, durations, retry
//! policies (Gateway API and Envoy shapes) and attaching policies to backends and routes.

use super::documents::{Node, Object};
use super::{BackendOut, Ctx, HealthOut, Origin, RetryOut};

/// The variables Switchyard's Bedrock provider reads its credentials from.
pub const AWS_ENV: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AWS credentials for Bedrock (or AWS_PROFILE with ~/.aws/credentials)"),
    ("AWS_SECRET_ACCESS_KEY", "AWS credentials for Bedrock (or AWS_PROFILE with ~/.aws/credentials)"),
];

/// `openai-secret` + `Authorization` -> `OPENAI_SECRET_AUTHORIZATION`.
pub fn env_name(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() {
            out.push('_');
        }
        out.extend(part.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }));
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A duration field as Switchyard writes it, or a warning and `None`.
pub fn duration(cx: &mut Ctx<'_>, obj: &Object, node: &Node<'_>) -> Option<String> {
    let Some(text) = node.text() else {
        cx.missing(obj, &node.path, "a duration");
        return None;
    };
    match crate::config::parse_duration(&text) {
        Ok(_) => Some(text),
        Err(e) => {
            cx.warn(obj, &node.path, format!("not mapped: {e}"));
            None
        }
    }
}

/// A list of HTTP status codes.
pub fn statuses(cx: &mut Ctx<'_>, obj: &Object, node: &Node<'_>) -> Vec<u64> {
    let mut out = Vec::new();
    for item in node.items() {
        match item.u64() {
            Some(code) if (100..=599).contains(&code) => out.push(code),
            _ => cx.warn(obj, &item.path, "not mapped: not an HTTP status code"),
        }
    }
    out
}

/// Gateway API retry (`HTTPRoute` rules, agentgateway traffic policies):
/// `{attempts: N, codes: [...], backoff: D}`, where N counts retries, so N + 1 attempts.
pub fn gateway_api_retry(cx: &mut Ctx<'_>, obj: &Object, node: &Node<'_>) -> RetryOut {
    let mut retry = RetryOut::default();
    if let Some(n) = node.get("attempts") {
        match n.u64() {
            Some(retries) => retry.attempts = Some(retries + 1),
            None => cx.missing(obj, &n.path, "a number"),
        }
    }
    if let Some(codes) = node.get("codes") {
        retry.on_status = Some(statuses(cx, obj, &codes));
    }
    if let Some(b) = node.get("backoff") {
        retry.backoff_base = duration(cx, obj, &b);
    }
    cx.unmapped(obj, node, &["attempts", "codes", "backoff"], "Switchyard has no equivalent");
    retry
}

/// The 5xx codes Envoy's `5xx` retry condition covers, as a list.
const ALL_5XX: [u64; 11] = [500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511];
const CONNECT: [&str; 3] = ["connect", "dns", "tls"];

/// Envoy `retryOn` conditions (kgateway `retryOn`, Envoy Gateway `retryOn.triggers`) into
/// statuses and transport kinds added to `retry`. `codes` are the retriable status codes
/// that `retriable-status-codes` refers to.
pub fn envoy_retry_on(cx: &mut Ctx<'_>, obj: &Object, node: &Node<'_>, codes: &[u64], retry: &mut RetryOut) {
    let mut status: Vec<u64> = Vec::new();
    let mut transport: Vec<&'static str> = Vec::new();
    for item in node.items() {
        let Some(cond) = item.str() else {
            cx.missing(obj, &item.path, "a string");
            continue;
        };
        match cond {
            "5xx" => {
                status.extend(ALL_5XX);
                transport.extend(CONNECT);
                transport.extend(["reset", "timeout"]);
            }
            "gateway-error" => {
                status.extend([502, 503, 504]);
                transport.extend(CONNECT);
                transport.push("timeout");
            }
            "connect-failure" => transport.extend(CONNECT),
            "reset" | "reset-before-request" => transport.push("reset"),
            "retriable-4xx" => status.push(409),
            "retriable-status-codes" => status.extend(codes),
            other => cx.warn(
                obj,
                &item.path,
                format!("not mapped: retry condition {other:?} is about HTTP/2 or gRPC, which Switchyard's upstreams do not speak"),
            ),
        }
    }
    status.sort_unstable();
    status.dedup();
    transport.sort_unstable();
    transport.dedup();
    retry.on_status = Some(status);
    retry.on_transport = Some(transport);
}

/// Sets `retry` on backend `b`, reporting when another policy set it before.
pub fn attach_retry(cx: &mut Ctx<'_>, obj: &Object, b: usize, retry: &RetryOut) {
    record_source(cx, obj, b, "retry", |bk| &mut bk.retry_from);
    cx.plan.backends[b].retry = retry.clone();
}

/// Sets `health` on backend `b`, reporting when another policy set it before.
pub fn attach_health(cx: &mut Ctx<'_>, obj: &Object, b: usize, health: &HealthOut) {
    record_source(cx, obj, b, "health", |bk| &mut bk.health_from);
    cx.plan.backends[b].health = health.clone();
}

/// Records `obj` as the source of one policy of backend `b`; reports a replaced one.
fn record_source(
    cx: &mut Ctx<'_>,
    obj: &Object,
    b: usize,
    what: &str,
    field: fn(&mut BackendOut) -> &mut Option<Origin>,
) {
    let origin = obj.origin();
    let backend = &mut cx.plan.backends[b];
    let name = backend.name.clone();
    if let Some(prev) = field(backend).replace(origin.clone()) {
        if prev != origin {
            cx.warn(obj, "", format!("backend {name} already had a {what} policy from {prev}; this one replaces it"));
        }
    }
}

/// Sets the per-attempt and whole-request timeouts, when given, on the routes.
pub fn set_route_timeouts(cx: &mut Ctx<'_>, routes: &[usize], per_try: Option<String>, request: Option<String>) {
    for &i in routes {
        let route = &mut cx.plan.routes[i];
        if per_try.is_some() {
            route.timeout_first_byte.clone_from(&per_try);
        }
        if request.is_some() {
            route.timeout_request.clone_from(&request);
        }
    }
}

/// A CEL `unhealthyCondition`, checked with Switchyard's own compiler.
pub fn condition(cx: &mut Ctx<'_>, obj: &Object, node: &Node<'_>) -> Option<String> {
    let Some(src) = node.str() else {
        cx.missing(obj, &node.path, "a string");
        return None;
    };
    match crate::health::condition::Condition::compile(src) {
        Ok(_) => Some(src.to_string()),
        Err(e) => {
            cx.warn(obj, &node.path, format!("not mapped: {e}"));
            None
        }
    }
}

/// The policy targets (`targetRefs`, or the older single `targetRef`) as
/// `(group, kind, name, sectionName, path)`.
pub fn target_refs(obj: &Object) -> Vec<(String, String, String, Option<String>, String)> {
    let Some(spec) = obj.spec() else { return Vec::new() };
    let mut refs = spec.get("targetRefs").map(|n| n.items()).unwrap_or_default();
    refs.extend(spec.get("targetRef"));
    refs.iter()
        .filter_map(|r| {
            let text = |k: &str| r.get(k).and_then(|n| n.str()).map(str::to_string);
            Some((text("group").unwrap_or_default(), text("kind")?, text("name")?, text("sectionName"), r.path.clone()))
        })
        .collect()
}

/// The backends the routes made from `route` use.
pub fn backends_of_routes(cx: &Ctx<'_>, routes: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = routes.iter().map(|&r| cx.plan.routes[r].backend).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// What a policy's targets select in the plan: route indices and backend indices.
/// `Gateway` selects everything; `HTTPRoute` the routes made from that route (Envoy AI
/// Gateway names its generated HTTPRoute after the `AIGatewayRoute`); backend kinds the
/// backend made from them. Targets that select nothing are reported.
pub fn targets(cx: &mut Ctx<'_>, obj: &Object) -> (Vec<usize>, Vec<usize>) {
    let refs = target_refs(obj);
    if refs.is_empty() {
        cx.missing(obj, "spec.targetRefs", "a list of targets");
    }
    let mut routes = Vec::new();
    let mut backends = Vec::new();
    for (group, kind, name, section, path) in refs {
        let ns = &obj.key.namespace;
        if section.is_some() {
            cx.warn(
                obj,
                &format!("{path}.sectionName"),
                "applied to the whole target: Switchyard policies are per backend and route",
            );
        }
        match kind.as_str() {
            "Gateway" => {
                routes.extend(0..cx.plan.routes.len());
                backends.extend(0..cx.plan.backends.len());
            }
            "HTTPRoute" | "AIGatewayRoute" => {
                let names = [format!("HTTPRoute {ns}/{name}"), format!("AIGatewayRoute {ns}/{name}")];
                let found: Vec<usize> =
                    (0..cx.plan.routes.len()).filter(|&i| names.contains(&cx.plan.routes[i].origin.object)).collect();
                if found.is_empty() {
                    cx.warn(obj, &path, format!("not mapped: no imported route comes from {kind} {ns}/{name}"));
                }
                backends.extend(backends_of_routes(cx, &found));
                routes.extend(found);
            }
            _ => {
                let hit = cx.index.get(&group, &kind, ns, &name).and_then(|t| cx.built.get(&t.key).copied().flatten());
                match hit {
                    Some(b) => backends.push(b),
                    None => {
                        cx.warn(obj, &path, format!("not mapped: no imported backend comes from {kind} {ns}/{name}"))
                    }
                }
            }
        }
    }
    routes.sort_unstable();
    routes.dedup();
    backends.sort_unstable();
    backends.dedup();
    (routes, backends)
}
