//! Request translation: one snapshot per conversion (client body in, upstream request
//! out), the same-API fast path, and the fields a target cannot express.

use super::test_support::*;
use super::{
    check_supported, host_header, models_list, prepare, ClientApi, ClientContext, Credentials, TranslateError,
};
use crate::config::ProviderKind;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Value};

fn snapshot(name: &str, client: ClientApi, body: Value, kind: ProviderKind, model: Option<&str>) {
    let p = provider(kind, model);
    let out = render_request(&prepare_for(client, &body, &p));
    insta::assert_yaml_snapshot!(name, json!({"input": body, "output": out}));
}

fn openai_tools_conversation() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You can look up the weather."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny, 24C"},
            {"role": "user", "content": "Which is warmer?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": "auto",
        "max_tokens": 300
    })
}

fn openai_images() -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]
    })
}

fn anthropic_conversation() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in English."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in the image, and the weather in Oslo?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "A cat. Checking Oslo."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"temp_c\":3}"},
                {"type": "text", "text": "Thanks. Summarise."}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Current weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "any"},
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true
    })
}

// ---- OpenAI client ----------------------------------------------------------------------

#[test]
fn openai_to_anthropic_text_and_system() {
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a poet."},
            {"role": "developer", "content": [{"type": "text", "text": "Rhyme."}]},
            {"role": "user", "content": "Write about the sea."}
        ],
        "max_completion_tokens": 200,
        "temperature": 0.7,
        "top_p": 0.95,
        "stop": ["\n\n", "END"],
        "user": "user-42"
    });
    snapshot(
        "openai_to_anthropic_text_and_system",
        ClientApi::OpenAiChat,
        body,
        anthropic(),
        Some("claude-sonnet-4-5"),
    );
}

#[test]
fn openai_to_anthropic_multi_turn() {
    let body = json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": true},
        "stop": "STOP",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."}
        ]
    });
    snapshot("openai_to_anthropic_multi_turn", ClientApi::OpenAiChat, body, anthropic(), None);
}

#[test]
fn openai_to_anthropic_tools_and_results() {
    let mut body = openai_tools_conversation();
    body["parallel_tool_calls"] = json!(false);
    snapshot(
        "openai_to_anthropic_tools_and_results",
        ClientApi::OpenAiChat,
        body,
        anthropic(),
        Some("claude-sonnet-4-5"),
    );
}

#[test]
fn openai_to_anthropic_images() {
    let mut body = openai_images();
    body["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "auto"}}));
    snapshot("openai_to_anthropic_images", ClientApi::OpenAiChat, body, anthropic(), Some("claude-sonnet-4-5"));
}

#[test]
fn openai_to_bedrock() {
    let mut body = openai_tools_conversation();
    body["messages"][1] = json!({"role": "user", "content": [
        {"type": "text", "text": "Weather in Paris and Rome? Also, this photo:"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
    ]});
    body["temperature"] = json!(0.5);
    body["top_p"] = json!(0.8);
    body["stop"] = json!(["END"]);
    snapshot(
        "openai_to_bedrock",
        ClientApi::OpenAiChat,
        body,
        bedrock(),
        Some("anthropic.claude-3-haiku-20240307-v1:0"),
    );
}

#[test]
fn openai_to_bedrock_stream() {
    let body = json!({
        "model": "us.amazon.nova-lite-v1:0",
        "stream": true,
        "messages": [{"role": "user", "content": "Hi"}]
    });
    snapshot("openai_to_bedrock_stream", ClientApi::OpenAiChat, body, bedrock(), None);
}

#[test]
fn openai_to_gemini() {
    let mut body = openai_tools_conversation();
    body["messages"][1] = json!({"role": "user", "content": [
        {"type": "text", "text": "Weather in Paris and Rome? Two photos:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/rome.jpg"}}
    ]});
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    body["temperature"] = json!(1.3);
    body["top_p"] = json!(0.9);
    body["stop"] = json!(["END"]);
    body["seed"] = json!(7);
    body["presence_penalty"] = json!(0.5);
    body["frequency_penalty"] = json!(0.0);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"warmer": {"type": "string"}}}}});
    snapshot("openai_to_gemini", ClientApi::OpenAiChat, body, gemini(), Some("gemini-2.5-flash"));
}

#[test]
fn openai_to_gemini_stream() {
    let body = json!({
        "model": "gemini-2.5-flash",
        "stream": true,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    });
    snapshot("openai_to_gemini_stream", ClientApi::OpenAiChat, body, gemini(), None);
}

#[test]
fn openai_to_azure() {
    let body = json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hi"}]
    });
    snapshot("openai_to_azure", ClientApi::OpenAiChat, body, azure(), Some("gpt-4o-prod"));
}

