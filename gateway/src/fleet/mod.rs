//! Fleet: instances of the same `fleet.name` share provider ejections and client limits
//! through Redis (or any server speaking its protocol).
//!
//! - Ejections and restorations are published on a channel the moment one instance decides
//!   them, and kept in a hash so that an instance that starts or reconnects loads them.
//!   Peers apply them to their own health state ([`crate::health::ProviderHealth::apply_shared`]).
//! - Client limits are counted in Redis by a script (one round trip, [`limits`]), with a
//!   5 ms budget; past it, or with Redis down, the instance counts on its own.
//! - Redis is never on the request path otherwise: requests only queue events, and one
//!   background task talks to Redis, reconnects with backoff and reconciles.
//!
//! Keys, for fleet `NAME`: `switchyard:NAME:health` (hash: provider → [`state::Record`]),
//! channel `switchyard:NAME:events` ([`state::Event`]), `switchyard:NAME:client:CLIENT`
//! (hash: one-second buckets).

pub mod handoff;
pub mod limits;
pub mod state;

use crate::clients::{ClientLimits, Verdict};
use crate::config::FleetConfig;
use crate::proxy::Gateway;
use crate::telemetry::metrics;
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};
use state::{Clocks, Event, Record};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How long a starting instance waits for Redis before serving on its own state.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(1);
/// The most a client limit check waits for Redis before counting locally.
pub const LIMIT_BUDGET: Duration = Duration::from_millis(5);
/// Commands of the background task (and its liveness check) time out after this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
const PING_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Events waiting for Redis; past this they are dropped (reconciling catches up).
const QUEUE: usize = 1024;
/// The health hash outlives its last change by a day.
const STATE_TTL_MS: u64 = 86_400_000;

/// KEYS: health hash, events channel. ARGV: field, record, event, TTL ms, record's end.
/// Keeps the stored record when it ends later; always publishes.
const EJECT_SCRIPT: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local keep = false
if cur then
  local ok, old = pcall(cjson.decode, cur)
  keep = ok and type(old) == 'table' and tonumber(old['until']) ~= nil and tonumber(old['until']) > tonumber(ARGV[5])
end
if not keep then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('PUBLISH', KEYS[2], ARGV[3])
"#;

