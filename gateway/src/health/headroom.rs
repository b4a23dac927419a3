//! Quota headroom: what a provider's answer says is left of its rate-limit budget, and the
//! traffic share that leaves it.
//!
//! Headers read (lower-case): OpenAI's `x-ratelimit-{remaining,limit,reset}-{requests,tokens}`
//! (reset as a Go duration: `6m0s`, `1.5s`) and Anthropic's
//! `anthropic-ratelimit-{requests,tokens}-{remaining,limit,reset}` (reset as an RFC 3339 time).
//! Pure: the caller gives the wall-clock time to read reset dates against.

use super::hints::go_duration;
use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// Which budget a reading is about (the `kind` label of `switchyard_provider_headroom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Requests,
    Tokens,
}

impl Budget {
    pub const ALL: [Budget; 2] = [Budget::Requests, Budget::Tokens];

    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Requests => "requests",
            Budget::Tokens => "tokens",
        }
    }

    /// (remaining, limit, reset) header names: OpenAI's, then Anthropic's.
    fn headers(self) -> [[&'static str; 3]; 2] {
        match self {
            Budget::Requests => [
                ["x-ratelimit-remaining-requests", "x-ratelimit-limit-requests", "x-ratelimit-reset-requests"],
                [
                    "anthropic-ratelimit-requests-remaining",
                    "anthropic-ratelimit-requests-limit",
                    "anthropic-ratelimit-requests-reset",
                ],
            ],
            Budget::Tokens => [
                ["x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens", "x-ratelimit-reset-tokens"],
                [
                    "anthropic-ratelimit-tokens-remaining",
                    "anthropic-ratelimit-tokens-limit",
                    "anthropic-ratelimit-tokens-reset",
                ],
            ],
        }
    }
}

/// One budget as an answer announced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// remaining ÷ limit, 0..=1.
    pub share: f64,
    /// Time until the budget resets, when announced.
    pub reset: Option<Duration>,
}

/// How long a reading without an announced reset holds.
pub const DEFAULT_RESET: Duration = Duration::from_secs(60);

/// What one answer says about both budgets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub requests: Option<Level>,
    pub tokens: Option<Level>,
}

impl Reading {
    /// Reads the rate-limit headers of an answer; a budget whose remaining or limit is
    /// missing or unreadable (or a limit of 0) is left out.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Reading {
        Reading { requests: level(headers, Budget::Requests, now), tokens: level(headers, Budget::Tokens, now) }
    }

    pub fn get(&self, budget: Budget) -> Option<Level> {
        match budget {
            Budget::Requests => self.requests,
            Budget::Tokens => self.tokens,
        }
    }

    /// The traffic share this reading leaves the provider with `min_share` (0..1) as the
    /// threshold, and until when (from now) it holds: `None` when every budget is at or
    /// above the threshold. The lower budget counts; 0 means "skip until the reset".
    pub fn weight(&self, min_share: f64) -> Option<(f64, Duration)> {
        let lowest = [self.requests, self.tokens]
            .into_iter()
            .flatten()
            .filter(|l| l.share < min_share)
            .min_by(|a, b| a.share.total_cmp(&b.share))?;
        Some(((lowest.share / min_share).clamp(0.0, 1.0), lowest.reset.unwrap_or(DEFAULT_RESET)))
    }
}

fn level(headers: &HeaderMap, budget: Budget, now: SystemTime) -> Option<Level> {
    let [openai, anthropic] = budget.headers();
    let [remaining, limit, reset] = if headers.contains_key(openai[0]) { openai } else { anthropic };
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let (remaining, limit) = (number(remaining)?, number(limit)?);
    if !(limit > 0.0 && remaining >= 0.0 && remaining.is_finite() && limit.is_finite()) {
        return None;
    }
    let reset = headers.get(reset).and_then(|v| v.to_str().ok()).and_then(|v| parse_reset(v.trim(), now));
    Some(Level { share: (remaining / limit).min(1.0), reset })
}

/// A reset as a Go duration (`1m30s`), plain seconds (`20`), or an RFC 3339 time.
fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(d) = go_duration(value) {
        return Some(d);
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs));
    }
    let at = humantime::parse_rfc3339_weak(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn openai_headers() {
        let h = headers(&[
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", "1m0s"),
            ("x-ratelimit-limit-tokens", "10000"),
            ("x-ratelimit-remaining-tokens", "9000"),
            ("x-ratelimit-reset-tokens", "6s"),
        ]);
        let r = Reading::from_headers(&h, now());
        assert_eq!(r.requests, Some(Level { share: 0.03, reset: Some(Duration::from_secs(60)) }));
        assert_eq!(r.tokens, Some(Level { share: 0.9, reset: Some(Duration::from_secs(6)) }));
        let (w, until) = r.weight(0.05).unwrap();
        assert!((w - 0.6).abs() < 1e-9, "3% left with a 5% threshold: {w}");
        assert_eq!(until, Duration::from_secs(60), "the lower reading's reset");
        assert_eq!(r.weight(0.02), None, "above the threshold: full weight");
    }

    #[test]
    fn anthropic_headers_and_the_lower_budget_counts() {
        let reset = httpdate_free_rfc3339(now() + Duration::from_secs(30));
        let h = headers(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "2"),
            ("anthropic-ratelimit-requests-reset", &reset),
            ("anthropic-ratelimit-tokens-limit", "1000"),
            ("anthropic-ratelimit-tokens-remaining", "10"),
            ("anthropic-ratelimit-tokens-reset", &reset),
        ]);
        let r = Reading::from_headers(&h, now());
        let (w, until) = r.weight(0.05).unwrap();
        assert!((w - 0.2).abs() < 1e-9, "tokens at 1% beat requests at 4%: {w}");
        assert_eq!(until, Duration::from_secs(30));
    }

    #[test]
    fn zero_left_means_skip_and_missing_reset_has_a_default() {
        let h = headers(&[("x-ratelimit-limit-requests", "100"), ("x-ratelimit-remaining-requests", "0")]);
        assert_eq!(Reading::from_headers(&h, now()).weight(0.05), Some((0.0, DEFAULT_RESET)));
    }

    #[test]
    fn unreadable_or_partial_readings_are_ignored() {
        assert_eq!(Reading::from_headers(&HeaderMap::new(), now()), Reading::default());
        let only_remaining = headers(&[("x-ratelimit-remaining-requests", "0")]);
        assert_eq!(Reading::from_headers(&only_remaining, now()).requests, None);
        let zero_limit = headers(&[("x-ratelimit-limit-requests", "0"), ("x-ratelimit-remaining-requests", "0")]);
        assert_eq!(Reading::from_headers(&zero_limit, now()).requests, None);
        let garbage = headers(&[("x-ratelimit-limit-requests", "lots"), ("x-ratelimit-remaining-requests", "1")]);
        assert_eq!(Reading::from_headers(&garbage, now()).requests, None);
        let negative = headers(&[("x-ratelimit-limit-requests", "10"), ("x-ratelimit-remaining-requests", "-1")]);
        assert_eq!(Reading::from_headers(&negative, now()).requests, None);
        let bad_reset = headers(&[
            ("x-ratelimit-limit-requests", "10"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "soon"),
        ]);
        assert_eq!(Reading::from_headers(&bad_reset, now()).requests, Some(Level { share: 0.0, reset: None }));
    }

    fn httpdate_free_rfc3339(t: SystemTime) -> String {
        humantime::format_rfc3339_seconds(t).to_string()
    }
}
