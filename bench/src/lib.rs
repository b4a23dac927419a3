//! `mock-llm`: a mock LLM provider with failure injection, for Switchyard's
//! end-to-end tests and benchmark scripts. One instance speaks every provider
//! API the gateway translates to, chosen by the request path.
//!
//! [`MockLlm::start`] serves HTTP/1.1 on 127.0.0.1 in the current tokio
//! runtime until the handle is dropped:
//!
//! - `POST /v1/responses` (and Azure's `/openai/v1/responses`, `api-key` required): the
//!   OpenAI Responses API, a `response` object or its `response.*` event stream.
//! - `POST /v1/messages`: Anthropic Messages (a `message`, or its SSE event
//!   sequence with `"stream": true`; errors as `{"type":"error",...}`).
//! - `POST /model/{modelId}/converse` and `/converse-stream`: AWS Bedrock
//!   Converse (JSON, or binary `application/vnd.amazon.eventstream` frames).
//!   A SigV4 `authorization` header is verified against
//!   [`TEST_AWS_ACCESS_KEY_ID`] / [`TEST_AWS_SECRET_ACCESS_KEY`]
//!   ([`RecordedRequest::sigv4_valid`]); a bad signature is answered 403.
//! - `POST /v1beta/models/{model}:generateContent` and
//!   `:streamGenerateContent?alt=sse`: Google Gemini.
//! - `POST /openai/deployments/{d}/chat/completions?api-version=...`: Azure
//!   OpenAI (an `api-key` header is required, else 401).
//! - `POST` to any other path (e.g. `/v1/chat/completions`) answers an OpenAI
//!   `chat.completion`, or an SSE stream of `chat.completion.chunk`s when the
//!   body has `"stream": true`.
//!
//!   Every API gets the same failure injection from the [`Behavior`], with
//!   errors (and in-stream errors) in its own shape.
//!
//!   A request that offers tools (OpenAI `tools[].function`, Anthropic `tools[]`,
//!   Bedrock `toolConfig.tools[].toolSpec`, Gemini `tools[].functionDeclarations[]`)
//!   is answered, whole or streamed, with a call to its first tool with the
//!   arguments `{"location":"Paris"}`, in that API's shape; unless its last turn
//!   is a tool result, which gets the usual text, so a two-step tool loop
//!   completes.
//! - `POST /model/{modelId}/invoke` and `/invoke-with-response-stream`: Claude on
//!   Bedrock (the Anthropic body with `anthropic_version: bedrock-2023-05-31`, no `model`
//!   or `stream`, else 400; SigV4 verified), answered as Anthropic does, streams in
//!   `chunk` event-stream frames.
//! - `POST /v1/projects/{p}/locations/{r}/publishers/{anthropic|google}/models/{m}:{method}`:
//!   Vertex AI, Claude (`rawPredict`, `streamRawPredict`) or Gemini; a bearer token from
//!   `POST /token` (a Google token endpoint verifying RS256 JWT assertions) is required.
//! - `GET /v1/models` and `GET /health` answer `health_status` with a model
//!   list; they are not affected by the other failure settings and do not
//!   replace the last recorded request.
//! - `/__mock/behavior` (POST a JSON [`Behavior`], GET the current one),
//!   `GET /__mock/stats` and `POST /__mock/reset` control the mock; they are
//!   not counted.

mod anthropic;
mod api;
mod bedrock;
mod behavior;
mod body;
mod control;
mod gemini;
mod handler;
mod openai;
mod responses;
mod server;
mod sigv4;
mod state;
#[cfg(test)]
mod tests;
mod tools;
mod vertex;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use bedrock::{bedrock_chunk_frame, bedrock_event_frame, bedrock_exception_frame};
pub use behavior::Behavior;
pub use sigv4::{verify_sigv4, TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY};
pub use state::RecordedRequest;
pub use vertex::CLOUD_PLATFORM_SCOPE;

use state::{Counters, State};

/// How often the `wait_for_*` methods look at the counters.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A running mock provider; dropping it stops the server and ends its
/// connections.
#[derive(Debug)]
pub struct MockLlm {
    state: Arc<State>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MockLlm {
    /// Starts a mock on 127.0.0.1 with a port the OS picks.
    pub async fn start(name: &str, behavior: Behavior) -> std::io::Result<MockLlm> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        MockLlm::start_on(name, addr, behavior).await
    }

    /// Starts a mock listening on `addr`.
    pub async fn start_on(name: &str, addr: SocketAddr, behavior: Behavior) -> std::io::Result<MockLlm> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(name, behavior));
        let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&state)));
        Ok(MockLlm { state, addr, task })
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the mock listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The name used in answers (`Hello from NAME`) and error messages.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Replaces the behaviour; requests whose head already arrived keep the
    /// one they started with.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.state.set_behavior(behavior);
    }

    /// The current behaviour.
    pub fn behavior(&self) -> Behavior {
        self.state.behavior()
    }

    fn counters(&self) -> Counters {
        self.state.counters()
    }

    /// Requests received on any path outside `/__mock/`, counted when the
    /// head arrives (also for `reset` and `hang`).
    pub fn requests(&self) -> u64 {
        self.counters().requests
    }

    /// Of [`MockLlm::requests`], those to `GET /v1/models` or `GET /health`.
    pub fn health_requests(&self) -> u64 {
        self.counters().health_requests
    }

    /// Access tokens issued by `POST /token` (the Google token endpoint).
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens_issued()
    }

    /// Requests whose client went away before the response was over.
    pub fn cancelled(&self) -> u64 {
        self.counters().cancelled
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.counters().connections
    }

    /// The last request outside `/__mock/` and the health endpoints. It is
    /// recorded when its head arrives and again, with the body, once the body
    /// has been read.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.last_request()
    }

    /// Zeroes the counters and forgets the last request.
    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    /// Waits until `requests() >= n`; false if `timeout` passed first.
    pub async fn wait_for_requests(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |c| c.requests >= n).await
    }

    /// Waits until `cancelled() >= n`; false if `timeout` passed first.
    pub async fn wait_for_cancelled(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |c| c.cancelled >= n).await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Counters) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.counters()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}
