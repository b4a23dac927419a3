//! Provider selection: priority groups in order, round-robin inside a group (Pingora's
//! round-robin counter), skipping providers that are ejected, on trial elsewhere, or already
//! tried by this request. Providers are told apart by name, never by address.

use crate::config::{Backend, ProviderConfig, WhenAllEjected};
use crate::health::{Millis, Permit, ProviderHealth};
use pingora_load_balancing::selection::algorithms::RoundRobin;
use pingora_load_balancing::selection::SelectionAlgorithm;
use std::sync::{Arc, Mutex};

/// Most providers a backend may have (they are tracked in a 64-bit set per request).
pub const MAX_PROVIDERS: usize = 64;

/// A set of provider indices (within one backend).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderSet(u64);

impl ProviderSet {
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }
    pub fn contains(&self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// A provider as the balancer sees it: its config, its position and its health.
#[derive(Debug)]
pub struct ProviderSlot {
    pub index: usize,
    pub group: usize,
    pub config: ProviderConfig,
    pub health: Arc<ProviderHealth>,
}

pub struct Group {
    /// Indices into [`Balancer::providers`].
    members: Vec<usize>,
    rr: RoundRobin,
    /// Serializes ejection decisions so the `maxEjectionPercent` floor holds under races.
    eject_lock: Mutex<()>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("members", &self.members).finish_non_exhaustive()
    }
}

/// How a provider was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Untried and in service.
    Fresh,
    /// Already tried by this request (a retry: back off first).
    Retry,
    /// Every candidate is ejected; this one's ejection ends first (`tryEarliest`).
    Earliest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub provider: usize,
    pub permit: Permit,
    pub pick: Pick,
}

/// Why nothing was selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoProvider {
    /// Everything is ejected and the backend says `reject`; the earliest recovery is given.
    AllEjected { until: Millis },
    /// Every provider was tried and none may be tried again now.
    Exhausted,
}

/// Selection state for one backend.
#[derive(Debug)]
pub struct Balancer {
    pub backend: Arc<Backend>,
    pub providers: Vec<ProviderSlot>,
    pub groups: Vec<Group>,
}

impl Balancer {
    /// Builds the balancer, taking each provider's health from `health_for` (so that state
    /// can outlive a configuration reload).
    pub fn new(backend: Arc<Backend>, mut health_for: impl FnMut(&ProviderConfig) -> Arc<ProviderHealth>) -> Balancer {
        let mut providers = Vec::new();
        let mut groups = Vec::new();
        for (g, members) in backend.groups.iter().enumerate() {
            let mut idx = Vec::new();
            for p in members {
                idx.push(providers.len());
                providers.push(ProviderSlot {
                    index: providers.len(),
                    group: g,
                    config: p.clone(),
                    health: health_for(p),
                });
            }
            groups.push(Group { members: idx, rr: RoundRobin::new(), eject_lock: Mutex::new(()) });
        }
        Balancer { backend, providers, groups }
    }

