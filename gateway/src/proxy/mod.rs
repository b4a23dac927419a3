//! The request path: each request that the edge ([`crate::edge`]) hands over on a Pingora
//! server session is checked, answered through the attempt loop, and logged.
//!
//! Pingora's own proxy retry replays at most 64 KiB of body, so the attempt loop here keeps
//! the full body and sends it to each provider in turn. A failed answer is read to the end (it
//! is small) so the connection goes back to the pool, and it is kept in case no other
//! provider can be tried: then it goes to the client as it came.

mod attempt;
mod headers;
mod hedge;
mod shared;
pub mod verdict;

pub use attempt::report_transition;
pub use headers::{X_ATTEMPTS, X_DROPPED, X_MODEL, X_PROVIDER, X_REQUEST_ID};

use crate::balancer::{NoProvider, Pick, ProviderSet};
use crate::body::ChatRequest;
use crate::clients::{self, Client, ClientRegistry};
use crate::config::{Config, Route, TransportKind};
use crate::edge::budget::{BodyBudget, Reservation};
use crate::edge::checks::{self, Refusal};
use crate::edge::session::ClientSession as Session;
use crate::edge::{refuse, Handler};
use crate::error::GatewayError;
use crate::fleet::handoff::Handoff;
use crate::fleet::Fleet;
use crate::health::{Clock, SystemClock};
use crate::providers::ClientApi;
use crate::runtime::{BackendRuntime, HealthRegistry, Runtime};
use crate::sse::Usage;
use crate::telemetry::access_log::{millis, AccessLog, AttemptEntry, Entry};
use crate::telemetry::metrics;
use crate::upstream::Connector;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use attempt::{AttemptEnd, Failed};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora_core::protocols::http::ReusableHttpStream;
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorType};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// The gateway: the current runtime (swapped on reload), provider health (kept across
/// reloads), the upstream connector and the access log.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    registry: HealthRegistry,
    /// Client limit windows, kept across reloads by client name.
    clients: ClientRegistry,
    connector: Connector,
    clock: SystemClock,
    access_log: ArcSwap<AccessLog>,
    /// Request bodies held in memory by all requests (`limits.maxBufferedBodyBytes`).
    bodies: Arc<BodyBudget>,
    /// Shared state with the other instances of `fleet.name`, when configured.
    fleet: Option<Arc<Fleet>>,
    /// Health handed to the next process of a binary upgrade.
    handoff: Option<Arc<Handoff>>,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Counts the request as in flight (for draining) until the context is dropped.
    in_flight: Option<crate::lifecycle::InFlight>,
    /// The request body's share of the body budget, held until the request ends.
    body_held: Option<Reservation>,
    started: Option<Instant>,
    request_id: Option<HeaderValue>,
    route: Option<String>,
    stream: bool,
    model_requested: Option<String>,
    model_served: Option<String>,
    provider: Option<String>,
    status: Option<u16>,
    ttfb: Option<Duration>,
    bytes_in: usize,
    bytes_out: usize,
    attempts: Vec<AttemptRecord>,
    error: Option<String>,
    usage: Option<Usage>,
    /// Gateway errors in Anthropic's shape (the client speaks Anthropic's API).
    anthropic_errors: bool,
    /// The configuration has `clients`: the request is counted per client.
    clients_on: bool,
    /// The client its key names, when known.
    client: Option<Arc<Client>>,
}

impl Ctx {
    /// The model of the last provider tried, or the request's when none was.
    fn last_model(&self) -> Option<&str> {
        self.attempts.last().and_then(|a| a.model.as_deref()).or(self.model_requested.as_deref())
    }
}

/// One attempt, as logged.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub provider: String,
    pub endpoint: String,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub duration: Duration,
    pub ejected: bool,
    /// The model that provider was asked for.
    pub model: Option<String>,
    /// Request fields the `drop` translation policy removed, comma separated.
    pub dropped: Option<String>,
    /// In a hedged race: `won` or `lost`.
    pub race: Option<&'static str>,
}

/// What one request carries through its attempts.
struct Request<'a> {
    /// The API the client speaks, when the gateway knows it (and can translate).
    api: Option<crate::providers::ClientApi>,
    route: &'a Route,
    backend: &'a BackendRuntime,
    body: Bytes,
    chat: Option<ChatRequest>,
    started: Instant,
    deadline: Instant,
    request_id: HeaderValue,
}

