//! The one decision after an attempt: did the provider fail (its health records it), and
//! may the same request go to another provider. Pure, so every case is tested here.
//!
//! Also here: telling an answer that says the account is out of credit or over a hard quota
//! ([`is_quota_exhausted`]) from a plain rate limit, from the start of its body.

use crate::config::{RetryPolicy, TransportKind};

/// What an attempt got back, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A response head; `unhealthy` is the route's health condition on it; `quota` that
    /// its body says the account is out of credit (see [`is_quota_exhausted`]).
    Status { code: u16, unhealthy: bool, quota: bool },
    /// A stream that opened with an error event or ended before any content.
    BadStream,
    /// No answer: connect, TLS, DNS, reset or timeout.
    Transport(TransportKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The provider failed: its health state records a failure.
    pub failure: bool,
    /// The retry policy lets another provider take the same request.
    pub retryable: bool,
    /// ...and an attempt is left for it (nothing has reached the client at this point).
    pub failover: bool,
}

pub fn verdict(answer: Answer, retry: &RetryPolicy, last_attempt: bool) -> Verdict {
    let (failure, retryable) = match answer {
        // Out of credit is a failure whatever the condition says, and another provider
        // (another account) may well serve the request.
        Answer::Status { quota: true, .. } => (true, true),
        Answer::Status { code, unhealthy, quota: false } => (unhealthy, unhealthy || retry.on_status.contains(&code)),
        Answer::BadStream => (true, true),
        Answer::Transport(kind) => (true, retry.on_transport.contains(&kind)),
    };
    Verdict { failure, retryable, failover: retryable && !last_attempt }
}

/// Statuses whose body is read before judging: the ones providers use for quota exhaustion.
pub fn may_be_quota(code: u16) -> bool {
    matches!(code, 402 | 403 | 429)
}

/// How much of a failed answer's body [`is_quota_exhausted`] looks at.
pub const QUOTA_SCAN_BYTES: usize = 64 * 1024;

/// Error codes and types that mean "out of credit or over a hard quota" (compared without
/// case and underscores, so Azure's `InsufficientQuota` matches OpenAI's
/// `insufficient_quota`). OpenAI: type `insufficient_quota` with codes
/// `insufficient_quota`, `billing_hard_limit_reached`, `credit_balance_exhausted`, and the
/// organization / project spend and usage limits. Anthropic: `billing_error` (402) and a
/// 429 whose `error.details.error_code` is `enforced_spend_limit_reached`.
const QUOTA_MARKERS: [&str; 9] = [
    "insufficientquota",
    "billinghardlimitreached",
    "creditbalanceexhausted",
    "organizationspendlimitexceeded",
    "projectspendlimitexceeded",
    "organizationusagelimitexceeded",
    "billingerror",
    "enforcedspendlimitreached",
    "insufficientbalance",
];

