//! agentgateway: `AgentgatewayBackend` (`spec.ai.provider` or priority `spec.ai.groups`,
//! provider kinds, host/port/path, auth) and `AgentgatewayPolicy` (backend health:
//! `unhealthyCondition`, eviction; traffic retry and timeouts).

use super::common;
use super::documents::{Node, Object};
use super::{Auth, BackendOut, Ctx, HealthOut, Kind, ProviderOut};

pub const GROUP: &str = "agentgateway.dev";

/// Maps an `AgentgatewayBackend`; the index of the backend in the plan.
pub fn backend(cx: &mut Ctx<'_>, obj: &Object) -> Option<usize> {
    let Some(spec) = obj.spec() else {
        cx.missing(obj, "spec", "a mapping");
        return None;
    };
    let Some(ai) = spec.get("ai") else {
        let kind = spec.keys().first().map_or("empty", |k| *k).to_string();
        cx.warn(obj, "spec", format!("skipped: only ai backends are imported, this one is {kind}"));
        return None;
    };
    let policies = spec.get("policies");
    let backend_auth = policies.as_ref().and_then(|p| p.get("auth"));
    let mut groups = Vec::new();
    match (ai.get("provider"), ai.get("groups")) {
        (Some(p), None) => {
            let name = cx.provider_name(&obj.key.name);
            groups.extend(provider(cx, obj, &p, name, backend_auth.as_ref()).map(|p| vec![p]));
        }
        (None, Some(gs)) => {
            for g in gs.items() {
                let mut group = Vec::new();
                for p in g.get("providers").map(|n| n.items()).unwrap_or_default() {
                    let Some(name) = p.get("name").and_then(|n| n.str()) else {
                        cx.missing(obj, &p.field("name"), "a string");
                        continue;
                    };
                    let name = cx.provider_name(name);
                    group.extend(provider(cx, obj, &p, name, backend_auth.as_ref()));
                }
                if group.is_empty() {
                    cx.warn(obj, &g.path, "skipped: no provider of this group could be mapped");
                } else {
                    groups.push(group);
                }
            }
        }
        _ => {
            cx.warn(obj, &ai.path, "skipped: give exactly one of provider or groups");
            return None;
        }
    }
    cx.unmapped(obj, &ai, &["provider", "groups"], "Switchyard has no equivalent");
    if groups.is_empty() {
        return None;
    }
    let mut out =
        BackendOut { provider_paths: true, ..BackendOut::new(cx.backend_name(&obj.key.name), obj.origin(), groups) };
    if let Some(p) = &policies {
        cx.unmapped(obj, p, &["auth", "health"], "Switchyard has no equivalent");
        if let Some(h) = p.get("health") {
            out.health = health(cx, obj, &h);
            out.health_from = Some(obj.origin());
        }
    }
    Some(cx.push_backend(out))
}

fn provider(
    cx: &mut Ctx<'_>,
    obj: &Object,
    p: &Node<'_>,
    name: String,
    default_auth: Option<&Node<'_>>,
) -> Option<ProviderOut> {
    let model = |k: &Node<'_>| k.get("model").and_then(|n| n.text());
    let kind = if let Some(k) = p.get("openai") {
        Kind::OpenAi { model: model(&k) }
    } else if let Some(k) = p.get("anthropic") {
        Kind::Anthropic { model: model(&k), version: None }
    } else if let Some(k) = p.get("gemini") {
        Kind::Gemini { model: model(&k) }
    } else if let Some(k) = p.get("bedrock") {
        cx.unmapped(obj, &k, &["model", "region"], "Switchyard has no Bedrock guardrails");
        let region = k.get("region").and_then(|n| n.text()).unwrap_or_else(|| "us-east-1".to_string());
        let Some(model) = model(&k) else {
            cx.warn(obj, &k.field("model"), "skipped provider: Switchyard's bedrock provider needs a model");
            return None;
        };
        Kind::Bedrock { model, region }
    } else if let Some(k) = p.get("azureopenai") {
        let endpoint = k.get("endpoint").and_then(|n| n.str()).unwrap_or_default();
        let endpoint = endpoint.trim_start_matches("https://").trim_end_matches('/');
        let Some(deployment) = k.get("deploymentName").and_then(|n| n.text()) else {
            cx.warn(
                obj,
                &k.field("deploymentName"),
                "skipped provider: Switchyard's azure provider needs a deployment",
            );
            return None;
        };
        let api_version = k.get("apiVersion").and_then(|n| n.text()).unwrap_or_else(|| "v1".to_string());
        match endpoint.strip_suffix(".openai.azure.com") {
            Some(resource) => Kind::Azure { resource: Some(resource.to_string()), deployment, api_version },
            None => {
                cx.warn(
                    obj,
                    &k.field("endpoint"),
                    "endpoint is not {resource}.openai.azure.com; imported as the provider host",
                );
                Kind::Azure { resource: None, deployment, api_version }
            }
        }
    } else {
        let kind = p.keys().into_iter().find(|k| !["name", "policies", "host", "port", "path"].contains(k));
        cx.warn(
            obj,
            &p.path,
            format!("skipped provider: kind {} is not a Switchyard provider kind", kind.unwrap_or("(none)")),
        );
        return None;
    };
    let mut out = ProviderOut { name, kind, host: None, port: None, tls: None, path: None, auth: Auth::Default };
    if let Kind::Azure { resource: None, .. } = out.kind {
        out.host = p.get("azureopenai").and_then(|k| k.get("endpoint")).and_then(|n| n.str()).map(str::to_string);
    }
    let policies = p.get("policies");
    if let Some(h) = p.get("host").and_then(|n| n.str()) {
        out.host = Some(h.to_string());
        out.port = p.get("port").and_then(|n| n.u64()).and_then(|n| u16::try_from(n).ok());
        let tls_policy = policies.as_ref().and_then(|x| x.get("tls")).is_some();
        out.tls = Some(tls_policy || out.port.is_none_or(|port| port == 443));
    }
    out.path = p.get("path").and_then(|n| n.str()).map(str::to_string);
    cx.unmapped(
        obj,
        p,
        &["name", "policies", "host", "port", "path", "openai", "anthropic", "gemini", "bedrock", "azureopenai"],
        "Switchyard has no equivalent",
    );
    if let Some(pol) = &policies {
        cx.unmapped(obj, pol, &["auth", "tls"], "Switchyard has no per-provider equivalent");
    }
    let auth = policies.as_ref().and_then(|x| x.get("auth")).or_else(|| default_auth.cloned());
    if let Some(a) = auth {
        out.auth = self::auth(cx, obj, &a, &out.name, matches!(out.kind, Kind::Bedrock { .. }));
    }
    Some(out)
}

