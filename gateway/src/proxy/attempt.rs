//! One attempt on one provider: send, judge the head (and a stream's first event), then
//! either deliver to the client or hand back a failure for the next attempt.

use super::headers::{self, client_headers, is_event_stream, stamp};
use super::verdict::{self, verdict, Answer};
use super::{classify, client_gone, AttemptRecord, Ctx, Gateway, Request};
use crate::balancer::Selection;
use crate::config::{ProviderKind, TransportKind};
use crate::edge::session::ClientSession as Session;
use crate::health::{hints, Clock, FailureKind, Outcome, Permit, ProviderHealth, Transition};
use crate::providers::{self, ClientApi, Credentials, StreamTranslator};
use crate::routing::apply_header_modifier;
use crate::runtime::{BackendRuntime, Upstream};
use crate::sse::{self, EventKind, Splitter, Usage, UsageTap};
use crate::telemetry::metrics;
use crate::upstream::{RequestHead, UpstreamSession};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};

/// Largest failed-response body kept for possible delivery; a larger one closes the
/// connection and is replaced by a gateway error if it ends up last.
const MAX_BUFFERED_FAILURE: usize = 1024 * 1024;
/// How much of a stream is held back while waiting for its first content event.
const MAX_STREAM_PEEK: usize = 64 * 1024;
/// Largest unfinished event held while relaying a stream.
const MAX_EVENT: usize = 1024 * 1024;
/// Bodies from this size on are sent as slices of the original instead of one copy.
const SPLICE_ABOVE: usize = 64 * 1024;
/// Non-streamed JSON answers up to this size are read for token usage.
const MAX_USAGE_SCAN: usize = 4 * 1024 * 1024;

/// A failure kept in case it turns out to be the last word.
pub(super) struct Failed {
    /// The provider's answer, when there was one.
    pub response: Option<(StatusCode, HeaderMap, Bytes)>,
    /// When that answer is in another API than the client's: (client API, provider kind, model).
    pub translate: Option<(ClientApi, ProviderKind, String)>,
    pub provider: String,
    pub kind: TransportKind,
    pub detail: String,
    /// Do not try other providers (the failure kind is not in `retry.onTransport`).
    pub stop: bool,
}

impl Failed {
    /// A failure without an answer to fall back on.
    fn gone(provider: &str, kind: TransportKind, detail: String, stop: bool) -> Failed {
        Failed { response: None, translate: None, provider: provider.into(), kind, detail, stop }
    }
}

/// The credentials translation signs or authenticates with; `bearer` is what
/// [`providers::google_auth::fetch_authorization`] fetched.
fn credentials<'a>(p: &'a crate::config::ProviderConfig, bearer: Option<&'a http::HeaderValue>) -> Credentials<'a> {
    match (&p.auth, bearer) {
        (_, Some(v)) => Credentials::Bearer(v),
        (crate::config::Auth::ApiKey(key), None) => Credentials::ApiKey(key.expose()),
        (crate::config::Auth::Aws(aws), None) => Credentials::Aws(aws),
        (crate::config::Auth::None | crate::config::Auth::Passthrough | crate::config::Auth::Google(_), None) => {
            Credentials::None
        }
    }
}

pub(super) enum AttemptEnd {
    /// A response went to the client (fully, or as far as the client let it).
    Delivered,
    /// Try elsewhere.
    Failed(Box<Failed>),
    /// The client left; stop.
    ClientGone,
}

/// How the upstream exchange went up to its first byte, before any byte reached the client.
pub(super) enum Fetched {
    Head(Box<Answered>),
    Transport(TransportKind, String),
}

/// An answer head (and, for a 2xx stream, its first events).
pub(super) struct Answered {
    up: Box<UpstreamSession>,
    peer: Arc<HttpPeer>,
    translator: Option<Box<dyn StreamTranslator>>,
    peek: Option<Peek>,
}

impl Fetched {
    /// Whether this is content the client can have: a 2xx answer whose stream (if it is one)
    /// opened with content. Anything else is judged, never raced to the client.
    pub(super) fn is_content(&self) -> bool {
        match self {
            Fetched::Head(a) => {
                a.up.response_header().is_some_and(|h| h.status.is_success())
                    && matches!(a.peek, None | Some(Peek::Content(_)))
            }
            Fetched::Transport(..) => false,
        }
    }
}

/// The first events of a stream, held back until they show content or an error.
enum Peek {
    Content(Bytes),
    Failed(Bytes, String),
    Transport(TransportKind, String),
}

/// The log record of an attempt on `sel`, before it has a result.
pub(super) fn new_record(req: &Request<'_>, sel: Selection) -> AttemptRecord {
    AttemptRecord {
        provider: req.backend.balancer.providers[sel.provider].config.name.clone(),
        endpoint: req.backend.upstreams[sel.provider].endpoint.authority(),
        status: None,
        error: None,
        duration: Duration::ZERO,
        ejected: false,
        model: served_model(req, sel),
        dropped: None,
        race: None,
    }
}

