//! Writing the plan as a commented Switchyard config, and checking it with the loader that
//! `switchyard --validate` uses, without requiring the environment variables it names.

use super::{Auth, Headers, HealthOut, Kind, Plan, ProviderOut, RetryOut};
use serde_yaml::{Mapping, Value};
use std::fmt::Write;

/// The admin listener every imported config gets (loopback only).
const ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// A YAML scalar for `s`, quoted when plain text would change its meaning.
fn q(s: &str) -> String {
    match serde_yaml::to_string(s) {
        Ok(t) if !t.trim_end().contains('\n') => t.trim_end().to_string(),
        _ => serde_json::to_string(s).unwrap_or_default(),
    }
}

pub fn write(plan: &Plan, sources: &[(String, String)]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Switchyard configuration written by `switchyard import` from:");
    for (file, _) in sources {
        let _ = writeln!(o, "#   {file}");
    }
    if !plan.env.is_empty() {
        let _ = writeln!(o, "# Secrets are not copied: set these environment variables before starting.");
        for (var, what) in &plan.env {
            let _ = writeln!(o, "#   {var}: {what}");
        }
    }
    o.push_str("listen:\n");
    for (addr, origin) in &plan.listen {
        match origin {
            Some(from) => {
                let _ = writeln!(o, "  # from {from}");
            }
            None => o.push_str("  # no Gateway among the inputs: the default listener\n"),
        }
        let _ = writeln!(o, "  - {}", q(addr));
    }
    let _ = writeln!(o, "admin:\n  listen: {}", q(ADMIN_LISTEN));
    o.push_str("routes:\n");
    for r in &plan.routes {
        let _ = writeln!(o, "  # from {}", r.origin);
        for note in &r.notes {
            let _ = writeln!(o, "  # {note}");
        }
        let _ = writeln!(o, "  - name: {}\n    match:\n      pathPrefix: {}", q(&r.name), q(&r.path_prefix));
        if let Some(rw) = &r.rewrite {
            let _ = writeln!(o, "    rewrite:\n      fullPath: {}", q(rw));
        }
        headers(&mut o, "requestHeaders", &r.request_headers);
        headers(&mut o, "responseHeaders", &r.response_headers);
        if r.timeout_request.is_some() || r.timeout_first_byte.is_some() {
            o.push_str("    timeouts:\n");
            if let Some(t) = &r.timeout_request {
                let _ = writeln!(o, "      request: {}", q(t));
            }
            if let Some(t) = &r.timeout_first_byte {
                let _ = writeln!(o, "      firstByte: {}", q(t));
            }
        }
        let _ = writeln!(o, "    backend: {}", q(&plan.backends[r.backend].name));
    }
    o.push_str("backends:\n");
    for b in &plan.backends {
        let _ = writeln!(o, "  # from {}", b.origin);
        for note in &b.notes {
            let _ = writeln!(o, "  # {note}");
        }
        let _ = writeln!(o, "  {}:\n    groups:", q(&b.name));
        for group in &b.groups {
            o.push_str("      - providers:\n");
            for p in group {
                provider(&mut o, p);
            }
        }
        if let Some(from) = &b.health_from {
            let _ = writeln!(o, "    # health from {from}");
            health(&mut o, &b.health);
        }
        if let Some(from) = &b.retry_from {
            let _ = writeln!(o, "    # retry from {from}");
            retry(&mut o, &b.retry);
        }
    }
    o
}

fn headers(o: &mut String, field: &str, h: &Headers) {
    if *h == Headers::default() {
        return;
    }
    let _ = writeln!(o, "    {field}:");
    for (name, list) in [("add", &h.add), ("set", &h.set)] {
        if !list.is_empty() {
            let _ = writeln!(o, "      {name}:");
            for (k, v) in list {
                let _ = writeln!(o, "        {}: {}", q(k), q(v));
            }
        }
    }
    if !h.remove.is_empty() {
        o.push_str("      remove:\n");
        for k in &h.remove {
            let _ = writeln!(o, "        - {}", q(k));
        }
    }
}

