//! The control endpoints under `/__mock/`: change the behaviour, read and
//! reset the statistics. They are never counted nor affected by the behaviour.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use crate::body::MockBody;
use crate::handler::json_response;
use crate::state::State;
use crate::{Behavior, RecordedRequest};

const PREFIX: &str = "/__mock/";

/// Whether `path` is a control endpoint.
pub(crate) fn is_control(path: &str) -> bool {
    path.starts_with(PREFIX)
}

pub(crate) async fn handle(state: &State, request: Request<Incoming>) -> Response<MockBody> {
    let (head, body) = request.into_parts();
    let endpoint = head.uri.path().strip_prefix(PREFIX).unwrap_or_default();
    match (&head.method, endpoint) {
        (&Method::POST, "behavior") => match body.collect().await {
            Ok(collected) => set_behavior(state, &collected.to_bytes()),
            Err(e) => fail(400, &format!("could not read the body: {e}")),
        },
        (&Method::GET, "behavior") => match serde_json::to_vec(&state.behavior()) {
            Ok(bytes) => json_response(200, Bytes::from(bytes)),
            Err(e) => fail(500, &e.to_string()),
        },
        (&Method::GET, "stats") => json_response(200, Bytes::from(stats(state).to_string())),
        (&Method::POST, "reset") => {
            state.reset_stats();
            ok()
        }
        _ => fail(404, &format!("no control endpoint {} {}", head.method, head.uri.path())),
    }
}

fn ok() -> Response<MockBody> {
    json_response(200, Bytes::from_static(br#"{"ok":true}"#))
}

fn fail(status: u16, message: &str) -> Response<MockBody> {
    json_response(status, Bytes::from(json!({"ok": false, "error": message}).to_string()))
}

fn set_behavior(state: &State, body: &[u8]) -> Response<MockBody> {
    match serde_json::from_slice::<Behavior>(body) {
        Ok(behavior) => {
            state.set_behavior(behavior);
            ok()
        }
        Err(e) => fail(400, &format!("invalid behavior: {e}")),
    }
}

fn stats(state: &State) -> Value {
    let counters = state.counters();
    json!({
        "name": state.name,
        "requests": counters.requests,
        "health_requests": counters.health_requests,
        "cancelled": counters.cancelled,
        "connections": counters.connections,
        "last_request": state.last_request().as_ref().map(recorded_json),
    })
}

/// A recorded request as JSON; repeated headers are joined with ", ".
fn recorded_json(request: &RecordedRequest) -> Value {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let joined = match headers.get(name).and_then(Value::as_str) {
            Some(previous) => format!("{previous}, {value}"),
            None => value.clone(),
        };
        headers.insert(name.clone(), Value::String(joined));
    }
    json!({
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": headers,
        "sigv4_valid": request.sigv4_valid,
        "body": String::from_utf8_lossy(&request.body),
    })
}