/// Chat Completions clients that did not ask for usage on a stream get it asked for on their
/// behalf (to count tokens) and hidden again. Untranslated paths (the Responses API, ...) may
/// have no such option: they go as they are.
fn hide_usage(req: &Request<'_>) -> bool {
    req.api == Some(ClientApi::OpenAiChat) && req.chat.as_ref().is_some_and(|c| c.stream && !c.include_usage)
}

/// The model a provider serves this request with: its configured one, else the client's.
fn served_model(req: &Request<'_>, sel: Selection) -> Option<String> {
    req.backend.balancer.providers[sel.provider].config.model.clone().or_else(|| req.chat.as_ref()?.model.clone())
}

enum StreamEnd {
    Complete,
    UpstreamBroke(String),
    ClientGone,
}

impl Gateway {
    /// One attempt on the selected provider.
    pub(super) async fn attempt(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        req: &Request<'_>,
        sel: Selection,
        is_last: bool,
    ) -> Result<AttemptEnd, Box<Error>> {
        let started = Instant::now();
        // A trial (half-open) slot is given back however this attempt ends, unless a
        // verdict is recorded with it.
        let trial =
            TrialSlot { health: &req.backend.balancer.providers[sel.provider].health, permit: Some(sel.permit) };
        let (head, body, dropped) = match self.prepare(session.req_header(), ctx, req, sel, started).await {
            Ok(p) => p,
            Err(end) => return Ok(*end),
        };
        let fetched = tokio::select! {
            // Biased: the upstream first, so the client is only probed (a read syscall)
            // while the upstream has nothing.
            biased;
            f = self.fetch(req, sel, head, body, started) => f,
            _ = client_gone(session) => return Ok(self.client_gone(ctx, new_record(req, sel), started)),
        };
        self.conclude(session, ctx, req, (sel, trial, dropped), is_last, started, fetched).await
    }

    /// The upstream request for `sel`: head and body, translated when the provider speaks
    /// another API. A request the provider cannot take ends the attempt (no health verdict).
    pub(super) async fn prepare(
        &self,
        client: &pingora_http::RequestHeader,
        ctx: &mut Ctx,
        req: &Request<'_>,
        sel: Selection,
        started: Instant,
    ) -> Result<(RequestHead, Vec<Bytes>, Option<String>), Box<AttemptEnd>> {
        let backend = req.backend;
        let slot = &backend.balancer.providers[sel.provider];
        let upstream = &backend.upstreams[sel.provider];
        let provider = slot.config.name.as_str();
        let kind = &slot.config.kind;
        if req.api.is_none() || (req.api == Some(ClientApi::OpenAiChat) && *kind == ProviderKind::OpenAi) {
            // The hot path: same API, only the model (and the usage request) spliced in.
            let ask_usage = hide_usage(req) && *kind == ProviderKind::OpenAi;
            // Upstream writes are not buffered, so each piece is a send: a small body goes
            // as one piece (copied), a large one as slices of the original (not copied).
            let model = slot.config.model.as_deref();
            let body = match &req.chat {
                Some(c) if req.body.len() < SPLICE_ABOVE => vec![c.rewrite(&req.body, model, ask_usage)],
                Some(c) => c.rewrite_parts(&req.body, model, ask_usage),
                None => vec![req.body.clone()],
            };
            let len = body.iter().map(Bytes::len).sum();
            let head = headers::upstream_request(client, req.route, &slot.config, upstream, &req.request_id, len);
            return Ok((head, body, None));
        }
        // Boxed: fetching credentials (a token exchange) makes this future large, and only a
        // provider of another API or host envelope needs it.
        match Box::pin(self.prepare_translated(client, req, &slot.config)).await {
            Ok(prepared) => {
                let dropped = (!prepared.dropped.is_empty()).then(|| prepared.dropped.join(", "));
                let head =
                    headers::prepared_request(client, req.route, &slot.config, upstream, &req.request_id, &prepared);
                Ok((head, vec![prepared.body], dropped))
            }
            Err((label, e)) => {
                // Not the provider's fault: no health verdict, just try the next one.
                let mut record = new_record(req, sel);
                record.error = Some(label);
                self.finish_attempt(ctx, record, started, label);
                let detail = format!("{provider}: {e}");
                let failed = Failed::gone(provider, TransportKind::Reset, detail, false);
                Err(Box::new(AttemptEnd::Failed(Box::new(failed))))
            }
        }
    }

