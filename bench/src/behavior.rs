//! What the mock provider does with the requests it receives.

use serde::{Deserialize, Serialize};

/// Failure-injection settings of a [`crate::MockLlm`].
///
/// Every field has a default (see [`Behavior::default`]), so a JSON object
/// only needs the fields it changes; unknown fields are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Status of injected failures; 200 means never fail.
    pub status: u16,
    /// Fraction (0.0..=1.0) of requests answered with `status`.
    pub failure_rate: f64,
    /// `Retry-After` value sent with injected failures.
    pub retry_after: Option<String>,
    /// Body of injected failures (sent as JSON) instead of the API's usual error, e.g.
    /// OpenAI's `insufficient_quota`: see [`Behavior::out_of_quota`].
    pub error_body: Option<String>,
    /// Extra headers on every provider response (failures and successes).
    pub headers: Vec<(String, String)>,
    /// Wait before sending the response head.
    pub first_byte_delay_ms: u64,
    /// Never answer; keep the connection open until the client closes it.
    pub hang: bool,
    /// Read the request head, then close the TCP connection with RST.
    pub reset: bool,
    /// Content chunks in a streamed answer (at least one is sent).
    pub stream_chunks: usize,
    /// Delay between streamed events.
    pub chunk_delay_ms: u64,
    /// Stream: answer 200 and make the first SSE event an OpenAI error chunk.
    pub stream_error_first: bool,
    /// Stream: answer 200 with SSE headers, then close before any event.
    pub stream_close_early: bool,
    /// Stream: open with an SSE comment (no content), `chunk_delay_ms` before the first
    /// content event: a head at once, a slow first token.
    pub stream_comment_first: bool,
    /// Stream: send this many content chunks, then abort the connection.
    pub stream_fail_after: Option<usize>,
    /// Status of `GET /v1/models` and `GET /health`, independent of `status`.
    pub health_status: u16,
    /// PEM public key that verifies the RS256 assertions `POST /token` receives (Google
    /// service-account flow); without it the token endpoint answers 500.
    pub token_public_key: Option<String>,
    /// Bearer tokens Vertex calls may carry besides the ones `POST /token` issued.
    pub accept_tokens: Vec<String>,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            status: 200,
            failure_rate: 1.0,
            retry_after: None,
            error_body: None,
            headers: Vec::new(),
            first_byte_delay_ms: 0,
            hang: false,
            reset: false,
            stream_chunks: 3,
            chunk_delay_ms: 0,
            stream_error_first: false,
            stream_close_early: false,
            stream_comment_first: false,
            stream_fail_after: None,
            health_status: 200,
            token_public_key: None,
            accept_tokens: Vec::new(),
        }
    }
}

impl Behavior {
    /// A provider that answers every chat request with `status`.
    pub fn failing(status: u16) -> Self {
        Behavior { status, ..Behavior::default() }
    }

    /// A provider whose account is out of credit: 429 with OpenAI's `insufficient_quota`.
    pub fn out_of_quota() -> Self {
        let body = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        Behavior { status: 429, error_body: Some(body.to_owned()), ..Behavior::default() }
    }

    /// Draws whether this request gets an injected failure.
    pub(crate) fn draw_failure(&self) -> bool {
        self.status != 200 && fastrand::f64() < self.failure_rate
    }

    /// Content chunks of a streamed answer, never fewer than one.
    pub(crate) fn content_chunks(&self) -> usize {
        self.stream_chunks.max(1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::Behavior;

    #[test]
    fn missing_fields_take_defaults() {
        let b: Behavior = serde_json::from_str(r#"{"status":429}"#).unwrap();
        assert_eq!(b, Behavior { status: 429, ..Behavior::default() });
        assert_eq!(b.failure_rate, 1.0);
        assert_eq!(b.stream_chunks, 3);
        assert_eq!(b.health_status, 200);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<Behavior>(r#"{"statuz":429}"#).is_err());
    }

    #[test]
    fn headers_are_pairs() {
        let b: Behavior = serde_json::from_str(r#"{"headers":[["x-a","1"]]}"#).unwrap();
        assert_eq!(b.headers, vec![("x-a".to_owned(), "1".to_owned())]);
        let back: Behavior = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn failure_draw_respects_status_and_rate() {
        assert!(!Behavior::default().draw_failure());
        assert!(Behavior::failing(500).draw_failure());
        let never = Behavior { failure_rate: 0.0, ..Behavior::failing(500) };
        assert!(!never.draw_failure());
    }
}
