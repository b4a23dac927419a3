//! Gateway API: `Gateway` listeners become `listen`; `HTTPRoute` rules become routes
//! (path matches, `URLRewrite` `ReplaceFullPath`, header modifiers, timeouts, retry,
//! backendRefs resolved to the backend kinds of each gateway).

use super::common;
use super::documents::{Node, Object};
use super::{agentgateway, envoy, kgateway, Ctx, Headers, RouteOut};

pub const GROUP: &str = "gateway.networking.k8s.io";

/// The path agentgateway sends an OpenAI-shaped request to when the route's path is not an
/// API path: it treats the request as chat completions.
const CHAT_PATH: &str = "/v1/chat/completions";

pub fn listeners(cx: &mut Ctx<'_>) {
    let gateways: Vec<&Object> = cx.index.of(GROUP, "Gateway").collect();
    if gateways.len() > 1 {
        let names: Vec<String> = gateways.iter().map(|g| g.key.name.clone()).collect();
        cx.diags.push(gateways[1].origin().diagnostic(
            "",
            format!("several Gateways ({}): Switchyard serves every route on every listener", names.join(", ")),
        ));
    }
    for gw in gateways {
        let Some(spec) = gw.spec() else {
            cx.missing(gw, "spec", "a mapping");
            continue;
        };
        cx.unmapped(gw, &spec, &["gatewayClassName", "listeners"], "Switchyard has no equivalent");
        for l in spec.get("listeners").map(|n| n.items()).unwrap_or_default() {
            let protocol = l.get("protocol").and_then(|n| n.str()).unwrap_or("HTTP");
            if protocol != "HTTP" {
                cx.warn(
                    gw,
                    &l.path,
                    format!(
                        "skipped: {protocol} listener; TLS termination is not imported (its certificate is a Secret)"
                    ),
                );
                continue;
            }
            let Some(port) = l.get("port").and_then(|n| n.u64()).filter(|p| (1..=65535).contains(p)) else {
                cx.missing(gw, &l.field("port"), "a port number");
                continue;
            };
            cx.unmapped(gw, &l, &["name", "port", "protocol", "allowedRoutes"], "Switchyard listeners take every host");
            let addr = format!("0.0.0.0:{port}");
            if !cx.plan.listen.iter().any(|(a, _)| *a == addr) {
                cx.plan.listen.push((addr, Some(gw.origin())));
            }
        }
    }
}

pub fn routes(cx: &mut Ctx<'_>) {
    let routes: Vec<&Object> = cx.index.of(GROUP, "HTTPRoute").collect();
    for route in routes {
        http_route(cx, route);
    }
}

fn http_route(cx: &mut Ctx<'_>, obj: &Object) {
    let Some(spec) = obj.spec() else {
        cx.missing(obj, "spec", "a mapping");
        return;
    };
    cx.unmapped(obj, &spec, &["parentRefs", "rules"], "Switchyard routes by path only");
    let rules = spec.get("rules").map(|n| n.items()).unwrap_or_default();
    if rules.is_empty() {
        cx.missing(obj, &spec.field("rules"), "a list of rules");
    }
    let several = rules.len() > 1;
    for (i, rule) in rules.iter().enumerate() {
        let Some(backend) = rule_backend(cx, obj, rule) else { continue };
        let mut base = RouteOut {
            name: String::new(),
            origin: obj.origin(),
            path_prefix: "/".to_string(),
            rewrite: None,
            request_headers: Headers::default(),
            response_headers: Headers::default(),
            timeout_request: None,
            timeout_first_byte: None,
            backend,
            notes: Vec::new(),
        };
        filters(cx, obj, rule, &mut base);
        if let Some(t) = rule.get("timeouts") {
            timeouts(cx, obj, &t, &mut base);
        }
        if let Some(r) = rule.get("retry") {
            let retry = common::gateway_api_retry(cx, obj, &r);
            common::attach_retry(cx, obj, backend, &retry);
        }
        cx.unmapped(
            obj,
            rule,
            &["matches", "filters", "backendRefs", "timeouts", "retry", "name"],
            "Switchyard has no equivalent",
        );
        let matches = rule.get("matches").map(|n| n.items()).unwrap_or_default();
        let prefixes: Vec<String> = if matches.is_empty() {
            vec!["/".to_string()]
        } else {
            matches.iter().filter_map(|m| path_match(cx, obj, m)).collect()
        };
        let several_matches = prefixes.len() > 1;
        for (j, prefix) in prefixes.into_iter().enumerate() {
            let mut route = base.clone();
            route.name = match (several, several_matches) {
                (false, false) => obj.key.name.clone(),
                (true, false) => format!("{}-{i}", obj.key.name),
                (_, true) => format!("{}-{i}-{j}", obj.key.name),
            };
            route.path_prefix = prefix;
            push_route(cx, obj, &rule.path, route);
        }
    }
}

