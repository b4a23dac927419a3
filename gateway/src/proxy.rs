//! The request path: Pingora's `ProxyHttp` with the whole exchange done in
//! `request_filter`, on Pingora's upstream connector.
//!
//! Pingora's own retry replays at most 64 KiB of body, so the attempt loop here keeps the
//! full body and sends it to each provider in turn. A failed answer is read (its body is
//! small) so the connection goes back to the pool, and it is kept in case no other provider
//! can be tried: then it goes to the client as it came.

use crate::balancer::{NoProvider, Pick, ProviderSet, Selection};
use crate::body::ChatRequest;
use crate::config::{Route, TransportKind};
use crate::error::GatewayError;
use crate::health::{hints, Clock, FailureKind, Outcome, SystemClock, Transition};
use crate::routing::apply_header_modifier;
use crate::runtime::{BackendRuntime, HealthRegistry, Runtime, Upstream};
use crate::upstream::POOL_IDLE;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue};
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::http::client::HttpSession as UpstreamSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// Largest failed-response body kept for possible delivery; a larger one closes the
/// connection and is replaced by a gateway error if it ends up last.
const MAX_BUFFERED_FAILURE: usize = 1024 * 1024;

pub static X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub static X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");

/// The gateway: current runtime (swapped on reload), the health registry, the connector.
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    registry: HealthRegistry,
    connector: Connector,
    clock: SystemClock,
}

/// Per-request state.
#[derive(Debug, Default)]
pub struct Ctx {
    pub route: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub served_by: Option<String>,
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
}

/// A failure kept in case it turns out to be the last word.
struct Failed {
    /// The provider's answer, when there was one.
    response: Option<(http::StatusCode, HeaderMap, Bytes)>,
    provider: String,
    kind: TransportKind,
    detail: String,
}

enum AttemptEnd {
    /// A response went to the client (fully, or as far as the client let it).
    Delivered,
    /// Try elsewhere.
    Failed(Failed),
    /// The client left; stop.
    ClientGone,
}

/// How the upstream exchange went before any byte reached the client.
enum Exchange {
    Head(Box<UpstreamSession>, Arc<HttpPeer>),
    Transport(TransportKind, String),
    ClientGone,
}