    /// Chooses the provider for the next attempt.
    ///
    /// Order: the first group with an untried provider in service (round-robin inside it,
    /// ramping providers taking their weighted share); then a tried provider still in service
    /// (a retry); then, when every untried provider is ejected, the one whose ejection ends
    /// first (or `reject`).
    /// `excluded` providers (that cannot take this request at all) are never chosen.
    pub fn select(
        &self,
        tried: ProviderSet,
        excluded: ProviderSet,
        now: Millis,
        is_first_attempt: bool,
    ) -> Result<Selection, NoProvider> {
        let tried = ProviderSet(tried.0 | excluded.0);
        let recovery = &self.backend.health.recovery;
        for group in &self.groups {
            let n = group.members.len();
            let start = group.rr.next(b"") as usize;
            let mut ramping = None;
            for k in 0..n {
                let slot = &self.providers[group.members[(start + k) % n]];
                if tried.contains(slot.index) || !slot.health.is_available(now, recovery) {
                    continue;
                }
                // Quota headroom: a provider that announced nothing left waits for its reset
                // (not an ejection); one running low takes a share, like a ramping one.
                let headroom = slot.health.headroom(now);
                if headroom <= 0.0 {
                    continue;
                }
                let weight = slot.health.weight(now, recovery) * headroom;
                if weight < 1.0 && fastrand::f64() >= weight {
                    ramping.get_or_insert(slot.index);
                    continue;
                }
                if let Some(permit) = slot.health.acquire(now, recovery, false) {
                    return Ok(Selection { provider: slot.index, permit, pick: Pick::Fresh });
                }
            }
            // Only ramping providers left in this group: they still beat a lower group.
            if let Some(i) = ramping {
                if let Some(permit) = self.providers[i].health.acquire(now, recovery, false) {
                    return Ok(Selection { provider: i, permit, pick: Pick::Fresh });
                }
            }
        }
        for slot in &self.providers {
            if tried.contains(slot.index) && !excluded.contains(slot.index) && slot.health.is_available(now, recovery) {
                if let Some(permit) = slot.health.acquire(now, recovery, false) {
                    return Ok(Selection { provider: slot.index, permit, pick: Pick::Retry });
                }
            }
        }
        let earliest = self
            .providers
            .iter()
            .filter(|s| !tried.contains(s.index))
            .min_by_key(|s| s.health.ejected_until(now).unwrap_or(now));
        let Some(slot) = earliest else {
            return Err(NoProvider::Exhausted);
        };
        if is_first_attempt && self.backend.health.when_all_ejected == WhenAllEjected::Reject {
            let until = self.providers.iter().filter_map(|s| s.health.ejected_until(now)).min().unwrap_or(now);
            return Err(NoProvider::AllEjected { until });
        }
        let permit = slot.health.acquire(now, recovery, true).unwrap_or(Permit::Normal);
        Ok(Selection { provider: slot.index, permit, pick: Pick::Earliest })
    }

    /// Whether one more provider of `group` may be ejected under `maxEjectionPercent`.
    pub fn may_eject(&self, group: usize, now: Millis) -> bool {
        let pct = self.backend.health.eviction.max_ejection_percent as usize;
        if pct >= 100 {
            return true;
        }
        let members = &self.groups[group].members;
        let ejected = members.iter().filter(|&&i| self.providers[i].health.ejected_until(now).is_some()).count();
        (ejected + 1) * 100 <= pct * members.len()
    }

    /// Runs `f` while holding the group's ejection lock.
    pub fn with_eject_lock<T>(&self, group: usize, f: impl FnOnce() -> T) -> T {
        let _guard = self.groups[group].eject_lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::health::{FailureKind, Outcome};
    use std::time::Duration;

    fn balancer(yaml_groups: &str, health: &str) -> Balancer {
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nroutes:\n  - {{name: r, match: {{pathPrefix: /}}, backend: b}}\nbackends:\n  b:\n    groups:\n{yaml_groups}\n    health: {health}\n"
        );
        let config = load_str(&yaml).unwrap();
        Balancer::new(config.backends[0].clone(), |_| Arc::new(ProviderHealth::default()))
    }

    fn p(name: &str) -> String {
        format!("{{name: {name}, openai: {{}}, host: 127.0.0.1, port: 9}}")
    }

    fn eject(b: &Balancer, i: usize, now: Millis, secs: u64) {
        let h = &b.backend.health;
        let out = Outcome::Failure {
            kind: FailureKind::Status(429),
            hint: Some(Duration::from_secs(secs)),
            detail: String::new(),
        };
        b.providers[i].health.record(&out, Permit::Normal, now, &h.eviction, &h.recovery, || true);
    }