    /// Sends the request and waits for its first byte: the answer head and, for a 2xx event
    /// stream, its first content event (or what shows it will have none). Does not watch the
    /// client, so that several can race (hedging).
    pub(super) async fn fetch(
        &self,
        req: &Request<'_>,
        sel: Selection,
        head: RequestHead,
        body: Vec<Bytes>,
        started: Instant,
    ) -> Fetched {
        let slot = &req.backend.balancer.providers[sel.provider];
        let upstream = &req.backend.upstreams[sel.provider];
        let first_byte = req.route.timeouts.first_byte.min(req.deadline.saturating_duration_since(started));
        let (mut up, peer) = match self.exchange(upstream, head, body, req.route.timeouts.connect, first_byte).await {
            Ok(x) => x,
            Err((kind, detail)) => return Fetched::Transport(kind, detail),
        };
        let Some(upstream_head) = up.response_header() else {
            return Fetched::Transport(TransportKind::Reset, "response header missing after read".into());
        };
        let status = upstream_head.status;
        let event_stream = is_event_stream(&upstream_head.headers);
        let kind = &slot.config.kind;
        let client_stream = req.chat.as_ref().is_some_and(|c| c.stream);
        let translate = req.api.filter(|api| providers::needs_translation(*api, kind));
        // A translated stream: provider events (SSE or Bedrock's event stream) in, the
        // client API's SSE out. Usage is always asked for, and hidden as for OpenAI.
        let mut translator = match translate {
            Some(api) if client_stream && status.is_success() => {
                providers::stream_translator(api, kind, &served_model(req, sel).unwrap_or_default(), true)
            }
            _ => None,
        };
        let peek = if status.is_success() && (translator.is_some() || event_stream) {
            Some(peek_stream(&mut up, first_byte.saturating_sub(started.elapsed()), &mut translator).await)
        } else {
            None
        };
        Fetched::Head(Box::new(Answered { up, peer, translator, peek }))
    }

