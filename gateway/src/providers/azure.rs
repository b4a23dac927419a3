//! Azure OpenAI: the OpenAI wire format with the deployment in the path, `api-version` in
//! the query and the key in `api-key` (see [`super::prepare`]).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as they are in a path segment or query value: RFC 3986 unreserved.
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `/openai/deployments/{deployment}/chat/completions?api-version={api_version}`.
pub fn path(deployment: &str, api_version: &str) -> String {
    operation_path(deployment, "chat/completions", api_version)
}

/// `/openai/deployments/{deployment}/{operation}?api-version={api_version}`.
pub fn operation_path(deployment: &str, operation: &str, api_version: &str) -> String {
    format!(
        "/openai/deployments/{}/{operation}?api-version={}",
        utf8_percent_encode(deployment, UNRESERVED),
        utf8_percent_encode(api_version, UNRESERVED)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_encodes_its_parts() {
        assert_eq!(
            super::path("gpt-4o prod", "2024-10-21"),
            "/openai/deployments/gpt-4o%20prod/chat/completions?api-version=2024-10-21"
        );
    }
}
