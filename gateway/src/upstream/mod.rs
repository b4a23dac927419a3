//! Where a provider lives on the network and how the gateway talks to it: its Pingora peer,
//! with DNS resolved asynchronously and cached (never the blocking resolver inside
//! `HttpPeer::new`), TLS always with SNI so certificates are verified; the HTTP/1.1 client
//! ([`UpstreamSession`]) and the connection pool ([`Connector`]).

use crate::config::ProviderConfig;
use arc_swap::ArcSwapOption;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod pool;

pub use crate::http1::client::{RequestHead, ResponseHead, UpstreamSession};
pub use pool::{Connector, POOL_IDLE};

/// How long a DNS answer is used before it is looked up again.
const DNS_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("DNS lookup of {host} failed: {reason}")]
    Failed { host: String, reason: String },
}

/// One provider's peer, refreshed from DNS when stale.
#[derive(Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    tls: bool,
    peer: ArcSwapOption<HttpPeer>,
    /// Monotonic ms when the current peer was resolved; 0 = fixed IP (never stale).
    resolved_at: AtomicU64,
}

impl Endpoint {
    pub fn new(p: &ProviderConfig) -> Endpoint {
        Endpoint::from_parts(&p.host, p.port, p.tls)
    }

    /// An endpoint that is not a provider (e.g. a token endpoint).
    pub fn from_parts(host: &str, port: u16, tls: bool) -> Endpoint {
        let ep = Endpoint {
            host: host.to_string(),
            port,
            tls,
            peer: ArcSwapOption::empty(),
            resolved_at: AtomicU64::new(0),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            ep.peer.store(Some(Arc::new(ep.make_peer(SocketAddr::new(ip, port)))));
        }
        ep
    }

    /// `host:port`, for logs.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn make_peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        // Pool per provider endpoint; Pingora keys the pool on address, scheme and SNI.
        peer.options.idle_timeout = Some(POOL_IDLE);
        peer
    }

    /// The peer to connect to, resolving the host when needed.
    pub async fn peer(&self, now_ms: u64) -> Result<Arc<HttpPeer>, ResolveError> {
        let current = self.peer.load_full();
        let at = self.resolved_at.load(Ordering::Relaxed);
        if let Some(peer) = &current {
            if at == 0 || now_ms.saturating_sub(at) < DNS_TTL.as_millis() as u64 {
                return Ok(peer.clone());
            }
        }
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(addr) => {
                    let peer = Arc::new(self.make_peer(addr));
                    self.peer.store(Some(peer.clone()));
                    self.resolved_at.store(now_ms.max(1), Ordering::Relaxed);
                    Ok(peer)
                }
                None => self.stale_or(current, "no addresses".into()),
            },
            Err(e) => self.stale_or(current, e.to_string()),
        }
    }

    /// On a failed refresh, keep using the last good answer.
    fn stale_or(&self, current: Option<Arc<HttpPeer>>, reason: String) -> Result<Arc<HttpPeer>, ResolveError> {
        current.ok_or(ResolveError::Failed { host: self.host.clone(), reason })
    }
}