impl Gateway {
    pub fn new(config: crate::config::Config) -> Gateway {
        let registry = HealthRegistry::default();
        let runtime = Runtime::build(config, &registry);
        Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            registry,
            connector: Connector::new(None),
            clock: SystemClock,
        }
    }

    /// Installs a new configuration; requests in flight keep the one they started with.
    pub fn reload(&self, config: crate::config::Config) {
        let runtime = Runtime::build(config, &self.registry);
        self.runtime.store(Arc::new(runtime));
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    async fn serve(&self, session: &mut Session, ctx: &mut Ctx) -> std::result::Result<(), Box<Error>> {
        let started = Instant::now();
        let rt = self.runtime.load_full();
        let path = session.req_header().uri.path().to_string();
        let Some(ri) = rt.routes.find(&path) else {
            return self.reject(session, ctx, GatewayError::NoRoute { path }, &[]).await;
        };
        let route = &rt.config.routes[ri];
        ctx.route = Some(route.name.clone());
        let backend = &rt.backends[route.backend];

        let body = match read_body(session, rt.config.max_request_body_bytes).await {
            Ok(b) => b,
            Err(e) => {
                // The rest of the body is unread: the connection cannot be reused.
                session.set_keepalive(None);
                return self.reject(session, ctx, e, &[]).await;
            }
        };
        let chat = if body.is_empty() {
            None
        } else {
            match ChatRequest::parse(&body) {
                Ok(c) => Some(c),
                Err(e) => return self.reject(session, ctx, e.into(), &[]).await,
            }
        };

        let retry = &backend.balancer.backend.retry;
        let deadline = started + route.timeouts.request;
        let mut tried = ProviderSet::default();
        let mut last: Option<Failed> = None;
        let mut retries = 0u32;
        for attempt in 1..=retry.attempts {
            if Instant::now() >= deadline {
                break;
            }
            let sel = match backend.balancer.select(tried, self.clock.now(), attempt == 1) {
                Ok(s) => s,
                Err(NoProvider::AllEjected { until }) => {
                    let secs = until.saturating_sub(self.clock.now()).div_ceil(1000).max(1);
                    let e = GatewayError::AllEjected {
                        backend: backend.balancer.backend.name.clone(),
                        retry_after_secs: secs,
                    };
                    let retry_after = HeaderValue::from(secs);
                    return self
                        .reject(session, ctx, e, &[(header::RETRY_AFTER, retry_after)])
                        .await;
                }
                Err(NoProvider::Exhausted) => break,
            };
            if sel.pick == Pick::Retry {
                let wait = backoff(retry, retries).min(deadline.saturating_duration_since(Instant::now()));
                retries += 1;
                if !wait.is_zero() {
                    debug!(
                        wait_ms = wait.as_millis() as u64,
                        "backing off before retrying a provider"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
            tried.insert(sel.provider);
            let is_last = attempt == retry.attempts;
            match self
                .attempt(
                    session,
                    ctx,
                    route,
                    backend,
                    sel,
                    &body,
                    chat.as_ref(),
                    deadline,
                    is_last,
                )
                .await?
            {
                AttemptEnd::Delivered => return Ok(()),
                AttemptEnd::ClientGone => {
                    session.set_keepalive(None);
                    return Ok(());
                }
                AttemptEnd::Failed(f) => {
                    if attempt < retry.attempts {
                        info!(route = %route.name, provider = %f.provider, attempt, elapsed_ms = started.elapsed().as_millis() as u64, detail = %f.detail, "failing over");
                    }
                    last = Some(f);
                }
            }
        }
        match last {
            Some(Failed {
                response: Some((status, mut headers, body)),
                provider,
                ..
            }) => {
                ctx.served_by = Some(provider.clone());
                stamp(&mut headers, &provider, ctx.attempts.len());
                headers.remove(header::TRANSFER_ENCODING);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                session
                    .write_response_header(response_head(status, headers), body.is_empty())
                    .await?;
                if !body.is_empty() {
                    session.write_response_body(Some(body), true).await?;
                }
                Ok(())
            }
            Some(Failed { kind, detail, .. }) => {
                self.reject(session, ctx, GatewayError::Upstream { kind, detail }, &[])
                    .await
            }
            None => self.reject(session, ctx, GatewayError::Budget, &[]).await,
        }
    }

    /// One attempt on one provider.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        route: &Route,
        backend: &BackendRuntime,
        sel: Selection,
        body: &Bytes,
        chat: Option<&ChatRequest>,
        deadline: Instant,
        is_last: bool,
    ) -> std::result::Result<AttemptEnd, Box<Error>> {
        let slot = &backend.balancer.providers[sel.provider];
        let upstream = &backend.upstreams[sel.provider];
        let policy = &backend.balancer.backend.health;
        let started = Instant::now();
        let mut record = AttemptRecord {
            provider: slot.config.name.clone(),
            endpoint: upstream.endpoint.authority(),
            status: None,
            error: None,
            duration: Duration::ZERO,
            ejected: false,
        };
        let body = match (chat, &slot.config.model) {
            (Some(c), Some(model)) => c.with_model(body, model),
            _ => body.clone(),
        };
        let head = upstream_request(session.req_header(), route, &slot.config, upstream, body.len());
        let first_byte = route
            .timeouts
            .first_byte
            .min(deadline.saturating_duration_since(started));

        let exchange = self
            .exchange(session, upstream, head, body, route.timeouts.connect, first_byte)
            .await;
        let (mut up, peer) = match exchange {
            Exchange::Head(up, peer) => (up, peer),
            Exchange::ClientGone => {
                slot.health.release(sel.permit);
                record.error = Some("client_gone");
                record.duration = started.elapsed();
                ctx.attempts.push(record);
                return Ok(AttemptEnd::ClientGone);
            }
            Exchange::Transport(kind, detail) => {
                let fkind = if kind == TransportKind::Timeout {
                    FailureKind::Timeout
                } else {
                    FailureKind::Transport
                };
                let outcome = Outcome::Failure {
                    kind: fkind,
                    hint: None,
                    detail: detail.clone(),
                };
                record.ejected = self.judge(backend, sel, &outcome);
                record.error = Some(kind.as_str());
                record.duration = started.elapsed();
                ctx.attempts.push(record);
                warn!(provider = %slot.config.name, error = kind.as_str(), %detail, "attempt failed");
                let retryable = backend.balancer.backend.retry.on_transport.contains(&kind);
                if !retryable {
                    return Err(Error::explain(ErrorType::HTTPStatus(502), detail));
                }
                return Ok(AttemptEnd::Failed(Failed {
                    response: None,
                    provider: slot.config.name.clone(),
                    kind,
                    detail,
                }));
            }
        };

        let Some(upstream_head) = up.response_header() else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "response header missing after read",
            ));
        };
        let status_code = upstream_head.status;
        let status = status_code.as_u16();
        let mut out = client_headers(upstream_head);
        apply_header_modifier(&route.response_headers, &mut out);
        let unhealthy = match &policy.condition {
            Some(c) => c.eval(status, &out),
            None => status >= 500 || status == 429,
        };
        let outcome = if unhealthy {
            let (hint, malformed) = hints::from_headers(&out, SystemTime::now());
            if let Some(m) = malformed {
                if slot.health.first_malformed_hint() {
                    warn!(provider = %slot.config.name, header = m.header, value = %m.value, "ignoring malformed retry hint");
                }
            }
            Outcome::Failure {
                kind: FailureKind::Status(status),
                hint,
                detail: format!("status {status}"),
            }
        } else {
            Outcome::Success
        };
        record.status = Some(status);
        record.ejected = self.judge(backend, sel, &outcome);
        let retryable = unhealthy || backend.balancer.backend.retry.on_status.contains(&status);

        if retryable && !is_last {
            // Keep the answer in case nobody else can be tried; reading it to the end also
            // lets the connection go back to the pool.
            let kept = read_small_body(&mut up, first_byte).await;
            record.duration = started.elapsed();
            ctx.attempts.push(record);
            let response = match kept {
                Some(b) => {
                    self.connector.release_http_session(*up, &*peer, Some(POOL_IDLE)).await;
                    Some((status_code, out, b))
                }
                None => None,
            };
            return Ok(AttemptEnd::Failed(Failed {
                response,
                provider: slot.config.name.clone(),
                kind: TransportKind::Reset,
                detail: format!("provider {} answered {status}", slot.config.name),
            }));
        }

        // Deliver: this answer is the one the client gets.
        ctx.attempts.push(record);
        let attempts = ctx.attempts.len();
        ctx.served_by = Some(slot.config.name.clone());
        stamp(&mut out, &slot.config.name, attempts);
        let head = response_head(status_code, out);
        let end = self
            .stream_to_client(session, &mut up, head, route.timeouts.first_byte, deadline)
            .await;
        if let Some(last) = ctx.attempts.last_mut() {
            last.duration = started.elapsed();
        }
        match end {
            StreamEnd::Complete => {
                self.connector.release_http_session(*up, &*peer, Some(POOL_IDLE)).await;
                Ok(AttemptEnd::Delivered)
            }
            StreamEnd::UpstreamBroke(detail) => {
                warn!(provider = %slot.config.name, %detail, "upstream failed mid-response");
                session.set_keepalive(None);
                Err(Error::explain(ErrorType::ReadError, detail))
            }
            StreamEnd::ClientGone => Ok(AttemptEnd::ClientGone),
        }
    }

    /// Records an outcome in the provider's health; returns whether it ejected the provider.
    fn judge(&self, backend: &BackendRuntime, sel: Selection, outcome: &Outcome) -> bool {
        let slot = &backend.balancer.providers[sel.provider];
        let policy = &backend.balancer.backend.health;
        let now = self.clock.now();
        let transition = backend.balancer.with_eject_lock(slot.group, || {
            slot.health
                .record(outcome, sel.permit, now, &policy.eviction, &policy.recovery, || {
                    backend.balancer.may_eject(slot.group, now)
                })
        });
        match transition {
            Transition::Ejected { duration, reason } => {
                warn!(provider = %slot.config.name, reason, seconds = duration.as_secs_f64(), "provider ejected");
                true
            }
            Transition::KeptByFloor => {
                warn!(provider = %slot.config.name, "provider kept in service by maxEjectionPercent");
                false
            }
            Transition::Restored => {
                info!(provider = %slot.config.name, "provider restored after trial");
                false
            }
            Transition::Nothing => false,
        }
    }

    /// Connects, sends the request and waits for the response head, watching the client.
    async fn exchange(
        &self,
        session: &mut Session,
        upstream: &Upstream,
        head: RequestHeader,
        body: Bytes,
        connect_timeout: Duration,
        first_byte: Duration,
    ) -> Exchange {
        let peer = match upstream.endpoint.peer(self.clock.now()).await {
            Ok(p) => p,
            Err(e) => return Exchange::Transport(TransportKind::Dns, e.to_string()),
        };
        let send = async {
            // A pooled connection may have been closed by the provider while idle; such a
            // failure says nothing about the provider, so try again on a fresh connection.
            let mut fresh_tries = 0;
            loop {
                let (mut up, reused) =
                    match tokio::time::timeout(connect_timeout, self.connector.get_http_session(&*peer)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => return Err((classify(&e), e.to_string())),
                        Err(_) => {
                            return Err((
                                TransportKind::Timeout,
                                format!("connect timed out after {connect_timeout:?}"),
                            ))
                        }
                    };
                up.set_read_timeout(None);
                let sent = async {
                    up.write_request_header(Box::new(head.clone())).await?;
                    up.write_request_body(body.clone(), true).await?;
                    up.finish_request_body().await?;
                    up.read_response_header().await
                };
                match tokio::time::timeout(first_byte, sent).await {
                    Ok(Ok(())) => return Ok(up),
                    Ok(Err(e)) if reused && fresh_tries < 2 && is_stale_connection(&e) => {
                        fresh_tries += 1;
                        continue;
                    }
                    Ok(Err(e)) => return Err((classify(&e), e.to_string())),
                    Err(_) => {
                        return Err((
                            TransportKind::Timeout,
                            format!("no response head within {first_byte:?}"),
                        ))
                    }
                }
            }
        };
        tokio::select! {
            r = send => match r {
                Ok(up) => Exchange::Head(Box::new(up), peer),
                Err((kind, detail)) => Exchange::Transport(kind, detail),
            },
            _ = client_gone(session) => Exchange::ClientGone,
        }
    }

    /// Streams the chosen response to the client chunk by chunk, unbuffered.
    async fn stream_to_client(
        &self,
        session: &mut Session,
        up: &mut UpstreamSession,
        out: Box<ResponseHeader>,
        gap: Duration,
        deadline: Instant,
    ) -> StreamEnd {
        if session.write_response_header(out, false).await.is_err() {
            return StreamEnd::ClientGone;
        }
        loop {
            let wait = gap.min(deadline.saturating_duration_since(Instant::now()));
            let chunk = tokio::select! {
                r = tokio::time::timeout(wait, up.read_response_body()) => r,
                _ = client_gone(session) => return StreamEnd::ClientGone,
            };
            match chunk {
                Ok(Ok(Some(data))) => {
                    if session.write_response_body(Some(data), false).await.is_err() {
                        return StreamEnd::ClientGone;
                    }
                }
                Ok(Ok(None)) => {
                    return match session.write_response_body(None, true).await {
                        Ok(()) => StreamEnd::Complete,
                        Err(_) => StreamEnd::ClientGone,
                    };
                }
                Ok(Err(e)) => return StreamEnd::UpstreamBroke(e.to_string()),
                Err(_) => return StreamEnd::UpstreamBroke(format!("no data from provider for {wait:?}")),
            }
        }
    }

    /// Answers with a gateway error in the OpenAI shape.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        e: GatewayError,
        extra: &[(HeaderName, HeaderValue)],
    ) -> std::result::Result<(), Box<Error>> {
        debug!(error = %e, status = e.status(), "rejecting request");
        let body = e.body();
        let mut head = ResponseHeader::build_no_case(e.status(), Some(4 + extra.len()))?;
        head.insert_header(header::CONTENT_TYPE, "application/json")?;
        head.insert_header(header::CONTENT_LENGTH, body.len())?;
        head.insert_header(X_ATTEMPTS.clone(), ctx.attempts.len())?;
        for (k, v) in extra {
            head.insert_header(k.clone(), v.clone())?;
        }
        session.write_response_header(Box::new(head), false).await?;
        session.write_response_body(Some(Bytes::from(body)), true).await?;
        Ok(())
    }
}

