//! Active health probes: for backends with `health.active`, each provider is sent the probe
//! request every `interval`; the answers go through the same state machine as passive
//! failures (`ProviderHealth::record_probe`).

use crate::config::ActiveProbe;
use crate::health::{Clock, SystemClock};
use crate::proxy::Gateway;
use crate::runtime::Upstream;
use async_trait::async_trait;
use http::header;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::RequestHeader;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often due probes are looked for.
const TICK: Duration = Duration::from_millis(100);

pub struct Prober {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let clock = SystemClock;
        // Next due time by (backend, provider) name; rebuilt as the config changes.
        let mut due: HashMap<(String, String), u64> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
            let rt = self.gateway.runtime();
            let now = clock.now();
            for (bi, backend) in rt.backends.iter().enumerate() {
                let Some(probe) = backend.balancer.backend.health.active.clone() else {
                    continue;
                };
                for (pi, slot) in backend.balancer.providers.iter().enumerate() {
                    let key = (backend.balancer.backend.name.clone(), slot.config.name.clone());
                    let next = due.entry(key).or_insert(now);
                    if *next > now {
                        continue;
                    }
                    *next = now + probe.interval.as_millis() as u64;
                    let gateway = self.gateway.clone();
                    let rt = rt.clone();
                    let probe = probe.clone();
                    tokio::spawn(async move {
                        let backend = &rt.backends[bi];
                        let slot = &backend.balancer.providers[pi];
                        let result = send_probe(&gateway, &backend.upstreams[pi], &probe).await;
                        let (ok, detail) = match &result {
                            Ok(status) => ((200..300).contains(status), format!("status {status}")),
                            Err(e) => (false, e.clone()),
                        };
                        let now = SystemClock.now();
                        let eviction = &backend.balancer.backend.health.eviction;
                        let thresholds = (probe.healthy_threshold, probe.unhealthy_threshold);
                        let transition = backend.balancer.with_eject_lock(slot.group, || {
                            slot.health.record_probe(ok, &detail, now, thresholds, eviction, || {
                                backend.balancer.may_eject(slot.group, now)
                            })
                        });
                        crate::proxy::report_transition(&slot.config.name, transition);
                    });
                }
            }
        }
    }
}

/// Sends one probe; the answer's status, or what went wrong.
async fn send_probe(gateway: &Gateway, upstream: &Upstream, probe: &ActiveProbe) -> Result<u16, String> {
    let exchange = async {
        let peer = upstream.endpoint.peer(SystemClock.now()).await.map_err(|e| e.to_string())?;
        let connector = gateway.connector();
        let (mut session, _) = connector.get_http_session(&*peer).await.map_err(|e| e.to_string())?;
        let mut req =
            RequestHeader::build(probe.method.clone(), probe.path.as_bytes(), Some(3)).map_err(|e| e.to_string())?;
        req.insert_header(header::HOST, upstream.host_header.clone()).map_err(|e| e.to_string())?;
        if let Some((name, value)) = &upstream.auth_header {
            req.insert_header(name.clone(), value.clone()).map_err(|e| e.to_string())?;
        }
        req.insert_header(header::CONTENT_LENGTH, "0").map_err(|e| e.to_string())?;
        session.write_request_header(Box::new(req)).await.map_err(|e| e.to_string())?;
        session.finish_request_body().await.map_err(|e| e.to_string())?;
        session.read_response_header().await.map_err(|e| e.to_string())?;
        let status = session.response_header().map(|h| h.status.as_u16()).unwrap_or(0);
        // Drain the (small) body so the connection can be reused.
        while let Ok(Some(_)) = session.read_response_body().await {}
        connector.release_http_session(session, &*peer, Some(crate::upstream::POOL_IDLE)).await;
        Ok(status)
    };
    match tokio::time::timeout(probe.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", probe.timeout)),
    }
}
