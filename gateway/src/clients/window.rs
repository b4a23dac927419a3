//! A client's requests and tokens over the last minute, and the limit decision on them.
//!
//! [`MinuteBuckets`] is the pure state: one-second buckets, time given by the caller. A
//! bucket counts for 60 to 61 seconds (from its second's start until 61 s after it), so in
//! every 60-second span the counts stay within the limit: the window slides, and there is no
//! burst of twice the limit around a minute boundary. The price is that a request may be
//! held up to one second longer than a minute.
//!
//! [`Counter`] is what the request path asks. [`LocalCounter`] keeps the buckets in this
//! process; a fleet-shared implementation (Redis) can replace it behind the same trait.

use super::ClientLimits;
use crate::health::Millis;
use std::fmt;
use std::sync::Mutex;

const BUCKET_MS: Millis = 1_000;
/// Live buckets: the current second and the 60 before it.
const BUCKETS: usize = 61;
const EMPTY: u64 = u64::MAX;

/// Which limit a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    /// The `limit` label of `switchyard_client_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }
}

/// Requests and tokens in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub tokens: u64,
}

/// The answer to "may this request go": the window after it (its own request counted when
/// admitted) and when each count next goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: admitted and counted.
    pub limited: Option<LimitKind>,
    pub usage: Usage,
    /// Milliseconds until the request count next goes down (until it is under the limit
    /// again when the request was refused for requests); 0 when nothing is counted.
    pub requests_reset_ms: Millis,
    /// The same for tokens.
    pub tokens_reset_ms: Millis,
}

impl Verdict {
    /// Milliseconds until the limit met lets a request through; 0 when admitted.
    pub fn retry_after_ms(&self) -> Millis {
        match self.limited {
            None => 0,
            Some(LimitKind::Requests) => self.requests_reset_ms,
            Some(LimitKind::Tokens) => self.tokens_reset_ms,
        }
    }
}

/// Requests and tokens per second over the last 61 seconds (pure; time comes in).
#[derive(Clone, PartialEq, Eq)]
pub struct MinuteBuckets {
    /// The second each bucket holds, [`EMPTY`] for none.
    second: [u64; BUCKETS],
    requests: [u64; BUCKETS],
    tokens: [u64; BUCKETS],
}

impl Default for MinuteBuckets {
    fn default() -> Self {
        MinuteBuckets { second: [EMPTY; BUCKETS], requests: [0; BUCKETS], tokens: [0; BUCKETS] }
    }
}

impl fmt::Debug for MinuteBuckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MinuteBuckets").finish_non_exhaustive()
    }
}

impl MinuteBuckets {
    fn live(&self, i: usize, now_sec: u64) -> bool {
        let s = self.second[i];
        s != EMPTY && s <= now_sec && now_sec - s < BUCKETS as u64
    }

    /// Adds to the bucket of `now`.
    pub fn add(&mut self, now: Millis, requests: u64, tokens: u64) {
        let sec = now / BUCKET_MS;
        let i = (sec % BUCKETS as u64) as usize;
        if self.second[i] != sec {
            self.second[i] = sec;
            self.requests[i] = 0;
            self.tokens[i] = 0;
        }
        self.requests[i] = self.requests[i].saturating_add(requests);
        self.tokens[i] = self.tokens[i].saturating_add(tokens);
    }

    pub fn usage(&self, now: Millis) -> Usage {
        let sec = now / BUCKET_MS;
        let mut u = Usage::default();
        for i in (0..BUCKETS).filter(|&i| self.live(i, sec)) {
            u.requests = u.requests.saturating_add(self.requests[i]);
            u.tokens = u.tokens.saturating_add(self.tokens[i]);
        }
        u
    }

    /// Milliseconds from `now` until the count of `kind` is below `below` (0 if it is).
    fn frees_in(&self, now: Millis, kind: LimitKind, below: u64) -> Millis {
        let sec = now / BUCKET_MS;
        let field = match kind {
            LimitKind::Requests => &self.requests,
            LimitKind::Tokens => &self.tokens,
        };
        let mut total: u64 = (0..BUCKETS).filter(|&i| self.live(i, sec)).map(|i| field[i]).sum();
        if total < below {
            return 0;
        }
        // Oldest second first; bucket `s` stops counting at the start of second s + 61.
        for s in sec.saturating_sub(BUCKETS as u64 - 1)..=sec {
            let i = (s % BUCKETS as u64) as usize;
            if self.second[i] == s {
                total -= field[i];
            }
            if total < below {
                return ((s + BUCKETS as u64) * BUCKET_MS).saturating_sub(now);
            }
        }
        ((sec + BUCKETS as u64) * BUCKET_MS).saturating_sub(now)
    }