enum StreamEnd {
    Complete,
    UpstreamBroke(String),
    ClientGone,
}

/// The Pingora service logic: a shared handle on the [`Gateway`].
pub struct Proxy(pub Arc<Gateway>);

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.0.serve(session, ctx).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Every request is answered in `request_filter`; Pingora's own proxy path is unused.
        Err(Error::explain(ErrorType::InternalError, "upstream_peer is not used"))
    }
}

/// Resolves when the client closes its connection (or sends unexpected bytes).
async fn client_gone(session: &mut Session) {
    loop {
        match session.as_downstream_mut().read_body_or_idle(true).await {
            Err(_) => return,
            Ok(None) => std::future::pending::<()>().await,
            Ok(Some(_)) => continue,
        }
    }
}

/// Reads the request body, refusing bodies over `limit` bytes.
async fn read_body(session: &mut Session, limit: usize) -> std::result::Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        if let Ok(cont) = ResponseHeader::build(100, Some(0)) {
            let _ = session.write_response_header(Box::new(cont), false).await;
        }
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(GatewayError::BodyTooLarge { limit });
                }
                if buf.is_empty() && declared == Some(chunk.len()) {
                    return Ok(chunk);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(GatewayError::BodyRead(e.to_string())),
        }
    }
}

/// Reads a (failed) response body to the end if it is small; `None` if it is too big,
/// broken, or slow.
async fn read_small_body(up: &mut UpstreamSession, wait: Duration) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    let read = async {
        while let Some(chunk) = up.read_response_body().await.ok()? {
            if buf.len() + chunk.len() > MAX_BUFFERED_FAILURE {
                return None;
            }
            buf.extend_from_slice(&chunk);
        }
        Some(())
    };
    tokio::time::timeout(wait, read).await.ok().flatten()?;
    Some(buf.freeze())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade" | "transfer-encoding"
    )
}

