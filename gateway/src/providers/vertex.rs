//! Google Vertex AI: Claude (`rawPredict` / `streamRawPredict`, the Anthropic body as is,
//! see [`super::claude`]) and Gemini (`generateContent` / `streamGenerateContent`, the
//! Gemini body). Authentication is a bearer access token ([`super::google_auth`], or a
//! token given as the provider's API key).

use super::azure::UNRESERVED;
use percent_encoding::utf8_percent_encode;

/// The API host of a region (`global` has no region prefix).
pub fn host(region: &str) -> String {
    if region == "global" {
        "aiplatform.googleapis.com".to_string()
    } else {
        format!("{region}-aiplatform.googleapis.com")
    }
}

/// Whether a Vertex model is Claude (Anthropic's publisher) rather than Gemini.
pub fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

/// `/v1/projects/{project}/locations/{region}/publishers/{anthropic|google}/models/{model}:{method}`.
pub fn path(project: &str, region: &str, anthropic: bool, model: &str, stream: bool) -> String {
    let (publisher, method) = match (anthropic, stream) {
        (true, false) => ("anthropic", "rawPredict"),
        (true, true) => ("anthropic", "streamRawPredict"),
        (false, false) => ("google", "generateContent"),
        (false, true) => ("google", "streamGenerateContent?alt=sse"),
    };
    let enc = |s: &str| utf8_percent_encode(s, UNRESERVED).to_string();
    format!(
        "/v1/projects/{}/locations/{}/publishers/{publisher}/models/{}:{method}",
        enc(project),
        enc(region),
        enc(model)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_hosts() {
        assert_eq!(host("us-east5"), "us-east5-aiplatform.googleapis.com");
        assert_eq!(host("global"), "aiplatform.googleapis.com");
        assert_eq!(
            path("p-1", "us-east5", true, "claude-sonnet-4-6@20250101", true),
            "/v1/projects/p-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6%4020250101:streamRawPredict"
        );
        assert_eq!(
            path("p", "global", false, "gemini-2.5-flash", false),
            "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert!(is_claude("claude-opus-4-1@20250805") && !is_claude("gemini-2.5-pro"));
    }
}
