//! Tool calls. A chat request that offers tools is answered with a call to its first tool,
//! with the fixed arguments [`ARGUMENTS_JSON`], unless its last turn already carries a tool
//! result: then it gets the usual text, so that a two-step tool loop completes.
//!
//! Every API keeps the same facts in different places; a [`ToolLayout`] says where, so that
//! one piece of code reads them all.

use serde_json::{json, Value};

/// The arguments of every tool call the mock makes, as a JSON string.
pub(crate) const ARGUMENTS_JSON: &str = r#"{"location":"Paris"}"#;

/// The arguments of every tool call the mock makes, as a JSON object.
pub(crate) fn arguments() -> Value {
    json!({"location": "Paris"})
}

/// How a turn shows that it carries a tool result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResultMark {
    /// The turn's `role` is this (OpenAI's `"tool"`).
    Role(&'static str),
    /// The turn's `type` is this (the Responses API's `"function_call_output"` item).
    Kind(&'static str),
    /// One of the blocks in the turn's array `list` has the field `key` (with the string
    /// `value`, when given).
    Block { list: &'static str, key: &'static str, value: Option<&'static str> },
}

impl ResultMark {
    fn marks(self, turn: &Value) -> bool {
        match self {
            ResultMark::Role(role) => turn.get("role").and_then(Value::as_str) == Some(role),
            ResultMark::Kind(kind) => turn.get("type").and_then(Value::as_str) == Some(kind),
            ResultMark::Block { list, key, value } => turn
                .get(list)
                .and_then(Value::as_array)
                .is_some_and(|blocks| blocks.iter().any(|block| block_matches(block, key, value))),
        }
    }
}

fn block_matches(block: &Value, key: &str, value: Option<&str>) -> bool {
    match (block.get(key), value) {
        (Some(found), Some(value)) => found.as_str() == Some(value),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Where one API's request body keeps its tools and its conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ToolLayout {
    /// JSON pointer to the name of the first tool.
    first_tool: &'static str,
    /// The field holding the conversation's turns.
    turns: &'static str,
    /// How a turn carrying a tool result is told apart.
    result: ResultMark,
}

impl ToolLayout {
    /// OpenAI chat completions (and Azure): `tools[].function.name`, a `role: "tool"` turn.
    pub(crate) const OPENAI: ToolLayout =
        ToolLayout { first_tool: "/tools/0/function/name", turns: "messages", result: ResultMark::Role("tool") };

    /// The Responses API: `tools[].name`, a `function_call_output` input item.
    pub(crate) const RESPONSES: ToolLayout =
        ToolLayout { first_tool: "/tools/0/name", turns: "input", result: ResultMark::Kind("function_call_output") };

    /// Anthropic Messages: `tools[].name`, a `tool_result` content block.
    pub(crate) const ANTHROPIC: ToolLayout = ToolLayout {
        first_tool: "/tools/0/name",
        turns: "messages",
        result: ResultMark::Block { list: "content", key: "type", value: Some("tool_result") },
    };

    /// Bedrock Converse: `toolConfig.tools[].toolSpec.name`, a `toolResult` content block.
    pub(crate) const BEDROCK: ToolLayout = ToolLayout {
        first_tool: "/toolConfig/tools/0/toolSpec/name",
        turns: "messages",
        result: ResultMark::Block { list: "content", key: "toolResult", value: None },
    };

    /// Gemini: `tools[].functionDeclarations[].name`, a `functionResponse` part.
    pub(crate) const GEMINI: ToolLayout = ToolLayout {
        first_tool: "/tools/0/functionDeclarations/0/name",
        turns: "contents",
        result: ResultMark::Block { list: "parts", key: "functionResponse", value: None },
    };

    /// The tool the answer to `body` must call: the first one offered, unless the last turn
    /// is a tool result (or no tool is offered).
    pub(crate) fn requested_tool(&self, body: &Value) -> Option<String> {
        let name = body.pointer(self.first_tool)?.as_str()?;
        let last = body.get(self.turns).and_then(Value::as_array).and_then(|turns| turns.last());
        if last.is_some_and(|turn| self.result.marks(turn)) {
            return None;
        }
        Some(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_agree() {
        assert_eq!(serde_json::from_str::<Value>(ARGUMENTS_JSON).ok(), Some(arguments()));
    }

    #[test]
    fn openai_layout() {
        let mut body = json!({
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}},
                      {"type": "function", "function": {"name": "other"}}],
            "messages": [{"role": "user", "content": "weather?"}],
        });
        assert_eq!(ToolLayout::OPENAI.requested_tool(&body).as_deref(), Some("get_weather"));
        body["messages"] = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ]);
        assert_eq!(ToolLayout::OPENAI.requested_tool(&body), None, "a tool result gets text");
        assert_eq!(ToolLayout::OPENAI.requested_tool(&json!({"messages": []})), None, "no tools");
        assert_eq!(ToolLayout::OPENAI.requested_tool(&json!({"tools": []})), None, "empty tools");
    }

    #[test]
    fn anthropic_layout() {
        let mut body = json!({
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "weather?"}],
        });
        assert_eq!(ToolLayout::ANTHROPIC.requested_tool(&body).as_deref(), Some("get_weather"));
        body["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "more"}]}]);
        assert_eq!(ToolLayout::ANTHROPIC.requested_tool(&body).as_deref(), Some("get_weather"));
        body["messages"] = json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}]);
        assert_eq!(ToolLayout::ANTHROPIC.requested_tool(&body), None);
        assert_eq!(ToolLayout::OPENAI.requested_tool(&body), None, "another API's layout finds no tool");
    }

    #[test]
    fn bedrock_layout() {
        let mut body = json!({
            "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {}}}}]},
            "messages": [{"role": "user", "content": [{"text": "weather?"}]}],
        });
        assert_eq!(ToolLayout::BEDROCK.requested_tool(&body).as_deref(), Some("get_weather"));
        body["messages"] = json!([{"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}]}]);
        assert_eq!(ToolLayout::BEDROCK.requested_tool(&body), None);
    }

    #[test]
    fn gemini_layout() {
        let mut body = json!({
            "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
            "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
        });
        assert_eq!(ToolLayout::GEMINI.requested_tool(&body).as_deref(), Some("get_weather"));
        body["contents"] = json!([{"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"t": 1}}}]}]);
        assert_eq!(ToolLayout::GEMINI.requested_tool(&body), None);
    }
}
