//! Google Vertex AI (`/v1/projects/{p}/locations/{r}/publishers/{anthropic|google}/models/{m}:{method}`):
//! Claude (`rawPredict` / `streamRawPredict`, the Anthropic body with
//! `anthropic_version: vertex-2023-10-16` and no `model`) and Gemini (`generateContent` /
//! `streamGenerateContent`). Every call needs `Authorization: Bearer` with a token this
//! mock issued from `POST /token` (or one the behaviour accepts).
//!
//! `POST /token` is a Google OAuth token endpoint for service accounts: it takes the
//! JWT-bearer grant, verifies the RS256 assertion against the behaviour's
//! `token_public_key` (PEM), its `scope` and its `exp`, and issues an access token.

use bytes::Bytes;
use http::Response;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::MockBody;
use crate::handler::json_response;
use crate::state::State;
use crate::Behavior;

/// `anthropic_version` a Claude body on Vertex must carry.
pub(crate) const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The scope the assertion must ask for.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A Vertex model call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) anthropic: bool,
    pub(crate) model: String,
    pub(crate) stream: bool,
}

/// The call a path names, if it is a Vertex model path.
pub(crate) fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v1/projects/")?;
    let (_, rest) = rest.split_once("/locations/")?;
    let (_, rest) = rest.split_once("/publishers/")?;
    let (publisher, rest) = rest.split_once("/models/")?;
    let (model, method) = rest.rsplit_once(':')?;
    let model = percent_decode_str(model).decode_utf8().ok()?.into_owned();
    let (anthropic, stream) = match (publisher, method) {
        ("anthropic", "rawPredict") => (true, false),
        ("anthropic", "streamRawPredict") => (true, true),
        ("google", "generateContent") => (false, false),
        ("google", "streamGenerateContent") => (false, true),
        _ => return None,
    };
    (!model.is_empty()).then_some(Route { anthropic, model, stream })
}

/// Why a Claude body on Vertex is refused.
pub(crate) fn claude_body_problem(body: &[u8]) -> Option<String> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Some("the request body is not JSON".to_owned());
    };
    if value.get("model").is_some() {
        return Some("model: the model belongs in the URL on Vertex AI".to_owned());
    }
    match value.get("anthropic_version").and_then(Value::as_str) {
        Some(ANTHROPIC_VERSION) => None,
        other => Some(format!("anthropic_version: expected {ANTHROPIC_VERSION:?}, got {other:?}")),
    }
}

/// Whether `authorization` carries a token this mock issued or accepts.
pub(crate) fn authorized(state: &State, behavior: &Behavior, authorization: Option<&str>) -> bool {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    behavior.accept_tokens.iter().any(|t| t == token) || state.issued_token(token)
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
}

fn token_error(status: u16, error: &str, description: &str) -> Response<MockBody> {
    json_response(status, Bytes::from(json!({"error": error, "error_description": description}).to_string()))
}

/// `POST /token`: a JWT-bearer grant in, an access token out.
pub(crate) fn token(state: &State, behavior: &Behavior, body: &[u8]) -> Response<MockBody> {
    let form: Vec<(String, String)> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (decode(k), decode(v))
        })
        .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return token_error(400, "unsupported_grant_type", "expected the JWT bearer grant");
    }
    let Some(assertion) = field("assertion") else {
        return token_error(400, "invalid_request", "no assertion");
    };
    let Some(pem) = behavior.token_public_key.as_deref() else {
        return token_error(500, "server_error", "mock: no token_public_key configured");
    };
    let key = match jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()) {
        Ok(k) => k,
        Err(e) => return token_error(500, "server_error", &format!("mock: bad token_public_key: {e}")),
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return token_error(400, "invalid_grant", &format!("invalid JWT signature or claims: {e}")),
    };
    if claims.scope != CLOUD_PLATFORM_SCOPE || claims.iss.is_empty() || !claims.aud.ends_with("/token") {
        return token_error(400, "invalid_scope", "scope, iss or aud is wrong");
    }
    let access_token = state.issue_token();
    json_response(
        200,
        Bytes::from(json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}).to_string()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes() {
        let r =
            route("/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-x%4020250101:streamRawPredict")
                .unwrap();
        assert_eq!(r, Route { anthropic: true, model: "claude-x@20250101".into(), stream: true });
        let r = route("/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:generateContent");
        assert_eq!(r.unwrap(), Route { anthropic: false, model: "gemini-2.5-flash".into(), stream: false });
        assert_eq!(route("/v1beta/models/g:generateContent"), None);
        assert_eq!(route("/v1/projects/p/locations/r/publishers/anthropic/models/c:predict"), None);
    }

    #[test]
    fn claude_bodies() {
        assert_eq!(claude_body_problem(br#"{"anthropic_version":"vertex-2023-10-16","messages":[]}"#), None);
        assert!(claude_body_problem(br#"{"anthropic_version":"vertex-2023-10-16","model":"c"}"#).is_some());
        assert!(claude_body_problem(br#"{"messages":[]}"#).is_some());
    }
}