// ---- Anthropic client -------------------------------------------------------------------

#[test]
fn anthropic_to_openai() {
    let mut body = anthropic_conversation();
    body["metadata"] = json!({"user_id": "user-7"});
    body["tool_choice"] = json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true});
    snapshot("anthropic_to_openai", ClientApi::AnthropicMessages, body, openai(), Some("gpt-4o"));
}

#[test]
fn anthropic_to_bedrock() {
    snapshot(
        "anthropic_to_bedrock",
        ClientApi::AnthropicMessages,
        anthropic_conversation(),
        bedrock(),
        Some("anthropic.claude-3-5-sonnet-20240620-v1:0"),
    );
}

#[test]
fn anthropic_to_gemini() {
    let mut body = anthropic_conversation();
    body["top_k"] = json!(40);
    snapshot("anthropic_to_gemini", ClientApi::AnthropicMessages, body, gemini(), Some("gemini-2.5-pro"));
}

#[test]
fn anthropic_to_azure() {
    let body = json!({
        "model": "claude",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}]
    });
    snapshot("anthropic_to_azure", ClientApi::AnthropicMessages, body, azure(), Some("gpt-4o-prod"));
}

// ---- same API: no re-serialization ------------------------------------------------------

#[test]
fn same_api_only_splices_the_model() {
    let raw = r#"{ "messages" : [ {"role":"user","content":"hi"} ], "model":"client-model", "stream":true, "logit_bias":{"1":2} }"#;
    let body = Bytes::from(raw);
    for (client, kind) in [
        (ClientApi::OpenAiChat, openai()),
        (ClientApi::OpenAiChat, azure()),
        (ClientApi::AnthropicMessages, anthropic()),
    ] {
        let p = provider(kind.clone(), Some("provider-model"));
        let req = prepare(client, &body, &p, &Credentials::None, &Default::default(), fixed_now()).unwrap();
        assert_eq!(
            std::str::from_utf8(&req.body).unwrap(),
            raw.replace("\"client-model\"", "\"provider-model\""),
            "{kind:?}"
        );
        assert!(req.stream);
        // No configured model: the client's bytes go as they are, not even copied.
        let p = provider(kind, None);
        let req = prepare(client, &body, &p, &Credentials::None, &Default::default(), fixed_now()).unwrap();
        assert_eq!(req.body.as_ptr(), body.as_ptr());
    }
}

#[test]
fn default_paths_and_auth_headers() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        (openai(), "/v1/chat/completions", "authorization", "Bearer test-key"),
        (anthropic(), "/v1/messages", "x-api-key", "test-key"),
        (gemini(), "/v1beta/models/m:generateContent", "x-goog-api-key", "test-key"),
        (azure(), "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21", "api-key", "test-key"),
    ];
    for (kind, path, header, value) in cases {
        for client in [ClientApi::OpenAiChat, ClientApi::AnthropicMessages] {
            let mut body = body.clone();
            body["max_tokens"] = json!(10);
            let req = prepare_for(client, &body, &provider(kind.clone(), None));
            assert_eq!(req.path_and_query, path, "{kind:?}");
            let (_, v) = req.headers.iter().find(|(n, _)| n == header).unwrap();
            assert_eq!(v, value);
            assert!(v.is_sensitive());
            assert_eq!(req.headers[0].1, "application/json");
        }
    }
    // An explicit path wins.
    let mut p = provider(gemini(), None);
    p.path = Some("/custom".into());
    assert_eq!(prepare_for(ClientApi::OpenAiChat, &body, &p).path_and_query, "/custom");
}

#[test]
fn passthrough_auth_is_forwarded_unless_a_key_is_configured() {
    let body = Bytes::from_static(br#"{"model":"m","max_tokens":5,"messages":[]}"#);
    let client_auth = HeaderValue::from_static("Bearer client-token");
    let p = provider(anthropic(), None);
    let req = prepare(
        ClientApi::AnthropicMessages,
        &body,
        &p,
        &Credentials::None,
        &ClientContext { passthrough_auth: Some(&client_auth), ..Default::default() },
        fixed_now(),
    )
    .unwrap();
    let auth: Vec<_> = req.headers.iter().filter(|(n, _)| n == "authorization").collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].1, "Bearer client-token");
    assert!(auth[0].1.is_sensitive());
    let req = prepare(
        ClientApi::AnthropicMessages,
        &body,
        &p,
        &Credentials::ApiKey("k"),
        &ClientContext { passthrough_auth: Some(&client_auth), ..Default::default() },
        fixed_now(),
    )
    .unwrap();
    assert!(req.headers.iter().all(|(n, _)| n != "authorization"));
}