fn provider(o: &mut String, p: &ProviderOut) {
    let _ = writeln!(o, "          - name: {}", q(&p.name));
    let field = |o: &mut String, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            let _ = writeln!(o, "              {k}: {}", q(v));
        }
    };
    match &p.kind {
        Kind::OpenAi { model } | Kind::Gemini { model } => {
            let kind = if matches!(p.kind, Kind::OpenAi { .. }) { "openai" } else { "gemini" };
            if model.is_none() {
                let _ = writeln!(o, "            {kind}: {{}}");
            } else {
                let _ = writeln!(o, "            {kind}:");
                field(o, "model", model);
            }
        }
        Kind::Anthropic { model, version } => {
            if model.is_none() && version.is_none() {
                o.push_str("            anthropic: {}\n");
            } else {
                o.push_str("            anthropic:\n");
                field(o, "model", model);
                field(o, "version", version);
            }
        }
        Kind::Bedrock { model, region } => {
            o.push_str("            bedrock:\n");
            field(o, "model", &Some(model.clone()));
            field(o, "region", &Some(region.clone()));
        }
        Kind::Azure { resource, deployment, api_version } => {
            o.push_str("            azure:\n");
            field(o, "resource", resource);
            field(o, "deployment", &Some(deployment.clone()));
            field(o, "apiVersion", &Some(api_version.clone()));
        }
    }
    if let Some(h) = &p.host {
        let _ = writeln!(o, "            host: {}", q(h));
    }
    if let Some(port) = p.port {
        let _ = writeln!(o, "            port: {port}");
    }
    if let Some(tls) = p.tls {
        let _ = writeln!(o, "            tls: {tls}");
    }
    if let Some(path) = &p.path {
        let _ = writeln!(o, "            path: {}", q(path));
    }
    match &p.auth {
        Auth::Default => {}
        Auth::Env(var) => {
            let _ = writeln!(o, "            auth:\n              apiKey:\n                env: {}", q(var));
        }
        Auth::Passthrough => o.push_str("            auth:\n              passthrough: {}\n"),
    }
}

fn health(o: &mut String, h: &HealthOut) {
    o.push_str("    health:\n");
    if let Some(c) = &h.unhealthy_condition {
        let _ = writeln!(o, "      unhealthyCondition: {}", q(c));
    }
    if h.duration.is_some() || h.consecutive_failures.is_some() || h.max_ejection_percent.is_some() {
        o.push_str("      eviction:\n");
        if let Some(d) = &h.duration {
            let _ = writeln!(o, "        duration: {}", q(d));
        }
        if let Some(n) = h.consecutive_failures {
            let _ = writeln!(o, "        consecutiveFailures: {n}");
        }
        if let Some(n) = h.max_ejection_percent {
            let _ = writeln!(o, "        maxEjectionPercent: {n}");
        }
    }
}

fn retry(o: &mut String, r: &RetryOut) {
    o.push_str("    retry:\n");
    if let Some(n) = r.attempts {
        let _ = writeln!(o, "      attempts: {n}");
    }
    if let Some(list) = &r.on_status {
        let list: Vec<String> = list.iter().map(u64::to_string).collect();
        let _ = writeln!(o, "      onStatus: [{}]", list.join(", "));
    }
    if let Some(list) = &r.on_transport {
        let _ = writeln!(o, "      onTransport: [{}]", list.join(", "));
    }
    if r.backoff_base.is_some() || r.backoff_max.is_some() {
        o.push_str("      backoff:\n");
        if let Some(b) = &r.backoff_base {
            let _ = writeln!(o, "        base: {}", q(b));
        }
        if let Some(m) = &r.backoff_max {
            let _ = writeln!(o, "        max: {}", q(m));
        }
    }
}

/// Loads `yaml` with the config loader. Credentials are the one thing not checked: the
/// environment variables and AWS credentials the config names are set where it runs, not
/// where it is imported, so for this check each provider's `auth` is replaced by `none`.
pub fn validate(yaml: &str) -> Result<(), Vec<String>> {
    let mut doc: Value = serde_yaml::from_str(yaml).map_err(|e| vec![format!("YAML: {e}")])?;
    if let Some(backends) = doc.get_mut("backends").and_then(Value::as_mapping_mut) {
        for backend in backends.values_mut() {
            let groups = backend.get_mut("groups").and_then(Value::as_sequence_mut).into_iter().flatten();
            for group in groups {
                let providers = group.get_mut("providers").and_then(Value::as_sequence_mut).into_iter().flatten();
                for p in providers.filter_map(Value::as_mapping_mut) {
                    let no_credentials = p.get("auth").and_then(|a| a.get("apiKey")).is_some()
                        || (p.contains_key("bedrock") && !p.contains_key("auth"));
                    if no_credentials {
                        let mut none = Mapping::new();
                        none.insert("none".into(), Value::Mapping(Mapping::new()));
                        p.insert("auth".into(), Value::Mapping(none));
                    }
                }
            }
        }
    }
    let text = serde_yaml::to_string(&doc).map_err(|e| vec![format!("YAML: {e}")])?;
    crate::config::load_str(&text).map(|_| ()).map_err(|e| e.errors)
}