    /// Judges what [`Gateway::fetch`] got, records it in the provider's health, then
    /// delivers it to the client or hands back the failure.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn conclude(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        req: &Request<'_>,
        (sel, mut trial, dropped): (Selection, TrialSlot<'_>, Option<String>),
        is_last: bool,
        started: Instant,
        fetched: Fetched,
    ) -> Result<AttemptEnd, Box<Error>> {
        let backend = req.backend;
        let slot = &backend.balancer.providers[sel.provider];
        let provider = slot.config.name.as_str();
        let mut record = new_record(req, sel);
        record.dropped = dropped;
        let kind = &slot.config.kind;
        let hide_usage = hide_usage(req);
        let translate = req.api.filter(|api| providers::needs_translation(*api, kind));
        let first_byte = req.route.timeouts.first_byte.min(req.deadline.saturating_duration_since(started));
        let Answered { mut up, peer, mut translator, mut peek } = match fetched {
            Fetched::Head(a) => *a,
            Fetched::Transport(kind, detail) => {
                let fkind = if kind == TransportKind::Timeout { FailureKind::Timeout } else { FailureKind::Transport };
                let outcome = Outcome::Failure { kind: fkind, hint: None, detail: detail.clone() };
                record.ejected = self.judge(backend, sel.provider, trial.take(), &outcome);
                record.error = Some(kind.as_str());
                self.finish_attempt(ctx, record, started, kind.as_str());
                warn!(provider, error = kind.as_str(), %detail, "attempt failed");
                let stop = !verdict(Answer::Transport(kind), &backend.balancer.backend.retry, is_last).retryable;
                let detail = format!("{provider}: {detail}");
                return Ok(AttemptEnd::Failed(Box::new(Failed::gone(provider, kind, detail, stop))));
            }
        };

        let Some(upstream_head) = up.response_header() else {
            return Err(Error::explain(ErrorType::InternalError, "response header missing after read"));
        };
        let status = upstream_head.status;
        let code = status.as_u16();
        let mut out = client_headers(upstream_head);
        // Route response headers apply before judging, so a `Retry-After` added there
        // sets the ejection time.
        apply_header_modifier(&req.route.response_headers, &mut out);
        let policy = &backend.balancer.backend.health;
        let unhealthy = match &policy.condition {
            Some(c) => c.eval(code, &out),
            None => code >= 500 || code == 429,
        };
        record.status = Some(code);
        if let Some(min_share) = policy.headroom {
            let reading = crate::health::headroom::Reading::from_headers(&out, SystemTime::now());
            slot.health.record_headroom(&reading, self.clock.now(), min_share);
        }
        // Out of credit and slow down share a status (429, also 402/403): only the body
        // tells them apart, so it is read (its start) before judging.
        let early = if verdict::may_be_quota(code) {
            Some(
                read_body_start(&mut up, first_byte.saturating_sub(started.elapsed()), verdict::QUOTA_SCAN_BYTES).await,
            )
        } else {
            None
        };
        let quota = early.as_ref().is_some_and(|(b, _)| verdict::is_quota_exhausted(code, b));
        let mut outcome = if unhealthy || quota {
            let (hint, malformed) = hints::from_headers(&out, SystemTime::now());
            if let Some(m) = malformed {
                if slot.health.first_malformed_hint() {
                    warn!(provider, header = m.header, value = %m.value, "ignoring malformed retry hint");
                }
            }
            let (kind, detail) = match quota {
                true => (FailureKind::Quota, format!("status {code}: out of credit or over quota")),
                false => (FailureKind::Status(code), format!("status {code}")),
            };
            Outcome::Failure { kind, hint, detail }
        } else {
            Outcome::Success
        };
        let retry = &backend.balancer.backend.retry;
        let mut decision = verdict(Answer::Status { code, unhealthy, quota }, retry, is_last);
        let model = served_model(req, sel).unwrap_or_default();
        if translator.is_some() {
            headers::translated_headers(&mut out, "text/event-stream");
            out.insert(http::header::TRANSFER_ENCODING, http::HeaderValue::from_static("chunked"));
        }

        // A stream that looks fine at the head may still open with an error event, or end
        // before any content: hold its first events back until it shows which.
        let mut prefix = early.as_ref().map(|(start, _)| start.clone()).unwrap_or_default();
        if !decision.retryable && status.is_success() && (translator.is_some() || is_event_stream(&out)) {
            let peeked = match peek.take() {
                Some(p) => p,
                // The route's response headers made it a stream: peek now.
                None => {
                    let wait = first_byte.saturating_sub(started.elapsed());
                    tokio::select! {
                        biased;
                        p = peek_stream(&mut up, wait, &mut translator) => p,
                        _ = client_gone(session) => return Ok(self.client_gone(ctx, record, started)),
                    }
                }
            };
            match peeked {
                Peek::Content(p) => prefix = p,
                Peek::Failed(p, detail) => {
                    prefix = p;
                    outcome = Outcome::Failure { kind: FailureKind::Stream, hint: None, detail: detail.clone() };
                    decision = verdict(Answer::BadStream, retry, is_last);
                    record.error = Some("stream");
                }
                Peek::Transport(kind, detail) => {
                    let fkind = if kind == TransportKind::Timeout { FailureKind::Timeout } else { FailureKind::Stream };
                    let outcome = Outcome::Failure { kind: fkind, hint: None, detail: detail.clone() };
                    record.ejected = self.judge(backend, sel.provider, trial.take(), &outcome);
                    record.error = Some(if kind == TransportKind::Timeout { "timeout" } else { "stream" });
                    self.finish_attempt(ctx, record, started, "stream");
                    let detail = format!("{provider}: {detail}");
                    return Ok(AttemptEnd::Failed(Box::new(Failed::gone(provider, kind, detail, false))));
                }
            }
        }
        record.ejected = self.judge(backend, sel.provider, trial.take(), &outcome);
        let label = match (&outcome, record.error) {
            (Outcome::Success, _) if decision.retryable => "retryable",
            (Outcome::Success, _) => "success",
            (_, Some(e)) => e,
            _ => "unhealthy",
        };

        if decision.failover {
            // Keep the answer in case nobody else can be tried; reading it to the end also
            // lets the connection go back to the pool.
            let kept = match early {
                _ if record.error.is_some() => None,
                Some((start, BodyStart::Complete)) => Some(start),
                Some((_, BodyStart::Broken)) => None,
                Some((start, BodyStart::More)) => read_small_body(&mut up, first_byte, start).await,
                // A 2xx stream judged a failure (`onStatus`, the condition) was peeked by
                // `fetch`: its first events are the start of the answer kept.
                None => match peek.take() {
                    None => read_small_body(&mut up, first_byte, Bytes::new()).await,
                    Some(Peek::Content(start) | Peek::Failed(start, _)) if translator.is_none() => {
                        read_small_body(&mut up, first_byte, start).await
                    }
                    Some(_) => None,
                },
            };
            self.finish_attempt(ctx, record, started, label);
            let response = match kept {
                Some(b) => {
                    self.connector.release(*up, &peer);
                    Some((status, out, b))
                }
                None => None,
            };
            let detail = match &outcome {
                Outcome::Failure { kind: FailureKind::Stream, detail, .. } => format!("{provider}: {detail}"),
                _ => format!("{provider} answered {code}"),
            };
            let translate = translate.map(|api| (api, kind.clone(), model));
            let failed = Failed {
                response,
                translate,
                provider: provider.into(),
                kind: TransportKind::Reset,
                detail,
                stop: false,
            };
            return Ok(AttemptEnd::Failed(Box::new(failed)));
        }

        // Deliver: this answer is the one the client gets.
        if let Some(v) = record.dropped.as_deref().and_then(|d| http::HeaderValue::from_str(d).ok()) {
            out.insert(headers::X_DROPPED.clone(), v);
        }
        self.finish_attempt(ctx, record, started, label);
        let served_model = slot.config.model.clone().or_else(|| ctx.model_requested.clone());
        stamp(&mut out, Some(provider), served_model.as_deref(), ctx.attempts.len(), &req.request_id);
        ctx.provider = Some(provider.to_string());
        ctx.model_served = served_model;
        ctx.status = Some(code);
        if let (Some(api), None) = (translate, &translator) {
            // A whole answer in another API: read it, translate it, send it.
            // Boxed: only answers from a provider of another API need it.
            let deliver = self.deliver_translated(
                session,
                ctx,
                req,
                (up, peer, prefix),
                (api, kind, &model),
                status,
                out,
                started,
            );
            return Box::pin(deliver).await;
        }
        let sse = is_event_stream(&out);
        if sse {
            // Events are relayed one by one (a usage chunk may be hidden, an error event
            // added): the provider's length no longer holds.
            out.remove(http::header::CONTENT_LENGTH);
        }
        if session.write_response_header(status, out, false).await.is_err() {
            return Ok(AttemptEnd::ClientGone);
        }
        ctx.ttfb = Some(req.started.elapsed());
        let (end, usage) = self.relay(session, ctx, &mut up, prefix, sse, hide_usage, translator, req).await;
        if let Some(last) = ctx.attempts.last_mut() {
            last.duration = started.elapsed();
        }
        if let Some(u) = usage {
            count_tokens(provider, slot.config.model.as_deref(), u);
            ctx.usage = Some(u);
        }
        match end {
            StreamEnd::Complete => {
                self.connector.release(*up, &peer);
                Ok(AttemptEnd::Delivered)
            }
            StreamEnd::UpstreamBroke(detail) => {
                warn!(provider, %detail, "provider failed mid-response");
                let outcome = Outcome::Failure { kind: FailureKind::Stream, hint: None, detail: detail.clone() };
                self.judge(backend, sel.provider, crate::health::Permit::Normal, &outcome);
                ctx.error = Some(format!("{provider} failed mid-response: {detail}"));
                if sse {
                    // Never a clean end: the client sees an explicit error event.
                    let event = error_event(req.api, &detail);
                    ctx.bytes_out += event.len();
                    let _ = session.write_response_body(Some(event), false).await;
                    let _ = session.write_response_body(None, true).await;
                } else {
                    session.close_after();
                    return Err(Error::explain(ErrorType::ReadError, detail));
                }
                Ok(AttemptEnd::Delivered)
            }
            StreamEnd::ClientGone => Ok(AttemptEnd::ClientGone),
        }
    }

