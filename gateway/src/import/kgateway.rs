//! kgateway: `Backend` of type AI (`spec.ai.llm`, or priority pools in
//! `spec.ai.multipool.priorities`) and `TrafficPolicy` (retry, timeouts).

use super::common;
use super::documents::{Node, Object};
use super::{Auth, BackendOut, Ctx, Kind, ProviderOut, RetryOut};

pub const GROUP: &str = "gateway.kgateway.dev";

/// Maps a kgateway `Backend`; the index of the backend in the plan.
pub fn backend(cx: &mut Ctx<'_>, obj: &Object) -> Option<usize> {
    let Some(spec) = obj.spec() else {
        cx.missing(obj, "spec", "a mapping");
        return None;
    };
    let Some(ai) = spec.get("ai") else {
        let kind = spec.get("type").and_then(|n| n.text()).unwrap_or_else(|| "(no type)".to_string());
        cx.warn(obj, "spec", format!("skipped: only type AI backends are imported, this one is {kind}"));
        return None;
    };
    cx.unmapped(obj, &spec, &["type", "ai"], "Switchyard has no equivalent");
    let mut groups = Vec::new();
    match (ai.get("llm"), ai.get("multipool")) {
        (Some(llm), None) => groups.extend(provider(cx, obj, &llm).map(|p| vec![p])),
        (None, Some(mp)) => {
            for prio in mp.get("priorities").map(|n| n.items()).unwrap_or_default() {
                let group: Vec<ProviderOut> = prio
                    .get("pool")
                    .map(|n| n.items())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| provider(cx, obj, p))
                    .collect();
                if group.is_empty() {
                    cx.warn(obj, &prio.path, "skipped: no provider of this pool could be mapped");
                } else {
                    groups.push(group);
                }
            }
        }
        _ => {
            cx.warn(obj, &ai.path, "skipped: give exactly one of llm or multipool");
            return None;
        }
    }
    if groups.is_empty() {
        return None;
    }
    let out = BackendOut::new(cx.backend_name(&obj.key.name), obj.origin(), groups);
    Some(cx.push_backend(out))
}

/// One `LLMProvider`: `{provider: {openai: ...}, hostOverride, pathOverride}`.
fn provider(cx: &mut Ctx<'_>, obj: &Object, llm: &Node<'_>) -> Option<ProviderOut> {
    cx.unmapped(
        obj,
        llm,
        &["provider", "hostOverride", "pathOverride"],
        "Switchyard sends each provider kind's own auth header",
    );
    let Some(p) = llm.get("provider") else {
        cx.missing(obj, &llm.field("provider"), "a mapping");
        return None;
    };
    let model = |k: &Node<'_>| k.get("model").and_then(|n| n.text());
    let (kind_node, kind) = if let Some(k) = p.get("openai") {
        let m = model(&k);
        (k, Kind::OpenAi { model: m })
    } else if let Some(k) = p.get("anthropic") {
        let (m, version) = (model(&k), k.get("apiVersion").and_then(|n| n.text()));
        (k, Kind::Anthropic { model: m, version })
    } else if let Some(k) = p.get("gemini") {
        let m = model(&k);
        (k, Kind::Gemini { model: m })
    } else if let Some(k) = p.get("bedrock") {
        let region = k.get("region").and_then(|n| n.text()).unwrap_or_else(|| "us-east-1".to_string());
        let Some(m) = model(&k) else {
            cx.missing(obj, &k.field("model"), "a string");
            return None;
        };
        (k, Kind::Bedrock { model: m, region })
    } else if let Some(k) = p.get("azureopenai") {
        let text = |f: &str| k.get(f).and_then(|n| n.text());
        let (Some(endpoint), Some(deployment), Some(api_version)) =
            (text("endpoint"), text("deploymentName"), text("apiVersion"))
        else {
            cx.missing(obj, &k.path, "endpoint, deploymentName and apiVersion");
            return None;
        };
        let endpoint = endpoint.trim_start_matches("https://").trim_end_matches('/').to_string();
        let resource = endpoint.strip_suffix(".openai.azure.com").map(str::to_string);
        (k, Kind::Azure { resource, deployment, api_version })
    } else {
        let kind = p.keys().first().map_or("(none)", |k| *k).to_string();
        cx.warn(obj, &p.path, format!("skipped provider: kind {kind} is not a Switchyard provider kind"));
        return None;
    };
    let label = match &kind {
        Kind::OpenAi { model: Some(m) } | Kind::Anthropic { model: Some(m), .. } | Kind::Gemini { model: Some(m) } => {
            m.clone()
        }
        Kind::Bedrock { model, .. } => model.clone(),
        Kind::Azure { deployment, .. } => deployment.clone(),
        _ => p.keys().first().map_or("provider", |k| *k).to_string(),
    };
    let name = cx.provider_name(&format!("{}-{label}", obj.key.name));
    let mut out = ProviderOut { name, kind, host: None, port: None, tls: None, path: None, auth: Auth::Default };
    if let Kind::Azure { resource: None, .. } = out.kind {
        out.host = kind_node.get("endpoint").and_then(|n| n.str()).map(str::to_string);
    }
    if let Some(h) = llm.get("hostOverride") {
        out.host = h.get("host").and_then(|n| n.str()).map(str::to_string);
        out.port = h.get("port").and_then(|n| n.u64()).and_then(|n| u16::try_from(n).ok());
        out.tls = Some(out.port.is_none_or(|p| p == 443));
        if out.host.is_none() {
            cx.missing(obj, &h.field("host"), "a string");
        }
    }
    out.path = llm.get("pathOverride").and_then(|n| n.get("fullPath")).and_then(|n| n.str()).map(str::to_string);
    cx.unmapped(
        obj,
        &kind_node,
        &["model", "authToken", "apiVersion", "endpoint", "deploymentName", "region", "auth"],
        "Switchyard has no equivalent",
    );
    if let Some(t) = kind_node.get("authToken") {
        out.auth = auth_token(cx, obj, &t, &out.name);
    }
    Some(out)
}

