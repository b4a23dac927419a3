//! One failure state machine per provider. Every decision about a provider (may it take a
//! request, is it ejected, for how long, is it on trial) goes through [`ProviderHealth`].
//!
//! Pure: no sockets, and time comes from a [`Clock`] so tests can drive it.
//!
//! States: `Healthy` (optionally ramping up after a trial) -> `Ejected{until}` -> (when the
//! ejection ends) `Trial` (half-open: at most `trialRequests` requests at once) -> `Healthy`
//! on success, `Ejected` again with growth on failure.

pub mod condition;
pub mod headroom;
pub mod hints;

use crate::config::{Eviction, Recovery};
use once_cell::sync::Lazy;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Milliseconds on a monotonic clock.
pub type Millis = u64;

pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// The process's monotonic clock, counted from first use.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        // +1 so that 0 can mean "never" in the atomics below.
        EPOCH.elapsed().as_millis() as u64 + 1
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: Millis) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicU64::new(start)))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a request failed, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The unhealthy condition matched this status.
    Status(u16),
    /// Connect, reset, DNS, TLS.
    Transport,
    /// No response head (or stream content) in time.
    Timeout,
    /// The stream began with an error event or ended before content.
    Stream,
    /// An active health probe failed.
    Probe,
    /// The answer says the account is out of credit or over a hard quota: waiting seconds
    /// will not help, so the ejection lasts `eviction.quotaDuration`.
    Quota,
}

impl FailureKind {
    /// The reason label used in metrics.
    pub fn reason(self) -> &'static str {
        match self {
            FailureKind::Status(_) => "status",
            FailureKind::Transport => "transport",
            FailureKind::Timeout => "timeout",
            FailureKind::Stream => "stream",
            FailureKind::Probe => "probe",
            FailureKind::Quota => "quota",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Failure {
        kind: FailureKind,
        /// The provider's own wait hint (Retry-After and friends).
        hint: Option<Duration>,
        detail: String,
    },
}

/// What recording an outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Nothing,
    Ejected {
        duration: Duration,
        reason: &'static str,
        /// The provider's own hint when it asked for longer than `maxDuration` (and was cut
        /// to it): logged once, with this ejection.
        capped_hint: Option<Duration>,
    },
    /// Ejection was due, but the group's `maxEjectionPercent` floor kept the provider in.
    KeptByFloor,
    /// A trial succeeded often enough (or probes recovered): back in rotation. `ended` is
    /// the end of the ejection it followed.
    Restored {
        ended: Millis,
    },
}

/// What a selection got from a provider: an ordinary slot, or one of the trial slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Normal,
    Trial,
}

/// Externally visible state, for `/status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Healthy,
    Ejected,
    Trial,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Ejected => "ejected",
            Phase::Trial => "trial",
        }
    }
}

/// An ejection as another process needs it: its end (monotonic, of this process), why, and
/// the growth streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    /// Monotonic ms of this process at which the ejection ends (past: on trial).
    pub until: Millis,
    pub reason: FailureKind,
    pub streak: u32,
}

