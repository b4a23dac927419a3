//! State shared between the server handle and the connections it serves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::Behavior;

/// A request as the mock received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query, as received (still percent-encoded), e.g.
    /// `/v1/chat/completions`.
    pub path: String,
    /// The query string, without the `?`.
    pub query: Option<String>,
    /// Headers in arrival order; names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The full request body (empty when the connection was reset).
    pub body: Bytes,
    /// Whether the AWS SigV4 `authorization` header verifies against the test credentials
    /// ([`crate::TEST_AWS_ACCESS_KEY_ID`]); `None` without such a header, and until the body
    /// has been read.
    pub sigv4_valid: Option<bool>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub(crate) fn from_head(head: &http::request::Parts) -> Self {
        RecordedRequest {
            method: head.method.as_str().to_owned(),
            path: head.uri.path().to_owned(),
            query: head.uri.query().map(str::to_owned),
            headers: head
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_ascii_lowercase(), value)
                })
                .collect(),
            body: Bytes::new(),
            sigv4_valid: None,
        }
    }

    /// Path and query as received.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// Checks the SigV4 signature now that the body is known.
    pub(crate) fn verify_sigv4(&mut self) {
        self.sigv4_valid = crate::sigv4::verify_sigv4(&self.method, &self.path_and_query(), &self.headers, &self.body);
    }
}

/// Counters, the current behaviour and the last request of one mock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) name: String,
    behavior: Mutex<Behavior>,
    last_request: Mutex<Option<RecordedRequest>>,
    requests: AtomicU64,
    health_requests: AtomicU64,
    cancelled: AtomicU64,
    connections: AtomicU64,
    /// Access tokens `POST /token` issued.
    issued_tokens: Mutex<Vec<String>>,
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) requests: u64,
    pub(crate) health_requests: u64,
    pub(crate) cancelled: u64,
    pub(crate) connections: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(name: &str, behavior: Behavior) -> Self {
        State {
            name: name.to_owned(),
            behavior: Mutex::new(behavior),
            last_request: Mutex::new(None),
            requests: AtomicU64::new(0),
            health_requests: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            issued_tokens: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn behavior(&self) -> Behavior {
        lock(&self.behavior).clone()
    }

    pub(crate) fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.behavior) = behavior;
    }

    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.last_request).clone()
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        *lock(&self.last_request) = Some(request);
    }

    /// Counts a provider request whose head just arrived.
    pub(crate) fn count_request(&self, health: bool) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if health {
            self.health_requests.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub(crate) fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::SeqCst),
            health_requests: self.health_requests.load(Ordering::SeqCst),
            cancelled: self.cancelled.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
        }
    }

    /// Issues a new access token.
    pub(crate) fn issue_token(&self) -> String {
        let mut tokens = lock(&self.issued_tokens);
        let token = format!("ya29.mock-{}-{}", self.name, tokens.len() + 1);
        tokens.push(token.clone());
        token
    }

    pub(crate) fn issued_token(&self, token: &str) -> bool {
        lock(&self.issued_tokens).iter().any(|t| t == token)
    }

    /// How many access tokens `POST /token` issued.
    pub(crate) fn tokens_issued(&self) -> usize {
        lock(&self.issued_tokens).len()
    }

    pub(crate) fn reset_stats(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.health_requests.store(0, Ordering::SeqCst);
        self.cancelled.store(0, Ordering::SeqCst);
        self.connections.store(0, Ordering::SeqCst);
        *lock(&self.last_request) = None;
    }
}
