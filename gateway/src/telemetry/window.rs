//! Requests and failures over the last minute, per provider: 60 one-second buckets, lock-free.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 60;

#[derive(Debug)]
pub struct MinuteWindow {
    /// Second each bucket was last reset for.
    seconds: [AtomicU64; BUCKETS],
    requests: [AtomicU64; BUCKETS],
    failures: [AtomicU64; BUCKETS],
}

impl Default for MinuteWindow {
    fn default() -> Self {
        MinuteWindow {
            seconds: std::array::from_fn(|_| AtomicU64::new(0)),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl MinuteWindow {
    /// Counts one attempt at monotonic millisecond `now_ms`.
    pub fn record(&self, now_ms: u64, failed: bool) {
        let sec = now_ms / 1000;
        let i = (sec % BUCKETS as u64) as usize;
        let stamp = self.seconds[i].load(Ordering::Acquire);
        if stamp != sec && self.seconds[i].compare_exchange(stamp, sec, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.requests[i].store(0, Ordering::Release);
            self.failures[i].store(0, Ordering::Release);
        }
        self.requests[i].fetch_add(1, Ordering::AcqRel);
        if failed {
            self.failures[i].fetch_add(1, Ordering::AcqRel);
        }
    }

    /// (requests, failures) in the minute before `now_ms`.
    pub fn totals(&self, now_ms: u64) -> (u64, u64) {
        let sec = now_ms / 1000;
        let mut totals = (0, 0);
        for i in 0..BUCKETS {
            let stamp = self.seconds[i].load(Ordering::Acquire);
            if stamp + (BUCKETS as u64) > sec && stamp <= sec {
                totals.0 += self.requests[i].load(Ordering::Acquire);
                totals.1 += self.failures[i].load(Ordering::Acquire);
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_minute_only() {
        let w = MinuteWindow::default();
        w.record(1_000, false);
        w.record(1_500, true);
        w.record(30_000, false);
        assert_eq!(w.totals(30_000), (3, 1));
        assert_eq!(w.totals(60_999), (3, 1), "seconds 1..=60 are the last minute at second 60");
        assert_eq!(w.totals(61_000), (1, 0), "second 1 has left the window");
        w.record(61_500, true);
        assert_eq!(w.totals(61_500), (2, 1), "bucket of second 1 reused for second 61");
        assert_eq!(w.totals(200_000), (0, 0));
    }
}
