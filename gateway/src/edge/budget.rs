//! The memory held by request bodies across all requests at once (`limits.maxBufferedBodyBytes`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A shared budget of body bytes.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { used: AtomicU64::new(0), limit: AtomicU64::new(limit) })
    }

    /// A new limit (reload); bodies already held keep their bytes.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, grown as bytes are announced or arrive.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: self.clone(), bytes: 0 }
    }

    fn take(&self, n: u64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| used.checked_add(n).filter(|t| *t <= limit))
            .is_ok()
    }
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    /// Holds `total` bytes in all (no change if it already holds that many); false, holding
    /// what it held before, when the budget cannot give them.
    pub fn hold(&mut self, total: u64) -> bool {
        if total <= self.bytes {
            return true;
        }
        if self.budget.take(total - self.bytes) {
            self.bytes = total;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_limit_and_give_it_back() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.hold(60));
        assert!(!b.hold(41), "60 + 41 is over 100");
        assert!(b.hold(40));
        assert!(a.hold(60), "holding what it holds costs nothing");
        assert!(!a.hold(61));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.hold(100));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_lower_limit_applies_to_new_bytes() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        assert!(a.hold(80));
        budget.set_limit(50);
        let mut b = budget.reservation();
        assert!(!b.hold(1));
        drop(a);
        assert!(b.hold(50));
    }
}
