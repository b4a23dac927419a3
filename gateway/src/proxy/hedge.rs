//! Hedging (`retry.hedge`): when an attempt has no first byte (for a stream: no first content
//! event) after `after`, the same request also goes to the next provider the balancer would
//! choose. The first to produce content is delivered; the others are dropped at once, which
//! closes their upstream connections, and are not held against their providers. A racer that
//! fails is judged like any attempt while the others keep running. Each hedge counts as an
//! attempt in `retry.attempts`.
//!
//! Only requests that can be hedged come here; the plain path stays in
//! [`Gateway::attempt`], with no timer and no allocation for hedging.

use super::attempt::{new_record, AttemptEnd, Fetched, TrialSlot};
use super::{client_gone, Ctx, Gateway, Request};
use crate::balancer::{Pick, ProviderSet, Selection};
use crate::config::Hedge;
use crate::edge::session::ClientSession as Session;
use crate::health::Clock;
use crate::telemetry::metrics;
use pingora_core::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;
use tracing::debug;

/// One attempt in the race, waiting for its first byte.
struct Racer<'r> {
    sel: Selection,
    trial: TrialSlot<'r>,
    /// Fields the translation policy dropped for this provider.
    dropped: Option<String>,
    started: Instant,
    /// Sent as a hedge (not the attempt that was already running).
    hedge: bool,
    fetch: Pin<Box<dyn Future<Output = Fetched> + Send + 'r>>,
}

enum Event {
    Done(usize, Fetched),
    Hedge,
    ClientGone,
}

/// Resolves with the first racer to get its first byte (never, when there are none).
fn first_done<'a, 'r>(racers: &'a mut [Racer<'r>]) -> impl Future<Output = (usize, Fetched)> + use<'a, 'r> {
    std::future::poll_fn(move |cx| {
        for (i, r) in racers.iter_mut().enumerate() {
            if let Poll::Ready(f) = r.fetch.as_mut().poll(cx) {
                return Poll::Ready((i, f));
            }
        }
        Poll::Pending
    })
}

impl Gateway {
    /// Attempt `attempt` on `first`, hedged. Returns how it ended and how many attempts it
    /// used (the first plus every hedge sent).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hedged(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        req: &Request<'_>,
        first: Selection,
        attempt: u32,
        hedge: Hedge,
        tried: &mut ProviderSet,
        excluded: ProviderSet,
    ) -> Result<(AttemptEnd, u32), Box<Error>> {
        let retry = &req.backend.balancer.backend.retry;
        let mut racers: Vec<Racer<'_>> = Vec::with_capacity(1 + hedge.max_extra as usize);
        let mut used = 1u32;
        match self.racer(session.req_header(), ctx, req, first, false).await {
            Ok(r) => racers.push(r),
            Err(end) => return Ok((end, used)),
        }
        let mut extras = 0u32;
        let mut next_hedge = tokio::time::Instant::now() + hedge.after;
        loop {
            let can_hedge = may_send_hedge(extras, hedge.max_extra, attempt - 1 + used, retry.attempts);
            let event = tokio::select! {
                biased;
                (i, fetched) = first_done(&mut racers) => Event::Done(i, fetched),
                _ = tokio::time::sleep_until(next_hedge), if can_hedge => Event::Hedge,
                _ = client_gone(session) => Event::ClientGone,
            };
            match event {
                Event::Hedge => {
                    next_hedge = tokio::time::Instant::now() + hedge.after;
                    match req.backend.balancer.select(*tried, excluded, self.clock.now(), false) {
                        Ok(sel) if sel.pick == Pick::Fresh => {
                            tried.insert(sel.provider);
                            used += 1;
                            extras += 1;
                            debug!(provider = %req.backend.balancer.providers[sel.provider].config.name, "hedging a slow first byte");
                            if let Ok(r) = self.racer(session.req_header(), ctx, req, sel, true).await {
                                racers.push(r);
                            }
                        }
                        other => {
                            // Nobody fresh to hedge to: stop trying.
                            if let Ok(sel) = other {
                                req.backend.balancer.providers[sel.provider].health.release(sel.permit);
                            }
                            extras = hedge.max_extra;
                        }
                    }
                }
                Event::ClientGone => {
                    self.cancel(ctx, req, &mut racers, "client_gone", None);
                    return Ok((AttemptEnd::ClientGone, used));
                }
                Event::Done(i, fetched) => {
                    let racer = racers.remove(i);
                    let content = fetched.is_content();
                    if content {
                        // The winner: the others stop now, before it is delivered.
                        self.cancel(ctx, req, &mut racers, "cancelled", Some("lost"));
                    }
                    let is_last = racers.is_empty() && attempt - 1 + used >= retry.attempts;
                    let at = ctx.attempts.len();
                    let raced = extras > 0;
                    let end = self
                        .conclude(
                            session,
                            ctx,
                            req,
                            (racer.sel, racer.trial, racer.dropped),
                            is_last,
                            racer.started,
                            fetched,
                        )
                        .await?;
                    if raced {
                        if let Some(rec) = ctx.attempts.get_mut(at) {
                            rec.race = Some(if content { "won" } else { "lost" });
                        }
                    }
                    if content {
                        count_hedges(racer.hedge, extras);
                    }
                    match end {
                        AttemptEnd::Failed(f) if !f.stop && !racers.is_empty() => {
                            // Judged and recorded; the others may still answer.
                            debug!(provider = %f.provider, "a hedged attempt failed; waiting for the others");
                        }
                        end => {
                            if !content {
                                self.cancel(ctx, req, &mut racers, "cancelled", raced.then_some("lost"));
                                count_hedges(racer.hedge && matches!(end, AttemptEnd::Delivered), extras);
                            }
                            return Ok((end, used));
                        }
                    }
                }
            }
        }
    }

    /// Starts one racer on `sel`: `Err` when the request cannot be prepared for it.
    async fn racer<'r>(
        &'r self,
        client: &pingora_http::RequestHeader,
        ctx: &mut Ctx,
        req: &'r Request<'r>,
        sel: Selection,
        hedge: bool,
    ) -> Result<Racer<'r>, AttemptEnd> {
        let started = Instant::now();
        let trial =
            TrialSlot { health: &req.backend.balancer.providers[sel.provider].health, permit: Some(sel.permit) };
        let (head, body, dropped) = self.prepare(client, ctx, req, sel, started).await.map_err(|end| *end)?;
        Ok(Racer { sel, trial, dropped, started, hedge, fetch: Box::pin(self.fetch(req, sel, head, body, started)) })
    }

    /// Drops the racers still running (their upstream connections close), gives back their
    /// trial slots without a verdict, and logs each as an attempt with `outcome`.
    fn cancel(
        &self,
        ctx: &mut Ctx,
        req: &Request<'_>,
        racers: &mut Vec<Racer<'_>>,
        outcome: &'static str,
        race: Option<&'static str>,
    ) {
        for racer in racers.drain(..) {
            let Racer { sel, trial, dropped, started, fetch, .. } = racer;
            drop(fetch);
            drop(trial);
            let mut record = new_record(req, sel);
            record.dropped = dropped;
            record.error = Some(outcome);
            record.race = race;
            self.finish_attempt(ctx, record, started, outcome);
        }
    }
}