#[test]
fn bedrock_signature_is_deterministic_and_signs_host_with_port() {
    let body = json!({"model": "m:0", "messages": [{"role": "user", "content": "hi"}]});
    let mut p = provider(bedrock(), None);
    p.host = "127.0.0.1".into();
    p.port = 8443;
    p.tls = false;
    assert_eq!(host_header(&p), "127.0.0.1:8443");
    let a = prepare_for(ClientApi::OpenAiChat, &body, &p);
    let b = prepare_for(ClientApi::OpenAiChat, &body, &p);
    let auth = |r: &super::UpstreamRequest| {
        r.headers.iter().find(|(n, _)| n == "authorization").map(|(_, v)| v.to_str().unwrap().to_string()).unwrap()
    };
    assert_eq!(auth(&a), auth(&b));
    assert!(auth(&a).starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={}/20240102/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=",
        mock_llm::TEST_AWS_ACCESS_KEY_ID
    )));
    assert_eq!(a.path_and_query, "/model/m%3A0/converse");
    // The mock's verifier (an independent recomputation from the received request) agrees.
    let headers: Vec<(String, String)> = a
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .chain([("host".to_string(), host_header(&p))])
        .collect();
    assert_eq!(mock_llm::verify_sigv4("POST", &a.path_and_query, &headers, &a.body), Some(true));
    let mut tampered = a.body.to_vec();
    tampered[0] = b' ';
    assert_eq!(mock_llm::verify_sigv4("POST", &a.path_and_query, &headers, &tampered), Some(false));
}

#[test]
fn bedrock_with_an_api_key_uses_a_bearer_token() {
    let body = Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}]}"#);
    let p = provider(bedrock(), Some("m"));
    let req = prepare(
        ClientApi::OpenAiChat,
        &body,
        &p,
        &Credentials::ApiKey("bedrock-key"),
        &Default::default(),
        fixed_now(),
    )
    .unwrap();
    let (_, v) = req.headers.iter().find(|(n, _)| n == "authorization").unwrap();
    assert_eq!(v, "Bearer bedrock-key");
}

#[test]
fn models_are_required_where_the_path_needs_one() {
    let body = Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}]}"#);
    for kind in [bedrock(), gemini()] {
        let err = prepare(
            ClientApi::OpenAiChat,
            &body,
            &provider(kind, None),
            &Credentials::None,
            &Default::default(),
            fixed_now(),
        )
        .unwrap_err();
        assert!(matches!(&err, TranslateError::Invalid(m) if m.contains("no model")), "{err}");
    }
}

#[test]
fn bad_bodies_are_invalid() {
    let p = provider(anthropic(), Some("m"));
    for body in [&b"not json"[..], b"[1]", br#"{"model":"m"}"#, br#"{"messages":"x"}"#] {
        let err = prepare(
            ClientApi::OpenAiChat,
            &Bytes::copy_from_slice(body),
            &p,
            &Credentials::None,
            &Default::default(),
            fixed_now(),
        )
        .unwrap_err();
        assert!(matches!(err, TranslateError::Invalid(_)), "{err}");
    }
}

// ---- what a target cannot express -------------------------------------------------------

fn unsupported_field(client: ClientApi, body: Value, kind: ProviderKind) -> (String, &'static str) {
    match check_supported(client, &body, &kind, Default::default()) {
        Err(TranslateError::Unsupported { field, target }) => (field, target),
        other => panic!("expected Unsupported for {kind:?} with {body}, got {other:?}"),
    }
}