impl Gateway {
    /// Builds the gateway for `config`. Fails only if the access log cannot be opened.
    /// `handoff`: where this process keeps its provider health for the next one (a binary
    /// upgrade).
    pub fn new(config: Config, handoff: Option<Arc<Handoff>>) -> std::io::Result<Gateway> {
        let fleet = match &config.fleet {
            Some(f) => Some(Arc::new(Fleet::new(f).map_err(std::io::Error::other)?)),
            None => None,
        };
        let access_log = AccessLog::open(&config.access_log)?;
        let registry = HealthRegistry::default();
        let clients = ClientRegistry::default();
        let bodies = BodyBudget::new(config.limits.max_buffered_body_bytes);
        let runtime = Runtime::build(config, &registry, &clients);
        Ok(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            registry,
            clients,
            connector: Connector::default(),
            clock: SystemClock,
            access_log: ArcSwap::from_pointee(access_log),
            bodies,
            fleet,
            handoff,
        })
    }

    /// Installs a new configuration. Requests in flight finish on the one they started
    /// with; health state carries over for providers whose name and endpoint are unchanged.
    pub fn reload(&self, config: Config) -> std::io::Result<()> {
        if config.access_log != self.runtime.load().config.access_log {
            self.access_log.store(Arc::new(AccessLog::open(&config.access_log)?));
        }
        self.bodies.set_limit(config.limits.max_buffered_body_bytes);
        let runtime = Runtime::build(config, &self.registry, &self.clients);
        let now = self.clock.now();
        for b in &runtime.backends {
            b.balancer.providers.iter().for_each(|p| p.health.on_reload(now));
        }
        self.runtime.store(Arc::new(runtime));
        Ok(())
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// A client's limit verdict: from the fleet's shared counts when a fleet is configured
    /// and answers within its budget, from this process's counts otherwise.
    async fn client_verdict(&self, client: &Client) -> clients::Verdict {
        let now = self.clock.now();
        if let Some(fleet) = self.fleet.as_ref().filter(|_| client.limits.any()) {
            let wall = crate::fleet::state::Clocks::now().wall;
            if let Some(verdict) = fleet.admit(&client.name, &client.limits, wall).await {
                if verdict.limited.is_none() {
                    client.counter.count(now);
                }
                return verdict;
            }
        }
        client.counter.admit(now, &client.limits)
    }

    /// Opens the access log file again by its path (logrotate moved it).
    pub fn reopen_access_log(&self) {
        self.access_log.load().reopen();
    }

    /// Waits (at most `timeout`) until the access log lines of requests served so far are
    /// written: before the process exits.
    pub fn flush_access_log(&self, timeout: Duration) {
        self.access_log.load().flush(timeout);
    }

    /// Request body bytes held in memory by all requests now (`limits.maxBufferedBodyBytes`).
    pub fn buffered_body_bytes(&self) -> u64 {
        self.bodies.used()
    }

    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }

    pub fn handoff(&self) -> Option<&Arc<Handoff>> {
        self.handoff.as_ref()
    }

    async fn serve(&self, session: &mut Session, ctx: &mut Ctx) -> std::result::Result<(), Box<Error>> {
        let started = Instant::now();
        ctx.in_flight = Some(crate::lifecycle::InFlight::enter());
        ctx.started = Some(started);
        let request_id = headers::request_id(session.req_header());
        ctx.request_id = Some(request_id.clone());
        let rt = self.runtime.load_full();
        ctx.clients_on = rt.clients.is_some();
        let path = session.req_header().uri.path();
        let Some(ri) = rt.routes.find(path) else {
            let path = path.to_string();
            return self.reject(session, ctx, GatewayError::NoRoute { path }, &[]).await;
        };
        let route = &rt.config.routes[ri];
        ctx.route = Some(route.name.clone());
        let backend = &rt.backends[route.backend];
        // The client's API is recognised from the rewritten path.
        let api_path = crate::routing::rewrite_path(route, path);
        let api = ClientApi::from_path(&api_path);
        ctx.anthropic_errors = crate::providers::paths::is_anthropic(&api_path);
        let list_models = api_path == "/v1/models" && session.req_header().method == http::Method::GET;
        let untranslated = api.is_none().then(|| api_path.into_owned());
        // Who is this, may they use this route, are they over a limit: before the body.
        if let Some(table) = &rt.clients {
            let admission = match table.check(&session.req_header().headers, route, ri) {
                Ok(client) => clients::ClientTable::decide(client, &self.client_verdict(client).await),
                Err(refused) => refused,
            };
            ctx.client = admission.client;
            if let Some(rate) = admission.rate {
                session.set_answer_headers(rate);
            }
            if let Some(refusal) = admission.refusal {
                return self.refuse_client(session, ctx, refusal).await;
            }
        }
        if list_models {
            return self.list_models(session, ctx, backend).await;
        }

        let held = ctx.body_held.insert(self.bodies.reservation());
        let body = match session.read_body(&rt.config.limits, held).await {
            Ok(b) => b,
            Err(e) => {
                ctx.body_held = None;
                // The rest of the body is unread: the connection cannot be reused.
                session.close_after();
                let reason = match &e {
                    GatewayError::Overloaded { .. } => Some("body_budget"),
                    GatewayError::BodyTimeout { .. } => Some("body_timeout"),
                    _ => None,
                };
                if let Some(reason) = reason {
                    metrics::with(|m| m.refused.with_label_values(&[reason]).inc());
                }
                let retry = match &e {
                    GatewayError::Overloaded { retry_after_secs } => {
                        vec![(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs))]
                    }
                    _ => Vec::new(),
                };
                return self.reject(session, ctx, e, &retry).await;
            }
        };
        ctx.bytes_in = body.len();
        let chat = if body.is_empty() {
            None
        } else {
            match ChatRequest::parse(&body) {
                Ok(c) => Some(c),
                Err(e) => return self.reject(session, ctx, e.into(), &[]).await,
            }
        };
        ctx.stream = chat.as_ref().is_some_and(|c| c.stream);
        ctx.model_requested = chat.as_ref().and_then(|c| c.model.clone());

        // Providers of another API that cannot express this request are skipped; when none
        // can take it, it is refused before any attempt.
        let excluded = match (api, &chat) {
            (Some(api), Some(_)) => match unsupported_providers(api, &body, backend) {
                Ok(set) => set,
                Err(message) => return self.reject(session, ctx, GatewayError::Unsupported(message), &[]).await,
            },
            (None, _) => match unserved_providers(untranslated.as_deref().unwrap_or("/"), backend) {
                Ok(set) => set,
                Err(e) => return self.reject(session, ctx, e, &[]).await,
            },
            _ => ProviderSet::default(),
        };
        let req = Request {
            api,
            route,
            backend,
            body,
            chat,
            started,
            deadline: started + route.timeouts.request,
            request_id,
        };
        let retry = &backend.balancer.backend.retry;
        let mut tried = ProviderSet::default();
        let mut last: Option<Failed> = None;
        let mut retries = 0u32;
        let mut attempt = 0;
        while attempt < retry.attempts {
            attempt += 1;
            if Instant::now() >= req.deadline {
                break;
            }
            let sel = match backend.balancer.select(tried, excluded, self.clock.now(), attempt == 1) {
                Ok(s) => s,
                Err(NoProvider::AllEjected { until }) => {
                    let secs = until.saturating_sub(self.clock.now()).div_ceil(1000).max(1);
                    let backend = backend.balancer.backend.name.clone();
                    let e = GatewayError::AllEjected { backend, retry_after_secs: secs };
                    return self.reject(session, ctx, e, &[(header::RETRY_AFTER, HeaderValue::from(secs))]).await;
                }
                Err(NoProvider::Exhausted) => break,
            };
            let to = &backend.balancer.providers[sel.provider].config.name;
            if let Some(prev) = &last {
                metrics::with(|m| m.failovers.with_label_values(&[prev.provider.as_str(), to.as_str()]).inc());
                // Per-request detail: debug (metrics and the access log record every failover).
                debug!(
                    route = %route.name, from = %prev.provider, to = %to, attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64, reason = %prev.detail, "failing over"
                );
            }
            if sel.pick == Pick::Retry {
                let wait = backoff(retry, retries).min(req.deadline.saturating_duration_since(Instant::now()));
                retries += 1;
                if !wait.is_zero() {
                    debug!(wait_ms = wait.as_millis() as u64, "backing off before retrying a provider");
                    tokio::time::sleep(wait).await;
                }
            }
            tried.insert(sel.provider);
            let is_last = attempt == retry.attempts;
            let max_hedge_body = rt.config.limits.max_hedge_body_bytes;
            let end = match hedge::hedge_for(retry.hedge, req.body.len(), max_hedge_body, is_last) {
                Some(h) => {
                    // Boxed: the race's state is large and most requests never need it.
                    let hedged = self.hedged(session, ctx, &req, sel, attempt, h, &mut tried, excluded);
                    let (end, used) = Box::pin(hedged).await?;
                    attempt += used - 1;
                    end
                }
                _ => self.attempt(session, ctx, &req, sel, is_last).await?,
            };
            match end {
                AttemptEnd::Delivered => return Ok(()),
                AttemptEnd::ClientGone => {
                    session.close_after();
                    ctx.error = Some("client closed the connection".into());
                    return Ok(());
                }
                AttemptEnd::Failed(f) => {
                    let stop = f.stop;
                    last = Some(*f);
                    if stop {
                        break;
                    }
                }
            }
        }
        self.answer_last(session, ctx, &req, last).await
    }

    /// No attempt delivered: send the last provider's answer as it came, or a gateway error.
    async fn answer_last(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        req: &Request<'_>,
        last: Option<Failed>,
    ) -> std::result::Result<(), Box<Error>> {
        let Some(failed) = last else {
            return self.reject(session, ctx, GatewayError::Budget, &[]).await;
        };
        ctx.error = Some(failed.detail.clone());
        let Some((status, mut headers, body)) = failed.response else {
            let e = GatewayError::Upstream { kind: failed.kind, detail: failed.detail };
            return self.reject(session, ctx, e, &[]).await;
        };
        ctx.provider = Some(failed.provider.clone());
        headers::stamp(&mut headers, Some(&failed.provider), ctx.last_model(), ctx.attempts.len(), &req.request_id);
        // An answer from a provider of another API is an error in the client's API shape.
        let body = match &failed.translate {
            Some((api, kind, model)) => {
                match crate::providers::translate_response_with_model(*api, kind, model, status.as_u16(), &body) {
                    Ok(b) => {
                        headers::translated_headers(&mut headers, "application/json");
                        b
                    }
                    Err(_) => body,
                }
            }
            None => body,
        };
        headers.remove(header::TRANSFER_ENCODING);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        ctx.status = Some(status.as_u16());
        session.write_response_header(status, headers, body.is_empty()).await?;
        ctx.ttfb = Some(req.started.elapsed());
        ctx.bytes_out = body.len();
        if !body.is_empty() {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }

    /// `GET /v1/models`: the models the route's providers serve.
    async fn list_models(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        backend: &BackendRuntime,
    ) -> std::result::Result<(), Box<Error>> {
        let providers: Vec<&crate::config::ProviderConfig> =
            backend.balancer.providers.iter().map(|p| &p.config).collect();
        let body = crate::providers::models_list(&providers);
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let id = ctx.request_id.clone().unwrap_or_else(|| headers::request_id(session.req_header()));
        headers.insert(X_REQUEST_ID.clone(), id);
        ctx.status = Some(200);
        session.write_response_header(http::StatusCode::OK, headers, false).await?;
        ctx.bytes_out = body.len();
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }

    /// Answers a client refused by [`crate::clients`] in its API's error shape (Anthropic's
    /// on Anthropic paths, else OpenAI's); nothing reaches a provider.
    async fn refuse_client(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        refusal: clients::Refusal,
    ) -> std::result::Result<(), Box<Error>> {
        if let (clients::Refusal::Limited { limit, .. }, Some(client)) = (&refusal, &ctx.client) {
            let labels = [client.name.as_str(), limit.as_str()];
            metrics::with(|m| m.client_limited.with_label_values(&labels).inc());
        }
        let extra: Vec<_> = refusal.headers().into_iter().collect();
        self.answer_error(session, ctx, refusal.status(), refusal.body(ctx.anthropic_errors), refusal.message(), &extra)
            .await
    }

    /// Answers with a gateway error in the OpenAI shape.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        e: GatewayError,
        extra: &[(HeaderName, HeaderValue)],
    ) -> std::result::Result<(), Box<Error>> {
        let body = if ctx.anthropic_errors { e.anthropic_body() } else { e.body() };
        self.answer_error(session, ctx, e.status(), body, e.to_string(), extra).await
    }

    /// Answers `status` with the JSON error `body` before any provider answered.
    async fn answer_error(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        code: u16,
        body: Vec<u8>,
        message: String,
        extra: &[(HeaderName, HeaderValue)],
    ) -> std::result::Result<(), Box<Error>> {
        debug!(error = %message, status = code, "rejecting request");
        let mut headers = HeaderMap::with_capacity(6 + extra.len());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let id = ctx.request_id.clone().unwrap_or_else(|| headers::request_id(session.req_header()));
        headers::stamp(&mut headers, None, ctx.last_model(), ctx.attempts.len(), &id);
        for (k, v) in extra {
            headers.insert(k.clone(), v.clone());
        }
        let status = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
        ctx.status = Some(code);
        if session.body_pending() {
            // Answered before the body was read: the connection closes after it.
            session.close_after();
        }
        ctx.error = Some(message);
        session.write_response_header(status, headers, false).await?;
        ctx.ttfb = ctx.started.map(|s| s.elapsed());
        ctx.bytes_out = body.len();
        session.write_response_body(Some(Bytes::from(body)), true).await?;
        // Answered before the body was read: read and drop the rest so a client still
        // uploading reads this answer rather than a reset; the connection then closes.
        if session.body_pending() {
            session.discard_body().await;
        }
        Ok(())
    }

    /// The access log line and the per-request metrics.
    fn log_request(&self, session: &Session, ctx: &Ctx, error: Option<&Error>) {
        let duration = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
        let status = ctx.status.unwrap_or(if error.is_some() { 502 } else { 0 });
        let provider = ctx.provider.as_deref();
        self.write_access_log(session, ctx, error, status, duration);
        count_client(ctx, status, self.clock.now(), self.fleet.as_deref());
        // Metrics last: once a request is counted, its log line is written.
        metrics::with(|m| {
            let route = ctx.route.as_deref().unwrap_or("none");
            m.requests.with_label_values(&[route, metrics::status_class(status)]).inc();
            let p = provider.unwrap_or("none");
            m.request_duration.with_label_values(&[p]).observe(duration.as_secs_f64());
            if let Some(t) = ctx.ttfb {
                m.ttfb.with_label_values(&[p]).observe(t.as_secs_f64());
            }
        });
    }

    fn write_access_log(&self, session: &Session, ctx: &Ctx, error: Option<&Error>, status: u16, duration: Duration) {
        let log = self.access_log.load();
        if !log.enabled() {
            return;
        }
        let provider = ctx.provider.as_deref();
        let req = session.req_header();
        let error_text = ctx.error.clone().or_else(|| error.map(|e| e.to_string()));
        let entry = Entry {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            request_id: ctx.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            route: ctx.route.as_deref(),
            method: req.method.as_str(),
            path: req.uri.path(),
            client: session.client_addr().map(|a| a.to_string()),
            client_name: ctx.client.as_ref().map(|c| c.name.as_str()),
            status,
            duration_ms: millis(duration),
            ttfb_ms: ctx.ttfb.map(millis),
            bytes_in: ctx.bytes_in,
            bytes_out: ctx.bytes_out,
            stream: ctx.stream,
            model_requested: ctx.model_requested.as_deref(),
            model_served: ctx.model_served.as_deref(),
            provider,
            attempts: ctx
                .attempts
                .iter()
                .map(|a| AttemptEntry {
                    provider: &a.provider,
                    endpoint: &a.endpoint,
                    status: a.status,
                    error: a.error,
                    duration_ms: millis(a.duration),
                    ejected: a.ejected,
                    dropped: a.dropped.as_deref(),
                    race: a.race,
                })
                .collect(),
            error: error_text.as_deref(),
        };
        log.write(&entry);
    }
}

