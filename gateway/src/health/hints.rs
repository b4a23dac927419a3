//! How long a provider asks to be left alone: `Retry-After` (seconds or HTTP date),
//! `retry-after-ms`, and OpenAI's `x-ratelimit-reset-requests` / `-tokens` (`6m0s`, `1.5s`).

use http::HeaderMap;
use std::time::{Duration, SystemTime};

/// A hint header that was present but unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedHint {
    pub header: &'static str,
    pub value: String,
}

/// The longest wait any hint header asks for, or `None` when there is no usable hint.
/// Malformed values are skipped and reported in the second element.
pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> (Option<Duration>, Option<MalformedHint>) {
    let mut best: Option<Duration> = None;
    let mut malformed = None;
    type Parse = fn(&str, SystemTime) -> Option<Duration>;
    let parsers: [(&'static str, Parse); 4] = [
        ("retry-after", retry_after),
        ("retry-after-ms", |v, _| retry_after_ms(v)),
        ("x-ratelimit-reset-requests", |v, _| go_duration(v)),
        ("x-ratelimit-reset-tokens", |v, _| go_duration(v)),
    ];
    for (header, parse) in parsers {
        let Some(raw) = headers.get(header) else {
            continue;
        };
        match raw.to_str().ok().and_then(|v| parse(v.trim(), now)) {
            Some(d) => best = Some(best.map_or(d, |b| b.max(d))),
            None => {
                malformed.get_or_insert_with(|| MalformedHint {
                    header,
                    value: String::from_utf8_lossy(raw.as_bytes()).into_owned(),
                });
            }
        }
    }
    (best, malformed)
}

/// `Retry-After`: delay-seconds, or an HTTP date (a date in the past means "now").
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `retry-after-ms`: milliseconds, possibly fractional.
pub fn retry_after_ms(value: &str) -> Option<Duration> {
    let ms = value.parse::<f64>().ok()?;
    (0.0..1e12).contains(&ms).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// Go-style durations as OpenAI sends them: `6m0s`, `1.5s`, `20ms`, `1h2m3.5s`.
pub fn go_duration(value: &str) -> Option<Duration> {
    if value.is_empty() {
        return None;
    }
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut total = 0.0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = value.get(start..i)?.parse().ok()?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let scale = match value.get(unit_start..i)? {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
    }
    (total.is_finite() && total < 1e9).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(retry_after("60", now()), Some(Duration::from_secs(60)));
        assert_eq!(retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(retry_after("1.5", now()), Some(Duration::from_millis(1500)));
        let future = httpdate::fmt_http_date(now() + Duration::from_secs(120));
        assert_eq!(retry_after(&future, now()), Some(Duration::from_secs(120)));
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(120));
        assert_eq!(retry_after(&past, now()), Some(Duration::ZERO), "a date in the past means now");
        assert_eq!(retry_after("soon", now()), None);
        assert_eq!(retry_after("-5", now()), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration("5x"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn headers_take_the_longest_hint() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        h.insert("retry-after-ms", HeaderValue::from_static("3500"));
        h.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("1m0s"));
        assert_eq!(from_headers(&h, now()), (Some(Duration::from_secs(60)), None));
    }

    #[test]
    fn malformed_hint_is_reported_and_skipped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("tomorrow"));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        let (hint, bad) = from_headers(&h, now());
        assert_eq!(hint, Some(Duration::from_millis(250)));
        assert_eq!(bad.map(|b| b.header), Some("retry-after"));
    }
}
