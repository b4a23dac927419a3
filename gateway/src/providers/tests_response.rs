//! Whole-answer translation: one snapshot per conversion (provider answer in, client answer
//! out), errors each way, and garbage that must fail cleanly.

use super::test_support::*;
use super::{needs_translation, translate_reply, translate_response, ClientApi, TranslateError};
use crate::config::ProviderKind;
use serde_json::{json, Value};

fn convert(client: ClientApi, kind: &ProviderKind, status: u16, body: &[u8]) -> Value {
    let out = translate_reply(client, kind, status, body, &meta()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn snapshot(name: &str, client: ClientApi, kind: ProviderKind, body: Value) {
    let out = convert(client, &kind, 200, body.to_string().as_bytes());
    insta::assert_yaml_snapshot!(name, json!({"input": body, "output": out}));
}

fn anthropic_tool_use_message() -> Value {
    json!({
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 120, "output_tokens": 30, "cache_read_input_tokens": 100}
    })
}

#[test]
fn anthropic_to_openai_text() {
    let body = json!({
        "id": "msg_00",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there."}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 3}
    });
    snapshot("anthropic_to_openai_text", ClientApi::OpenAiChat, anthropic(), body);
}

#[test]
fn anthropic_to_openai_tool_use() {
    snapshot("anthropic_to_openai_tool_use", ClientApi::OpenAiChat, anthropic(), anthropic_tool_use_message());
}

#[test]
fn anthropic_to_openai_stop_reasons() {
    let mut table = Vec::new();
    for (reason, seq) in [
        ("end_turn", None),
        ("max_tokens", None),
        ("stop_sequence", Some("END")),
        ("tool_use", None),
        ("refusal", None),
        ("pause_turn", None),
    ] {
        let body = json!({
            "id": "msg", "type": "message", "role": "assistant", "model": "c",
            "content": [], "stop_reason": reason, "stop_sequence": seq,
            "usage": {"input_tokens": 1, "output_tokens": 1}
        });
        let out = convert(ClientApi::OpenAiChat, &anthropic(), 200, body.to_string().as_bytes());
        table.push(json!({"stop_reason": reason, "finish_reason": out["choices"][0]["finish_reason"]}));
    }
    insta::assert_yaml_snapshot!("anthropic_to_openai_stop_reasons", table);
}

#[test]
fn bedrock_to_openai() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Rome"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 50, "outputTokens": 12, "totalTokens": 62},
        "metrics": {"latencyMs": 321}
    });
    snapshot("bedrock_to_openai", ClientApi::OpenAiChat, bedrock(), body);
}

#[test]
fn gemini_to_openai() {
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Sure."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 9, "thoughtsTokenCount": 20, "totalTokenCount": 69},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1"
    });
    snapshot("gemini_to_openai", ClientApi::OpenAiChat, gemini(), body);
}

#[test]
fn openai_to_anthropic_reply() {
    let body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_123,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Calling the tool.", "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lima\"}"}}
            ]},
            "finish_reason": "tool_calls"
        }],
        "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220, "prompt_tokens_details": {"cached_tokens": 150}}
    });
    snapshot("openai_to_anthropic_reply", ClientApi::AnthropicMessages, openai(), body);
}

#[test]
fn bedrock_to_anthropic_reply() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello from Bedrock"}]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 5, "outputTokens": 100, "totalTokens": 105}
    });
    snapshot("bedrock_to_anthropic_reply", ClientApi::AnthropicMessages, bedrock(), body);
}

#[test]
fn gemini_to_anthropic_reply() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hola"}]}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10, "cachedContentTokenCount": 4},
        "modelVersion": "gemini-2.5-pro"
    });
    snapshot("gemini_to_anthropic_reply", ClientApi::AnthropicMessages, gemini(), body);
}

