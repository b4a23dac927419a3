#!/usr/bin/env python3
"""Drives Switchyard with the official OpenAI and Anthropic Python SDKs.

Environment:
  OPENAI_BASE_URL     the gateway's OpenAI-compatible base, e.g. http://127.0.0.1:8080/v1
  ANTHROPIC_BASE_URL  the gateway's Anthropic-compatible base, e.g. http://127.0.0.1:8080
  EXPECT_OPENAI_PROVIDER, EXPECT_ANTHROPIC_PROVIDER (optional)
                      the provider that must have served every call of that SDK, as the
                      gateway names it in `x-switchyard-provider`

Each SDK makes a text request, a streamed one, and a tool-call round trip (the tool call
whole and streamed, then the tool result answered with text). The answers are expected
from the mock provider ("Hello from NAME"; a tool call to the first tool with
{"location": "Paris"}). Prints one line per check; exits 1 if any failed.

SDK_CHECKS=responses runs, with the OpenAI SDK only, the Responses API (client.responses):
a plain request, a streamed one (every event parsed), and a function-call round trip.

SDK_CHECKS=claude-code runs, with the Anthropic SDK only, what Claude Code sends instead:
extended thinking, cache_control on the system prompt and the user turn, tools, an
anthropic-beta header; streamed (every event parsed, thinking deltas included), whole,
and a tool round trip that sends the thinking block back.

Usage: pip install -r tests/sdk/requirements.txt; OPENAI_BASE_URL=... ANTHROPIC_BASE_URL=... python3 tests/sdk/check_sdks.py
"""

import json
import os
import sys
import traceback

import anthropic
import openai

PROVIDER_HEADER = "x-switchyard-provider"
TIMEOUT = 30.0
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
QUESTION = "What is the weather in Paris?"
TOOL_RESULT = "Sunny, 21 degrees Celsius."

OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}

ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


class CheckFailed(Exception):
    pass


def ensure(condition, message):
    if not condition:
        raise CheckFailed(message)


def ensure_text(text, what):
    ensure(isinstance(text, str) and text.startswith("Hello from"), f"{what}: expected text starting with 'Hello from', got {text!r}")


def ensure_weather_args(args, what):
    ensure(isinstance(args, dict), f"{what}: tool arguments are not a JSON object: {args!r}")
    ensure(isinstance(args.get("location"), str), f"{what}: tool arguments lack a string 'location': {args!r}")


def served_by(headers, expected_env):
    """The provider named in the response headers; checked against $expected_env if set."""
    provider = headers.get(PROVIDER_HEADER)
    ensure(provider, f"no {PROVIDER_HEADER} header in the response")
    expected = os.environ.get(expected_env)
    ensure(not expected or provider == expected, f"served by {provider!r}, expected {expected!r} (${expected_env})")
    return provider


# ---- OpenAI ------------------------------------------------------------------------------


def openai_served(raw):
    return served_by(raw.headers, "EXPECT_OPENAI_PROVIDER")


def openai_text(client):
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Say hello."}]
    )
    completion = raw.parse()
    choice = completion.choices[0]
    ensure_text(choice.message.content, "message.content")
    ensure(choice.finish_reason == "stop", f"finish_reason {choice.finish_reason!r}, expected 'stop'")
    return f"served by {openai_served(raw)}: {choice.message.content!r}"


def openai_stream(client):
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    provider = openai_served(raw)
    text, finish, usage, chunks = "", None, None, 0
    for chunk in raw.parse():
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    ensure_text(text, "streamed content")
    ensure(finish == "stop", f"finish_reason {finish!r}, expected 'stop'")
    ensure(usage is not None and usage.completion_tokens > 0, f"no usage chunk with include_usage (got {usage!r})")
    return f"served by {provider}: {text!r} in {chunks} chunks"