    /// Milliseconds until the count of `kind` next goes down; 0 when it is 0.
    fn next_decrease(&self, now: Millis, kind: LimitKind, total: u64) -> Millis {
        if total == 0 {
            0
        } else {
            self.frees_in(now, kind, total)
        }
    }

    /// The limit decision at `now`: a request over `requestsPerMinute`, or one arriving when
    /// the tokens of the window already reach `tokensPerMinute`, is refused (and not
    /// counted); any other is counted. Without limits the request is only counted, and the
    /// verdict carries no usage (nothing reports it).
    pub fn admit(&mut self, now: Millis, limits: &ClientLimits) -> Verdict {
        if !limits.any() {
            self.add(now, 1, 0);
            return Verdict { limited: None, usage: Usage::default(), requests_reset_ms: 0, tokens_reset_ms: 0 };
        }
        let mut usage = self.usage(now);
        let over_requests = limits.requests_per_minute.is_some_and(|l| usage.requests >= l.get());
        let over_tokens = limits.tokens_per_minute.is_some_and(|l| usage.tokens >= l.get());
        let limited = if over_requests {
            Some(LimitKind::Requests)
        } else if over_tokens {
            Some(LimitKind::Tokens)
        } else {
            None
        };
        if limited.is_none() {
            self.add(now, 1, 0);
            usage.requests += 1;
        }
        let requests_reset_ms = match (over_requests, limits.requests_per_minute) {
            (true, Some(l)) => self.frees_in(now, LimitKind::Requests, l.get()),
            _ => self.next_decrease(now, LimitKind::Requests, usage.requests),
        };
        let tokens_reset_ms = match (over_tokens, limits.tokens_per_minute) {
            (true, Some(l)) => self.frees_in(now, LimitKind::Tokens, l.get()),
            _ => self.next_decrease(now, LimitKind::Tokens, usage.tokens),
        };
        Verdict { limited, usage, requests_reset_ms, tokens_reset_ms }
    }
}

/// A client's window, as the request path uses it. One per client name, kept across
/// reloads; a fleet-shared implementation replaces [`LocalCounter`] behind this trait.
pub trait Counter: Send + Sync + fmt::Debug {
    /// Decides on one request at `now` and counts it when admitted.
    fn admit(&self, now: Millis, limits: &ClientLimits) -> Verdict;
    /// Adds the tokens of an answer that completed at `now`.
    fn add_tokens(&self, now: Millis, tokens: u64);
    /// Counts a request admitted elsewhere (by the fleet's shared counts).
    fn count(&self, now: Millis);
    /// Requests and tokens in the window at `now`.
    fn usage(&self, now: Millis) -> Usage;
}

/// The window of one client in this process.
#[derive(Debug, Default)]
pub struct LocalCounter(Mutex<MinuteBuckets>);

impl LocalCounter {
    fn buckets(&self) -> std::sync::MutexGuard<'_, MinuteBuckets> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Counter for LocalCounter {
    fn admit(&self, now: Millis, limits: &ClientLimits) -> Verdict {
        self.buckets().admit(now, limits)
    }

    fn add_tokens(&self, now: Millis, tokens: u64) {
        self.buckets().add(now, 0, tokens);
    }

    fn count(&self, now: Millis) {
        self.buckets().add(now, 1, 0);
    }

