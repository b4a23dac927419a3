//! Routing and the provider side: health endpoints and chat requests with
//! failure injection, answered in the API the request path names ([`Api`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::api::{stream_response, Api, StreamParts};
use crate::body::{CancelGuard, Ending, MockBody};
use crate::openai::{self, ChatParams};
use crate::server::ConnControl;
use crate::state::State;
use crate::{control, Behavior, RecordedRequest};

/// Entry point of every request on every connection.
pub(crate) async fn handle(
    state: Arc<State>,
    conn: ConnControl,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    if control::is_control(request.uri().path()) {
        return Ok(control::handle(&state, request).await);
    }
    Ok(provider(state, conn, request).await)
}

/// A response with `status`, `content-type` and `body`.
pub(crate) fn response(status: u16, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response sent in one piece.
pub(crate) fn json_response(status: u16, body: Bytes) -> Response<MockBody> {
    response(status, "application/json", MockBody::full(body))
}

fn is_health(method: &Method, path: &str) -> bool {
    method == Method::GET && (path == "/v1/models" || path == "/health")
}

async fn provider(state: Arc<State>, conn: ConnControl, request: Request<Incoming>) -> Response<MockBody> {
    let behavior = state.behavior();
    let (head, body) = request.into_parts();
    let health = is_health(&head.method, head.uri.path());
    if head.method == Method::POST && head.uri.path() == "/token" {
        // The Google token endpoint: not a model call, not counted as one.
        let Ok(collected) = body.collect().await else {
            return json_response(400, Bytes::from_static(b"{}"));
        };
        return crate::vertex::token(&state, &behavior, &collected.to_bytes());
    }
    let mut response = if health {
        state.count_request(true);
        json_response(behavior.health_status, openai::models_list())
    } else {
        let recorded = RecordedRequest::from_head(&head);
        state.record(recorded.clone());
        state.count_request(false);
        chat(&state, conn, &behavior, recorded, body).await
    };
    add_headers(&mut response, &behavior.headers);
    response
}

/// Everything that is not a health check or a control request.
async fn chat(
    state: &Arc<State>,
    conn: ConnControl,
    behavior: &Behavior,
    mut recorded: RecordedRequest,
    body: Incoming,
) -> Response<MockBody> {
    if behavior.reset {
        conn.reset();
        return std::future::pending().await;
    }
    let api = Api::of(&recorded.path, recorded.query.as_deref());
    // Dropped unfinished (client gone, hyper drops this future or the body)
    // it counts a cancellation.
    let guard = CancelGuard::new(Arc::clone(state));
    let Ok(collected) = body.collect().await else {
        let message = format!("mock {}: could not read the request body", state.name);
        return api.error(400, &message);
    };
    recorded.body = collected.to_bytes();
    recorded.verify_sigv4();
    state.record(recorded.clone());
    if api.is_vertex() && !crate::vertex::authorized(state, behavior, recorded.header("authorization")) {
        let message = format!("mock {}: Request had invalid authentication credentials", state.name);
        return json_response(401, crate::gemini::error_body(&message, 401));
    }
    if behavior.hang {
        return std::future::pending().await;
    }
    if behavior.first_byte_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behavior.first_byte_delay_ms)).await;
    }
    answer(&state.name, &api, behavior, conn, &recorded).map(|body| body.guarded(guard))
}

/// The answer to a chat request once any delay is over, in the request's API.
fn answer(
    name: &str,
    api: &Api,
    behavior: &Behavior,
    conn: ConnControl,
    request: &RecordedRequest,
) -> Response<MockBody> {
    if let Some(refusal) = api.refuse(name, request) {
        return refusal;
    }
    if behavior.draw_failure() {
        let mut response = match &behavior.error_body {
            Some(body) => json_response(behavior.status, Bytes::from(body.clone())),
            None => api.error(behavior.status, &openai::injected_message(name, behavior.status)),
        };
        if let Some(value) = behavior.retry_after.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        return response;
    }
    if request.method != Method::POST.as_str() {
        let message = format!("mock {name}: no route for {} {}", request.method, request.path);
        return api.error(404, &message);
    }
    match api.params(&request.body) {
        Err(why) => api.error(400, &format!("mock {name}: invalid JSON body: {why}")),
        Ok(params) if params.stream => stream(name, api, behavior, conn, &params),
        Ok(params) => json_response(200, api.completion(name, &params)),
    }
}

/// A streamed answer in the request's API, complete or broken as `behavior` says.
fn stream(name: &str, api: &Api, behavior: &Behavior, conn: ConnControl, params: &ChatParams) -> Response<MockBody> {
    let (events, ending) = if behavior.stream_error_first {
        let status = if behavior.status == 200 { 500 } else { behavior.status };
        let message = format!("mock {name}: injected stream error");
        (vec![api.stream_error(&message, status)], Ending::Complete)
    } else if behavior.stream_close_early {
        (Vec::new(), Ending::Close)
    } else {
        let StreamParts { mut head, mut content, tail } = api.stream_parts(name, params, behavior.content_chunks());
        match behavior.stream_fail_after {
            Some(sent) => {
                content.truncate(sent);
                head.extend(content);
                (head, Ending::Reset(conn))
            }
            None => {
                head.extend(content);
                head.extend(tail);
                (head, Ending::Complete)
            }
        }
    };
    let mut events = events;
    if behavior.stream_comment_first {
        events.insert(0, Bytes::from_static(b": waiting\n\n"));
    }
    let delay = Duration::from_millis(behavior.chunk_delay_ms);
    stream_response(api.stream_content_type(), MockBody::stream(events, delay, ending))
}

/// Adds the behaviour's extra headers; invalid names or values are skipped.
fn add_headers(response: &mut Response<MockBody>, headers: &[(String, String)]) {
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
}