/// The request a provider gets: client headers minus hop-by-hop, host and credentials, plus
/// the route's modifiers and the provider's auth.
fn upstream_request(
    client: &RequestHeader,
    route: &Route,
    provider: &crate::config::ProviderConfig,
    upstream: &Upstream,
    body_len: usize,
) -> RequestHeader {
    let path = match (&provider.path, &route.rewrite) {
        (Some(p), _) => p.clone(),
        (None, Some(rw)) => rw.clone(),
        (None, None) => client
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string()),
    };
    let mut headers = HeaderMap::with_capacity(client.headers.len() + 4);
    for (name, value) in client.headers.iter() {
        let skip = is_hop_by_hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::EXPECT
            || name == header::ACCEPT_ENCODING
            || (name == header::AUTHORIZATION && provider.auth != crate::config::Auth::Passthrough);
        if !skip {
            headers.append(name.clone(), value.clone());
        }
    }
    apply_header_modifier(&route.request_headers, &mut headers);
    headers.insert(header::HOST, upstream.host_header.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    if let Some((name, value)) = &upstream.auth_header {
        headers.insert(name.clone(), value.clone());
    }
    let uri = http::Uri::try_from(path).unwrap_or_else(|_| http::Uri::from_static("/"));
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = client.method.clone();
    parts.uri = uri;
    parts.headers = headers;
    RequestHeader::from(parts)
}

/// The client-facing copy of a provider's response headers.
fn client_headers(upstream: &ResponseHeader) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.headers.len() + 3);
    let chunked = upstream
        .headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    for (name, value) in upstream.headers.iter() {
        if !is_hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    if chunked || !upstream.headers.contains_key(header::CONTENT_LENGTH) {
        out.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    out
}

fn response_head(status: http::StatusCode, headers: HeaderMap) -> Box<ResponseHeader> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    Box::new(ResponseHeader::from(parts))
}

/// Adds the `x-switchyard-*` headers.
fn stamp(headers: &mut HeaderMap, provider: &str, attempts: usize) {
    if let Ok(v) = HeaderValue::from_str(provider) {
        headers.insert(X_PROVIDER.clone(), v);
    }
    headers.insert(X_ATTEMPTS.clone(), HeaderValue::from(attempts));
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

/// A pooled connection that the provider closed while idle.
fn is_stale_connection(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError | ErrorType::H1Error
    )
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