/// Whether an answer with `code` and (the start of) `body` says the account is out of credit
/// or over a hard quota, rather than asking the client to slow down. 402 (Payment Required)
/// always does; 403 and 429 only when the JSON error names one of [`QUOTA_MARKERS`] in
/// `error.code`, `error.type` or `error.details.error_code`.
pub fn is_quota_exhausted(code: u16, body: &[u8]) -> bool {
    if code == 402 {
        return true;
    }
    if !may_be_quota(code) {
        return false;
    }
    let body = &body[..body.len().min(QUOTA_SCAN_BYTES)];
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let error = &value["error"];
    let named = [&error["code"], &error["type"], &error["details"]["error_code"]].into_iter().any(|v| {
        v.as_str().is_some_and(|s| {
            let norm: String = s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
            QUOTA_MARKERS.contains(&norm.as_str())
        })
    });
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backoff;
    use std::time::Duration;

    fn policy(on_status: &[u16], on_transport: &[TransportKind]) -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            on_status: on_status.to_vec(),
            on_transport: on_transport.iter().copied().collect(),
            backoff: Backoff { base: Duration::ZERO, max: Duration::ZERO, jitter: false },
            hedge: None,
        }
    }

    const fn v(failure: bool, retryable: bool, failover: bool) -> Verdict {
        Verdict { failure, retryable, failover }
    }

    #[test]
    fn statuses() {
        let p = policy(&[429, 503], &[]);
        let status = |code, unhealthy| Answer::Status { code, unhealthy, quota: false };
        assert_eq!(verdict(status(200, false), &p, false), v(false, false, false));
        // Unhealthy by the condition: a failure, failed over while attempts are left.
        assert_eq!(verdict(status(500, true), &p, false), v(true, true, true));
        assert_eq!(verdict(status(500, true), &p, true), v(true, true, false));
        // Listed in onStatus but healthy by the condition: failed over, not held against it.
        assert_eq!(verdict(status(503, false), &p, false), v(false, true, true));
        // Neither: delivered as it is.
        assert_eq!(verdict(status(404, false), &p, false), v(false, false, false));
    }

    #[test]
    fn quota_is_a_failure_that_fails_over_whatever_the_condition() {
        let p = policy(&[], &[]);
        let quota = |code, unhealthy| Answer::Status { code, unhealthy, quota: true };
        assert_eq!(verdict(quota(429, true), &p, false), v(true, true, true));
        assert_eq!(verdict(quota(403, false), &p, false), v(true, true, true));
        assert_eq!(verdict(quota(402, false), &p, true), v(true, true, false));
    }

    #[test]
    fn quota_bodies() {
        let openai = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(is_quota_exhausted(429, openai));
        let spend = br#"{"error":{"message":"x","type":"insufficient_quota","code":"project_spend_limit_exceeded"}}"#;
        assert!(is_quota_exhausted(429, spend));
        let hard = br#"{"error":{"message":"x","type":"invalid_request_error","code":"billing_hard_limit_reached"}}"#;
        assert!(is_quota_exhausted(429, hard));
        assert!(is_quota_exhausted(403, br#"{"error":{"code":"InsufficientQuota","message":"x"}}"#));
        let anthropic = br#"{"type":"error","error":{"type":"rate_limit_error","message":"x","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert!(is_quota_exhausted(429, anthropic));
        assert!(is_quota_exhausted(402, br#"{"type":"error","error":{"type":"billing_error","message":"x"}}"#));
        assert!(is_quota_exhausted(402, b"not json"), "402 is payment required, whatever the body");
        // Plain throttling and other answers are not quota.
        let rate =
            br#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#;
        assert!(!is_quota_exhausted(429, rate));
        assert!(!is_quota_exhausted(429, br#"{"type":"error","error":{"type":"rate_limit_error","message":"x"}}"#));
        assert!(!is_quota_exhausted(429, b""));
        assert!(!is_quota_exhausted(429, b"insufficient_quota"), "not an error object");
        assert!(!is_quota_exhausted(403, br#"{"error":{"type":"permission_error","message":"insufficient_quota"}}"#));
        assert!(!is_quota_exhausted(500, openai), "only 402, 403 and 429");
        assert!(!is_quota_exhausted(200, openai));
        // Only the first 64 KiB is read: a body cut there is not parsed as quota.
        let mut long = br#"{"error":{"type":"insufficient_quota","pad":""#.to_vec();
        long.extend(std::iter::repeat_n(b'x', QUOTA_SCAN_BYTES));
        long.extend(br#""}}"#);
        assert!(!is_quota_exhausted(429, &long));
    }

    #[test]
    fn streams_and_transport() {
        let p = policy(&[], &[TransportKind::Connect, TransportKind::Timeout]);
        assert_eq!(verdict(Answer::BadStream, &p, false), v(true, true, true));
        assert_eq!(verdict(Answer::BadStream, &p, true), v(true, true, false));
        assert_eq!(verdict(Answer::Transport(TransportKind::Connect), &p, false), v(true, true, true));
        // Not in onTransport: still a failure of the provider, but the request stops there.
        assert_eq!(verdict(Answer::Transport(TransportKind::Reset), &p, false), v(true, false, false));
    }
}