    /// The request for a provider that needs its own (another API, or Claude in another
    /// host's envelope), with the credentials it needs fetched first; `Err` holds the
    /// attempt outcome (`translate`, `auth`) and why.
    async fn prepare_translated(
        &self,
        client: &pingora_http::RequestHeader,
        req: &Request<'_>,
        provider: &crate::config::ProviderConfig,
    ) -> Result<providers::UpstreamRequest, (&'static str, String)> {
        let passthrough = (provider.auth == crate::config::Auth::Passthrough)
            .then(|| client.headers.get(http::header::AUTHORIZATION))
            .flatten();
        let cx = providers::ClientContext {
            passthrough_auth: passthrough,
            anthropic_beta: client.headers.get(&providers::ANTHROPIC_BETA),
            policy: req.backend.balancer.backend.translation,
        };
        let bearer = providers::google_auth::fetch_authorization(&provider.auth, &self.connector)
            .await
            .map_err(|e| ("auth", e))?;
        let creds = credentials(provider, bearer.as_ref());
        let api = req.api.unwrap_or(ClientApi::OpenAiChat);
        providers::prepare(api, &req.body, provider, &creds, &cx, SystemTime::now())
            .map_err(|e| ("translate", e.to_string()))
    }

    fn client_gone(&self, ctx: &mut Ctx, mut record: AttemptRecord, started: Instant) -> AttemptEnd {
        record.error = Some("client_gone");
        self.finish_attempt(ctx, record, started, "client_gone");
        AttemptEnd::ClientGone
    }

    pub(super) fn finish_attempt(&self, ctx: &mut Ctx, mut record: AttemptRecord, started: Instant, outcome: &str) {
        record.duration = started.elapsed();
        metrics::with(|m| {
            m.attempts.with_label_values(&[record.provider.as_str(), outcome]).inc();
            m.upstream_duration.with_label_values(&[record.provider.as_str()]).observe(record.duration.as_secs_f64());
        });
        // Most requests make one attempt: room for exactly one more, not Vec's four (a
        // record is ~150 bytes, held until the answer ends).
        ctx.attempts.reserve_exact(1);
        ctx.attempts.push(record);
    }

    /// Records an outcome in the provider's health; returns whether it ejected the provider.
    pub(super) fn judge(&self, backend: &BackendRuntime, provider: usize, permit: Permit, outcome: &Outcome) -> bool {
        let slot = &backend.balancer.providers[provider];
        let policy = &backend.balancer.backend.health;
        let now = self.clock.now();
        slot.health.window.record(now, matches!(outcome, Outcome::Failure { .. }));
        let transition = backend.balancer.with_eject_lock(slot.group, || {
            slot.health.record(outcome, permit, now, &policy.eviction, &policy.recovery, || {
                backend.balancer.may_eject(slot.group, now)
            })
        });
        self.announce(backend, slot, transition);
        report_transition(&slot.config.name, transition)
    }