    fn usage(&self, now: Millis) -> Usage {
        self.buckets().usage(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Clock, ManualClock};
    use std::num::NonZeroU64;
    use std::time::Duration;

    fn limits(requests: Option<u64>, tokens: Option<u64>) -> ClientLimits {
        ClientLimits {
            requests_per_minute: requests.and_then(NonZeroU64::new),
            tokens_per_minute: tokens.and_then(NonZeroU64::new),
        }
    }

    #[test]
    fn admits_up_to_the_request_limit_then_refuses_until_the_oldest_leaves() {
        let clock = ManualClock::new(10_250);
        let c = LocalCounter::default();
        let l = limits(Some(3), None);
        for n in 1..=3 {
            let v = c.admit(clock.now(), &l);
            assert_eq!(v.limited, None, "request {n}");
            assert_eq!(v.usage.requests, n, "the request itself is counted");
        }
        clock.advance(Duration::from_millis(500));
        let v = c.admit(clock.now(), &l);
        assert_eq!(v.limited, Some(LimitKind::Requests));
        assert_eq!(v.usage.requests, 3, "a refused request is not counted");
        // Second 10's bucket counts until the start of second 71: 71_000 - 10_750.
        assert_eq!(v.retry_after_ms(), 60_250);
        clock.advance(Duration::from_millis(60_249));
        assert_eq!(c.admit(clock.now(), &l).limited, Some(LimitKind::Requests), "1 ms before it frees");
        clock.advance(Duration::from_millis(1));
        let v = c.admit(clock.now(), &l);
        assert_eq!(v.limited, None, "at 71.000 s the three requests of second 10 are gone");
        assert_eq!(v.usage.requests, 1);
    }

    #[test]
    fn the_window_slides_across_a_minute_boundary() {
        // A fixed minute would take 5 at 59.9 s and 5 more at 60.0 s: 10 in 0.1 s.
        let clock = ManualClock::new(59_900);
        let c = LocalCounter::default();
        let l = limits(Some(5), None);
        for _ in 0..5 {
            assert_eq!(c.admit(clock.now(), &l).limited, None);
        }
        clock.advance(Duration::from_millis(100));
        assert_eq!(c.admit(clock.now(), &l).limited, Some(LimitKind::Requests), "no burst at the boundary");
        // Spread: one request every 15 s keeps 4 in the window; never more than 5 in any minute.
        let clock = ManualClock::new(1_000);
        let c = LocalCounter::default();
        let mut admitted: Vec<Millis> = Vec::new();
        for _ in 0..400 {
            if c.admit(clock.now(), &l).limited.is_none() {
                admitted.push(clock.now());
            }
            clock.advance(Duration::from_millis(700));
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_minute = admitted[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(in_minute <= 5, "{in_minute} admitted in the minute from {t} ms");
        }
        assert!(admitted.len() >= 5 * 4, "the limit is reached again every minute: {}", admitted.len());
    }

    #[test]
    fn tokens_refuse_once_the_window_reaches_the_limit() {
        let clock = ManualClock::new(5_000);
        let c = LocalCounter::default();
        let l = limits(None, Some(100));
        assert_eq!(c.admit(clock.now(), &l).limited, None);
        c.add_tokens(clock.now(), 60);
        clock.advance(Duration::from_secs(2));
        let v = c.admit(clock.now(), &l);
        assert_eq!((v.limited, v.usage.tokens), (None, 60), "60 < 100: still admitted");
        assert_eq!(v.tokens_reset_ms, 66_000 - 7_000, "the 60 tokens of second 5 leave at 66 s");
        c.add_tokens(clock.now(), 40);
        let v = c.admit(clock.now(), &l);
        assert_eq!(v.limited, Some(LimitKind::Tokens), "100 tokens reach the limit");
        assert_eq!(v.retry_after_ms(), 59_000, "below 100 once the 60 of second 5 leave");
        clock.advance(Duration::from_secs(59));
        let v = c.admit(clock.now(), &l);
        assert_eq!((v.limited, v.usage.tokens), (None, 40));
    }

    #[test]
    fn both_limits_report_requests_first_and_usage_sums_the_live_buckets() {
        let clock = ManualClock::new(0);
        let mut b = MinuteBuckets::default();
        let l = limits(Some(1), Some(1));
        assert_eq!(b.admit(clock.now(), &l).limited, None);
        b.add(clock.now(), 0, 10);
        let v = b.admit(clock.now(), &l);
        assert_eq!(v.limited, Some(LimitKind::Requests));
        assert_eq!(v.usage, Usage { requests: 1, tokens: 10 });
        assert_eq!(b.usage(60_999), Usage { requests: 1, tokens: 10 });
        assert_eq!(b.usage(61_000), Usage::default());
        // A bucket reused 61 s later starts from zero.
        b.add(61_500, 2, 3);
        assert_eq!(b.usage(61_500), Usage { requests: 2, tokens: 3 });
    }

    #[test]
    fn without_limits_everything_is_admitted_and_counted() {
        let c = LocalCounter::default();
        for i in 0..1000 {
            let v = c.admit(i, &ClientLimits::default());
            assert_eq!((v.limited, v.retry_after_ms()), (None, 0));
        }
        assert_eq!(c.usage(999).requests, 1000);
    }
}
