//! OpenAI Responses API wire format (`POST /v1/responses`, and Azure's
//! `/openai/v1/responses`): the `response` object the mock answers with (a message, or a
//! `function_call` item), its `response.*` event stream, and errors.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::StreamParts;
use crate::openai::{answer_text, streamed_pieces, ChatParams, COMPLETION_TOKENS};
use crate::tools::ARGUMENTS_JSON;

/// Fixed id of every answer.
const ID: &str = "resp_mock";
/// Fixed ids of the output items.
const MESSAGE_ID: &str = "msg_mock";
const CALL_ITEM_ID: &str = "fc_mock";
/// Fixed `call_id` of every function call.
const CALL_ID: &str = "call_mock_1";
/// Fixed `created_at` of every answer.
const CREATED: u64 = 1_700_000_000;

/// Whether a path is the Responses API's (OpenAI's or Azure's v1 surface).
pub(crate) fn is_route(path: &str) -> Option<bool> {
    match path {
        "/v1/responses" => Some(false),
        "/openai/v1/responses" => Some(true),
        _ => None,
    }
}

fn item(params: &ChatParams, text: &str, arguments: &str, status: &str) -> Value {
    match &params.tool {
        Some(tool) => json!({"type": "function_call", "id": CALL_ITEM_ID, "call_id": CALL_ID, "name": tool,
            "arguments": arguments, "status": status}),
        None => {
            let content: Vec<Value> = if status == "in_progress" {
                Vec::new()
            } else {
                vec![json!({"type": "output_text", "text": text, "annotations": []})]
            };
            json!({"type": "message", "id": MESSAGE_ID, "status": status, "role": "assistant", "content": content})
        }
    }
}

fn response(params: &ChatParams, status: &str, output: Vec<Value>) -> Value {
    let usage = (status == "completed").then(|| {
        json!({"input_tokens": params.prompt_tokens, "output_tokens": COMPLETION_TOKENS,
               "total_tokens": params.prompt_tokens + COMPLETION_TOKENS,
               "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}})
    });
    json!({
        "id": ID, "object": "response", "created_at": CREATED, "status": status, "error": null,
        "incomplete_details": null, "model": params.model, "output": output, "parallel_tool_calls": true,
        "tool_choice": "auto", "tools": [], "usage": usage,
    })
}

/// A whole answer.
pub(crate) fn message(name: &str, params: &ChatParams) -> Bytes {
    let output = vec![item(params, &answer_text(name), ARGUMENTS_JSON, "completed")];
    Bytes::from(response(params, "completed", output).to_string())
}

fn event(kind: &str, sequence: usize, mut value: Value) -> Bytes {
    value["type"] = json!(kind);
    value["sequence_number"] = json!(sequence);
    Bytes::from(format!("event: {kind}\ndata: {value}\n\n"))
}

/// `response.created`, `response.in_progress`, the output item opened, one delta per piece
/// (text or function arguments), the item closed, `response.completed`.
pub(crate) fn stream_parts(name: &str, params: &ChatParams, pieces: usize) -> StreamParts {
    let mut n = 0;
    let mut next = |kind: &str, value: Value| {
        n += 1;
        event(kind, n - 1, value)
    };
    let mut head = vec![
        next("response.created", json!({"response": response(params, "in_progress", vec![])})),
        next("response.in_progress", json!({"response": response(params, "in_progress", vec![])})),
        next("response.output_item.added", json!({"output_index": 0, "item": item(params, "", "", "in_progress")})),
    ];
    let text = answer_text(name);
    let tool = params.tool.is_some();
    if !tool {
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        head.push(next(
            "response.content_part.added",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0, "part": part}),
        ));
    }
    let content = streamed_pieces(name, params, pieces)
        .into_iter()
        .map(|piece| match tool {
            true => next(
                "response.function_call_arguments.delta",
                json!({"item_id": CALL_ITEM_ID, "output_index": 0, "delta": piece}),
            ),
            false => next(
                "response.output_text.delta",
                json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0, "delta": piece}),
            ),
        })
        .collect();
    let done = item(params, &text, ARGUMENTS_JSON, "completed");
    let mut tail = Vec::new();
    if tool {
        tail.push(next(
            "response.function_call_arguments.done",
            json!({"item_id": CALL_ITEM_ID, "output_index": 0, "arguments": ARGUMENTS_JSON}),
        ));
    } else {
        tail.push(next(
            "response.output_text.done",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0, "text": text}),
        ));
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        tail.push(next(
            "response.content_part.done",
            json!({"item_id": MESSAGE_ID, "output_index": 0, "content_index": 0, "part": part}),
        ));
    }
    tail.push(next("response.output_item.done", json!({"output_index": 0, "item": done.clone()})));
    tail.push(next("response.completed", json!({"response": response(params, "completed", vec![done])})));
    StreamParts { head, content, tail }
}

/// The in-stream error event.
pub(crate) fn error_event(message: &str, status: u16) -> Bytes {
    let code = if status == 429 { "rate_limit_exceeded" } else { "server_error" };
    event("error", 0, json!({"code": code, "message": message, "param": null}))
}
