//! Translation against the mock provider over real loopback HTTP: every client API to every
//! other provider layout, whole and streamed (SigV4 verified by the mock, binary
//! event-stream and CRLF SSE decoded as they arrive), and injected errors.

use super::test_support::*;
use super::{prepare, stream_translator, translate_reply, ClientApi, Credentials, UpstreamRequest};
use crate::config::{ProviderConfig, ProviderKind};
use bytes::{Bytes, BytesMut};
use mock_llm::{Behavior, MockLlm};
use serde_json::{json, Value};
use std::time::SystemTime;

fn local(kind: ProviderKind, mock: &MockLlm) -> ProviderConfig {
    let mut p = provider(kind, Some("the-model:1"));
    p.host = "127.0.0.1".into();
    p.port = mock.port();
    p.tls = false;
    p
}

fn client_body(client: ClientApi, stream: bool) -> Bytes {
    let body = match client {
        ClientApi::OpenAiChat => json!({
            "model": "m", "stream": stream, "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
        }),
        ClientApi::AnthropicMessages => json!({
            "model": "m", "max_tokens": 64, "stream": stream, "system": "Be brief.",
            "messages": [{"role": "user", "content": "hi"}]
        }),
        ClientApi::OpenAiResponses => {
            json!({"model": "m", "stream": stream, "instructions": "Be brief.", "input": "hi"})
        }
    };
    Bytes::from(body.to_string())
}

async fn send(p: &ProviderConfig, req: &UpstreamRequest) -> reqwest::Response {
    let http = reqwest::Client::new();
    let url = format!("http://{}:{}{}", p.host, p.port, req.path_and_query);
    let mut builder = http.post(url).body(req.body.clone());
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder.send().await.unwrap()
}

fn prepared(client: ClientApi, p: &ProviderConfig, stream: bool) -> UpstreamRequest {
    let aws = test_aws();
    let creds = match p.kind {
        ProviderKind::Bedrock { .. } => Credentials::Aws(&aws),
        _ => Credentials::ApiKey("test-key"),
    };
    prepare(client, &client_body(client, stream), p, &creds, &Default::default(), SystemTime::now()).unwrap()
}

/// The answer text of a client-API reply.
fn reply_text(client: ClientApi, v: &Value) -> String {
    match client {
        ClientApi::OpenAiChat => v["choices"][0]["message"]["content"].as_str().unwrap().to_string(),
        ClientApi::AnthropicMessages => v["content"][0]["text"].as_str().unwrap().to_string(),
        ClientApi::OpenAiResponses => v["output"][0]["content"][0]["text"].as_str().unwrap().to_string(),
    }
}

#[tokio::test]
async fn whole_answers_from_every_layout() {
    for (client, kind) in cross_pairs() {
        let mock = MockLlm::start("mocky", Behavior::default()).await.unwrap();
        let p = local(kind.clone(), &mock);
        let req = prepared(client, &p, false);
        let response = send(&p, &req).await;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        assert_eq!(status, 200, "{kind:?}: {body:?}");
        let recorded = mock.last_request().unwrap();
        if matches!(kind, ProviderKind::Bedrock { .. }) {
            assert_eq!(recorded.sigv4_valid, Some(true), "the mock verified the signature");
        }
        let out = translate_reply(client, &kind, status, &body, &meta()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(reply_text(client, &v), "Hello from mocky", "{kind:?}");
        match client {
            ClientApi::OpenAiChat => assert_eq!(v["choices"][0]["finish_reason"], "stop"),
            ClientApi::AnthropicMessages => assert_eq!(v["stop_reason"], "end_turn"),
            ClientApi::OpenAiResponses => assert_eq!(v["status"], "completed"),
        }
    }
}

#[tokio::test]
async fn streamed_answers_from_every_layout() {
    for (client, kind) in cross_pairs() {
        let behavior = Behavior { stream_chunks: 4, ..Behavior::default() };
        let mock = MockLlm::start("streamy", behavior).await.unwrap();
        let p = local(kind.clone(), &mock);
        let req = prepared(client, &p, true);
        assert!(req.stream);
        let mut response = send(&p, &req).await;
        assert_eq!(response.status(), 200, "{kind:?}");
        let mut t = stream_translator(client, &kind, "the-model:1", true).unwrap();
        let mut out = BytesMut::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            t.push(&chunk, &mut out).unwrap();
        }
        t.finish(&mut out).unwrap();
        let events = render_sse(&out);
        let events = events.as_array().unwrap();
        let text: String = events
            .iter()
            .filter_map(|e| match client {
                ClientApi::OpenAiChat => e["data"]["choices"][0]["delta"]["content"].as_str(),
                ClientApi::AnthropicMessages => e["data"]["delta"]["text"].as_str(),
                ClientApi::OpenAiResponses if e["event"] == "response.output_text.delta" => e["data"]["delta"].as_str(),
                ClientApi::OpenAiResponses => None,
            })
            .collect();
        assert_eq!(text, "Hello from streamy", "{kind:?}");
        let last = events.last().unwrap();
        match client {
            ClientApi::OpenAiChat => {
                assert_eq!(last["data"], "[DONE]");
                let usage = &events[events.len() - 2]["data"]["usage"];
                assert_eq!(usage["completion_tokens"], 5, "{kind:?}");
            }
            ClientApi::AnthropicMessages => {
                assert_eq!(last["event"], "message_stop");
                let delta = &events[events.len() - 2]["data"];
                assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{kind:?}");
                assert_eq!(delta["usage"]["output_tokens"], 5, "{kind:?}");
            }
            ClientApi::OpenAiResponses => {
                assert_eq!(last["event"], "response.completed");
                assert_eq!(last["data"]["response"]["usage"]["output_tokens"], 5, "{kind:?}");
                assert_eq!(last["data"]["response"]["output"][0]["content"][0]["text"], "Hello from streamy");
            }
        }
    }
}

#[tokio::test]
async fn injected_errors_reach_the_client_in_its_shape() {
    for (client, kind) in cross_pairs() {
        let mock = MockLlm::start("failing", Behavior::failing(429)).await.unwrap();
        let p = local(kind.clone(), &mock);
        let response = send(&p, &prepared(client, &p, false)).await;
        let status = response.status().as_u16();
        assert_eq!(status, 429);
        let body = response.bytes().await.unwrap();
        let out = translate_reply(client, &kind, status, &body, &meta()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let (kind_field, message) = match client {
            ClientApi::OpenAiChat | ClientApi::OpenAiResponses => (&v["error"]["type"], &v["error"]["message"]),
            ClientApi::AnthropicMessages => {
                assert_eq!(v["type"], "error");
                (&v["error"]["type"], &v["error"]["message"])
            }
        };
        assert_eq!(kind_field, "rate_limit_error", "{kind:?}");
        assert_eq!(message, "mock failing: injected 429", "{kind:?}");

        // And inside a stream.
        mock.set_behavior(Behavior { stream_error_first: true, status: 503, failure_rate: 0.0, ..Behavior::default() });
        let mut response = send(&p, &prepared(client, &p, true)).await;
        let mut t = stream_translator(client, &kind, "m", false).unwrap();
        let mut out = BytesMut::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            t.push(&chunk, &mut out).unwrap();
        }
        t.finish(&mut out).unwrap();
        let events = render_sse(&out);
        let last = events.as_array().unwrap().last().unwrap().clone();
        let message = match client {
            ClientApi::OpenAiResponses => &last["data"]["message"],
            _ => &last["data"]["error"]["message"],
        };
        assert!(message.as_str().unwrap().contains("injected stream error"), "{kind:?}: {last}");
    }
}