/// Adds a route unless an earlier one has the same path (which would hide it).
pub fn push_route(cx: &mut Ctx<'_>, obj: &Object, field: &str, mut route: RouteOut) {
    if let Some(prev) = cx.plan.routes.iter().find(|r| r.path_prefix == route.path_prefix) {
        let msg = format!(
            "skipped: route {} from {} already serves path {}; Switchyard routes by path only",
            prev.name, prev.origin, route.path_prefix
        );
        cx.warn(obj, field, msg);
        return;
    }
    let backend = &cx.plan.backends[route.backend];
    let api_path = [CHAT_PATH, "/v1/messages"].iter().any(|p| crate::routing::prefix_matches(&route.path_prefix, p));
    if backend.provider_paths && route.rewrite.is_none() && !api_path {
        route.rewrite = Some(CHAT_PATH.to_string());
        route.notes.push(format!(
            "agentgateway treats requests on {} as chat completions and sends each provider its own API path",
            route.path_prefix
        ));
    }
    route.name = super::unique(&route.name, |n| cx.plan.routes.iter().any(|r| r.name == n));
    cx.plan.routes.push(route);
}

fn path_match(cx: &mut Ctx<'_>, obj: &Object, m: &Node<'_>) -> Option<String> {
    cx.unmapped(obj, m, &["path"], "Switchyard routes by path only; this condition is dropped");
    let Some(path) = m.get("path") else { return Some("/".to_string()) };
    let kind = path.get("type").and_then(|n| n.str()).unwrap_or("PathPrefix");
    let Some(value) = path.get("value").and_then(|n| n.str()).map(str::to_string) else {
        return Some("/".to_string());
    };
    match kind {
        "PathPrefix" => Some(value),
        "Exact" => {
            cx.warn(
                obj,
                &path.path,
                format!("exact match {value} imported as a path prefix (Switchyard matches prefixes)"),
            );
            Some(value)
        }
        other => {
            cx.warn(
                obj,
                &path.path,
                format!("skipped: {other} path matches are not supported; Switchyard matches path prefixes"),
            );
            None
        }
    }
}

fn filters(cx: &mut Ctx<'_>, obj: &Object, rule: &Node<'_>, route: &mut RouteOut) {
    for f in rule.get("filters").map(|n| n.items()).unwrap_or_default() {
        let kind = f.get("type").and_then(|n| n.str()).unwrap_or("");
        match kind {
            "URLRewrite" => {
                let Some(rw) = f.get("urlRewrite") else { continue };
                cx.unmapped(obj, &rw, &["path"], "Switchyard sends the provider's own host");
                let Some(p) = rw.get("path") else { continue };
                match (p.get("type").and_then(|n| n.str()), p.get("replaceFullPath").and_then(|n| n.str())) {
                    (Some("ReplaceFullPath"), Some(full)) => route.rewrite = Some(full.to_string()),
                    _ => cx.warn(obj, &p.path, "not mapped: only ReplaceFullPath rewrites are supported"),
                }
            }
            "RequestHeaderModifier" => {
                if let Some(m) = f.get("requestHeaderModifier") {
                    route.request_headers = header_modifier(cx, obj, &m);
                }
            }
            "ResponseHeaderModifier" => {
                if let Some(m) = f.get("responseHeaderModifier") {
                    route.response_headers = header_modifier(cx, obj, &m);
                }
            }
            other => cx.warn(obj, &f.path, format!("not mapped: filter {other:?} has no Switchyard equivalent")),
        }
    }
}

