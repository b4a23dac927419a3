//! Google service-account credentials, found the way Google's own libraries find them:
//! `GOOGLE_APPLICATION_CREDENTIALS` names a JSON key file. An access token comes from
//! the key file's `token_uri`, in exchange for an RS256-signed JWT (OAuth 2.0 JWT bearer
//! grant, RFC 7523) with the `cloud-platform` scope; it is cached and refreshed before it
//! expires.

use crate::upstream::{Connector, Endpoint, RequestHead};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The scope Vertex AI needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The environment variable naming the key file.
pub const ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// A token is refreshed once less than this is left of its lifetime (or half of a
/// shorter lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest wait for the token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The fields of a service-account key file the gateway uses.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
}

/// Where the token endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenUri {
    uri: String,
    host: String,
    port: u16,
    tls: bool,
    path: String,
}

impl TokenUri {
    fn parse(uri: &str) -> Result<TokenUri, String> {
        let parsed: http::Uri = uri.parse().map_err(|e| format!("token_uri {uri:?}: {e}"))?;
        let tls = match parsed.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("token_uri {uri:?}: must be an http or https URL")),
        };
        let host = parsed.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("token_uri {uri:?}: no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = parsed.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(TokenUri { uri: uri.to_string(), host, port, tls, path })
    }

    fn host_header(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A cached access token.
struct Token {
    value: HeaderValue,
    refresh_at: Instant,
}

/// A service account: its signing key, token endpoint and the cached token.
pub struct ServiceAccount {
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: TokenUri,
    endpoint: Endpoint,
    /// The current token; the async lock also makes concurrent requests share one refresh.
    token: tokio::sync::Mutex<Option<Token>>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

impl PartialEq for ServiceAccount {
    fn eq(&self, other: &Self) -> bool {
        self.client_email == other.client_email && self.key_id == other.key_id && self.token_uri == other.token_uri
    }
}

impl Eq for ServiceAccount {}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl ServiceAccount {
    /// The key file `GOOGLE_APPLICATION_CREDENTIALS` names.
    pub fn from_environment() -> Result<ServiceAccount, String> {
        let path = std::env::var(ENV).map_err(|_| format!("{ENV} is not set (or give auth: {{apiKey: ...}})"))?;
        ServiceAccount::from_file(&path)
    }

    pub fn from_file(path: &str) -> Result<ServiceAccount, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        ServiceAccount::from_json(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// Reads a service-account key file's JSON.
    pub fn from_json(text: &str) -> Result<ServiceAccount, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| format!("not a service-account key file: {e}"))?;
        if file.kind != "service_account" {
            return Err(format!("type is {:?}, expected \"service_account\"", file.kind));
        }
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|e| format!("private_key is not an RSA private key in PEM: {e}"))?;
        let token_uri = TokenUri::parse(&file.token_uri)?;
        let endpoint = Endpoint::from_parts(&token_uri.host, token_uri.port, token_uri.tls);
        Ok(ServiceAccount {
            client_email: file.client_email,
            key_id: file.private_key_id,
            key,
            token_uri,
            endpoint,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The signed JWT assertion for a token request made at `now` (seconds since the epoch).
    pub fn assertion(&self, now: u64) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri.uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| format!("signing the token request: {e}"))
    }

    /// An `authorization` value with a valid access token: the cached one, or a new one
    /// from the token endpoint.
    pub async fn authorization(&self, connector: &Connector) -> Result<HeaderValue, String> {
        let mut current = self.token.lock().await;
        if let Some(t) = current.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let token = tokio::time::timeout(TOKEN_TIMEOUT, self.fetch(connector))
            .await
            .map_err(|_| format!("token endpoint {} did not answer within {TOKEN_TIMEOUT:?}", self.token_uri.uri))??;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    async fn fetch(&self, connector: &Connector) -> Result<Token, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let assertion = self.assertion(now)?;
        let body = format!(
            "grant_type={}&assertion={}",
            utf8_percent_encode("urn:ietf:params:oauth:grant-type:jwt-bearer", super::azure::UNRESERVED),
            utf8_percent_encode(&assertion, super::azure::UNRESERVED)
        );
        let uri = &self.token_uri;
        let fail = |e: String| format!("token endpoint {}: {e}", uri.uri);
        let peer = self
            .endpoint
            .peer(crate::health::Clock::now(&crate::health::SystemClock))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut session = connector.fresh(&peer).await.map_err(|e| fail(e.to_string()))?;
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(header::HOST, HeaderValue::from_str(&uri.host_header()).map_err(|e| fail(e.to_string()))?);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let head = RequestHead::new(http::Method::POST, &uri.path, headers);
        session.send(&head, &[Bytes::from(body)]).await.map_err(|e| fail(e.to_string()))?;
        session.read_response_header().await.map_err(|e| fail(e.to_string()))?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        let mut answer = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(|e| fail(e.to_string()))? {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(fail("answer too large".into()));
            }
            answer.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&answer);
            return Err(fail(format!("answered {status}: {}", text.chars().take(300).collect::<String>())));
        }
        let parsed: TokenAnswer =
            serde_json::from_slice(&answer).map_err(|e| fail(format!("answer without access_token: {e}")))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", parsed.access_token))
            .map_err(|_| fail("the access token cannot go in a header".into()))?;
        value.set_sensitive(true);
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(ASSERTION_LIFETIME));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(Token { value, refresh_at: Instant::now() + lifetime - margin })
    }
}

/// The `authorization` value a provider's auth has to fetch before an attempt: a Google
/// access token for a service account, `None` for every other kind of auth.
pub async fn fetch_authorization(
    auth: &crate::config::Auth,
    connector: &Connector,
) -> Result<Option<HeaderValue>, String> {
    match auth {
        crate::config::Auth::Google(sa) => sa.authorization(connector).await.map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_uris() {
        let u = TokenUri::parse("https://oauth2.googleapis.com/token").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls, u.path.as_str()), ("oauth2.googleapis.com", 443, true, "/token"));
        assert_eq!(u.host_header(), "oauth2.googleapis.com");
        let u = TokenUri::parse("http://127.0.0.1:8080/t?x=1").unwrap();
        assert_eq!((u.port, u.tls, u.path.as_str()), (8080, false, "/t?x=1"));
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        assert!(TokenUri::parse("ftp://x/y").unwrap_err().contains("http or https"));
    }

    #[test]
    fn bad_key_files_say_why() {
        let e = ServiceAccount::from_json("{}").unwrap_err();
        assert!(e.contains("not a service-account key file"), "{e}");
        let file = r#"{"type":"authorized_user","client_email":"a","private_key":"x","token_uri":"https://t/"}"#;
        assert!(ServiceAccount::from_json(file).unwrap_err().contains("authorized_user"));
        let file = r#"{"type":"service_account","client_email":"a","private_key":"x","token_uri":"https://t/"}"#;
        assert!(ServiceAccount::from_json(file).unwrap_err().contains("private_key"));
    }
}
