//! Requests the gateway does not translate (embeddings, the Responses API, Anthropic's
//! token counting, ...) go only to providers whose API serves their path, on the path that
//! API gives them.

use crate::config::ProviderKind;
use std::borrow::Cow;

/// Whether a path belongs to Anthropic's API (`/v1/messages/...`, `/v1/complete`) rather
/// than OpenAI's; its errors then take Anthropic's shape.
pub fn is_anthropic(path: &str) -> bool {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    path == "/v1/messages" || path.starts_with("/v1/messages/") || path == "/v1/complete"
}

/// The path and query a provider of `kind` serves an untranslated request for
/// `path_and_query` on, or `None` when its API has no such path.
///
/// OpenAI-kind providers (and OpenAI-compatible servers) take every OpenAI path as it is;
/// Azure OpenAI serves embeddings on its deployment and the Responses API on its v1
/// surface; Anthropic serves its own paths. Bedrock, Gemini and Vertex serve none.
pub fn passthrough_path<'a>(kind: &ProviderKind, path_and_query: &'a str) -> Option<Cow<'a, str>> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    match kind {
        ProviderKind::OpenAi if !is_anthropic(path) => Some(Cow::Borrowed(path_and_query)),
        ProviderKind::Anthropic { .. } if is_anthropic(path) => Some(Cow::Borrowed(path_and_query)),
        ProviderKind::Azure { deployment, api_version } => {
            if path == "/v1/embeddings" {
                Some(Cow::Owned(super::azure::operation_path(deployment, "embeddings", api_version)))
            } else if path == "/v1/responses" || path.starts_with("/v1/responses/") {
                let rest = &path["/v1/responses".len()..];
                Some(Cow::Owned(match query {
                    Some(q) => format!("/openai/v1/responses{rest}?{q}"),
                    None => format!("/openai/v1/responses{rest}"),
                }))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn azure() -> ProviderKind {
        ProviderKind::Azure { deployment: "emb".into(), api_version: "2024-10-21".into() }
    }

    #[test]
    fn who_serves_what() {
        let openai = ProviderKind::OpenAi;
        let anthropic = ProviderKind::Anthropic { version: "2023-06-01".into() };
        let bedrock = ProviderKind::Bedrock { region: "us-east-1".into(), anthropic: true };
        assert_eq!(passthrough_path(&openai, "/v1/responses?x=1").as_deref(), Some("/v1/responses?x=1"));
        assert_eq!(passthrough_path(&openai, "/v1/messages/count_tokens"), None);
        assert_eq!(
            passthrough_path(&anthropic, "/v1/messages/count_tokens").as_deref(),
            Some("/v1/messages/count_tokens")
        );
        assert_eq!(passthrough_path(&anthropic, "/v1/embeddings"), None);
        assert_eq!(passthrough_path(&bedrock, "/v1/responses"), None);
        assert_eq!(
            passthrough_path(&azure(), "/v1/embeddings").as_deref(),
            Some("/openai/deployments/emb/embeddings?api-version=2024-10-21")
        );
        assert_eq!(passthrough_path(&azure(), "/v1/responses").as_deref(), Some("/openai/v1/responses"));
        assert_eq!(passthrough_path(&azure(), "/v1/audio/speech"), None);
        assert!(is_anthropic("/v1/messages/count_tokens?beta=true") && !is_anthropic("/v1/messagesx"));
    }
}