fn header_modifier(cx: &mut Ctx<'_>, obj: &Object, m: &Node<'_>) -> Headers {
    let mut pairs = |field: &str| {
        let mut out = Vec::new();
        for h in m.get(field).map(|n| n.items()).unwrap_or_default() {
            match (h.get("name").and_then(|n| n.str()), h.get("value").and_then(|n| n.text())) {
                (Some(name), Some(value)) => out.push((name.to_string(), value)),
                _ => cx.missing(obj, &h.path, "a name and a value"),
            }
        }
        out
    };
    let add = pairs("add");
    let set = pairs("set");
    let remove = m
        .get("remove")
        .map(|n| n.items())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.str().map(str::to_string))
        .collect();
    Headers { add, set, remove }
}

/// Gateway API timeouts: `request` is the whole request, `backendRequest` one attempt.
pub fn timeouts(cx: &mut Ctx<'_>, obj: &Object, t: &Node<'_>, route: &mut RouteOut) {
    if let Some(r) = t.get("request") {
        route.timeout_request = common::duration(cx, obj, &r);
    }
    if let Some(b) = t.get("backendRequest") {
        route.timeout_first_byte = common::duration(cx, obj, &b);
    }
    cx.unmapped(obj, t, &["request", "backendRequest"], "Switchyard has no equivalent");
}

/// The backend of a rule: its first backendRef, mapped through the gateway that owns it.
fn rule_backend(cx: &mut Ctx<'_>, obj: &Object, rule: &Node<'_>) -> Option<usize> {
    let refs = rule.get("backendRefs").map(|n| n.items()).unwrap_or_default();
    let Some(first) = refs.first() else {
        cx.warn(obj, &rule.path, "skipped: the rule has no backendRefs");
        return None;
    };
    for extra in &refs[1..] {
        cx.warn(
            obj,
            &extra.path,
            "not mapped: a route has one backend in Switchyard; put several providers in one backend's groups instead",
        );
    }
    let text = |k: &str| first.get(k).and_then(|n| n.str()).map(str::to_string);
    let Some(name) = text("name") else {
        cx.missing(obj, &first.field("name"), "a string");
        return None;
    };
    let group = text("group").unwrap_or_default();
    let kind = text("kind").unwrap_or_else(|| "Service".to_string());
    let namespace = text("namespace").unwrap_or_else(|| obj.key.namespace.clone());
    let known =
        [(agentgateway::GROUP, "AgentgatewayBackend"), (kgateway::GROUP, "Backend"), (envoy::EG_GROUP, "Backend")];
    if !known.iter().any(|(g, k)| group == *g && kind == *k) {
        let shown = if group.is_empty() { kind.clone() } else { format!("{kind} ({group})") };
        cx.warn(
            obj,
            &first.path,
            format!("skipped: a backendRef to a {shown} is not an LLM provider Switchyard can import"),
        );
        return None;
    }
    let Some(target) = cx.index.get(&group, &kind, &namespace, &name) else {
        cx.warn(
            obj,
            &first.path,
            format!("skipped: backend {kind} {namespace}/{name} ({group}) is not among the inputs"),
        );
        return None;
    };
    if let Some(&done) = cx.built.get(&target.key) {
        if done.is_none() {
            cx.warn(
                obj,
                &first.path,
                format!("skipped: backend {kind} {namespace}/{name} could not be mapped (see above)"),
            );
        }
        return done;
    }
    let built = match group.as_str() {
        agentgateway::GROUP => agentgateway::backend(cx, target),
        kgateway::GROUP => kgateway::backend(cx, target),
        _ => envoy::plain_backend(cx, target),
    };
    cx.built.insert(target.key.clone(), built);
    if built.is_none() {
        cx.warn(
            obj,
            &first.path,
            format!("skipped: backend {kind} {namespace}/{name} could not be mapped (see above)"),
        );
    }
    built
}