/// The request handler behind the edge: a shared handle on the [`Gateway`].
pub struct Proxy(pub Arc<Gateway>);

#[async_trait]
impl Handler for Proxy {
    async fn handle(&self, mut session: Session, shutdown: &ShutdownWatch) -> Option<ReusableHttpStream> {
        let limits = self.limits();
        if !session.is_h2() {
            // The edge read the whole head already: Pingora parses it without waiting.
            let refusal = match session.read_head().await {
                Ok(true) => None,
                Ok(false) => return None,
                Err(e) => Some(head_refusal(&e)?),
            };
            if let Some(r) = refusal {
                refuse(&mut session, r).await;
                return None;
            }
        }
        if let Err(r) = checks::check_head(session.req_header(), session.raw_head().as_deref(), limits.max_header_bytes)
        {
            refuse(&mut session, r).await;
            if session.body_pending() {
                session.discard_body().await;
            }
            return None;
        }
        // After a chunked body the connection closes: nothing read past its end can be
        // taken as a next request, whatever framing a hop in front of the gateway saw.
        if crate::lifecycle::draining() || *shutdown.borrow() || session.is_chunked() {
            session.close_after();
        }
        let mut ctx = Ctx::default();
        // Boxed: the attempt loop's state is large, and an unboxed future would make every
        // connection's task (idle keep-alive ones included) that large.
        let result = Box::pin(self.0.serve(&mut session, &mut ctx)).await;
        let error = match result {
            Ok(()) => None,
            Err(e) => {
                session.close_after();
                if !session.response_started() {
                    let reply = GatewayError::Upstream { kind: TransportKind::Reset, detail: e.to_string() };
                    // Boxed: a rare path, kept out of every request's task.
                    let _ = Box::pin(self.0.reject(&mut session, &mut ctx, reply, &[])).await;
                }
                Some(e)
            }
        };
        self.0.log_request(&session, &ctx, error.as_deref());
        drop(ctx);
        session.finish().await
    }

