//! Building the heads that go upstream and back to the client.

use crate::config::{Auth, ProviderConfig, Route};
use crate::routing::apply_header_modifier;
use crate::runtime::Upstream;
use crate::upstream::{RequestHead, ResponseHead};
use http::{header, HeaderMap, HeaderName, HeaderValue};
use pingora_http::RequestHeader;

pub static X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub static X_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub static X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_DROPPED: HeaderName = HeaderName::from_static("x-switchyard-dropped");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade" | "transfer-encoding"
    )
}

/// A field the message's `Connection` header names: meant for this hop only (RFC 9110
/// §7.6.1), never forwarded either way.
fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    crate::http1::has_token(headers, header::CONNECTION, name.as_str().as_bytes())
}

/// Headers that carry a client's credentials for one provider API or another.
fn is_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || matches!(name.as_str(), "x-api-key" | "api-key" | "x-goog-api-key")
}

/// Client headers that may go upstream: no hop-by-hop, host, length, expectation or
/// encoding negotiation (answers are read, so they come uncompressed), and no client
/// credentials unless the provider passes them through. Then the route's modifiers.
fn forwarded_headers(client: &RequestHeader, route: &Route, provider: &ProviderConfig) -> HeaderMap {
    let passthrough = provider.auth == Auth::Passthrough;
    let connection = client.headers.contains_key(header::CONNECTION);
    let mut headers = HeaderMap::with_capacity(client.headers.len() + 6);
    for (name, value) in client.headers.iter() {
        let skip = is_hop_by_hop(name)
            || (connection && named_by_connection(&client.headers, name))
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::EXPECT
            || name == header::ACCEPT_ENCODING
            || (!passthrough && is_credential(name));
        if !skip {
            headers.append(name.clone(), value.clone());
        }
    }
    apply_header_modifier(&route.request_headers, &mut headers);
    headers
}

/// The request for a provider that translation prepared (another API, or a native one with
/// its own path and headers).
pub fn prepared_request(
    client: &RequestHeader,
    route: &Route,
    provider: &ProviderConfig,
    upstream: &Upstream,
    request_id: &HeaderValue,
    prepared: &crate::providers::UpstreamRequest,
) -> RequestHead {
    let mut headers = forwarded_headers(client, route, provider);
    for name in &prepared.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &prepared.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(header::HOST, upstream.host_header.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(prepared.body.len()));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    RequestHead::new(prepared.method.clone(), &prepared.path_and_query, headers)
}

/// The request a provider gets: client headers minus hop-by-hop, host, length and
/// credentials; plus the route's modifiers, the request id and the provider's auth.
pub fn upstream_request(
    client: &RequestHeader,
    route: &Route,
    provider: &ProviderConfig,
    upstream: &Upstream,
    request_id: &HeaderValue,
    body_len: usize,
) -> RequestHead {
    let rewritten = crate::routing::rewrite_path(route, client.uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let mapped;
    let path = match &provider.path {
        Some(p) => p.as_str(),
        None => {
            // The provider's own path for it (Azure's deployment paths), else as it is.
            mapped = crate::providers::paths::passthrough_path(&provider.kind, &rewritten);
            mapped.as_deref().unwrap_or(&rewritten)
        }
    };
    let mut headers = forwarded_headers(client, route, provider);
    headers.insert(header::HOST, upstream.host_header.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if let Some((name, value)) = &upstream.auth_header {
        headers.insert(name.clone(), value.clone());
    }
    RequestHead::new(client.method.clone(), path, headers)
}

/// Headers of an answer whose body the gateway rewrote (translated): framing and encoding
/// from the provider no longer apply.
pub fn translated_headers(headers: &mut HeaderMap, content_type: &'static str) {
    for name in [header::CONTENT_LENGTH, header::CONTENT_ENCODING, header::TRANSFER_ENCODING, header::CONTENT_TYPE] {
        headers.remove(name);
    }
    // The provider's own protocol headers describe a body the client no longer gets.
    let amzn: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("x-amzn-")).cloned().collect();
    for name in amzn {
        headers.remove(name);
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
}

/// The client-facing copy of a provider's response headers.
pub fn client_headers(upstream: &ResponseHead) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.headers.len() + 4);
    let connection = upstream.headers.contains_key(header::CONNECTION);
    for (name, value) in upstream.headers.iter() {
        if !(is_hop_by_hop(name) || (connection && named_by_connection(&upstream.headers, name))) {
            out.append(name.clone(), value.clone());
        }
    }
    // A transfer coding overrides any length (RFC 9112 §6.3), and the body is relayed
    // de-chunked: the provider's length must not reach the client.
    if upstream.headers.contains_key(header::TRANSFER_ENCODING) {
        out.remove(header::CONTENT_LENGTH);
    }
    if !out.contains_key(header::CONTENT_LENGTH) {
        out.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    out
}

/// Adds the `x-switchyard-*` and `x-request-id` headers.
pub fn stamp(
    headers: &mut HeaderMap,
    provider: Option<&str>,
    model: Option<&str>,
    attempts: usize,
    request_id: &HeaderValue,
) {
    if let Some(v) = provider.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(X_PROVIDER.clone(), v);
    }
    if let Some(v) = model.and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.insert(X_MODEL.clone(), v);
    }
    headers.insert(X_ATTEMPTS.clone(), HeaderValue::from(attempts));
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// The client's `x-request-id` when it is a sane token, else a fresh random one.
pub fn request_id(client: &RequestHeader) -> HeaderValue {
    if let Some(v) = client.headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let id = format!("{:032x}", fastrand::u128(..));
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_headers_drop_hop_by_hop_and_connection_named_fields() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Upstream-Hop"));
        headers.insert("x-upstream-hop", HeaderValue::from_static("secret"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        let out = client_headers(&ResponseHead { status: http::StatusCode::OK, headers });
        assert!(out.get("x-upstream-hop").is_none());
        assert!(out.get(header::CONNECTION).is_none() && out.get("keep-alive").is_none());
        assert_eq!(out.get("x-kept").unwrap(), "1");
        assert_eq!(out.get(header::CONTENT_LENGTH).unwrap(), "2");
    }
}
