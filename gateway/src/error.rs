//! Errors the gateway itself answers with, mapped exhaustively to an HTTP status and an
//! OpenAI-shaped JSON body (`{"error":{"message","type","code"}}`), so SDKs parse them.

use crate::body::BodyError;
use crate::config::TransportKind;
use serde_json::json;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for path {path}")]
    NoRoute { path: String },
    #[error("no provider of this route serves {path}")]
    NotServed { path: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within limits.bodyTimeout ({secs}s)")]
    BodyTimeout { secs: u64 },
    #[error("the gateway holds too many request bodies right now (limits.maxBufferedBodyBytes); retry in {retry_after_secs}s")]
    Overloaded { retry_after_secs: u64 },
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("{0}")]
    BadBody(#[from] BodyError),
    #[error("no provider of this route can take the request: {0}")]
    Unsupported(String),
    #[error("every provider of backend {backend} is ejected; retry in {retry_after_secs}s")]
    AllEjected { backend: String, retry_after_secs: u64 },
    #[error("no provider could answer: {detail}")]
    Upstream { kind: TransportKind, detail: String },
    #[error("the request's time budget ran out before a provider answered")]
    Budget,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::NoRoute { .. } | GatewayError::NotServed { .. } => 404,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::BadRequest(_)
            | GatewayError::BodyRead(_)
            | GatewayError::BadBody(_)
            | GatewayError::Unsupported(_) => 400,
            GatewayError::BodyTimeout { .. } => 408,
            GatewayError::Refused { status, .. } => *status,
            GatewayError::AllEjected { .. } | GatewayError::Overloaded { .. } => 503,
            GatewayError::Upstream { kind: TransportKind::Timeout, .. } | GatewayError::Budget => 504,
            GatewayError::Upstream { .. } => 502,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::NoRoute { .. } | GatewayError::NotServed { .. } => "not_found_error",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::BadRequest(_)
            | GatewayError::BodyRead(_)
            | GatewayError::BadBody(_)
            | GatewayError::Unsupported(_) => "invalid_request_error",
            GatewayError::Refused { status: 431, .. } => "request_too_large",
            GatewayError::Refused { .. } => "invalid_request_error",
            GatewayError::AllEjected { .. } | GatewayError::Overloaded { .. } => "service_unavailable",
            GatewayError::BodyTimeout { .. }
            | GatewayError::Upstream { kind: TransportKind::Timeout, .. }
            | GatewayError::Budget => "timeout",
            GatewayError::Upstream { .. } => "bad_gateway",
        }
    }

    /// Whether the client may reasonably send the same request again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::AllEjected { .. }
                | GatewayError::Overloaded { .. }
                | GatewayError::Upstream { .. }
                | GatewayError::Budget
        )
    }

    pub fn body(&self) -> Vec<u8> {
        json!({"error": {"message": self.to_string(), "type": self.kind(), "code": self.status()}})
            .to_string()
            .into_bytes()
    }

    /// The same error in Anthropic's shape (`{"type":"error","error":{"type","message"}}`).
    pub fn anthropic_body(&self) -> Vec<u8> {
        let kind = match self.status() {
            404 => "not_found_error",
            413 => "request_too_large",
            400 => "invalid_request_error",
            503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        };
        crate::providers::anthropic::error_envelope(kind, &self.to_string()).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let e = GatewayError::NoRoute { path: "/x".into() };
        assert_eq!(e.status(), 404);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["message"], "no route for path /x");
        assert_eq!(v["error"]["type"], "not_found_error");
        assert_eq!(GatewayError::Upstream { kind: TransportKind::Timeout, detail: String::new() }.status(), 504);
        assert_eq!(GatewayError::Upstream { kind: TransportKind::Connect, detail: String::new() }.status(), 502);
        assert!(!GatewayError::BodyTooLarge { limit: 1 }.is_retryable());
    }
}
