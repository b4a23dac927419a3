//! The Responses API as a client's API: requests to other providers' APIs, whole answers
//! back, the native path to OpenAI and Azure, and the fields it refuses.

use super::test_support::*;
use super::{check_supported, translate_reply, ClientApi, TranslateError};
use crate::config::ProviderKind;
use serde_json::{json, Value};

/// Instructions, a multi-turn input with an image, a function call and its output, tools.
fn tool_round_trip() -> Value {
    json!({
        "model": "gpt-4.1",
        "instructions": "You can look up the weather.",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "Weather where this photo was taken?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 24C"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Current weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": "auto",
        "max_output_tokens": 300,
        "temperature": 0.5,
        "stream": true,
    })
}

fn request_snapshot(name: &str, body: Value, kind: ProviderKind, model: &str) {
    let out = render_request(&prepare_for(ClientApi::OpenAiResponses, &body, &provider(kind, Some(model))));
    insta::assert_yaml_snapshot!(name, json!({"input": body, "output": out}));
}

#[test]
fn responses_to_anthropic_bedrock_gemini() {
    request_snapshot("responses_to_anthropic", tool_round_trip(), anthropic(), "claude-sonnet-4-6");
    request_snapshot("responses_to_bedrock", tool_round_trip(), bedrock(), "meta.llama3-70b-instruct-v1:0");
    let plain = json!({"model": "m", "input": "Say hello."});
    request_snapshot("responses_plain_to_gemini", plain, gemini(), "gemini-2.5-flash");
}

#[test]
fn responses_go_natively_to_openai_and_azure() {
    let body = json!({"model": "m", "input": "hi", "reasoning": {"effort": "high"}, "previous_response_id": "resp_1"});
    let req = prepare_for(ClientApi::OpenAiResponses, &body, &provider(openai(), Some("gpt-4.1")));
    assert_eq!(req.path_and_query, "/v1/responses");
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["model"], "gpt-4.1");
    assert_eq!(sent["reasoning"], body["reasoning"], "everything else as it is");
    let req = prepare_for(ClientApi::OpenAiResponses, &body, &provider(azure(), Some("gpt-4o-prod")));
    assert_eq!(req.path_and_query, "/openai/v1/responses");
    check_supported(ClientApi::OpenAiResponses, &body, &openai(), Default::default()).unwrap();
}

#[test]
fn what_cannot_be_translated_is_refused_by_name() {
    let cases = [
        (json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}), "previous_response_id"),
        (json!({"model": "m", "input": "hi", "reasoning": {"effort": "high"}}), "reasoning"),
        (json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}), "tools[0].type = web_search"),
        (json!({"model": "m", "input": [{"type": "reasoning", "summary": []}]}), "input[0].type = reasoning"),
        (json!({"model": "m", "input": "hi", "store": true}), "store"),
    ];
    for (body, field) in cases {
        let e = check_supported(ClientApi::OpenAiResponses, &body, &anthropic(), Default::default()).unwrap_err();
        assert_eq!(e, TranslateError::Unsupported { field: field.into(), target: "anthropic" }, "{body}");
    }
    let e = check_supported(ClientApi::OpenAiResponses, &json!({"model": "m"}), &anthropic(), Default::default());
    assert_eq!(e, Err(TranslateError::invalid("input is required")));
}

#[test]
fn whole_answers_become_response_objects() {
    let text = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 3}});
    let tool = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 9}});
    let cut = json!({"id": "msg_3", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": "Once upon"}], "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "output_tokens": 2}});
    let convert = |body: &Value| -> Value {
        let out = translate_reply(ClientApi::OpenAiResponses, &anthropic(), 200, body.to_string().as_bytes(), &meta());
        serde_json::from_slice(&out.unwrap()).unwrap()
    };
    let error = translate_reply(
        ClientApi::OpenAiResponses,
        &anthropic(),
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        &meta(),
    )
    .unwrap();
    insta::assert_yaml_snapshot!(
        "anthropic_to_responses_replies",
        json!({
            "text": convert(&text),
            "tool_call": convert(&tool),
            "max_tokens": convert(&cut),
            "error": serde_json::from_slice::<Value>(&error).unwrap(),
        })
    );
}

#[test]
fn a_broken_stream_ends_with_the_clients_error_event() {
    let text = super::mid_stream_error(Some(ClientApi::OpenAiResponses), "reset ");
    let events = render_sse(&text);
    assert_eq!(events[0]["event"], "error");
    assert_eq!(events[0]["data"]["message"], "provider failed mid-stream: reset");
    let anthropic = render_sse(&super::mid_stream_error(Some(ClientApi::AnthropicMessages), "reset"));
    assert_eq!((anthropic[0]["event"].as_str(), anthropic[0]["data"]["type"].as_str()), (Some("error"), Some("error")));
    let chat = render_sse(&super::mid_stream_error(None, "reset"));
    assert_eq!(chat[0]["data"]["error"]["code"], 502);
}