/// Whether a request may be hedged at all: `retry.hedge` set, body within
/// `limits.maxHedgeBodyBytes`, and not on its last attempt.
pub(super) fn hedge_for(hedge: Option<Hedge>, body_len: usize, max_body: usize, is_last: bool) -> Option<Hedge> {
    hedge.filter(|_| body_len <= max_body && !is_last)
}

/// Whether one more hedge may go out: fewer than `maxExtra` sent, and an attempt left for it
/// (`used` attempts so far, the hedged ones included).
fn may_send_hedge(sent: u32, max_extra: u32, used: u32, attempts: u32) -> bool {
    sent < max_extra && used < attempts
}

/// (won, lost) for `switchyard_hedges_total`, from the hedges' side: one per hedge sent, `won`
/// for the hedge whose answer was delivered.
fn hedge_outcomes(winner_is_hedge: bool, hedges: u32) -> (u64, u64) {
    let won = u64::from(winner_is_hedge && hedges > 0);
    (won, u64::from(hedges) - won)
}

fn count_hedges(winner_is_hedge: bool, hedges: u32) {
    let (won, lost) = hedge_outcomes(winner_is_hedge, hedges);
    if won + lost == 0 {
        return;
    }
    metrics::with(|m| {
        for (outcome, n) in [("won", won), ("lost", lost)] {
            if n > 0 {
                m.hedges.with_label_values(&[outcome]).inc_by(n);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn which_requests_are_hedged() {
        let h = Some(Hedge { after: Duration::from_millis(200), max_extra: 1 });
        assert_eq!(hedge_for(h, 1 << 20, 1 << 20, false), h, "a body of exactly the limit is hedged");
        assert_eq!(hedge_for(h, (1 << 20) + 1, 1 << 20, false), None);
        assert_eq!(hedge_for(h, 10, 1 << 20, true), None, "never from the last attempt");
        assert_eq!(hedge_for(None, 10, 1 << 20, false), None);
    }

    #[test]
    fn hedges_count_as_attempts_and_stop_at_max_extra() {
        // attempts: 3, first attempt running (1 used): one hedge may go, then a second only
        // with maxExtra 2, and never past the attempts.
        assert!(may_send_hedge(0, 1, 1, 3));
        assert!(!may_send_hedge(1, 1, 2, 3));
        assert!(may_send_hedge(1, 2, 2, 3));
        assert!(!may_send_hedge(2, 5, 3, 3));
        assert!(!may_send_hedge(0, 1, 2, 2), "the attempt in flight was the last");
    }

    #[test]
    fn outcomes_from_the_hedges_side() {
        assert_eq!(hedge_outcomes(true, 1), (1, 0));
        assert_eq!(hedge_outcomes(false, 1), (0, 1));
        assert_eq!(hedge_outcomes(true, 2), (1, 1));
        assert_eq!(hedge_outcomes(false, 0), (0, 0));
        assert_eq!(hedge_outcomes(true, 0), (0, 0));
    }
}