def openai_tool_round_trip(client):
    messages = [{"role": "user", "content": QUESTION}]
    raw = client.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=messages, tools=[OPENAI_TOOL])
    first = openai_served(raw)
    choice = raw.parse().choices[0]
    calls = choice.message.tool_calls
    ensure(calls, f"no tool_calls in the answer: {choice.message!r}")
    call = calls[0]
    ensure(call.function.name == "get_weather", f"tool_calls[0].function.name {call.function.name!r}")
    args = json.loads(call.function.arguments)
    ensure_weather_args(args, "tool_calls[0].function.arguments")
    ensure(call.id, "tool_calls[0].id is empty")
    ensure(choice.finish_reason == "tool_calls", f"finish_reason {choice.finish_reason!r}, expected 'tool_calls'")

    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT})
    raw = client.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=messages, tools=[OPENAI_TOOL])
    second = openai_served(raw)
    answer = raw.parse().choices[0].message
    ensure_text(answer.content, "answer to the tool result")
    ensure(not answer.tool_calls, f"a tool result was answered with another tool call: {answer.tool_calls!r}")
    return f"served by {first} then {second}: get_weather({call.function.arguments}) -> {answer.content!r}"


def openai_tool_stream(client):
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": QUESTION}], tools=[OPENAI_TOOL], stream=True
    )
    provider = openai_served(raw)
    calls, finish = {}, None
    for chunk in raw.parse():
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    ensure(list(calls) == [0], f"expected one streamed tool call at index 0, got {calls!r}")
    call = calls[0]
    ensure(call["name"] == "get_weather", f"streamed tool call name {call['name']!r}")
    ensure(call["id"], "streamed tool call has no id")
    ensure_weather_args(json.loads(call["arguments"]), "streamed tool call arguments")
    ensure(finish == "tool_calls", f"finish_reason {finish!r}, expected 'tool_calls'")
    return f"served by {provider}: get_weather({call['arguments']})"


# ---- Anthropic ---------------------------------------------------------------------------


def anthropic_served(headers):
    return served_by(headers, "EXPECT_ANTHROPIC_PROVIDER")


def text_of(message):
    return "".join(block.text for block in message.content if block.type == "text")


def anthropic_text(client):
    raw = client.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": "Say hello."}]
    )
    message = raw.parse()
    ensure(message.content and message.content[0].type == "text", f"content {message.content!r}")
    ensure_text(message.content[0].text, "content[0].text")
    ensure(message.stop_reason == "end_turn", f"stop_reason {message.stop_reason!r}, expected 'end_turn'")
    return f"served by {anthropic_served(raw.headers)}: {message.content[0].text!r}"


def anthropic_stream(client):
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": "Say hello."}]
    ) as stream:
        provider = anthropic_served(stream.response.headers)
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    ensure_text(text, "streamed text")
    ensure(text_of(final) == text, f"final message text {text_of(final)!r} differs from the streamed {text!r}")
    ensure(final.stop_reason == "end_turn", f"stop_reason {final.stop_reason!r}, expected 'end_turn'")
    return f"served by {provider}: {text!r}"


def tool_use_of(message, what):
    uses = [block for block in message.content if block.type == "tool_use"]
    ensure(uses, f"{what}: no tool_use block in {message.content!r}")
    use = uses[0]
    ensure(use.name == "get_weather", f"{what}: tool_use name {use.name!r}")
    ensure(use.id, f"{what}: tool_use id is empty")
    ensure_weather_args(use.input, f"{what}: tool_use input")
    ensure(message.stop_reason == "tool_use", f"{what}: stop_reason {message.stop_reason!r}, expected 'tool_use'")
    return use


def anthropic_tool_round_trip(client):
    messages = [{"role": "user", "content": QUESTION}]
    raw = client.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
    )
    first = anthropic_served(raw.headers)
    message = raw.parse()
    use = tool_use_of(message, "answer")

    messages.append({"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]}
    )
    raw = client.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
    )
    second = anthropic_served(raw.headers)
    answer = raw.parse()
    ensure_text(text_of(answer), "answer to the tool result")
    ensure(all(block.type != "tool_use" for block in answer.content), f"a tool result got another tool_use: {answer.content!r}")
    return f"served by {first} then {second}: get_weather({json.dumps(use.input)}) -> {text_of(answer)!r}"


