//! Client limits counted in Redis: the same one-second buckets and the same rule as
//! [`MinuteBuckets`], kept in one hash per client and decided atomically by a script, so
//! that every instance of a fleet spends one budget.
//!
//! The script decides and counts; it returns the live buckets as they were before the
//! request, and this process replays the same pure decision on them for the verdict's
//! numbers (usage, reset times), which therefore agree with what Redis decided.

use crate::clients::window::{MinuteBuckets, Verdict};
use crate::clients::ClientLimits;

/// KEYS[1]: the client's hash (fields `r<second>` and `t<second>`). ARGV: the Unix second,
/// requests per minute, tokens per minute (0: no limit). Counts the request unless a limit
/// is met; returns the live buckets before it, as field, value pairs.
pub const ADMIT_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local live = {}
local req, tok = 0, 0
for i = 1, #all, 2 do
  local f, v = all[i], tonumber(all[i + 1])
  local sec = tonumber(string.sub(f, 2))
  if sec == nil or v == nil or now - sec >= 61 then
    redis.call('HDEL', KEYS[1], f)
  elseif sec <= now then
    if string.sub(f, 1, 1) == 'r' then req = req + v else tok = tok + v end
    live[#live + 1] = f
    live[#live + 1] = v
  end
end
if not ((rpm > 0 and req >= rpm) or (tpm > 0 and tok >= tpm)) then
  redis.call('HINCRBY', KEYS[1], 'r' .. now, 1)
end
redis.call('PEXPIRE', KEYS[1], 62000)
return live
"#;

/// How long a client's hash lives after its last write: its buckets count for 61 s.
pub const TTL_MS: u64 = 62_000;

/// The field of the tokens bucket of Unix second `sec`.
pub fn tokens_field(sec: u64) -> String {
    format!("t{sec}")
}

/// The verdict for a request at `now` (Unix ms) from the buckets the script returned.
pub fn verdict(live: &[(String, u64)], now: u64, limits: &ClientLimits) -> Verdict {
    let mut buckets = MinuteBuckets::default();
    for (field, value) in live {
        let (kind, sec) = field.split_at(field.len().min(1));
        let Ok(sec) = sec.parse::<u64>() else { continue };
        match kind {
            "r" => buckets.add(sec * 1000, *value, 0),
            "t" => buckets.add(sec * 1000, 0, *value),
            _ => {}
        }
    }
    buckets.admit(now, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::window::LimitKind;
    use std::num::NonZeroU64;

    fn limits(rpm: u64, tpm: u64) -> ClientLimits {
        ClientLimits { requests_per_minute: NonZeroU64::new(rpm), tokens_per_minute: NonZeroU64::new(tpm) }
    }

    #[test]
    fn replays_the_local_decision_on_shared_buckets() {
        let now = 1_000_030_500;
        let live = vec![("r1000000".to_string(), 6), ("r1000029".to_string(), 3), ("t1000010".to_string(), 50)];
        let v = verdict(&live, now, &limits(10, 0));
        assert_eq!(v.limited, None);
        assert_eq!(v.usage.requests, 10, "its own request counted");
        let v = verdict(&[("r1000000".to_string(), 10)], now, &limits(10, 0));
        assert_eq!(v.limited, Some(LimitKind::Requests));
        assert_eq!(v.retry_after_ms(), 30_500, "the oldest bucket stops counting at second 1000061");
        let v = verdict(&[("t1000020".to_string(), 100)], now, &limits(0, 100));
        assert_eq!(v.limited, Some(LimitKind::Tokens));
    }

    #[test]
    fn ignores_fields_it_does_not_know() {
        let v = verdict(&[("x12".to_string(), 5), ("r".to_string(), 5), ("".to_string(), 1)], 12_000, &limits(1, 0));
        assert_eq!(v.limited, None);
    }
}