/// Every provider's error shape, as each client sees it.
fn error_cases() -> Vec<(&'static str, ProviderKind, u16, String)> {
    vec![
        (
            "openai 429",
            openai(),
            429,
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}).to_string(),
        ),
        (
            "anthropic 529",
            anthropic(),
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string(),
        ),
        (
            "anthropic 400",
            anthropic(),
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}).to_string(),
        ),
        (
            "bedrock 403",
            bedrock(),
            403,
            json!({"message": "The security token included in the request is invalid."}).to_string(),
        ),
        (
            "bedrock 429",
            bedrock(),
            429,
            json!({"message": "Too many requests, please wait before trying again."}).to_string(),
        ),
        (
            "gemini 404",
            gemini(),
            404,
            json!({"error": {"code": 404, "message": "models/nope is not found", "status": "NOT_FOUND"}}).to_string(),
        ),
        (
            "azure 401",
            azure(),
            401,
            json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}).to_string(),
        ),
        (
            "html 502 from a load balancer",
            gemini(),
            502,
            "<html><body>Bad Gateway</body></html>".to_string(),
        ),
        ("empty 500", bedrock(), 500, String::new()),
    ]
}

fn error_snapshot(name: &str, client: ClientApi) {
    let table: Vec<Value> = error_cases()
        .into_iter()
        .filter(|(_, kind, _, _)| needs_translation(client, kind))
        .map(|(case, kind, status, body)| {
            json!({
                "case": case,
                "status": status,
                "provider_body": body,
                "client_body": convert(client, &kind, status, body.as_bytes()),
            })
        })
        .collect();
    insta::assert_yaml_snapshot!(name, table);
}

#[test]
fn errors_to_openai() {
    error_snapshot("errors_to_openai", ClientApi::OpenAiChat);
}

#[test]
fn errors_to_anthropic() {
    error_snapshot("errors_to_anthropic", ClientApi::AnthropicMessages);
}

#[test]
fn same_api_answers_pass_through() {
    let body = br#"{"anything": "goes"}"#;
    for (client, kind) in [
        (ClientApi::OpenAiChat, openai()),
        (ClientApi::OpenAiChat, azure()),
        (ClientApi::AnthropicMessages, anthropic()),
    ] {
        assert!(!needs_translation(client, &kind));
        assert_eq!(&translate_response(client, &kind, 200, body).unwrap()[..], body);
        assert_eq!(&translate_response(client, &kind, 500, b"oops").unwrap()[..], b"oops");
    }
    assert!(needs_translation(ClientApi::OpenAiChat, &anthropic()));
    assert!(needs_translation(ClientApi::AnthropicMessages, &azure()));
}

#[test]
fn public_entry_point_fills_id_created_and_model() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
    })
    .to_string();
    let out = super::translate_response_with_model(ClientApi::OpenAiChat, &bedrock(), "my-model", 200, body.as_bytes())
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "my-model");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let out = translate_response(ClientApi::AnthropicMessages, &bedrock(), 200, body.as_bytes()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
}

#[test]
fn unexpressible_answers_are_errors() {
    let thinking = json!({
        "id": "m", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}
    });
    let err = translate_reply(ClientApi::OpenAiChat, &anthropic(), 200, thinking.to_string().as_bytes(), &meta())
        .unwrap_err();
    assert_eq!(err, TranslateError::Unsupported { field: "content[0].type = thinking".into(), target: "openai" });
    let bad_args = json!({
        "id": "c", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{\"trunc"}}
        ]}, "finish_reason": "length"}]
    });
    let err = translate_reply(ClientApi::AnthropicMessages, &openai(), 200, bad_args.to_string().as_bytes(), &meta())
        .unwrap_err();
    assert!(matches!(err, TranslateError::Invalid(_)), "{err}");
}

#[test]
fn garbage_answers_fail_without_panicking() {
    let bodies: [&[u8]; 10] = [
        br#"{"content":[],"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":18446744073709551615,"output_tokens":18446744073709551615}}"#,
        br#"{"choices":[{"message":{}}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}}"#,
        b"",
        b"not json",
        b"[]",
        b"{}",
        br#"{"choices": []}"#,
        br#"{"content": "x"}"#,
        br#"{"output": {"message": {"content": [{"toolUse": {}}]}}}"#,
        br#"{"candidates": [{"content": {"parts": [{"functionCall": {}}]}}]}"#,
    ];
    for client in [ClientApi::OpenAiChat, ClientApi::AnthropicMessages] {
        for kind in [openai(), anthropic(), bedrock(), gemini()] {
            if !needs_translation(client, &kind) {
                continue;
            }
            for body in bodies {
                // Errors are fine; panics are not. Error statuses never fail.
                let _ = translate_reply(client, &kind, 200, body, &meta());
                translate_reply(client, &kind, 503, body, &meta()).unwrap();
            }
        }
    }
}