    /// Connects, sends the request and waits for the response head.
    async fn exchange(
        &self,
        upstream: &Upstream,
        head: RequestHead,
        body: Vec<Bytes>,
        connect_timeout: Duration,
        first_byte: Duration,
    ) -> Result<(Box<UpstreamSession>, Arc<HttpPeer>), (TransportKind, String)> {
        let peer = match upstream.endpoint.peer(self.clock.now()).await {
            Ok(p) => p,
            Err(e) => return Err((TransportKind::Dns, e.to_string())),
        };
        let send = async {
            // A pooled connection may have been closed by the provider while idle; such a
            // failure says nothing about the provider, so try again on a fresh connection.
            let mut fresh_tries = 0;
            loop {
                let connect = self.connector.get(&peer);
                let (mut up, reused) = match tokio::time::timeout(connect_timeout, connect).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err((classify(&e), e.to_string())),
                    Err(_) => {
                        return Err((TransportKind::Timeout, format!("connect timed out after {connect_timeout:?}")))
                    }
                };
                let sent = async {
                    up.send(&head, &body).await?;
                    up.read_response_header().await
                };
                match tokio::time::timeout(first_byte, sent).await {
                    Ok(Ok(())) => return Ok(up),
                    Ok(Err(e)) if reused && fresh_tries < 2 && is_stale_connection(&e, &up) => fresh_tries += 1,
                    Ok(Err(e)) => return Err((classify(&e), e.to_string())),
                    Err(_) => return Err((TransportKind::Timeout, format!("no response head within {first_byte:?}"))),
                }
            }
        };
        send.await.map(|up| (Box::new(up), peer))
    }

    /// Copies the chosen response to the client as it arrives. SSE streams go event by
    /// event (to read usage, and hide the usage chunk a client did not ask for).
    #[allow(clippy::too_many_arguments)]
    async fn relay(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        up: &mut UpstreamSession,
        prefix: Bytes,
        sse: bool,
        hide_usage: bool,
        mut translator: Option<Box<dyn StreamTranslator>>,
        req: &Request<'_>,
    ) -> (StreamEnd, Option<Usage>) {
        let gap = req.route.timeouts.first_byte;
        let mut splitter = Splitter::default();
        let mut tap = UsageTap::default();
        // A copy of a whole answer, for its `usage`: kept as the chunks it came in (no copy).
        let mut json = BodyChunks::default();
        // The prefix is what the stream judgement held back: already in the client's API.
        let mut pending = Some(prefix).filter(|p| !p.is_empty());
        loop {
            let (raw, ending) = match pending.take() {
                Some(p) => (Ok(p), false),
                // The client may already hold the whole answer and be sending its next
                // request on this connection: never probe it once the body is complete.
                None if up.response_done() => (Ok(Bytes::new()), true),
                None => {
                    let wait = gap.min(req.deadline.saturating_duration_since(Instant::now()));
                    let chunk = tokio::select! {
                        biased;
                        r = tokio::time::timeout(wait, up.read_response_body()) => r,
                        _ = client_gone(session) => return (StreamEnd::ClientGone, tap.usage),
                    };
                    match chunk {
                        Ok(Ok(Some(d))) => match translator.as_deref_mut() {
                            Some(t) => (translate_chunk(t, &d), false),
                            None => (Ok(d), false),
                        },
                        Ok(Ok(None)) => (Ok(Bytes::new()), true),
                        Ok(Err(e)) => return (StreamEnd::UpstreamBroke(e.to_string()), tap.usage),
                        Err(_) => return (StreamEnd::UpstreamBroke(format!("no data for {wait:?}")), tap.usage),
                    }
                }
            };
            let raw = match (ending, translator.as_deref_mut()) {
                (true, Some(t)) => {
                    let mut tail = BytesMut::new();
                    t.finish(&mut tail).map(|()| tail.freeze())
                }
                _ => raw,
            };
            let data = match raw {
                Ok(d) => d,
                Err(e) => return (StreamEnd::UpstreamBroke(format!("untranslatable stream: {e}")), tap.usage),
            };
            let out = if sse {
                splitter.push(&data);
                if splitter.buffered() > MAX_EVENT {
                    return (StreamEnd::UpstreamBroke(format!("an event over {MAX_EVENT} bytes")), tap.usage);
                }
                let mut out = BytesMut::with_capacity(data.len());
                while let Some(event) = splitter.next_event() {
                    if tap.inspect(&event, hide_usage) {
                        out.extend_from_slice(&event);
                    }
                }
                out.freeze()
            } else {
                json.push(&data);
                data
            };
            if !out.is_empty() {
                ctx.bytes_out += out.len();
                if session.write_response_body(Some(out), false).await.is_err() {
                    return (StreamEnd::ClientGone, tap.usage);
                }
            }
            if ending {
                return self.finish_relay(session, &mut splitter, sse, &tap, &json).await;
            }
        }
    }
}