impl FailureKind {
    /// The kind a metrics reason names (statuses lose their code).
    pub fn from_reason(reason: &str) -> Option<FailureKind> {
        Some(match reason {
            "status" => FailureKind::Status(0),
            "transport" => FailureKind::Transport,
            "timeout" => FailureKind::Timeout,
            "stream" => FailureKind::Stream,
            "probe" => FailureKind::Probe,
            "quota" => FailureKind::Quota,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub phase: Phase,
    /// Monotonic ms at which the ejection ends; `None` unless ejected.
    pub ejected_until: Option<Millis>,
    pub consecutive_failures: u32,
    /// Ejections in a row without a success in between (the growth exponent).
    pub streak: u32,
    pub times_ejected: u64,
    pub last_error: Option<String>,
    /// Share of traffic while ramping up after a trial, 0..=1.
    pub weight: f64,
    /// Why the provider is out of rotation (ejected or on trial): the metrics reason.
    pub ejection_reason: Option<&'static str>,
}

#[derive(Debug)]
struct State {
    consecutive_failures: u32,
    streak: u32,
    times_ejected: u64,
    last_error: Option<String>,
    trial_in_flight: u32,
    trial_successes: u32,
    /// When the provider came back from a trial; weights ramp from here.
    ramp_start: Option<Millis>,
    probe_failures: u32,
    probe_successes: u32,
    /// The current ejection came from active probes (so probes may also end it).
    ejected_by_probe: bool,
    /// Why the current (or last) ejection happened.
    ejection_reason: Option<FailureKind>,
}

/// Health of one provider, shared by all worker threads.
#[derive(Debug)]
pub struct ProviderHealth {
    /// 0: in rotation. Otherwise the end of the ejection; once passed, the provider is on trial
    /// until a trial succeeds (which stores 0) or fails (which stores a new end).
    ejected_until: AtomicU64,
    /// Fast path: nothing to update on success (no failures counted, no trial, no ramp).
    clean: AtomicBool,
    malformed_hint_logged: AtomicBool,
    /// Quota headroom in force: `until << 16 | weight in thousandths`; 0 when none.
    headroom: AtomicU64,
    /// Last announced remaining ÷ limit per budget (requests, tokens), as `f32` bits;
    /// `u32::MAX` when never announced. For `switchyard_provider_headroom`.
    headroom_shares: [AtomicU32; 2],
    state: Mutex<State>,
    /// Attempts and failures in the last minute, for `/status`.
    pub window: crate::telemetry::window::MinuteWindow,
}

impl Default for ProviderHealth {
    fn default() -> Self {
        ProviderHealth {
            ejected_until: AtomicU64::new(0),
            clean: AtomicBool::new(true),
            malformed_hint_logged: AtomicBool::new(false),
            headroom: AtomicU64::new(0),
            headroom_shares: [AtomicU32::new(u32::MAX), AtomicU32::new(u32::MAX)],
            state: Mutex::new(State {
                consecutive_failures: 0,
                streak: 0,
                times_ejected: 0,
                last_error: None,
                trial_in_flight: 0,
                trial_successes: 0,
                ramp_start: None,
                probe_failures: 0,
                probe_successes: 0,
                ejected_by_probe: false,
                ejection_reason: None,
            }),
            window: Default::default(),
        }
    }
}

/// Ejection length: the configured duration grown per repeated ejection, capped, and never
/// shorter than the provider's own hint (which is capped too).
pub fn ejection_duration(eviction: &Eviction, streak: u32, hint: Option<Duration>) -> Duration {
    let grown = eviction.duration.as_secs_f64() * eviction.growth.powi(streak.min(64) as i32);
    let max = eviction.max_duration;
    let base = if grown.is_finite() && grown < max.as_secs_f64() { Duration::from_secs_f64(grown) } else { max };
    base.max(hint.unwrap_or(Duration::ZERO).min(max))
}

impl ProviderHealth {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way
        // that matters more than stopping the gateway would; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End of the current ejection, if the provider is ejected at `now`.
    pub fn ejected_until(&self, now: Millis) -> Option<Millis> {
        let until = self.ejected_until.load(Ordering::Acquire);
        (until != 0 && now < until).then_some(until)
    }

    /// Whether the provider can take a request now without waiting (cheap, lock-free unless
    /// the provider is just coming out of an ejection).
    pub fn is_available(&self, now: Millis, recovery: &Recovery) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        self.lock().trial_in_flight < recovery.trial_requests
    }

    /// Takes a slot on the provider: always for a provider in rotation; one of the
    /// `trialRequests` slots after an ejection ended; none while ejected or while the trial
    /// slots are taken. `force` takes a slot even while ejected (all providers ejected).
    pub fn acquire(&self, now: Millis, recovery: &Recovery, force: bool) -> Option<Permit> {
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return Some(Permit::Normal);
        }
        if now < until {
            return force.then_some(Permit::Normal);
        }
        let mut s = self.lock();
        if self.ejected_until.load(Ordering::Acquire) == 0 {
            return Some(Permit::Normal);
        }
        if s.trial_in_flight < recovery.trial_requests {
            s.trial_in_flight += 1;
            Some(Permit::Trial)
        } else {
            None
        }
    }

    /// Gives back a trial slot whose request ended without a verdict (client went away).
    pub fn release(&self, permit: Permit) {
        if permit == Permit::Trial {
            let mut s = self.lock();
            s.trial_in_flight = s.trial_in_flight.saturating_sub(1);
        }
    }

    /// Traffic share while ramping up after a trial: grows linearly from 1/trial share to 1
    /// over `rampUp`.
    pub fn weight(&self, now: Millis, recovery: &Recovery) -> f64 {
        if self.clean.load(Ordering::Acquire) || recovery.ramp_up.is_zero() {
            return 1.0;
        }
        let start = self.lock().ramp_start;
        ramp_weight(start, now, recovery)
    }

    /// Records what an answer said about the provider's rate-limit budget (`health.headroom`
    /// configured). Below `min_share` left, the provider's weight becomes share ÷ `min_share`
    /// until the announced reset; at 0 it is skipped until then. An answer without readings
    /// changes nothing; one at or above the threshold restores full weight.
    pub fn record_headroom(&self, reading: &headroom::Reading, now: Millis, min_share: f64) {
        if reading.requests.is_none() && reading.tokens.is_none() {
            return;
        }
        for (slot, budget) in self.headroom_shares.iter().zip(headroom::Budget::ALL) {
            if let Some(level) = reading.get(budget) {
                slot.store((level.share as f32).to_bits(), Ordering::Relaxed);
            }
        }
        let packed = match reading.weight(min_share) {
            Some((weight, reset)) => {
                let until = now.saturating_add(reset.as_millis() as u64).clamp(1, u64::MAX >> 16);
                let thousandths = if weight > 0.0 { ((weight * 1000.0).round() as u64).clamp(1, 1000) } else { 0 };
                until << 16 | thousandths
            }
            None => 0,
        };
        if self.headroom.load(Ordering::Relaxed) != packed {
            self.headroom.store(packed, Ordering::Relaxed);
        }
    }

    /// The provider's share of traffic by its quota headroom, 0..=1: 1 without a reading in
    /// force (none, or past its reset), 0 when it must be skipped until its reset.
    pub fn headroom(&self, now: Millis) -> f64 {
        let packed = self.headroom.load(Ordering::Relaxed);
        if packed == 0 || now >= packed >> 16 {
            return 1.0;
        }
        (packed & 0xffff) as f64 / 1000.0
    }

    /// The last announced remaining ÷ limit of `budget`, if any answer announced it.
    pub fn headroom_share(&self, budget: headroom::Budget) -> Option<f64> {
        let i = match budget {
            headroom::Budget::Requests => 0,
            headroom::Budget::Tokens => 1,
        };
        let bits = self.headroom_shares[i].load(Ordering::Relaxed);
        (bits != u32::MAX).then(|| f64::from(f32::from_bits(bits)))
    }

    /// Records how a request (or probe) went. `may_eject` is asked only when an ejection is
    /// due; it enforces the group's `maxEjectionPercent`.
    pub fn record(
        &self,
        outcome: &Outcome,
        permit: Permit,
        now: Millis,
        eviction: &Eviction,
        recovery: &Recovery,
        may_eject: impl FnOnce() -> bool,
    ) -> Transition {
        if matches!(outcome, Outcome::Success) && permit == Permit::Normal && self.clean.load(Ordering::Acquire) {
            return Transition::Nothing;
        }
        let mut s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        let on_trial = permit == Permit::Trial;
        if on_trial {
            s.trial_in_flight = s.trial_in_flight.saturating_sub(1);
        }
        match outcome {
            Outcome::Success => {
                if until != 0 && !on_trial {
                    // A request that started before the ejection, or was forced to an ejected
                    // provider: the ejection stands until a trial says otherwise.
                    return Transition::Nothing;
                }
                s.consecutive_failures = 0;
                s.streak = 0;
                if on_trial && until != 0 {
                    s.trial_successes += 1;
                    if s.trial_successes < recovery.trial_requests {
                        return Transition::Nothing;
                    }
                    s.trial_successes = 0;
                    s.ramp_start = (!recovery.ramp_up.is_zero()).then_some(now);
                    self.ejected_until.store(0, Ordering::Release);
                    self.update_clean(&s, now, recovery);
                    return Transition::Restored { ended: until };
                }
                self.update_clean(&s, now, recovery);
                Transition::Nothing
            }
            Outcome::Failure { kind, hint, detail } => {
                s.last_error = Some(detail.clone());
                self.clean.store(false, Ordering::Release);
                if until != 0 && now < until {
                    // Already ejected: neither extended nor grown.
                    return Transition::Nothing;
                }
                let trial_failed = until != 0; // ejection over, so this was a trial-phase verdict
                if !trial_failed {
                    s.consecutive_failures += 1;
                    // Quota exhaustion is not transient: one answer saying so is enough.
                    if s.consecutive_failures < eviction.consecutive_failures && *kind != FailureKind::Quota {
                        return Transition::Nothing;
                    }
                    if !may_eject() {
                        return Transition::KeptByFloor;
                    }
                }
                self.eject(&mut s, now, eviction, *hint, *kind)
            }
        }
    }

    fn eject(
        &self,
        s: &mut State,
        now: Millis,
        eviction: &Eviction,
        hint: Option<Duration>,
        kind: FailureKind,
    ) -> Transition {
        let duration = match kind {
            // Out of credit: seconds of backoff would only burn requests. A hint may still
            // ask for longer (within `maxDuration`).
            FailureKind::Quota => {
                eviction.quota_duration.max(hint.unwrap_or(Duration::ZERO).min(eviction.max_duration))
            }
            _ => ejection_duration(eviction, s.streak, hint),
        };
        let capped_hint = hint.filter(|h| *h > eviction.max_duration);
        s.ejection_reason = Some(kind);
        s.streak = s.streak.saturating_add(1);
        s.times_ejected += 1;
        s.consecutive_failures = 0;
        s.trial_successes = 0;
        s.ramp_start = None;
        s.ejected_by_probe = kind == FailureKind::Probe;
        self.clean.store(false, Ordering::Release);
        self.ejected_until.store(now + (duration.as_millis() as u64).max(1), Ordering::Release);
        Transition::Ejected { duration, reason: kind.reason(), capped_hint }
    }

    /// A configuration reload ends a quota ejection early (the operator may have added
    /// credit or changed the key): the provider goes to trial on its next request. Other
    /// ejections keep their end.
    pub fn on_reload(&self, now: Millis) {
        let s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        if s.ejection_reason == Some(FailureKind::Quota) && until != 0 && now < until {
            self.ejected_until.store(now.max(1), Ordering::Release);
        }
    }

    /// Records an active probe. `unhealthy` failures in a row eject (reason `probe`);
    /// `healthy` successes in a row restore a provider that probes ejected. A probe never
    /// cuts short an ejection the provider asked for with its own answers.
    pub fn record_probe(
        &self,
        ok: bool,
        detail: &str,
        now: Millis,
        thresholds: (u32, u32),
        eviction: &Eviction,
        may_eject: impl FnOnce() -> bool,
    ) -> Transition {
        let (healthy, unhealthy) = thresholds;
        let mut s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        if ok {
            s.probe_failures = 0;
            s.probe_successes = s.probe_successes.saturating_add(1);
            if until != 0 && s.ejected_by_probe && s.probe_successes >= healthy {
                s.ejected_by_probe = false;
                s.streak = 0;
                s.trial_in_flight = 0;
                s.trial_successes = 0;
                self.ejected_until.store(0, Ordering::Release);
                return Transition::Restored { ended: until };
            }
            return Transition::Nothing;
        }
        s.probe_successes = 0;
        s.probe_failures = s.probe_failures.saturating_add(1);
        s.last_error = Some(format!("probe: {detail}"));
        self.clean.store(false, Ordering::Release);
        if (until != 0 && now < until) || s.probe_failures < unhealthy {
            return Transition::Nothing;
        }
        if until == 0 && !may_eject() {
            return Transition::KeptByFloor;
        }
        s.probe_failures = 0;
        self.eject(&mut s, now, eviction, None, FailureKind::Probe)
    }

    fn update_clean(&self, s: &State, now: Millis, recovery: &Recovery) {
        let ramping = ramp_weight(s.ramp_start, now, recovery) < 1.0;
        let clean = s.consecutive_failures == 0 && s.trial_in_flight == 0 && !ramping;
        self.clean.store(clean, Ordering::Release);
    }

    /// The ejection in force (or the trial after it) for sharing with other processes:
    /// `None` while the provider is in rotation.
    pub fn shared(&self) -> Option<Shared> {
        let s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        (until != 0).then(|| Shared {
            until,
            reason: s.ejection_reason.unwrap_or(FailureKind::Status(0)),
            streak: s.streak,
        })
    }

    /// Takes over an ejection another process decided (a fleet peer, or the process this
    /// one upgraded from). The later end wins and the longer streak is kept, so growth is
    /// judged on the shared history; an `until` already passed puts the provider on trial.
    /// Returns whether anything changed.
    pub fn apply_shared(&self, shared: &Shared) -> bool {
        let mut s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        let streak = s.streak.max(shared.streak);
        let later = until == 0 || shared.until > until;
        if !later && streak == s.streak {
            return false;
        }
        s.streak = streak;
        if later {
            s.ejection_reason = Some(shared.reason);
            s.consecutive_failures = 0;
            s.trial_successes = 0;
            s.ramp_start = None;
            s.ejected_by_probe = shared.reason == FailureKind::Probe;
            self.clean.store(false, Ordering::Release);
            self.ejected_until.store(shared.until.max(1), Ordering::Release);
        }
        true
    }

    /// Puts the provider back in rotation because a trial succeeded elsewhere (a fleet
    /// peer), unless its ejection ends after `latest` (it was ejected again since). Returns
    /// whether it was out.
    pub fn apply_restore(&self, latest: Millis, now: Millis, recovery: &Recovery) -> bool {
        let mut s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        if until == 0 || until > latest {
            return false;
        }
        s.streak = 0;
        s.consecutive_failures = 0;
        s.trial_successes = 0;
        s.ejected_by_probe = false;
        s.ramp_start = (!recovery.ramp_up.is_zero()).then_some(now);
        self.ejected_until.store(0, Ordering::Release);
        self.update_clean(&s, now, recovery);
        true
    }

    /// Logs a malformed hint only the first time per provider.
    pub fn first_malformed_hint(&self) -> bool {
        !self.malformed_hint_logged.swap(true, Ordering::Relaxed)
    }

    pub fn snapshot(&self, now: Millis, recovery: &Recovery) -> Snapshot {
        let s = self.lock();
        let until = self.ejected_until.load(Ordering::Acquire);
        let phase = match until {
            0 => Phase::Healthy,
            u if now < u => Phase::Ejected,
            _ => Phase::Trial,
        };
        Snapshot {
            phase,
            ejected_until: (phase == Phase::Ejected).then_some(until),
            consecutive_failures: s.consecutive_failures,
            streak: s.streak,
            times_ejected: s.times_ejected,
            last_error: s.last_error.clone(),
            weight: if phase == Phase::Healthy {
                ramp_weight(s.ramp_start, now, recovery) * self.headroom(now)
            } else {
                0.0
            },
            ejection_reason: (phase != Phase::Healthy).then(|| s.ejection_reason.map(FailureKind::reason)).flatten(),
        }
    }
}

fn ramp_weight(start: Option<Millis>, now: Millis, recovery: &Recovery) -> f64 {
    let ramp = recovery.ramp_up.as_millis() as u64;
    match start {
        Some(start) if ramp > 0 => {
            let elapsed = now.saturating_sub(start);
            if elapsed >= ramp {
                1.0
            } else {
                // Start at a small but useful share so the provider keeps getting evidence.
                (elapsed as f64 / ramp as f64).max(0.05)
            }
        }
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eviction(duration: u64, consecutive: u32) -> Eviction {
        Eviction {
            duration: Duration::from_secs(duration),
            consecutive_failures: consecutive,
            growth: 2.0,
            max_duration: Duration::from_secs(300),
            max_ejection_percent: 100,
            quota_duration: Duration::from_secs(3600),
        }
    }

    fn recovery(trial: u32, ramp: u64) -> Recovery {
        Recovery { trial_requests: trial, ramp_up: Duration::from_secs(ramp) }
    }

    fn fail(hint: Option<u64>) -> Outcome {
        Outcome::Failure { kind: FailureKind::Status(429), hint: hint.map(Duration::from_secs), detail: "429".into() }
    }

    const T0: Millis = 1_000;
    const SEC: Millis = 1_000;

    #[test]
    fn shared_ejections_keep_the_later_end_and_the_longer_streak() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        assert_eq!(h.shared(), None);
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let mine = h.shared().unwrap();
        assert_eq!((mine.until, mine.streak), (T0 + 10 * SEC, 1));
        // A peer's shorter ejection changes nothing; its longer streak is kept.
        let shorter = Shared { until: T0 + 5 * SEC, reason: FailureKind::Transport, streak: 3 };
        assert!(h.apply_shared(&shorter));
        assert_eq!(h.shared().unwrap(), Shared { until: T0 + 10 * SEC, reason: FailureKind::Status(429), streak: 3 });
        assert!(!h.apply_shared(&shorter), "nothing new");
        // A later one wins, and growth goes on from the shared streak.
        let later = Shared { until: T0 + 30 * SEC, reason: FailureKind::Quota, streak: 3 };
        assert!(h.apply_shared(&later));
        assert_eq!(h.snapshot(T0, &r).ejection_reason, Some("quota"));
        let t = T0 + 30 * SEC;
        let p = h.acquire(t, &r, false).unwrap();
        assert_eq!(p, Permit::Trial, "an ended shared ejection means trial");
        match h.record(&fail(None), p, t, &e, &r, || true) {
            Transition::Ejected { duration, .. } => assert_eq!(duration, Duration::from_secs(80), "10s x 2^3"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_past_shared_ejection_puts_a_healthy_provider_on_trial() {
        let h = ProviderHealth::default();
        let r = recovery(1, 0);
        assert!(h.apply_shared(&Shared { until: T0 - 1, reason: FailureKind::Status(0), streak: 1 }));
        assert_eq!(h.snapshot(T0, &r).phase, Phase::Trial);
    }

    #[test]
    fn a_peer_restore_ends_only_the_ejection_it_followed() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        assert!(!h.apply_restore(T0 + 5 * SEC, T0, &r), "ejected again since: kept");
        assert!(h.apply_restore(T0 + 10 * SEC, T0 + 10 * SEC, &r));
        assert_eq!(h.snapshot(T0 + 10 * SEC, &r).phase, Phase::Healthy);
        assert_eq!(h.snapshot(T0 + 10 * SEC, &r).streak, 0);
        assert!(!h.apply_restore(T0 + 10 * SEC, T0 + 10 * SEC, &r), "already in rotation");
    }

    #[test]
    fn ejects_at_exactly_consecutive_failures() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 3), recovery(1, 0));
        assert_eq!(h.record(&fail(None), Permit::Normal, T0, &e, &r, || true), Transition::Nothing);
        assert_eq!(h.record(&fail(None), Permit::Normal, T0, &e, &r, || true), Transition::Nothing);
        assert!(h.ejected_until(T0).is_none());
        let t = h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(10), reason: "status", capped_hint: None });
        assert_eq!(h.ejected_until(T0), Some(T0 + 10 * SEC));
        assert!(!h.is_available(T0 + 10 * SEC - 1, &r));
        assert!(h.is_available(T0 + 10 * SEC, &r));
    }

    #[test]
    fn success_resets_the_count() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 2), recovery(1, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        h.record(&Outcome::Success, Permit::Normal, T0, &e, &r, || true);
        assert_eq!(h.record(&fail(None), Permit::Normal, T0, &e, &r, || true), Transition::Nothing);
        assert_eq!(h.snapshot(T0, &r).consecutive_failures, 1);
    }

    #[test]
    fn retry_after_longer_than_duration_wins_and_is_capped() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        let t = h.record(&fail(Some(60)), Permit::Normal, T0, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(60), reason: "status", capped_hint: None });
        let h = ProviderHealth::default();
        let t = h.record(&fail(Some(100_000)), Permit::Normal, T0, &e, &r, || true);
        let asked = Some(Duration::from_secs(100_000));
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(300), reason: "status", capped_hint: asked });
        let h = ProviderHealth::default();
        let t = h.record(&fail(Some(1)), Permit::Normal, T0, &e, &r, || true);
        assert_eq!(
            t,
            Transition::Ejected { duration: Duration::from_secs(10), reason: "status", capped_hint: None },
            "shorter hint loses"
        );
    }

    #[test]
    fn failure_while_ejected_neither_extends_nor_grows() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let t = h.record(&fail(Some(120)), Permit::Normal, T0 + 5 * SEC, &e, &r, || true);
        assert_eq!(t, Transition::Nothing);
        assert_eq!(h.ejected_until(T0 + 5 * SEC), Some(T0 + 10 * SEC));
        assert_eq!(h.snapshot(T0, &r).streak, 1);
    }

    #[test]
    fn half_open_allows_only_trial_requests() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let later = T0 + 10 * SEC;
        assert_eq!(h.acquire(T0, &r, false), None, "ejected");
        assert_eq!(h.acquire(T0, &r, true), Some(Permit::Normal), "forced when all ejected");
        assert_eq!(h.acquire(later, &r, false), Some(Permit::Trial));
        assert_eq!(h.acquire(later, &r, false), None, "second concurrent request goes elsewhere");
        assert!(!h.is_available(later, &r));
        assert_eq!(h.snapshot(later, &r).phase, Phase::Trial);
        assert!(matches!(
            h.record(&Outcome::Success, Permit::Trial, later, &e, &r, || true),
            Transition::Restored { .. }
        ));
        assert_eq!(h.acquire(later, &r, false), Some(Permit::Normal));
        assert_eq!(h.snapshot(later, &r).phase, Phase::Healthy);
    }

    #[test]
    fn released_trial_slot_can_be_taken_again() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(1, 1), recovery(1, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let later = T0 + SEC;
        let p = h.acquire(later, &r, false).unwrap();
        h.release(p);
        assert_eq!(h.acquire(later, &r, false), Some(Permit::Trial));
    }

    #[test]
    fn trial_failure_ejects_again_with_growth_up_to_the_cap() {
        let h = ProviderHealth::default();
        let mut e = eviction(10, 1);
        e.max_duration = Duration::from_secs(35);
        let r = recovery(1, 0);
        let mut now = T0;
        let mut durations = vec![];
        for _ in 0..4 {
            let permit = h.acquire(now, &r, false).unwrap();
            match h.record(&fail(None), permit, now, &e, &r, || true) {
                Transition::Ejected { duration, .. } => durations.push(duration.as_secs()),
                t => panic!("unexpected {t:?}"),
            }
            now = h.ejected_until(now).unwrap();
        }
        assert_eq!(durations, vec![10, 20, 35, 35]);
        assert_eq!(h.snapshot(now, &r).times_ejected, 4);
    }

    #[test]
    fn success_resets_growth() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let later = T0 + 10 * SEC;
        let p = h.acquire(later, &r, false).unwrap();
        h.record(&Outcome::Success, p, later, &e, &r, || true);
        let t = h.record(&fail(None), Permit::Normal, later, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(10), reason: "status", capped_hint: None });
    }

    #[test]
    fn several_trial_requests_must_all_succeed() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(1, 1), recovery(2, 0));
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let later = T0 + SEC;
        let a = h.acquire(later, &r, false).unwrap();
        let b = h.acquire(later, &r, false).unwrap();
        assert_eq!(h.acquire(later, &r, false), None);
        assert_eq!(h.record(&Outcome::Success, a, later, &e, &r, || true), Transition::Nothing);
        assert!(matches!(h.record(&Outcome::Success, b, later, &e, &r, || true), Transition::Restored { .. }));
    }

    #[test]
    fn floor_keeps_provider_in() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        assert_eq!(h.record(&fail(None), Permit::Normal, T0, &e, &r, || false), Transition::KeptByFloor);
        assert!(h.is_available(T0, &r));
    }

    #[test]
    fn ramp_up_after_trial() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(1, 1), recovery(1, 10));
        assert_eq!(h.weight(T0, &r), 1.0);
        h.record(&fail(None), Permit::Normal, T0, &e, &r, || true);
        let back = T0 + SEC;
        let p = h.acquire(back, &r, false).unwrap();
        h.record(&Outcome::Success, p, back, &e, &r, || true);
        assert!(h.weight(back, &r) <= 0.05 + 1e-9);
        assert!((h.weight(back + 5 * SEC, &r) - 0.5).abs() < 1e-9);
        assert_eq!(h.weight(back + 10 * SEC, &r), 1.0);
    }

    #[test]
    fn probes_eject_and_restore() {
        let h = ProviderHealth::default();
        let e = eviction(10, 1);
        assert_eq!(h.record_probe(false, "503", T0, (2, 2), &e, || true), Transition::Nothing);
        assert_eq!(
            h.record_probe(false, "503", T0, (2, 2), &e, || true),
            Transition::Ejected { duration: Duration::from_secs(10), reason: "probe", capped_hint: None }
        );
        assert_eq!(h.record_probe(true, "", T0 + SEC, (2, 2), &e, || true), Transition::Nothing);
        assert!(matches!(h.record_probe(true, "", T0 + 2 * SEC, (2, 2), &e, || true), Transition::Restored { .. }));
        assert!(h.ejected_until(T0 + 2 * SEC).is_none());
    }

    #[test]
    fn probes_do_not_cut_short_a_passive_ejection() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        h.record(&fail(Some(60)), Permit::Normal, T0, &e, &r, || true);
        for i in 0..5 {
            assert_eq!(h.record_probe(true, "", T0 + i * SEC, (2, 2), &e, || true), Transition::Nothing);
        }
        assert_eq!(h.ejected_until(T0), Some(T0 + 60 * SEC));
    }

    #[test]
    fn ejection_state_is_absolute_time_and_survives_policy_changes() {
        // A reload that changes eviction settings keeps an ejection already running: its end
        // was fixed when it started.
        let h = ProviderHealth::default();
        let r = recovery(1, 0);
        h.record(&fail(None), Permit::Normal, T0, &eviction(10, 1), &r, || true);
        let changed = eviction(1, 5);
        assert_eq!(h.record(&fail(None), Permit::Normal, T0 + SEC, &changed, &r, || true), Transition::Nothing);
        assert_eq!(h.ejected_until(T0 + 5 * SEC), Some(T0 + 10 * SEC));
        // Once over, the new policy applies: the trial failure grows from the new base.
        let p = h.acquire(T0 + 10 * SEC, &r, false).unwrap();
        assert_eq!(
            h.record(&fail(None), p, T0 + 10 * SEC, &changed, &r, || true),
            Transition::Ejected { duration: Duration::from_secs(2), reason: "status", capped_hint: None }
        );
    }

    #[test]
    fn retry_after_date_in_the_past_falls_back_to_duration() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        let past = hints::retry_after("Wed, 21 Oct 2015 07:28:00 GMT", std::time::SystemTime::now());
        assert_eq!(past, Some(Duration::ZERO));
        let out = Outcome::Failure { kind: FailureKind::Status(503), hint: past, detail: String::new() };
        assert_eq!(
            h.record(&out, Permit::Normal, T0, &e, &r, || true),
            Transition::Ejected { duration: Duration::from_secs(10), reason: "status", capped_hint: None }
        );
    }

    #[test]
    fn ejection_duration_grows_and_caps() {
        let e = eviction(5, 1);
        assert_eq!(ejection_duration(&e, 0, None), Duration::from_secs(5));
        assert_eq!(ejection_duration(&e, 3, None), Duration::from_secs(40));
        assert_eq!(ejection_duration(&e, 40, None), Duration::from_secs(300));
        assert_eq!(ejection_duration(&e, 0, Some(Duration::ZERO)), Duration::from_secs(5));
    }

    fn quota() -> Outcome {
        Outcome::Failure { kind: FailureKind::Quota, hint: None, detail: "insufficient_quota".into() }
    }

    #[test]
    fn quota_ejects_at_once_for_the_quota_duration_then_trials() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 3), recovery(1, 0));
        let hour = Duration::from_secs(3600);
        let t = h.record(&quota(), Permit::Normal, T0, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: hour, reason: "quota", capped_hint: None });
        let snap = h.snapshot(T0, &r);
        assert_eq!((snap.phase, snap.ejection_reason), (Phase::Ejected, Some("quota")));
        assert!(!h.is_available(T0 + 3600 * SEC - 1, &r));
        // Still subject to trial: once over, one request goes through.
        let later = T0 + 3600 * SEC;
        assert_eq!(h.snapshot(later, &r).ejection_reason, Some("quota"), "on trial after a quota ejection");
        let p = h.acquire(later, &r, false).unwrap();
        assert_eq!(p, Permit::Trial);
        // Out of credit again: another quota-long ejection, not a grown rate-limit one.
        let t = h.record(&quota(), p, later, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: hour, reason: "quota", capped_hint: None });
        let p = h.acquire(later + 3600 * SEC, &r, false).unwrap();
        assert!(matches!(
            h.record(&Outcome::Success, p, later + 3600 * SEC, &e, &r, || true),
            Transition::Restored { .. }
        ));
        assert_eq!(h.snapshot(later + 3600 * SEC, &r).ejection_reason, None);
    }

    #[test]
    fn quota_ejection_honours_the_floor_and_a_longer_hint() {
        let h = ProviderHealth::default();
        let (mut e, r) = (eviction(10, 1), recovery(1, 0));
        assert_eq!(h.record(&quota(), Permit::Normal, T0, &e, &r, || false), Transition::KeptByFloor);
        e.quota_duration = Duration::from_secs(60);
        let out =
            Outcome::Failure { kind: FailureKind::Quota, hint: Some(Duration::from_secs(120)), detail: String::new() };
        let t = h.record(&out, Permit::Normal, T0, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(120), reason: "quota", capped_hint: None });
    }

    #[test]
    fn rate_limit_keeps_its_retry_after_and_reason() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        let t = h.record(&fail(Some(30)), Permit::Normal, T0, &e, &r, || true);
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(30), reason: "status", capped_hint: None });
        assert_eq!(h.snapshot(T0, &r).ejection_reason, Some("status"));
    }

    #[test]
    fn reload_ends_a_quota_ejection_but_no_other() {
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        let q = ProviderHealth::default();
        q.record(&quota(), Permit::Normal, T0, &e, &r, || true);
        let limited = ProviderHealth::default();
        limited.record(&fail(Some(60)), Permit::Normal, T0, &e, &r, || true);
        q.on_reload(T0 + SEC);
        limited.on_reload(T0 + SEC);
        assert_eq!(q.snapshot(T0 + SEC, &r).phase, Phase::Trial, "the next request tries it");
        assert_eq!(q.acquire(T0 + SEC, &r, false), Some(Permit::Trial));
        assert_eq!(limited.ejected_until(T0 + SEC), Some(T0 + 60 * SEC));
    }

    #[test]
    fn capped_hint_is_reported_with_its_ejection_only() {
        let h = ProviderHealth::default();
        let (e, r) = (eviction(10, 1), recovery(1, 0));
        let t = h.record(&fail(Some(900)), Permit::Normal, T0, &e, &r, || true);
        let asked = Some(Duration::from_secs(900));
        assert_eq!(t, Transition::Ejected { duration: Duration::from_secs(300), reason: "status", capped_hint: asked });
        // Failures during that ejection neither extend it nor report the cap again.
        assert_eq!(h.record(&fail(Some(900)), Permit::Normal, T0 + SEC, &e, &r, || true), Transition::Nothing);
        assert_eq!(
            h.record(&fail(Some(300)), Permit::Normal, T0 + 400 * SEC, &e, &r, || true),
            Transition::Ejected { duration: Duration::from_secs(300), reason: "status", capped_hint: None }
        );
    }

    fn reading(requests_left: f64, tokens_left: Option<f64>, reset_secs: u64) -> headroom::Reading {
        let level = |share| headroom::Level { share, reset: Some(Duration::from_secs(reset_secs)) };
        headroom::Reading { requests: Some(level(requests_left)), tokens: tokens_left.map(level) }
    }

    #[test]
    fn headroom_weight_holds_until_the_reset() {
        let h = ProviderHealth::default();
        let clock = ManualClock::new(T0);
        let r = recovery(1, 0);
        assert_eq!(h.headroom(clock.now()), 1.0);
        h.record_headroom(&reading(0.03, Some(0.5), 10), clock.now(), 0.05);
        assert!((h.headroom(clock.now()) - 0.6).abs() < 1e-9);
        assert!((h.snapshot(clock.now(), &r).weight - 0.6).abs() < 1e-9, "/status shows the reduced weight");
        assert_eq!(h.headroom_share(headroom::Budget::Requests), Some(0.03f32 as f64));
        assert_eq!(h.headroom_share(headroom::Budget::Tokens), Some(0.5));
        assert!(h.is_available(clock.now(), &r), "not an ejection");
        clock.advance(Duration::from_millis(9_999));
        assert!((h.headroom(clock.now()) - 0.6).abs() < 1e-9);
        clock.advance(Duration::from_millis(1));
        assert_eq!(h.headroom(clock.now()), 1.0, "expired at its reset");
    }

    #[test]
    fn headroom_lower_budget_counts_zero_skips_and_a_good_answer_restores() {
        let h = ProviderHealth::default();
        h.record_headroom(&reading(0.04, Some(0.01), 5), T0, 0.05);
        assert!((h.headroom(T0) - 0.2).abs() < 1e-9, "tokens at 1% count");
        h.record_headroom(&reading(0.0, None, 5), T0, 0.05);
        assert_eq!(h.headroom(T0), 0.0, "nothing left: skipped until the reset");
        assert_eq!(h.headroom(T0 + 5 * SEC), 1.0);
        h.record_headroom(&reading(0.0, None, 5), T0, 0.05);
        h.record_headroom(&headroom::Reading::default(), T0 + SEC, 0.05);
        assert_eq!(h.headroom(T0 + SEC), 0.0, "an answer without readings changes nothing");
        h.record_headroom(&reading(0.5, None, 5), T0 + SEC, 0.05);
        assert_eq!(h.headroom(T0 + SEC), 1.0, "the next answer says there is room again");
        assert_eq!(ProviderHealth::default().headroom_share(headroom::Budget::Tokens), None);
    }

    #[test]
    fn headroom_never_rounds_a_little_left_to_nothing() {
        let h = ProviderHealth::default();
        h.record_headroom(&reading(0.000_01, None, 5), T0, 0.05);
        assert_eq!(h.headroom(T0), 0.001);
    }

    #[test]
    fn manual_clock_moves() {
        let c = ManualClock::new(5);
        c.advance(Duration::from_millis(10));
        assert_eq!(c.now(), 15);
        assert!(SystemClock.now() >= 1);
    }
}
