//! Active health probes: for backends with `health.active`, each provider is sent the probe
//! request every `interval`; the answers go through the same state machine as passive
//! failures (`ProviderHealth::record_probe`). The same loop closes pooled upstream
//! connections that have been idle for too long.

use crate::config::ActiveProbe;
use crate::health::{Clock, SystemClock};
use crate::proxy::Gateway;
use crate::runtime::Upstream;
use crate::upstream::RequestHead;
use async_trait::async_trait;
use http::header;
use http::{HeaderMap, HeaderValue};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often due probes are looked for.
const TICK: Duration = Duration::from_millis(100);
/// Ticks between sweeps of the upstream connection pool.
const SWEEP_EVERY: u32 = 10;

pub struct Prober {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for Prober {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let clock = SystemClock;
        // Next due time by (backend, provider) name; rebuilt as the config changes.
        let mut due: HashMap<(String, String), u64> = HashMap::new();
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
            ticks = ticks.wrapping_add(1);
            if ticks.is_multiple_of(SWEEP_EVERY) {
                // Pooled upstream connections idle for too long are closed here, so a quiet
                // gateway does not hold them until its next request.
                self.gateway.connector().sweep();
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
                        gateway.announce(backend, slot, transition);
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
        // A new connection each time: a probe also checks that the provider can be reached,
        // and pooled connections belong to the proxy's threads.
        let mut session = gateway.connector().fresh(&peer).await.map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(header::HOST, upstream.host_header.clone());
        if let Some((name, value)) = &upstream.auth_header {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let req = RequestHead::new(probe.method.clone(), &probe.path, headers);
        session.send(&req, &[]).await.map_err(|e| e.to_string())?;
        session.read_response_header().await.map_err(|e| e.to_string())?;
        Ok(session.response_header().map(|h| h.status.as_u16()).unwrap_or(0))
    };
    match tokio::time::timeout(probe.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", probe.timeout)),
    }
}