def anthropic_tool_stream(client):
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=200, messages=[{"role": "user", "content": QUESTION}], tools=[ANTHROPIC_TOOL]
    ) as stream:
        provider = anthropic_served(stream.response.headers)
        final = stream.get_final_message()
    use = tool_use_of(final, "streamed answer")
    return f"served by {provider}: get_weather({json.dumps(use.input)})"


# ---- OpenAI Responses API (SDK_CHECKS=responses) -----------------------------------------

RESPONSES_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": OPENAI_TOOL["function"]["parameters"],
}


def responses_text(client):
    raw = client.responses.with_raw_response.create(model=OPENAI_MODEL, instructions="Be brief.", input="Say hello.")
    response = raw.parse()
    ensure_text(response.output_text, "output_text")
    ensure(response.status == "completed", f"status {response.status!r}")
    ensure(response.usage is not None and response.usage.output_tokens > 0, f"usage {response.usage!r}")
    return f"served by {openai_served(raw)}: {response.output_text!r}"


def responses_stream(client):
    raw = client.responses.with_raw_response.create(model=OPENAI_MODEL, input="Say hello.", stream=True)
    provider = openai_served(raw)
    kinds, text, final = [], "", None
    for event in raw.parse():
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            final = event.response
    ensure_text(text, "streamed text")
    ensure(kinds[0] == "response.created", f"first event {kinds[0]!r}")
    ensure(final is not None, f"no response.completed among {kinds}")
    ensure(final.output_text == text, f"completed output_text {final.output_text!r} differs from the streamed {text!r}")
    return f"served by {provider}: {text!r} in {len(kinds)} events"


def responses_tool_round_trip(client):
    items = [{"role": "user", "content": QUESTION}]
    raw = client.responses.with_raw_response.create(model=OPENAI_MODEL, input=items, tools=[RESPONSES_TOOL])
    first = openai_served(raw)
    response = raw.parse()
    calls = [item for item in response.output if item.type == "function_call"]
    ensure(calls, f"no function_call in {response.output!r}")
    call = calls[0]
    ensure(call.name == "get_weather" and call.call_id, f"function_call {call!r}")
    ensure_weather_args(json.loads(call.arguments), "function_call.arguments")
    items += [item.model_dump(exclude_none=True) for item in response.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT})
    raw = client.responses.with_raw_response.create(model=OPENAI_MODEL, input=items, tools=[RESPONSES_TOOL])
    second = openai_served(raw)
    answer = raw.parse()
    ensure_text(answer.output_text, "answer to the function output")
    return f"served by {first} then {second}: get_weather({call.arguments}) -> {answer.output_text!r}"


# ---- Claude Code's requests (SDK_CHECKS=claude-code) ------------------------------------

CLAUDE_CODE_BETA = "interleaved-thinking-2025-05-14"
THINKING = {"type": "enabled", "budget_tokens": 1024}
CACHED_SYSTEM = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]


