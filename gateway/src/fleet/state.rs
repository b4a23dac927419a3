//! What processes tell each other about provider health, and the pure rules for it.
//!
//! A [`Record`] is one provider's ejection with its end in wall-clock time (processes do
//! not share a monotonic clock). It is the value stored in Redis, the payload of fleet
//! events, and a line of the file a binary upgrade hands to the next process.

use crate::health::{FailureKind, Millis, Shared};
use serde::{Deserialize, Serialize};

/// Which provider: the backend it serves, its name and its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderId {
    pub backend: String,
    pub provider: String,
    pub endpoint: String,
}

impl ProviderId {
    /// The field of the provider in the fleet's Redis hash.
    pub fn field(&self) -> String {
        format!("{}/{}/{}", self.backend, self.provider, self.endpoint)
    }
}

/// One provider's ejection (or the trial after it, once `until` has passed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub id: ProviderId,
    /// Unix milliseconds at which the ejection ends.
    pub until: u64,
    /// The metrics reason (`status`, `quota`, ...).
    pub reason: String,
    /// Ejections in a row without a success: the growth exponent.
    pub streak: u32,
}

/// A change one process announces to the others of its fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// A provider was ejected (or ejected again after a failed trial).
    Ejected {
        from: String,
        #[serde(flatten)]
        record: Record,
    },
    /// A trial succeeded: the provider is back in rotation. `ended` is the end of the
    /// ejection the trial followed, so a peer that has since ejected the provider again
    /// keeps its newer ejection.
    Restored {
        from: String,
        #[serde(flatten)]
        id: ProviderId,
        ended: u64,
    },
}

impl Event {
    pub fn from(&self) -> &str {
        match self {
            Event::Ejected { from, .. } | Event::Restored { from, .. } => from,
        }
    }
}

/// The two clocks at one instant: this process's monotonic milliseconds and Unix
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    pub mono: Millis,
    pub wall: u64,
}

impl Clocks {
    pub fn now() -> Clocks {
        use crate::health::Clock;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clocks { mono: crate::health::SystemClock.now(), wall }
    }

    /// A monotonic instant of this process as Unix milliseconds.
    pub fn to_wall(self, mono: Millis) -> u64 {
        if mono >= self.mono {
            self.wall.saturating_add(mono - self.mono)
        } else {
            self.wall.saturating_sub(self.mono - mono)
        }
    }

    /// Unix milliseconds as a monotonic instant of this process; an instant before this
    /// process's clock began becomes its first millisecond (still in the past, never 0).
    pub fn to_mono(self, wall: u64) -> Millis {
        if wall >= self.wall {
            self.mono.saturating_add(wall - self.wall)
        } else {
            self.mono.saturating_sub(self.wall - wall).max(1)
        }
    }
}

/// The record of a provider's local ejection.
pub fn record(id: ProviderId, shared: &Shared, clocks: Clocks) -> Record {
    Record {
        id,
        until: clocks.to_wall(shared.until),
        reason: shared.reason.reason().to_string(),
        streak: shared.streak,
    }
}

/// A record as this process's health state takes it; `None` for an unknown reason.
pub fn shared(record: &Record, clocks: Clocks) -> Option<Shared> {
    Some(Shared {
        until: clocks.to_mono(record.until),
        reason: FailureKind::from_reason(&record.reason)?,
        streak: record.streak,
    })
}

/// Slack for clocks of different machines when a restore is weighed against an ejection.
pub const SKEW_MS: u64 = 1_000;

/// The latest end (Unix ms) of an ejection that a restore which ended the ejection until
/// `ended` also ends: a later one is newer, and stays.
pub fn restorable_until(ended: u64) -> u64 {
    ended.saturating_add(SKEW_MS)
}

/// What this process must (re)write after (re)connecting: its own ejections that the store
/// lacks or holds with an earlier end or a shorter streak, merged with what is stored (the
/// later end, the longer streak).
pub fn to_push(local: &[Record], stored: &[Record]) -> Vec<Record> {
    local
        .iter()
        .filter_map(|l| match stored.iter().find(|s| s.id == l.id) {
            None => Some(l.clone()),
            Some(s) if s.until >= l.until && s.streak >= l.streak => None,
            Some(s) => {
                let newer = if s.until > l.until { s } else { l };
                Some(Record { streak: s.streak.max(l.streak), ..newer.clone() })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &str) -> ProviderId {
        ProviderId { backend: "chat".into(), provider: p.into(), endpoint: "http://127.0.0.1:1".into() }
    }

    #[test]
    fn clocks_convert_both_ways() {
        let c = Clocks { mono: 5_000, wall: 1_700_000_000_000 };
        assert_eq!(c.to_wall(65_000), 1_700_000_060_000);
        assert_eq!(c.to_mono(1_700_000_060_000), 65_000);
        assert_eq!(c.to_wall(1_000), 1_699_999_996_000);
        assert_eq!(c.to_mono(1_699_999_996_000), 1_000);
        assert_eq!(c.to_mono(1_600_000_000_000), 1, "long ago: still in the past, never 0");
    }

    #[test]
    fn records_carry_reason_and_streak() {
        let c = Clocks { mono: 10_000, wall: 1_000_000 };
        let s = Shared { until: 40_000, reason: FailureKind::Status(429), streak: 2 };
        let r = record(id("a"), &s, c);
        assert_eq!((r.until, r.reason.as_str(), r.streak), (1_030_000, "status", 2));
        let back = shared(&r, c).unwrap();
        assert_eq!((back.until, back.reason, back.streak), (40_000, FailureKind::Status(0), 2));
        assert!(shared(&Record { reason: "weird".into(), ..r }, c).is_none());
    }

    #[test]
    fn events_round_trip_as_json() {
        let r = Record { id: id("a"), until: 7, reason: "quota".into(), streak: 1 };
        let e = Event::Ejected { from: "x".into(), record: r };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""event":"ejected""#), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        let e = Event::Restored { from: "y".into(), id: id("b"), ended: 9 };
        assert_eq!(serde_json::from_str::<Event>(&serde_json::to_string(&e).unwrap()).unwrap(), e);
    }

    #[test]
    fn a_restore_does_not_end_a_newer_ejection() {
        assert!(10_000 <= restorable_until(10_000));
        assert!(10_900 <= restorable_until(10_000), "within clock slack");
        assert!(40_000 > restorable_until(10_000));
    }

    #[test]
    fn only_missing_or_older_records_are_pushed() {
        let local = vec![
            Record { id: id("a"), until: 100, reason: "status".into(), streak: 1 },
            Record { id: id("b"), until: 100, reason: "status".into(), streak: 1 },
            Record { id: id("c"), until: 100, reason: "status".into(), streak: 2 },
        ];
        let stored = vec![
            Record { id: id("a"), until: 150, reason: "status".into(), streak: 1 },
            Record { id: id("c"), until: 150, reason: "status".into(), streak: 1 },
        ];
        let pushed: Vec<_> = to_push(&local, &stored).into_iter().map(|r| (r.id.provider, r.until, r.streak)).collect();
        assert_eq!(pushed, vec![("b".to_string(), 100, 1), ("c".to_string(), 150, 2)]);
    }
}