impl Gateway {
    /// Delivers a whole (non-streamed) answer from a provider of another API: read in full,
    /// translated, sent with its length.
    #[allow(clippy::too_many_arguments)]
    async fn deliver_translated(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        req: &Request<'_>,
        (mut up, peer, start): (Box<UpstreamSession>, Arc<HttpPeer>, Bytes),
        (api, kind, model): (ClientApi, &ProviderKind, &str),
        status: StatusCode,
        mut out: HeaderMap,
        started: Instant,
    ) -> Result<AttemptEnd, Box<Error>> {
        let wait = req.route.timeouts.first_byte.min(req.deadline.saturating_duration_since(Instant::now()));
        let Some(raw) = read_body_limited(&mut up, wait, MAX_USAGE_SCAN, start).await else {
            session.close_after();
            return Err(Error::explain(ErrorType::ReadError, "provider answer too large, broken or slow"));
        };
        let body = match providers::translate_response_with_model(api, kind, model, status.as_u16(), &raw) {
            Ok(b) => b,
            Err(e) => {
                let e = crate::error::GatewayError::Upstream {
                    kind: TransportKind::Reset,
                    detail: format!("untranslatable answer: {e}"),
                };
                return self.reject(session, ctx, e, &[]).await.map(|()| AttemptEnd::Delivered);
            }
        };
        self.connector.release(*up, &peer);
        if let (Some(u), Some(p)) = (Usage::from_slice(&body), ctx.provider.clone()) {
            count_tokens(&p, Some(model).filter(|m| !m.is_empty()), u);
            ctx.usage = Some(u);
        }
        headers::translated_headers(&mut out, "application/json");
        out.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
        session.write_response_header(status, out, false).await?;
        ctx.ttfb = Some(req.started.elapsed());
        ctx.bytes_out = body.len();
        session.write_response_body(Some(body), true).await?;
        if let Some(last) = ctx.attempts.last_mut() {
            last.duration = started.elapsed();
        }
        Ok(AttemptEnd::Delivered)
    }

    /// Ends a relayed response: the unfinished tail of an event stream, then the end.
    async fn finish_relay(
        &self,
        session: &mut Session,
        splitter: &mut Splitter,
        sse: bool,
        tap: &UsageTap,
        json: &BodyChunks,
    ) -> (StreamEnd, Option<Usage>) {
        let rest = splitter.take_rest();
        if !rest.is_empty() && session.write_response_body(Some(rest), false).await.is_err() {
            return (StreamEnd::ClientGone, tap.usage);
        }
        let usage = if sse { tap.usage } else { json.usage() };
        match session.write_response_body(None, true).await {
            Ok(()) => (StreamEnd::Complete, usage),
            Err(_) => (StreamEnd::ClientGone, usage),
        }
    }
}

/// The permit an attempt holds on its provider's health (a trial slot, in half-open):
/// released when dropped unless a verdict took it, so no early return can leak a slot.
pub(super) struct TrialSlot<'a> {
    pub(super) health: &'a ProviderHealth,
    pub(super) permit: Option<Permit>,
}

impl TrialSlot<'_> {
    /// The permit, for recording a verdict (which ends the trial one way or the other).
    fn take(&mut self) -> Permit {
        self.permit.take().unwrap_or(Permit::Normal)
    }
}

impl Drop for TrialSlot<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.health.release(p);
        }
    }
}

/// Logs a health transition and counts it; returns whether the provider was ejected.
pub fn report_transition(provider: &str, transition: Transition) -> bool {
    match transition {
        Transition::Ejected { duration, reason, capped_hint } => {
            warn!(provider, reason, seconds = duration.as_secs_f64(), "provider ejected");
            if let Some(asked) = capped_hint {
                warn!(
                    provider,
                    asked_seconds = asked.as_secs_f64(),
                    seconds = duration.as_secs_f64(),
                    "provider asked to be left alone longer than eviction.maxDuration; capped"
                );
            }
            metrics::with(|m| m.ejections.with_label_values(&[provider, reason]).inc());
            true
        }
        Transition::KeptByFloor => {
            warn!(provider, "provider kept in service by maxEjectionPercent");
            metrics::with(|m| m.floor_kept.with_label_values(&[provider]).inc());
            false
        }
        Transition::Restored { .. } => {
            info!(provider, "provider restored");
            false
        }
        Transition::Nothing => false,
    }
}

fn count_tokens(provider: &str, model: Option<&str>, usage: Usage) {
    let model = model.unwrap_or("unspecified");
    metrics::with(|m| {
        m.tokens.with_label_values(&[provider, model, "input"]).inc_by(usage.input);
        m.tokens.with_label_values(&[provider, model, "output"]).inc_by(usage.output);
    });
}

/// The chunks of a whole answer, up to [`MAX_USAGE_SCAN`] bytes, for reading its usage.
#[derive(Default)]
struct BodyChunks {
    chunks: Vec<Bytes>,
    len: usize,
    too_big: bool,
}