    fn limits(&self) -> crate::config::Limits {
        self.0.runtime.load().config.limits
    }
}

/// A request of a configuration with clients: its metrics, and the tokens of its answer in
/// the client's window (counted once the answer is complete).
fn count_client(ctx: &Ctx, status: u16, now: crate::health::Millis, fleet: Option<&Fleet>) {
    if !ctx.clients_on {
        return;
    }
    let client = ctx.client.as_ref();
    let name = client.map_or("none", |c| c.name.as_str());
    let route = ctx.route.as_deref().unwrap_or("none");
    metrics::with(|m| m.client_requests.with_label_values(&[name, route, metrics::status_class(status)]).inc());
    if let (Some(c), Some(u)) = (client, ctx.usage) {
        let tokens = u.input.saturating_add(u.output);
        c.counter.add_tokens(now, tokens);
        if let Some(fleet) = fleet.filter(|_| c.limits.tokens_per_minute.is_some()) {
            fleet.add_tokens(&c.name, crate::fleet::state::Clocks::now().wall, tokens);
        }
        metrics::with(|m| {
            m.client_tokens.with_label_values(&[name, "input"]).inc_by(u.input);
            m.client_tokens.with_label_values(&[name, "output"]).inc_by(u.output);
        });
    }
}

/// The answer to a request head Pingora could not read; `None` when the client just went
/// away (nothing to answer).
fn head_refusal(e: &Error) -> Option<Refusal> {
    let text = e.to_string();
    let status = match e.etype() {
        ErrorType::ReadTimedout => StatusCode::REQUEST_TIMEOUT,
        ErrorType::InvalidHTTPHeader if text.contains("larger than") || text.contains("too many headers") => {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        }
        ErrorType::InvalidHTTPHeader => StatusCode::BAD_REQUEST,
        _ => return None,
    };
    Some(Refusal::new(status, format!("malformed request head: {text}")))
}