/// KEYS: health hash, events channel. ARGV: field, event, latest end it may remove.
/// Removes the stored record unless it is a newer ejection; always publishes.
const RESTORE_SCRIPT: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if not (ok and type(old) == 'table' and tonumber(old['until']) ~= nil and tonumber(old['until']) > tonumber(ARGV[3])) then
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
return redis.call('PUBLISH', KEYS[2], ARGV[2])
"#;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// This instance's link to its fleet.
pub struct Fleet {
    pub name: String,
    /// Tells this instance's events from its peers'.
    pub instance: String,
    client: redis::Client,
    health_key: String,
    channel: String,
    client_prefix: String,
    state: AtomicU8,
    /// The connection limit checks use, while connected.
    conn: ArcSwapOption<MultiplexedConnection>,
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    admit: redis::Script,
    eject: redis::Script,
    restore: redis::Script,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("name", &self.name).field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Fleet {
    pub fn new(config: &FleetConfig) -> Result<Fleet, String> {
        let mut info = config.url.as_str().into_connection_info().map_err(|e| format!("fleet.redis.url: {e}"))?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| format!("fleet.redis.url: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let prefix = format!("switchyard:{}", config.name);
        Ok(Fleet {
            name: config.name.clone(),
            instance: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            client,
            health_key: format!("{prefix}:health"),
            channel: format!("{prefix}:events"),
            client_prefix: format!("{prefix}:client:"),
            state: AtomicU8::new(UNKNOWN),
            conn: ArcSwapOption::empty(),
            tx,
            rx: Mutex::new(Some(rx)),
            admit: redis::Script::new(limits::ADMIT_SCRIPT),
            eject: redis::Script::new(EJECT_SCRIPT),
            restore: redis::Script::new(RESTORE_SCRIPT),
        })
    }

    pub fn connected(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Records a change of connection state; logs and sets the gauge only when it changes.
    fn set_state(&self, up: bool, detail: &str) {
        let new = if up { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        metrics::with(|m| m.fleet_connected.set(i64::from(up)));
        if up {
            info!(fleet = %self.name, "fleet: connected to Redis; sharing ejections and client limits");
        } else {
            warn!(fleet = %self.name, error = detail, "fleet: Redis unreachable; serving on this instance's own state until it is back");
        }
    }

    /// Queues an event for the fleet; never waits. With the queue full (Redis away for
    /// long), the event is dropped: reconciling on reconnect sends the state instead.
    pub fn publish(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            debug!("fleet: event queue full; the next reconnect reconciles");
        }
    }

    /// The ejections the fleet holds, read before serving: waits at most [`LOAD_TIMEOUT`].
    pub fn load(&self) -> Result<Vec<Record>, String> {
        let started = Instant::now();
        let mut con = self.client.get_connection_with_timeout(LOAD_TIMEOUT).map_err(|e| e.to_string())?;
        let left = LOAD_TIMEOUT.saturating_sub(started.elapsed()).max(Duration::from_millis(10));
        con.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        con.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
        let stored: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&self.health_key).query(&mut con).map_err(|e| e.to_string())?;
        Ok(decode_records(stored))
    }

    /// Marks the result of the load before serving (logged once, like every change).
    pub fn loaded(&self, result: &Result<Vec<Record>, String>) {
        if let Err(e) = result {
            self.set_state(false, e);
        }
    }

    /// Decides a client's request on the fleet's shared counts. `None` when Redis is down
    /// or slower than [`LIMIT_BUDGET`]: the caller counts locally.
    pub async fn admit(&self, client: &str, limits: &ClientLimits, now_wall: u64) -> Option<Verdict> {
        let conn = self.conn.load_full();
        let Some(conn) = conn.filter(|_| self.connected()) else {
            return self.local_limit();
        };
        let mut conn = (*conn).clone();
        let mut call = self.admit.key(format!("{}{client}", self.client_prefix));
        call.arg(now_wall / 1000)
            .arg(limits.requests_per_minute.map_or(0, |l| l.get()))
            .arg(limits.tokens_per_minute.map_or(0, |l| l.get()));
        match tokio::time::timeout(LIMIT_BUDGET, call.invoke_async::<Vec<(String, u64)>>(&mut conn)).await {
            Ok(Ok(live)) => Some(limits::verdict(&live, now_wall, limits)),
            Ok(Err(e)) => {
                debug!(error = %e, "fleet: limit check failed; counting locally");
                self.local_limit()
            }
            Err(_) => self.local_limit(),
        }
    }

    fn local_limit(&self) -> Option<Verdict> {
        metrics::with(|m| m.fleet_local_limits.inc());
        None
    }

    /// Adds an answer's tokens to the client's shared count, in the background.
    pub fn add_tokens(&self, client: &str, now_wall: u64, tokens: u64) {
        let Some(conn) = self.conn.load_full().filter(|_| self.connected()) else {
            return;
        };
        let mut conn = (*conn).clone();
        let key = format!("{}{client}", self.client_prefix);
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            pipe.hincr(&key, limits::tokens_field(now_wall / 1000), tokens)
                .ignore()
                .pexpire(&key, limits::TTL_MS as i64)
                .ignore();
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        });
    }