impl BodyChunks {
    fn push(&mut self, data: &Bytes) {
        self.len += data.len();
        if self.len > MAX_USAGE_SCAN {
            self.too_big = true;
            self.chunks.clear();
        } else if !self.too_big {
            self.chunks.push(data.clone());
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self.chunks.as_slice() {
            _ if self.too_big => None,
            [] => None,
            [one] => Usage::from_slice(one),
            many => Usage::from_slice(&many.concat()),
        }
    }
}

/// Reads a stream until its first content event, an in-band error, or its early end.
async fn peek_stream(
    up: &mut UpstreamSession,
    wait: Duration,
    translator: &mut Option<Box<dyn StreamTranslator>>,
) -> Peek {
    let deadline = tokio::time::Instant::now() + wait;
    let mut splitter = Splitter::default();
    let mut seen = BytesMut::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, up.read_response_body()).await;
        let chunk = match (chunk, translator.as_deref_mut()) {
            (Ok(Ok(Some(data))), Some(t)) => match translate_chunk(t, &data) {
                Ok(out) => Ok(Ok(Some(out))),
                Err(e) => return Peek::Failed(seen.freeze(), format!("untranslatable stream: {e}")),
            },
            (Ok(Ok(None)), Some(t)) => {
                let mut out = BytesMut::new();
                if let Err(e) = t.finish(&mut out) {
                    return Peek::Failed(seen.freeze(), format!("untranslatable stream: {e}"));
                }
                if out.is_empty() {
                    Ok(Ok(None))
                } else {
                    Ok(Ok(Some(out.freeze())))
                }
            }
            (other, _) => other,
        };
        match chunk {
            Ok(Ok(Some(data))) => {
                seen.extend_from_slice(&data);
                splitter.push(&data);
                while let Some(event) = splitter.next_event() {
                    match sse::classify(&event) {
                        EventKind::Preamble => {}
                        EventKind::Content => return Peek::Content(seen.freeze()),
                        EventKind::Error(msg) => {
                            return Peek::Failed(seen.freeze(), format!("stream error event: {msg}"))
                        }
                    }
                }
                if seen.len() > MAX_STREAM_PEEK {
                    return Peek::Content(seen.freeze());
                }
            }
            Ok(Ok(None)) => return Peek::Failed(seen.freeze(), "stream ended before any content".into()),
            Ok(Err(e)) => return Peek::Transport(classify(&e), format!("stream broke before any content: {e}")),
            Err(_) => return Peek::Transport(TransportKind::Timeout, format!("no stream content within {wait:?}")),
        }
    }
}

fn translate_chunk(t: &mut dyn StreamTranslator, data: &[u8]) -> Result<Bytes, providers::TranslateError> {
    let mut out = BytesMut::with_capacity(data.len() + 64);
    t.push(data, &mut out)?;
    Ok(out.freeze())
}

/// Reads a (failed) response body to the end if it is small; `None` if it is too big,
/// broken, or slow. `start` is what was read of it already.
async fn read_small_body(up: &mut UpstreamSession, wait: Duration, start: Bytes) -> Option<Bytes> {
    read_body_limited(up, wait, MAX_BUFFERED_FAILURE, start).await
}

/// How far [`read_body_start`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyStart {
    /// The whole body.
    Complete,
    /// The body goes on past what was read.
    More,
    /// The body broke or was too slow: the connection is not reusable.
    Broken,
}

/// Reads the start of a response body: at least `want` bytes (whole chunks) or all of it,
/// within `wait`. Nothing read is lost: a caller that delivers the answer sends it first.
async fn read_body_start(up: &mut UpstreamSession, wait: Duration, want: usize) -> (Bytes, BodyStart) {
    let mut buf = BytesMut::new();
    let read = async {
        while buf.len() < want {
            match up.read_response_body().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => return BodyStart::Complete,
                Err(_) => return BodyStart::Broken,
            }
        }
        if up.response_done() {
            BodyStart::Complete
        } else {
            BodyStart::More
        }
    };
    let end = tokio::time::timeout(wait, read).await.unwrap_or(BodyStart::Broken);
    (buf.freeze(), end)
}

/// Reads a response body to the end, up to `limit` bytes, within `wait`; `start` is what
/// was read of it already.
async fn read_body_limited(up: &mut UpstreamSession, wait: Duration, limit: usize, start: Bytes) -> Option<Bytes> {
    if up.response_done() {
        return Some(start);
    }
    let mut buf = BytesMut::from(&start[..]);
    let read = async {
        while let Some(chunk) = up.read_response_body().await.ok()? {
            if buf.len() + chunk.len() > limit {
                return None;
            }
            buf.extend_from_slice(&chunk);
        }
        Some(())
    };
    tokio::time::timeout(wait, read).await.ok().flatten()?;
    Some(buf.freeze())
}

/// The SSE error event that ends a stream whose provider failed mid-way, in the client's
/// API shape.
fn error_event(api: Option<ClientApi>, detail: &str) -> Bytes {
    providers::mid_stream_error(api, detail)
}

/// A pooled connection that the provider had closed while idle: the request could not be
/// written, or the connection ended (or was reset) before a single byte of an answer. Any
/// later failure may come after the provider ran the request, so it is not sent again.
fn is_stale_connection(e: &Error, up: &UpstreamSession) -> bool {
    match e.etype() {
        ErrorType::WriteError => true,
        ErrorType::ConnectionClosed | ErrorType::ReadError => up.received_nothing(),
        _ => false,
    }
}
