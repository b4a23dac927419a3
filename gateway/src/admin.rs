//! The admin listener (loopback by default): `/healthz` (process up), `/readyz` (config
//! loaded and every backend has a provider in service), `/status` (live health of every
//! provider and client, JSON), `/metrics` (Prometheus text). With `admin.token` every
//! endpoint but `/healthz` and `/readyz` needs `Authorization: Bearer TOKEN`. Credentials
//! never appear here.

use crate::health::{Clock, Phase, SystemClock};
use crate::proxy::Gateway;
use crate::telemetry::metrics;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_prometheus::prometheus::{self, Encoder, TextEncoder};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub struct AdminApp {
    pub gateway: Arc<Gateway>,
    pub reloader: Arc<crate::lifecycle::Reloader>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", value.to_string().into_bytes())
}

impl AdminApp {
    fn readyz(&self) -> Response<Vec<u8>> {
        let rt = self.gateway.runtime();
        let now = SystemClock.now();
        let not_ready: Vec<&str> = rt
            .backends
            .iter()
            .filter(|b| b.balancer.providers.iter().all(|p| p.health.ejected_until(now).is_some()))
            .map(|b| b.balancer.backend.name.as_str())
            .collect();
        if not_ready.is_empty() {
            json(200, json!({"ready": true}))
        } else {
            json(503, json!({"ready": false, "allEjected": not_ready}))
        }
    }

    /// Every backend, group and provider with its health.
    pub fn status(&self) -> serde_json::Value {
        let rt = self.gateway.runtime();
        let now = SystemClock.now();
        let wall = SystemTime::now();
        let backends: Vec<serde_json::Value> = rt
            .backends
            .iter()
            .map(|b| {
                let policy = &b.balancer.backend.health;
                let groups: Vec<serde_json::Value> = b
                    .balancer
                    .backend
                    .groups
                    .iter()
                    .enumerate()
                    .map(|(gi, _)| {
                        let providers: Vec<serde_json::Value> = b
                            .balancer
                            .providers
                            .iter()
                            .filter(|p| p.group == gi)
                            .map(|p| {
                                let snap = p.health.snapshot(now, &policy.recovery);
                                let (requests, failures) = p.health.window.totals(now);
                                let until = snap.ejected_until.map(|u| {
                                    let left = Duration::from_millis(u.saturating_sub(now));
                                    (humantime::format_rfc3339_millis(wall + left).to_string(), left.as_secs_f64())
                                });
                                json!({
                                    "name": p.config.name,
                                    "kind": p.config.kind.as_str(),
                                    "model": p.config.model,
                                    "endpoint": b.upstreams[p.index].endpoint.authority(),
                                    "state": snap.phase.as_str(),
                                    "ejectedUntil": until.as_ref().map(|u| u.0.clone()),
                                    "ejectedForSeconds": until.as_ref().map(|u| u.1),
                                    "consecutiveFailures": snap.consecutive_failures,
                                    "timesEjected": snap.times_ejected,
                                    "ejectionStreak": snap.streak,
                                    "ejectionReason": snap.ejection_reason,
                                    "weight": snap.weight,
                                    "lastError": snap.last_error,
                                    "requestsLastMinute": requests,
                                    "failuresLastMinute": failures,
                                })
                            })
                            .collect();
                        json!({"priority": gi, "providers": providers})
                    })
                    .collect();
                json!({"name": b.balancer.backend.name, "groups": groups})
            })
            .collect();
        let clients = rt.clients.as_ref().map(|t| {
            t.clients()
                .iter()
                .map(|c| {
                    let usage = c.counter.usage(now);
                    json!({
                        "name": c.name,
                        "routes": c.allowed_routes,
                        "limits": {
                            "requestsPerMinute": c.limits.requests_per_minute,
                            "tokensPerMinute": c.limits.tokens_per_minute,
                        },
                        "requestsLastMinute": usage.requests,
                        "tokensLastMinute": usage.tokens,
                    })
                })
                .collect::<Vec<_>>()
        });
        let fleet =
            self.gateway.fleet().map(|f| json!({"name": f.name, "instance": f.instance, "connected": f.connected()}));
        json!({"backends": backends, "clients": clients, "fleet": fleet})
    }

    /// Sets the provider state gauges from live health, then renders every metric.
    fn metrics(&self) -> Response<Vec<u8>> {
        let rt = self.gateway.runtime();
        let now = SystemClock.now();
        metrics::with(|m| {
            m.buffered_body_bytes.set(i64::try_from(self.gateway.buffered_body_bytes()).unwrap_or(i64::MAX));
            m.provider_state.reset();
            for b in &rt.backends {
                let recovery = &b.balancer.backend.health.recovery;
                for p in &b.balancer.providers {
                    for budget in crate::health::headroom::Budget::ALL {
                        if let Some(share) = p.health.headroom_share(budget) {
                            m.provider_headroom
                                .with_label_values(&[p.config.name.as_str(), budget.as_str()])
                                .set(share);
                        }
                    }
                    let phase = p.health.snapshot(now, recovery).phase;
                    for state in [Phase::Healthy, Phase::Trial, Phase::Ejected] {
                        let value = i64::from(phase == state);
                        m.provider_state
                            .with_label_values(&[
                                b.balancer.backend.name.as_str(),
                                p.config.name.as_str(),
                                state.as_str(),
                            ])
                            .set(value);
                    }
                }
            }
        });
        let encoder = TextEncoder::new();
        let mut buf = Vec::new();
        match encoder.encode(&prometheus::gather(), &mut buf) {
            Ok(()) => respond(200, encoder.format_type(), buf),
            Err(e) => respond(500, "text/plain", e.to_string().into_bytes()),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let post = session.req_header().method == http::Method::POST;
        if !matches!(path.as_str(), "/healthz" | "/readyz") {
            let rt = self.gateway.runtime();
            if let Some(token) = &rt.config.admin_token {
                if !crate::clients::bearer_matches(&session.req_header().headers, token.expose()) {
                    let mut r =
                        json(401, json!({"error": "this admin endpoint needs Authorization: Bearer <admin.token>"}));
                    r.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
                    return r;
                }
            }
        }
        match path.as_str() {
            "/reload" if post => {
                let reloader = self.reloader.clone();
                match tokio::task::spawn_blocking(move || reloader.reload()).await {
                    Ok(Ok(())) => json(200, json!({"reloaded": true})),
                    Ok(Err(errors)) => json(400, json!({"reloaded": false, "errors": errors})),
                    Err(e) => json(500, json!({"reloaded": false, "errors": [e.to_string()]})),
                }
            }
            "/reload" => json(405, json!({"error": "use POST /reload"})),
            "/healthz" => {
                json(200, json!({"status": "ok", "pid": std::process::id(), "inFlight": crate::lifecycle::in_flight()}))
            }
            "/readyz" => self.readyz(),
            "/status" => json(200, self.status()),
            "/metrics" => self.metrics(),
            other => json(404, json!({"error": format!("no admin endpoint {other}")})),
        }
    }
}