    /// Writes an event to the store and the channel.
    async fn send(&self, conn: &mut MultiplexedConnection, event: &Event) -> Result<(), String> {
        let payload = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let call = match event {
            Event::Ejected { record, .. } => {
                let stored = serde_json::to_string(record).map_err(|e| e.to_string())?;
                let mut call = self.eject.key(&self.health_key);
                call.key(&self.channel)
                    .arg(record.id.field())
                    .arg(stored)
                    .arg(payload)
                    .arg(STATE_TTL_MS)
                    .arg(record.until);
                call
            }
            Event::Restored { id, ended, .. } => {
                let mut call = self.restore.key(&self.health_key);
                call.key(&self.channel).arg(id.field()).arg(payload).arg(state::restorable_until(*ended));
                call
            }
        };
        timed(call.invoke_async::<i64>(conn)).await?;
        metrics::with(|m| m.fleet_events.with_label_values(&["out"]).inc());
        Ok(())
    }

    async fn fetch(&self, conn: &mut MultiplexedConnection) -> Result<Vec<Record>, String> {
        let stored: HashMap<String, String> =
            timed(redis::cmd("HGETALL").arg(&self.health_key).query_async(conn)).await?;
        Ok(decode_records(stored))
    }
}

async fn timed<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from Redis in {COMMAND_TIMEOUT:?}")),
    }
}

fn decode_records(stored: HashMap<String, String>) -> Vec<Record> {
    stored.values().filter_map(|v| serde_json::from_str::<Record>(v).ok()).collect()
}

/// The background task: one connection for commands, one subscription, reconnecting with
/// backoff; applies peers' events to the gateway.
pub struct FleetService {
    pub fleet: Arc<Fleet>,
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for FleetService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let rx = self.fleet.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut rx) = rx else {
            return;
        };
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut was_up = false;
            let result = tokio::select! {
                r = self.session(&mut rx, &mut was_up) => r,
                _ = shutdown.changed() => return,
            };
            self.fleet.conn.store(None);
            let detail = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            self.fleet.set_state(false, &detail);
            backoff = if was_up { BACKOFF_MIN } else { (backoff * 2).min(BACKOFF_MAX) };
            debug!(error = %detail, retry_in_ms = backoff.as_millis() as u64, "fleet: reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl FleetService {
    /// One connection's life: connect, subscribe, reconcile, then relay events both ways
    /// until Redis goes away.
    async fn session(&self, rx: &mut mpsc::Receiver<Event>, was_up: &mut bool) -> Result<(), String> {
        use futures_util::StreamExt;
        let fleet = &self.fleet;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut conn = timed(fleet.client.get_multiplexed_async_connection_with_config(&config)).await?;
        let mut pubsub = timed(fleet.client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(&fleet.channel)).await?;
        let mut messages = pubsub.into_on_message();

        // What happened here while away, in order (restorations among it); then what the
        // fleet holds; then this instance's ejections the fleet lacks.
        while let Ok(event) = rx.try_recv() {
            fleet.send(&mut conn, &event).await?;
        }
        let stored = fleet.fetch(&mut conn).await?;
        for record in &stored {
            self.gateway.apply_record(record, "fleet");
        }
        let mine = self.gateway.health_records(Clocks::now());
        for record in state::to_push(&mine, &stored) {
            fleet.send(&mut conn, &Event::Ejected { from: fleet.instance.clone(), record }).await?;
        }
        fleet.conn.store(Some(Arc::new(conn.clone())));
        fleet.set_state(true, "");
        *was_up = true;

        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => fleet.send(&mut conn, &event).await?,
                    None => return Ok(()),
                },
                message = messages.next() => match message {
                    Some(m) => self.receive(m.get_payload_bytes()),
                    None => return Err("subscription closed".to_string()),
                },
                _ = ping.tick() => timed(redis::cmd("PING").query_async::<String>(&mut conn)).await.map(drop)?,
            }
        }
    }

    fn receive(&self, payload: &[u8]) {
        let event = match serde_json::from_slice::<Event>(payload) {
            Ok(e) => e,
            Err(e) => {
                debug!(error = %e, "fleet: ignoring an event this version does not read");
                return;
            }
        };
        if event.from() == self.fleet.instance {
            return;
        }
        metrics::with(|m| m.fleet_events.with_label_values(&["in"]).inc());
        self.gateway.apply_event(&event);
    }
}