def cached_question():
    return [{"role": "user", "content": [{"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}}]}]


def claude_code_args(messages):
    return dict(
        model=ANTHROPIC_MODEL,
        max_tokens=2048,
        thinking=THINKING,
        system=CACHED_SYSTEM,
        messages=messages,
        tools=[ANTHROPIC_TOOL],
        extra_headers={"anthropic-beta": CLAUDE_CODE_BETA},
    )


def thinking_of(message, what):
    blocks = [block for block in message.content if block.type == "thinking"]
    ensure(blocks, f"{what}: no thinking block in {message.content!r}")
    ensure(blocks[0].thinking and blocks[0].signature, f"{what}: empty thinking or signature: {blocks[0]!r}")
    return blocks[0]


def claude_code_stream(client):
    seen = []
    thinking_text = ""
    with client.messages.stream(**claude_code_args(cached_question())) as stream:
        provider = anthropic_served(stream.response.headers)
        for event in stream:
            seen.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking_text += event.delta.thinking
        final = stream.get_final_message()
    for kind in ("message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"):
        ensure(kind in seen, f"no {kind} event among {seen}")
    ensure(thinking_text, f"no thinking_delta among the streamed events {seen}")
    block = thinking_of(final, "streamed answer")
    ensure(block.thinking == thinking_text, f"final thinking {block.thinking!r} differs from the streamed {thinking_text!r}")
    use = tool_use_of(final, "streamed answer")
    return f"served by {provider}: {len(seen)} events, thinking {thinking_text!r}, get_weather({json.dumps(use.input)})"


def claude_code_round_trip(client):
    messages = cached_question()
    raw = client.messages.with_raw_response.create(**claude_code_args(messages))
    first = anthropic_served(raw.headers)
    message = raw.parse()
    thinking_of(message, "answer")
    use = tool_use_of(message, "answer")
    # The thinking block goes back with the tool result, as the API requires.
    messages.append({"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]})
    raw = client.messages.with_raw_response.create(**claude_code_args(messages))
    second = anthropic_served(raw.headers)
    answer = raw.parse()
    ensure_text(text_of(answer), "answer to the tool result")
    return f"served by {first} then {second}: get_weather -> {text_of(answer)!r}"


# ---- Runner ------------------------------------------------------------------------------


def describe(error):
    if isinstance(error, CheckFailed):
        return str(error)
    if isinstance(error, (openai.APIStatusError, anthropic.APIStatusError)):
        return f"{type(error).__name__}: HTTP {error.status_code}: {error.response.text}"
    return "".join(traceback.format_exception(error)).rstrip()


def main():
    openai_base = os.environ.get("OPENAI_BASE_URL")
    anthropic_base = os.environ.get("ANTHROPIC_BASE_URL")
    only = os.environ.get("SDK_CHECKS", "all")
    if only == "claude-code":
        openai_base = openai_base or "http://unused.invalid/v1"
    if only == "responses":
        anthropic_base = anthropic_base or "http://unused.invalid"
    if not openai_base or not anthropic_base:
        print("check_sdks.py: set OPENAI_BASE_URL and ANTHROPIC_BASE_URL", file=sys.stderr)
        return 2
    # The gateway is local: never send these requests through a proxy from the environment.
    for var in ("NO_PROXY", "no_proxy"):
        os.environ[var] = ",".join(filter(None, [os.environ.get(var), "127.0.0.1", "localhost"]))

    # max_retries=0: a gateway failure must show, not be retried away by the SDK.
    oai = openai.OpenAI(base_url=openai_base, api_key="sk-sdk-test", max_retries=0, timeout=TIMEOUT)
    ant = anthropic.Anthropic(base_url=anthropic_base, api_key="sk-ant-sdk-test", max_retries=0, timeout=TIMEOUT)
    checks = [
        ("openai text", openai_text, oai),
        ("openai stream", openai_stream, oai),
        ("openai tool call", openai_tool_round_trip, oai),
        ("openai tool call stream", openai_tool_stream, oai),
        ("anthropic text", anthropic_text, ant),
        ("anthropic stream", anthropic_stream, ant),
        ("anthropic tool use", anthropic_tool_round_trip, ant),
        ("anthropic tool use stream", anthropic_tool_stream, ant),
    ]
    if only == "responses":
        checks = [
            ("responses text", responses_text, oai),
            ("responses stream", responses_stream, oai),
            ("responses function call round trip", responses_tool_round_trip, oai),
        ]
    if only == "claude-code":
        checks = [
            ("claude code stream", claude_code_stream, ant),
            ("claude code tool round trip with thinking", claude_code_round_trip, ant),
        ]
    print(f"openai {openai.__version__} at {openai_base}; anthropic {anthropic.__version__} at {anthropic_base}")
    failed = []
    for name, check, client in checks:
        try:
            print(f"ok   {name}: {check(client)}")
        except Exception as error:  # noqa: BLE001 - every failure is reported, then the next check runs
            failed.append(name)
            print(f"FAIL {name}: {describe(error)}")
    if failed:
        print(f"{len(failed)} of {len(checks)} SDK checks failed: {', '.join(failed)}")
        return 1
    print(f"all {len(checks)} SDK checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
