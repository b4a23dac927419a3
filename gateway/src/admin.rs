//! The admin listener (loopback by default): `/healthz` (process up), `/readyz` (config
//! loaded and every backend has a provider in service), `/metrics` (Prometheus text).

use crate::health::{Clock, SystemClock};
use crate::proxy::Gateway;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_prometheus::prometheus::{self, Encoder, TextEncoder};
use std::sync::Arc;

pub struct AdminApp {
    pub gateway: Arc<Gateway>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
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
            .filter(|b| {
                b.balancer
                    .providers
                    .iter()
                    .all(|p| p.health.ejected_until(now).is_some())
            })
            .map(|b| b.balancer.backend.name.as_str())
            .collect();
        if not_ready.is_empty() {
            json(200, serde_json::json!({"ready": true}))
        } else {
            json(503, serde_json::json!({"ready": false, "allEjected": not_ready}))
        }
    }

    fn metrics(&self) -> Response<Vec<u8>> {
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
        let path = session.req_header().uri.path();
        match path {
            "/healthz" => json(200, serde_json::json!({"status": "ok"})),
            "/readyz" => self.readyz(),
            "/metrics" => self.metrics(),
            other => json(404, serde_json::json!({"error": format!("no admin endpoint {other}")})),
        }
    }
}