#[test]
fn unsupported_fields_are_errors_naming_the_field() {
    let user = |content: Value| json!({"model": "m", "messages": [{"role": "user", "content": content}]});
    let url_image = user(json!([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]));
    let with = |key: &str, value: Value| {
        let mut b = user(json!("hi"));
        b[key] = value;
        b
    };
    let o = ClientApi::OpenAiChat;
    let a = ClientApi::AnthropicMessages;
    let cases: Vec<(ClientApi, Value, ProviderKind, &str)> = vec![
        (o, url_image.clone(), bedrock(), "messages[0].content[0].image_url (URL)"),
        (o, url_image, gemini(), "messages[0].content[0].image_url (URL)"),
        (o, with("logit_bias", json!({"50256": -100})), anthropic(), "logit_bias"),
        (o, with("n", json!(2)), gemini(), "n"),
        (o, with("seed", json!(1)), anthropic(), "seed"),
        (o, with("seed", json!(1)), bedrock(), "seed"),
        (o, with("frequency_penalty", json!(0.5)), bedrock(), "frequency_penalty"),
        (o, with("response_format", json!({"type": "json_object"})), anthropic(), "response_format"),
        (o, with("user", json!("u")), gemini(), "user"),
        (o, with("temperature", json!(1.5)), anthropic(), "temperature above 1.0"),
        (o, with("parallel_tool_calls", json!(false)), bedrock(), "parallel_tool_calls = false"),
        (
            o,
            with("stream_options", json!({"continuous_usage_stats": true})),
            anthropic(),
            "stream_options.continuous_usage_stats",
        ),
        (o, with("reasoning_effort", json!("high")), anthropic(), "reasoning_effort"),
        (
            o,
            user(json!([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])),
            anthropic(),
            "messages[0].content[0].type = input_audio",
        ),
        (
            o,
            user(json!([{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}}])),
            anthropic(),
            "messages[0].content[0].image_url.detail",
        ),
        (o, json!({"messages": [{"role": "user", "content": "hi", "name": "bob"}]}), anthropic(), "messages[0].name"),
        (
            o,
            user(json!([{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}])),
            bedrock(),
            "messages[0].content[0].image_url (media type image/bmp)",
        ),
        (a, json!({"max_tokens": 5, "top_k": 5, "messages": []}), openai(), "top_k"),
        (a, json!({"max_tokens": 5, "top_k": 5, "messages": []}), bedrock(), "top_k"),
        (
            a,
            json!({"max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": []}),
            openai(),
            "thinking",
        ),
        (
            a,
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]}),
            gemini(),
            "messages[0].content[0].cache_control",
        ),
        (
            a,
            json!({"max_tokens": 5, "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}], "messages": []}),
            openai(),
            "system[0].cache_control",
        ),
        (
            a,
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}),
            openai(),
            "messages[0].content[0].type = document",
        ),
        (
            a,
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": true}]}]}),
            openai(),
            "messages[0].content[0].is_error",
        ),
        (
            a,
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}]}),
            gemini(),
            "messages[0].content[0] (URL)",
        ),
        (
            a,
            json!({"max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}], "messages": []}),
            gemini(),
            "tools[0].type = web_search_20250305",
        ),
        (
            a,
            json!({"max_tokens": 5, "tools": [{"name": "t", "input_schema": {}}], "tool_choice": {"type": "none"}, "messages": []}),
            bedrock(),
            "tool_choice = none",
        ),
    ];
    for (client, body, kind, field) in cases {
        let (got, target) = unsupported_field(client, body, kind.clone());
        assert_eq!(got, field, "{kind:?}");
        assert_eq!(target, kind.as_str());
    }
}

#[test]
fn default_values_of_unmapped_fields_are_accepted() {
    let body = json!({
        "model": "m", "n": 1, "logprobs": false, "store": false, "logit_bias": {}, "metadata": {},
        "service_tier": "auto", "modalities": ["text"], "frequency_penalty": 0, "presence_penalty": 0.0,
        "response_format": {"type": "text"}, "tools": null, "messages": [{"role": "user", "content": "hi"}]
    });
    for kind in [anthropic(), bedrock(), gemini()] {
        check_supported(ClientApi::OpenAiChat, &body, &kind, Default::default()).unwrap();
    }
    // Same API: anything goes (the provider judges).
    let exotic = json!({"model": "m", "messages": [], "logit_bias": {"1": 2}});
    check_supported(ClientApi::OpenAiChat, &exotic, &openai(), Default::default()).unwrap();
    check_supported(ClientApi::OpenAiChat, &exotic, &azure(), Default::default()).unwrap();
}

#[test]
fn client_api_from_path() {
    assert_eq!(ClientApi::from_path("/v1/chat/completions"), Some(ClientApi::OpenAiChat));
    assert_eq!(ClientApi::from_path("/v1/chat/completions?x=1"), Some(ClientApi::OpenAiChat));
    assert_eq!(ClientApi::from_path("/v1/messages"), Some(ClientApi::AnthropicMessages));
    assert_eq!(ClientApi::from_path("/v1/messages?beta=true"), Some(ClientApi::AnthropicMessages));
    assert_eq!(ClientApi::from_path("/v1/messages/batches"), None);
    assert_eq!(ClientApi::from_path("/v1/models"), None);
}

#[test]
fn models_list_dedupes_and_names_owners() {
    let a = provider(openai(), Some("gpt-4o"));
    let mut b = provider(azure(), Some("gpt-4o"));
    b.name = "azure-b".into();
    let c = provider(bedrock(), Some("anthropic.claude-3-haiku-20240307-v1:0"));
    let d = provider(gemini(), None);
    let list: Value = serde_json::from_slice(&models_list(&[&a, &b, &c, &d])).unwrap();
    assert_eq!(
        list,
        json!({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "owned_by": "openai-provider"},
            {"id": "anthropic.claude-3-haiku-20240307-v1:0", "object": "model", "owned_by": "bedrock-provider"}
        ]})
    );
}