fn auth(cx: &mut Ctx<'_>, obj: &Object, a: &Node<'_>, provider: &str, bedrock: bool) -> Auth {
    if let Some(s) = a.get("secretRef") {
        let Some(name) = s.get("name").and_then(|n| n.str()) else {
            cx.missing(obj, &s.field("name"), "a string");
            return Auth::Default;
        };
        // agentgateway reads the key from the secret's `Authorization` entry.
        let ns = obj.key.namespace.clone();
        return Auth::Env(cx.secret_env(name, "Authorization", &ns));
    }
    if a.get("passthrough").is_some() {
        return Auth::Passthrough;
    }
    if a.get("key").is_some() {
        let var = common::env_name(&[provider, "API_KEY"]);
        cx.warn(obj, &a.field("key"), format!("inline key not copied: set it in environment variable {var}"));
        cx.plan.env.entry(var.clone()).or_insert_with(|| format!("the inline key of provider {provider}"));
        return Auth::Env(var);
    }
    if bedrock && a.get("aws").is_some() {
        return Auth::Default;
    }
    cx.unmapped(obj, a, &[], "Switchyard takes an API key from the environment, passthrough, or AWS credentials");
    Auth::Default
}

fn health(cx: &mut Ctx<'_>, obj: &Object, h: &Node<'_>) -> HealthOut {
    let mut out = HealthOut::default();
    if let Some(c) = h.get("unhealthyCondition") {
        out.unhealthy_condition = common::condition(cx, obj, &c);
    }
    if let Some(e) = h.get("eviction") {
        if let Some(d) = e.get("duration") {
            out.duration = common::duration(cx, obj, &d);
        }
        if let Some(n) = e.get("consecutiveFailures") {
            // agentgateway: unset or 0 means one unhealthy answer evicts.
            out.consecutive_failures = Some(n.u64().unwrap_or(1).max(1));
        }
        cx.unmapped(
            obj,
            &e,
            &["duration", "consecutiveFailures"],
            "Switchyard ejects on consecutive failures, without a health score",
        );
    }
    cx.unmapped(obj, h, &["unhealthyCondition", "eviction"], "Switchyard has no equivalent");
    out
}

/// Applies every `AgentgatewayPolicy` to the routes and backends it targets.
pub fn policies(cx: &mut Ctx<'_>) {
    let policies: Vec<&Object> = cx.index.of(GROUP, "AgentgatewayPolicy").collect();
    for obj in policies {
        let Some(spec) = obj.spec() else {
            cx.missing(obj, "spec", "a mapping");
            continue;
        };
        cx.unmapped(obj, &spec, &["targetRefs", "backend", "traffic"], "Switchyard has no equivalent");
        let (routes, backends) = common::targets(cx, obj);
        if let Some(b) = spec.get("backend") {
            cx.unmapped(obj, &b, &["health"], "Switchyard has no equivalent");
            if let Some(h) = b.get("health") {
                let health = health(cx, obj, &h);
                for &i in &backends {
                    common::attach_health(cx, obj, i, &health);
                }
            }
        }
        if let Some(t) = spec.get("traffic") {
            cx.unmapped(obj, &t, &["retry", "timeouts"], "Switchyard has no equivalent");
            if let Some(r) = t.get("retry") {
                let retry = common::gateway_api_retry(cx, obj, &r);
                for &i in &backends {
                    common::attach_retry(cx, obj, i, &retry);
                }
            }
            if let Some(tm) = t.get("timeouts") {
                for &i in &routes {
                    let mut route = cx.plan.routes[i].clone();
                    super::gateway_api::timeouts(cx, obj, &tm, &mut route);
                    cx.plan.routes[i] = route;
                }
            }
        }
    }
}