/// Resolves when the client goes away (HTTP/1 close, HTTP/2 reset).
async fn client_gone(session: &mut Session) {
    session.closed().await;
}

/// The providers of `backend` that cannot take this request (another API that cannot express
/// one of its fields); `Err` names the problem when no provider can.
fn unsupported_providers(
    api: ClientApi,
    body: &Bytes,
    backend: &BackendRuntime,
) -> std::result::Result<ProviderSet, String> {
    let policy = backend.balancer.backend.translation;
    let providers = &backend.balancer.providers;
    if !providers.iter().any(|p| crate::providers::needs_translation(api, &p.config.kind)) {
        return Ok(ProviderSet::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut excluded = ProviderSet::default();
    let mut first_error = None;
    for p in providers {
        if let Err(e) = crate::providers::check_supported(api, &value, &p.config.kind, policy) {
            excluded.insert(p.index);
            first_error.get_or_insert_with(|| format!("provider {}: {e}", p.config.name));
        }
    }
    match first_error {
        Some(e) if providers.iter().all(|p| excluded.contains(p.index)) => Err(e),
        _ => Ok(excluded),
    }
}

/// The providers of `backend` whose API does not serve an untranslated `path`; when none
/// does, the 404 to answer.
fn unserved_providers(path: &str, backend: &BackendRuntime) -> std::result::Result<ProviderSet, GatewayError> {
    let mut excluded = ProviderSet::default();
    for p in &backend.balancer.providers {
        if crate::providers::paths::passthrough_path(&p.config.kind, path).is_none() {
            excluded.insert(p.index);
        }
    }
    if backend.balancer.providers.iter().all(|p| excluded.contains(p.index)) {
        let path = path.split_once('?').map_or(path, |(p, _)| p).to_string();
        return Err(GatewayError::NotServed { path });
    }
    Ok(excluded)
}

/// Wait before retrying an already-tried provider: exponential from `base`, capped, jittered.
fn backoff(retry: &crate::config::RetryPolicy, n: u32) -> Duration {
    let b = &retry.backoff;
    if b.base.is_zero() {
        return Duration::ZERO;
    }
    let exp = b.base.saturating_mul(1u32 << n.min(16)).min(b.max);
    if b.jitter {
        exp.mul_f64(0.5 + fastrand::f64() / 2.0)
    } else {
        exp
    }
}

/// Maps a Pingora error to the transport failure kinds of `retry.onTransport`.
fn classify(e: &Error) -> TransportKind {
    match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout => TransportKind::Timeout,
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError => TransportKind::Connect,
        ErrorType::TLSWantX509Lookup
        | ErrorType::TLSHandshakeFailure
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => TransportKind::Tls,
        _ => TransportKind::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::protocols::http::ServerSession;

    /// Every request's task holds this future (boxed) for its whole life, so a slow stream's
    /// memory is largely its size. Paths most requests never take (credentials and
    /// translation, connecting, hedging) are boxed apart; inlining one of them again (a
    /// token exchange alone is ~9 KiB) fails here. 3,592 bytes when this was written (the
    /// layout is decided before optimization: release builds measure the same).
    #[tokio::test]
    async fn request_futures_stay_small() {
        let config = crate::config::load_str(
            "listen: [\"127.0.0.1:0\"]\n\
             routes: [{name: chat, match: {pathPrefix: /v1}, backend: chat}]\n\
             backends: {chat: {groups: [{providers: [{name: a, openai: {}, host: 127.0.0.1, port: 9, tls: false}]}]}}\n",
        )
        .unwrap();
        let gateway = Gateway::new(config, None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let stream = pingora_core::protocols::l4::stream::Stream::from(client);
        let mut session = Session::new(ServerSession::new_http1(Box::new(stream)));
        let mut ctx = Ctx::default();
        let serve = gateway.serve(&mut session, &mut ctx);
        let size = std::mem::size_of_val(&serve);
        assert!(size <= 4 * 1024, "the request future grew to {size} bytes");
        drop(serve);
        // The handler's own task holds these inline: each boxes what it needs (Pingora's
        // finish is ~4.5 KiB, writing an error answer ~1.4 KiB).
        let refusal = Refusal::new(StatusCode::BAD_REQUEST, String::new());
        let refuse = crate::edge::refuse(&mut session, refusal);
        assert!(std::mem::size_of_val(&refuse) <= 512, "refuse: {} bytes", std::mem::size_of_val(&refuse));
        drop(refuse);
        let finish = session.finish();
        assert!(std::mem::size_of_val(&finish) <= 2048, "finish: {} bytes", std::mem::size_of_val(&finish));
    }
}