    #[test]
    fn first_group_first_and_round_robin_inside() {
        let b =
            balancer(&format!("      - providers: [{}]\n      - providers: [{}, {}]", p("a"), p("b"), p("c")), "{}");
        for _ in 0..4 {
            assert_eq!(b.select(ProviderSet::default(), ProviderSet::default(), 10, true).unwrap().provider, 0);
        }
        let mut tried = ProviderSet::default();
        tried.insert(0);
        let picks: Vec<usize> =
            (0..4).map(|_| b.select(tried, ProviderSet::default(), 10, false).unwrap().provider).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 2);
        assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 2);
    }

    #[test]
    fn skips_ejected_and_tries_earliest_when_all_are() {
        let b = balancer(&format!("      - providers: [{}]\n      - providers: [{}]", p("a"), p("b")), "{}");
        eject(&b, 0, 10, 60);
        assert_eq!(b.select(ProviderSet::default(), ProviderSet::default(), 10, true).unwrap().provider, 1);
        eject(&b, 1, 10, 30);
        let s = b.select(ProviderSet::default(), ProviderSet::default(), 10, true).unwrap();
        assert_eq!((s.provider, s.pick), (1, Pick::Earliest));
    }

    #[test]
    fn reject_mode_reports_earliest_recovery() {
        let b = balancer(&format!("      - providers: [{}, {}]", p("a"), p("b")), "{whenAllEjected: reject}");
        eject(&b, 0, 10, 60);
        eject(&b, 1, 10, 30);
        assert_eq!(
            b.select(ProviderSet::default(), ProviderSet::default(), 10, true),
            Err(NoProvider::AllEjected { until: 10 + 30_000 })
        );
    }

    #[test]
    fn retries_a_tried_provider_only_after_fresh_ones() {
        let b =
            balancer(&format!("      - providers: [{}, {}]", p("a"), p("b")), "{eviction: {consecutiveFailures: 3}}");
        let mut tried = ProviderSet::default();
        tried.insert(0);
        assert_eq!(b.select(tried, ProviderSet::default(), 10, false).unwrap().pick, Pick::Fresh);
        tried.insert(1);
        assert_eq!(b.select(tried, ProviderSet::default(), 10, false).unwrap().pick, Pick::Retry);
        eject(&b, 0, 10, 60);
        eject(&b, 0, 10, 60);
        eject(&b, 0, 10, 60);
        eject(&b, 1, 10, 60);
        eject(&b, 1, 10, 60);
        eject(&b, 1, 10, 60);
        assert_eq!(b.select(tried, ProviderSet::default(), 10, false), Err(NoProvider::Exhausted));
    }

    #[test]
    fn headroom_lowers_a_share_and_zero_skips_until_the_reset() {
        use crate::health::headroom::{Level, Reading};
        let b =
            balancer(&format!("      - providers: [{}, {}]", p("a"), p("b")), "{headroom: {minRemainingPercent: 5}}");
        let min_share = b.backend.health.headroom.unwrap();
        let low =
            |share| Reading { requests: Some(Level { share, reset: Some(Duration::from_secs(10)) }), tokens: None };
        b.providers[0].health.record_headroom(&low(0.03), 10, min_share);
        let none = ProviderSet::default();
        let n = 4000;
        let a = (0..n).filter(|_| b.select(none, none, 10, true).unwrap().provider == 0).count();
        // Round-robin gives a half; weight 0.6 keeps 0.6 of it: 30%.
        let share = a as f64 / n as f64;
        assert!((0.25..0.35).contains(&share), "share {share}");
        b.providers[0].health.record_headroom(&low(0.0), 10, min_share);
        assert!((0..200).all(|_| b.select(none, none, 10, true).unwrap().provider == 1), "none at 0%");
        let after = 10 + 10_000;
        let a = (0..200).filter(|_| b.select(none, none, after, true).unwrap().provider == 0).count();
        assert_eq!(a, 100, "full share again after the reset");
    }

    #[test]
    fn max_ejection_floor() {
        let b = balancer(
            &format!("      - providers: [{}, {}, {}, {}]", p("a"), p("b"), p("c"), p("d")),
            "{eviction: {maxEjectionPercent: 50}}",
        );
        assert!(b.may_eject(0, 10));
        eject(&b, 0, 10, 60);
        assert!(b.may_eject(0, 10));
        eject(&b, 1, 10, 60);
        assert!(!b.may_eject(0, 10), "a third ejection would leave less than half in service");
    }
}
