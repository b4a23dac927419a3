//! Checking AWS SigV4 signatures the way AWS does: recompute the signature from the request
//! as received (with the `aws-sigv4` crate, independent of the gateway's signing code path)
//! using the known test credentials, and compare.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The access key id the mock accepts.
pub const TEST_AWS_ACCESS_KEY_ID: &str = "AKIAMOCKLLMTEST00001";
/// The secret key the mock verifies signatures with.
pub const TEST_AWS_SECRET_ACCESS_KEY: &str = "mock+llm/test/secret/key/0000000000000000";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Whether the request carries a valid SigV4 `authorization` header for the test
/// credentials: `None` when it carries no SigV4 header at all.
///
/// `path_and_query` is as received (still percent-encoded); `headers` are the received
/// headers (`host` included), names in any case.
pub fn verify_sigv4(method: &str, path_and_query: &str, headers: &[(String, String)], body: &[u8]) -> Option<bool> {
    let get = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let authorization = get("authorization")?;
    let fields = authorization.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    Some(check(method, path_and_query, fields, &get, body).unwrap_or(false))
}

/// The parts of `Credential=…, SignedHeaders=…, Signature=…`.
struct Claimed<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse(fields: &str) -> Option<Claimed<'_>> {
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for field in fields.split(',') {
        let (key, value) = field.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let claimed = Claimed {
        access_key: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next() == Some("aws4_request") && scope.next().is_none()).then_some(claimed)
}

fn check<'a>(
    method: &str,
    path_and_query: &str,
    fields: &str,
    get: &dyn Fn(&str) -> Option<&'a str>,
    body: &[u8],
) -> Option<bool> {
    let claimed = parse(fields)?;
    if claimed.access_key != TEST_AWS_ACCESS_KEY_ID {
        return Some(false);
    }
    let amz_date = get("x-amz-date")?;
    if !amz_date.starts_with(claimed.date) {
        return Some(false);
    }
    let time = parse_amz_date(amz_date)?;
    let host = get("host")?;
    if !claimed.signed_headers.contains(&"host") || !claimed.signed_headers.contains(&"x-amz-date") {
        return Some(false);
    }
    // The signer adds x-amz-date and the session token itself; every other signed header
    // is taken as received.
    let mut signed = Vec::new();
    for name in &claimed.signed_headers {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        signed.push((*name, get(name)?));
    }
    let token = get("x-amz-security-token");
    if token.is_some() != claimed.signed_headers.contains(&"x-amz-security-token") {
        return Some(false);
    }
    let identity: Identity = aws_credential_types::Credentials::new(
        TEST_AWS_ACCESS_KEY_ID,
        TEST_AWS_SECRET_ACCESS_KEY,
        token.map(str::to_owned),
        None,
        "mock-llm",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(claimed.region)
        .name(claimed.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let uri = format!("http://{host}{path_and_query}");
    let request = SignableRequest::new(method, uri, signed.into_iter(), SignableBody::Bytes(body)).ok()?;
    let (_, signature) = sign(request, &params).ok()?.into_parts();
    Some(signature == claimed.signature)
}

/// `20240102T030405Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| s.get(range)?.parse::<u64>().ok();
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (years from 1970 on).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(UNIX_EPOCH + Duration::from_secs(1_440_938_160)));
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(UNIX_EPOCH + Duration::from_secs(1_709_251_199)));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_sigv4_header_is_none() {
        assert_eq!(verify_sigv4("POST", "/", &[], b""), None);
        let h = headers(&[("authorization", "Bearer x")]);
        assert_eq!(verify_sigv4("POST", "/", &h, b""), None);
    }

    #[test]
    fn garbage_sigv4_headers_are_invalid() {
        for auth in [
            "AWS4-HMAC-SHA256 nonsense",
            "AWS4-HMAC-SHA256 Credential=AKIAMOCKLLMTEST00001/20240102/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            "AWS4-HMAC-SHA256 Credential=OTHER/20240102/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        ] {
            let h = headers(&[("authorization", auth), ("host", "h"), ("x-amz-date", "20240102T030405Z")]);
            assert_eq!(verify_sigv4("POST", "/", &h, b"{}"), Some(false), "{auth}");
        }
    }

    #[test]
    fn accepts_what_aws_sigv4_signs() {
        let identity: Identity =
            aws_credential_types::Credentials::new(TEST_AWS_ACCESS_KEY_ID, TEST_AWS_SECRET_ACCESS_KEY, None, None, "t")
                .into();
        let time = parse_amz_date("20240102T030405Z").unwrap();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name("bedrock")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let body = br#"{"messages":[]}"#;
        let request = SignableRequest::new(
            "POST",
            "http://127.0.0.1:9000/model/m%3A0/converse",
            [("content-type", "application/json"), ("host", "127.0.0.1:9000")].into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut received = headers(&[("content-type", "application/json"), ("host", "127.0.0.1:9000")]);
        for (name, value) in instructions.headers() {
            received.push((name.to_owned(), value.to_owned()));
        }
        assert_eq!(verify_sigv4("POST", "/model/m%3A0/converse", &received, body), Some(true));
        assert_eq!(verify_sigv4("POST", "/model/m%3A1/converse", &received, body), Some(false));
        assert_eq!(verify_sigv4("POST", "/model/m%3A0/converse", &received, b"{}"), Some(false));
    }
}
