//! The one decision after an attempt: did the provider fail (its health records it), and
//! may the same request go to another provider. Pure, so every case is tested here.

use crate::config::{RetryPolicy, TransportKind};

/// What an attempt got back, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A response head; `unhealthy` is the route's health condition on it.
    Status { code: u16, unhealthy: bool },
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
        Answer::Status { code, unhealthy } => (unhealthy, unhealthy || retry.on_status.contains(&code)),
        Answer::BadStream => (true, true),
        Answer::Transport(kind) => (true, retry.on_transport.contains(&kind)),
    };
    Verdict { failure, retryable, failover: retryable && !last_attempt }
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
        }
    }

    const fn v(failure: bool, retryable: bool, failover: bool) -> Verdict {
        Verdict { failure, retryable, failover }
    }

    #[test]
    fn statuses() {
        let p = policy(&[429, 503], &[]);
        let status = |code, unhealthy| Answer::Status { code, unhealthy };
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
    fn streams_and_transport() {
        let p = policy(&[], &[TransportKind::Connect, TransportKind::Timeout]);
        assert_eq!(verdict(Answer::BadStream, &p, false), v(true, true, true));
        assert_eq!(verdict(Answer::BadStream, &p, true), v(true, true, false));
        assert_eq!(verdict(Answer::Transport(TransportKind::Connect), &p, false), v(true, true, true));
        // Not in onTransport: still a failure of the provider, but the request stops there.
        assert_eq!(verdict(Answer::Transport(TransportKind::Reset), &p, false), v(true, false, false));
    }
}
