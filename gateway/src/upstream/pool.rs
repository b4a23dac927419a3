//! Upstream connections: new ones from Pingora's transport connector (TCP, TLS with SNI and
//! verification), idle ones kept per peer, newest first, without a buffer each.

use crate::http1::client::UpstreamSession;
use pingora_core::connectors::TransportConnector;
use pingora_core::protocols::Stream;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::Result;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a pooled upstream connection may sit idle.
pub const POOL_IDLE: Duration = Duration::from_secs(60);
/// Idle connections kept per peer; the oldest goes when a newer one comes back.
const MAX_IDLE_PER_PEER: usize = 256;

struct Idle {
    stream: Stream,
    since: Instant,
}

pub struct Connector {
    transport: TransportConnector,
    idle: Mutex<HashMap<u64, Vec<Idle>>>,
}

impl Default for Connector {
    fn default() -> Self {
        Connector { transport: TransportConnector::new(None), idle: Mutex::new(HashMap::new()) }
    }
}

impl Connector {
    /// A connection to `peer`: a pooled one that is still open, else a new one. The flag
    /// says whether it was pooled (such a connection may turn out closed when used).
    pub async fn get(&self, peer: &HttpPeer) -> Result<(UpstreamSession, bool)> {
        let key = peer.reuse_hash();
        while let Some(stream) = self.take_idle(key) {
            let mut session = UpstreamSession::new(stream);
            if !session.is_closed() {
                return Ok((session, true));
            }
        }
        // Boxed: connecting (TCP, TLS handshake) is a large future, and only a pool miss
        // needs it; inline it would enlarge every request's future.
        let stream = Box::pin(self.transport.new_stream(peer)).await?;
        Ok((UpstreamSession::new(stream), false))
    }

    /// A connection that is never pooled (health probes).
    pub async fn fresh(&self, peer: &HttpPeer) -> Result<UpstreamSession> {
        Ok(UpstreamSession::new(self.transport.new_stream(peer).await?))
    }

    /// Gives a connection back after its exchange; kept only if it can carry another one.
    pub fn release(&self, session: UpstreamSession, peer: &HttpPeer) {
        if !session.reusable() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.entry(peer.reuse_hash()).or_default();
        expire(list, now);
        if list.len() >= MAX_IDLE_PER_PEER {
            list.remove(0);
        }
        list.push(Idle { stream: session.into_idle(), since: now });
    }

    /// Closes connections idle for longer than [`POOL_IDLE`].
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.retain(|_, list| {
            expire(list, now);
            !list.is_empty()
        });
    }

    /// Idle connections held, for tests and the status view.
    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn take_idle(&self, key: u64) -> Option<Stream> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.get_mut(&key)?;
        expire(list, now);
        list.pop().map(|i| i.stream)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops the connections idle for too long (the oldest are first).
fn expire(list: &mut Vec<Idle>, now: Instant) {
    let stale = list.iter().take_while(|i| now.duration_since(i.since) > POOL_IDLE).count();
    if stale > 0 {
        list.drain(..stale);
    }
}
