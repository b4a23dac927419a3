//! Requests that offer tools are answered with a call to the first tool, whole and
//! streamed, in each API's shape; a request whose last turn is a tool result gets text.

use serde_json::{json, Value};

use super::apis::{event_names, events, frame_kinds, frames, post, MESSAGES_STREAM};
use super::client::sse_data;
use super::start;
use crate::Behavior;

const ARGS: &str = r#"{"location":"Paris"}"#;

// ---- OpenAI (and Azure) ------------------------------------------------------------------

fn openai_request(stream: bool) -> Value {
    json!({
        "model": "gpt-t", "stream": stream,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
        ],
    })
}

#[tokio::test]
async fn openai_tool_call() {
    let mock = start("gpt", Behavior::default()).await;
    let got = post(&mock, "/v1/chat/completions", &[], &openai_request(false)).await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(
        v["choices"][0],
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_mock_1", "type": "function",
                "function": {"name": "get_weather", "arguments": ARGS},
            }]},
            "finish_reason": "tool_calls",
        })
    );
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-t");

    let path = "/openai/deployments/d/chat/completions?api-version=1";
    let got = post(&mock, path, &[("api-key", "k")], &openai_request(false)).await;
    assert_eq!(got.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
}

#[tokio::test]
async fn openai_tool_result_gets_text() {
    let mock = start("gpt", Behavior::default()).await;
    let mut body = openai_request(false);
    body["messages"] = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ARGS}}]},
        {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny, 21 C"},
    ]);
    let got = post(&mock, "/v1/chat/completions", &[], &body).await;
    let v = got.json();
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Hello from gpt"}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn openai_tool_call_stream() {
    let mock = start("gpt", Behavior::default()).await;
    let got = post(&mock, "/v1/chat/completions", &[], &openai_request(true)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    let events = sse_data(&got.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    // The opening chunk, 3 argument pieces, the finishing chunk.
    assert_eq!(chunks.len(), 5, "{events:?}");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "index": 0, "id": "call_mock_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }]})
    );
    let mut arguments = String::new();
    for chunk in &chunks[1..4] {
        let call = &chunk["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert!(call.get("id").is_none() && call["function"].get("name").is_none());
        arguments.push_str(call["function"]["arguments"].as_str().unwrap());
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(arguments, ARGS);
    assert_eq!(chunks[4]["choices"][0], json!({"index": 0, "delta": {}, "finish_reason": "tool_calls"}));
}

// ---- Anthropic ---------------------------------------------------------------------------

fn anthropic_request(stream: bool) -> Value {
    json!({
        "model": "claude-t", "max_tokens": 50, "stream": stream,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "get_time", "input_schema": {}}],
    })
}

#[tokio::test]
async fn anthropic_tool_use() {
    let mock = start("claude", Behavior::default()).await;
    let got = post(&mock, "/v1/messages", &[], &anthropic_request(false)).await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {"location": "Paris"}}])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["type"], "message");

    let mut body = anthropic_request(false);
    body["messages"] = json!([
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather",
            "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_mock_1", "content": "sunny"}]},
    ]);
    let v = post(&mock, "/v1/messages", &[], &body).await.json();
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hello from claude"}]));
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn anthropic_tool_use_stream() {
    let mock = start("claude", Behavior::default()).await;
    let got = post(&mock, "/v1/messages", &[], &anthropic_request(true)).await;
    assert_eq!(got.status, 200);
    let events = events(&got.body);
    assert_eq!(event_names(&events), MESSAGES_STREAM);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {}})
    );
    assert!(events[2..5].iter().all(|(_, d)| d["delta"]["type"] == "input_json_delta"));
    let json: String = events.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str()).collect();
    assert_eq!(json, ARGS);
    assert_eq!(events[6].1["delta"]["stop_reason"], "tool_use");
}

// ---- Bedrock -----------------------------------------------------------------------------

fn converse_request() -> Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": "weather in Paris?"}]}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]},
    })
}

#[tokio::test]
async fn bedrock_tool_use() {
    let mock = start("bed", Behavior::default()).await;
    let got = post(&mock, "/model/m/converse", &[], &converse_request()).await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(
        v["output"]["message"],
        json!({"role": "assistant", "content": [{"toolUse": {
            "toolUseId": "tooluse_mock_1", "name": "get_weather", "input": {"location": "Paris"}}}]})
    );
    assert_eq!(v["stopReason"], "tool_use");

    let mut body = converse_request();
    body["messages"] = json!([
        {"role": "user", "content": [{"text": "weather in Paris?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_mock_1", "name": "get_weather",
            "input": {"location": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_mock_1", "content": [{"text": "sunny"}]}}]},
    ]);
    let v = post(&mock, "/model/m/converse", &[], &body).await.json();
    assert_eq!(v["output"]["message"]["content"], json!([{"text": "Hello from bed"}]));
    assert_eq!(v["stopReason"], "end_turn");
}

#[tokio::test]
async fn bedrock_tool_use_stream() {
    let mock = start("bed", Behavior::default()).await;
    let got = post(&mock, "/model/m/converse-stream", &[], &converse_request()).await;
    assert_eq!(got.status, 200);
    let frames = frames(got.body);
    assert_eq!(
        frame_kinds(&frames),
        [
            "messageStart",
            "contentBlockStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    assert_eq!(
        frames[1].2,
        json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_mock_1", "name": "get_weather"}}})
    );
    let input: String = frames.iter().filter_map(|(_, _, p)| p["delta"]["toolUse"]["input"].as_str()).collect();
    assert_eq!(input, ARGS);
    assert_eq!(frames[6].2["stopReason"], "tool_use");
}

// ---- Gemini ------------------------------------------------------------------------------

fn gemini_request() -> Value {
    json!({
        "contents": [{"role": "user", "parts": [{"text": "weather in Paris?"}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}],
    })
}

#[tokio::test]
async fn gemini_function_call() {
    let mock = start("gem", Behavior::default()).await;
    let got = post(&mock, "/v1beta/models/g:generateContent", &[], &gemini_request()).await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(
        v["candidates"][0]["content"],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]})
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");

    let mut body = gemini_request();
    body["contents"] = json!([
        {"role": "user", "parts": [{"text": "weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}]},
    ]);
    let v = post(&mock, "/v1beta/models/g:generateContent", &[], &body).await.json();
    assert_eq!(v["candidates"][0]["content"]["parts"], json!([{"text": "Hello from gem"}]));
}

#[tokio::test]
async fn gemini_function_call_stream() {
    let mock = start("gem", Behavior::default()).await;
    let got = post(&mock, "/v1beta/models/g:streamGenerateContent?alt=sse", &[], &gemini_request()).await;
    assert_eq!(got.status, 200);
    let events = events(&got.body);
    assert_eq!(events.len(), 1, "Gemini streams a function call whole");
    let candidate = &events[0].1["candidates"][0];
    assert_eq!(candidate["content"]["parts"][0]["functionCall"]["name"], "get_weather");
    assert_eq!(candidate["content"]["parts"][0]["functionCall"]["args"], json!({"location": "Paris"}));
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(events[0].1["usageMetadata"]["candidatesTokenCount"], 5);
}