fn auth_token(cx: &mut Ctx<'_>, obj: &Object, t: &Node<'_>, provider: &str) -> Auth {
    match t.get("kind").and_then(|n| n.str()) {
        Some("Passthrough") => Auth::Passthrough,
        Some("Inline") => {
            let var = common::env_name(&[provider, "API_KEY"]);
            cx.warn(obj, &t.field("inline"), format!("inline token not copied: set it in environment variable {var}"));
            cx.plan.env.entry(var.clone()).or_insert_with(|| format!("the inline token of provider {provider}"));
            Auth::Env(var)
        }
        _ => match t.get("secretRef").and_then(|s| s.get("name")).and_then(|n| n.str()) {
            // kgateway reads the token from the secret's `Authorization` entry.
            Some(name) => {
                let ns = obj.key.namespace.clone();
                Auth::Env(cx.secret_env(name, "Authorization", &ns))
            }
            None => {
                cx.missing(obj, &t.field("secretRef.name"), "a string");
                Auth::Default
            }
        },
    }
}

/// Applies every kgateway `TrafficPolicy` (retry, timeouts) to what it targets.
pub fn policies(cx: &mut Ctx<'_>) {
    let policies: Vec<&Object> = cx.index.of(GROUP, "TrafficPolicy").collect();
    for obj in policies {
        let Some(spec) = obj.spec() else {
            cx.missing(obj, "spec", "a mapping");
            continue;
        };
        cx.unmapped(obj, &spec, &["targetRefs", "targetRef", "retry", "timeouts"], "Switchyard has no equivalent");
        let (routes, backends) = common::targets(cx, obj);
        let mut per_try = None;
        if let Some(r) = spec.get("retry") {
            // kgateway's attempts counts retries: N retries are N + 1 attempts.
            let attempts = Some(r.get("attempts").and_then(|n| n.u64()).unwrap_or(1) + 1);
            let mut retry = RetryOut { attempts, ..RetryOut::default() };
            let codes = r.get("statusCodes").map(|n| common::statuses(cx, obj, &n)).unwrap_or_default();
            match r.get("retryOn") {
                Some(on) => common::envoy_retry_on(cx, obj, &on, &codes, &mut retry),
                None => retry.on_status = Some(codes),
            }
            if let Some(b) = r.get("backoffBaseInterval") {
                retry.backoff_base = common::duration(cx, obj, &b);
                // kgateway caps its back-off at ten times the base.
                retry.backoff_max = retry
                    .backoff_base
                    .as_deref()
                    .and_then(|s| crate::config::parse_duration(s).ok())
                    .map(|d| humantime::format_duration(d * 10).to_string());
            }
            per_try = r.get("perTryTimeout").and_then(|n| common::duration(cx, obj, &n));
            cx.unmapped(
                obj,
                &r,
                &["attempts", "statusCodes", "retryOn", "backoffBaseInterval", "perTryTimeout"],
                "Switchyard has no equivalent",
            );
            for &b in &backends {
                common::attach_retry(cx, obj, b, &retry);
            }
        }
        let request = spec.get("timeouts").and_then(|t| {
            cx.unmapped(obj, &t, &["request"], "Switchyard has no stream idle timeout apart from firstByte");
            t.get("request")
        });
        let request = request.and_then(|n| common::duration(cx, obj, &n));
        common::set_route_timeouts(cx, &routes, per_try, request);
    }
}
