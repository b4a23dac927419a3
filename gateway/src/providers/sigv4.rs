//! AWS Signature Version 4 for Bedrock, with the `aws-sigv4` crate, and the credentials it
//! signs with.

use super::TranslateError;
use aws_sigv4::http_request::{sign as sigv4_sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Static AWS credentials. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AwsCredentials {
    /// From `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else the
    /// shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`,
    /// profile `AWS_PROFILE` or `default`). The error names what is missing.
    pub fn load() -> Result<AwsCredentials, String> {
        AwsCredentials::load_from(
            |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()),
            |path| std::fs::read_to_string(path).ok(),
        )
    }

    /// [`AwsCredentials::load`] with the environment and the file system passed in.
    pub fn load_from(
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> Option<String>,
    ) -> Result<AwsCredentials, String> {
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                return Ok(AwsCredentials {
                    access_key_id: id.trim().to_string(),
                    secret_access_key: secret.trim().to_string(),
                    session_token: env("AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
                })
            }
            (Some(_), None) => return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".to_string()),
            (None, Some(_)) => return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".to_string()),
            (None, None) => {}
        }
        let file =
            match env("AWS_SHARED_CREDENTIALS_FILE") {
                Some(f) => PathBuf::from(f),
                None => match env("HOME") {
                    Some(home) => Path::new(&home).join(".aws").join("credentials"),
                    None => return Err(
                        "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and HOME is unknown"
                            .to_string(),
                    ),
                },
            };
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
        let text = read(&file).ok_or_else(|| {
            format!(
                "no AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and {} cannot be read",
                file.display()
            )
        })?;
        from_profile(&text, &profile).map_err(|missing| format!("{}: profile [{profile}] {missing}", file.display()))
    }
}

/// Reads `profile` from the text of a shared credentials file.
fn from_profile(text: &str, profile: &str) -> Result<AwsCredentials, String> {
    let mut in_profile = false;
    let mut found = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    if !found {
        return Err("is not in the file".to_string());
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            Ok(AwsCredentials { access_key_id, secret_access_key, session_token: token })
        }
        (None, _) => Err("has no aws_access_key_id".to_string()),
        (_, None) => Err("has no aws_secret_access_key".to_string()),
    }
}

/// Signs a request: returns the headers to add (`x-amz-date`, `authorization`,
/// `x-amz-security-token` with session credentials; secrets marked sensitive).
///
/// `uri` is the full URL as sent (`https://host[:port]/path?query`, already encoded);
/// `headers` are the headers to sign, `host` included; the body hash is always signed.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    creds: &AwsCredentials,
    region: &str,
    service: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, TranslateError> {
    let failed = |e: &dyn fmt::Display| TranslateError::invalid(format!("SigV4 signing failed: {e}"));
    let identity: Identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "switchyard",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let request = SignableRequest::new(method, uri, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sigv4_sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let (signed_headers, _params) = instructions.into_parts();
    let mut out = Vec::with_capacity(signed_headers.len());
    for h in signed_headers {
        let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|e| failed(&e))?;
        let mut value = HeaderValue::from_str(h.value()).map_err(|e| failed(&e))?;
        value.set_sensitive(h.sensitive() || name == http::header::AUTHORIZATION);
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// 2015-08-30T12:36:00Z, the time of AWS's published SigV4 test suite.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> &'a str {
        headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.to_str().unwrap()).unwrap()
    }

    #[test]
    fn matches_the_aws_get_vanilla_vector() {
        // AWS SigV4 test suite, "get-vanilla".
        let headers = sign(
            &creds(),
            "us-east-1",
            "service",
            "GET",
            "https://example.amazonaws.com/",
            &[("host", "example.amazonaws.com")],
            b"",
            suite_time(),
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-date"), "20150830T123600Z");
        assert_eq!(
            header(&headers, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        let auth = headers.iter().find(|(n, _)| n == "authorization").unwrap();
        assert!(auth.1.is_sensitive());
    }

    #[test]
    fn session_token_is_signed_and_sensitive() {
        let mut c = creds();
        c.session_token = Some("TOKEN".into());
        let headers = sign(
            &c,
            "us-west-2",
            "bedrock",
            "POST",
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/m%3A0/converse",
            &[("content-type", "application/json"), ("host", "bedrock-runtime.us-west-2.amazonaws.com")],
            b"{}",
            suite_time(),
        )
        .unwrap();
        assert_eq!(header(&headers, "x-amz-security-token"), "TOKEN");
        assert!(header(&headers, "authorization")
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
        assert!(headers.iter().all(|(n, v)| n == "x-amz-date" || v.is_sensitive()));
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = creds();
        c.session_token = Some("TOKEN".into());
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("wJalr") && !shown.contains("TOKEN"), "{shown}");
    }

    fn load(env: &[(&str, &str)], files: &[(&str, &str)]) -> Result<AwsCredentials, String> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let files: HashMap<String, String> = files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AwsCredentials::load_from(|k| env.get(k).cloned(), |p| files.get(p.to_str().unwrap()).cloned())
    }

    #[test]
    fn loads_from_the_environment_first() {
        let c = load(
            &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK"), ("AWS_SESSION_TOKEN", "T"), ("HOME", "/h")],
            &[("/h/.aws/credentials", "[default]\naws_access_key_id=X\naws_secret_access_key=Y\n")],
        )
        .unwrap();
        assert_eq!(
            c,
            AwsCredentials {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: Some("T".into())
            }
        );
        let e = load(&[("AWS_ACCESS_KEY_ID", "AK")], &[]).unwrap_err();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    }

    #[test]
    fn loads_a_profile_from_the_shared_file() {
        let file = "# comment\n[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[work]\naws_access_key_id=W\naws_secret_access_key=WS\naws_session_token=WT\n";
        let c = load(&[("HOME", "/h")], &[("/h/.aws/credentials", file)]).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.session_token), ("D", None));
        let c = load(&[("AWS_SHARED_CREDENTIALS_FILE", "/f"), ("AWS_PROFILE", "work")], &[("/f", file)]).unwrap();
        assert_eq!(c.session_token.as_deref(), Some("WT"));
        let e = load(&[("HOME", "/h"), ("AWS_PROFILE", "nope")], &[("/h/.aws/credentials", file)]).unwrap_err();
        assert!(e.contains("[nope]") && e.contains("not in the file"), "{e}");
        let e = load(&[("HOME", "/h")], &[("/h/.aws/credentials", "[default]\naws_access_key_id=A\n")]).unwrap_err();
        assert!(e.contains("aws_secret_access_key"), "{e}");
        let e = load(&[("HOME", "/h")], &[]).unwrap_err();
        assert!(e.contains("/h/.aws/credentials cannot be read"), "{e}");
    }
}
