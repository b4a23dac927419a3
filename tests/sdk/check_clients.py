#!/usr/bin/env python3
"""Drives Switchyard's client keys with the official OpenAI and Anthropic Python SDKs.

Environment:
  OPENAI_BASE_URL     the gateway's OpenAI-compatible base, e.g. http://127.0.0.1:8080/v1
  ANTHROPIC_BASE_URL  the gateway's Anthropic-compatible base, e.g. http://127.0.0.1:8080
  GOOD_KEY            a client key allowed on every route, without limits
  CHAT_ONLY_KEY       a client key allowed on the chat route only (/v1/chat/completions)
  LIMITED_KEY         a client key with requestsPerMinute: 2 and no requests yet

Checks: the SDKs work unchanged with a Switchyard key as their API key (text and stream,
Anthropic with `api_key` (x-api-key) and with `auth_token` (Authorization: Bearer)); a missing
key (the OpenAI SDK refuses to send one; the Anthropic SDK is told to omit both headers), a wrong
key, a forbidden route and a reached limit surface as the SDK's own typed errors
(AuthenticationError, PermissionDeniedError, RateLimitError) with the gateway's error body
parsed, not as a parse failure. SDK retries are off so that a 429 is seen as it came.
Prints one line per check; exits 1 if any failed.

Usage: pip install -r tests/sdk/requirements.txt; OPENAI_BASE_URL=... python3 tests/sdk/check_clients.py
"""

import os
import sys
import traceback

import anthropic
import openai

TIMEOUT = 30.0
MODEL = "client-model"
HELLO = [{"role": "user", "content": "Say hello."}]


class CheckFailed(Exception):
    pass


def ensure(condition, message):
    if not condition:
        raise CheckFailed(message)


def openai_client(key):
    return openai.OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key=key, timeout=TIMEOUT, max_retries=0)


def anthropic_client(**auth):
    return anthropic.Anthropic(base_url=os.environ["ANTHROPIC_BASE_URL"], timeout=TIMEOUT, max_retries=0, **auth)


def openai_text(key):
    completion = openai_client(key).chat.completions.create(model=MODEL, messages=HELLO)
    text = completion.choices[0].message.content
    ensure(text.startswith("Hello from"), f"unexpected text {text!r}")
    return repr(text)


def openai_stream(key):
    stream = openai_client(key).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    ensure(text.startswith("Hello from"), f"unexpected streamed text {text!r}")
    return repr(text)


def anthropic_text(**auth):
    message = anthropic_client(**auth).messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    text = "".join(b.text for b in message.content if b.type == "text")
    ensure(text.startswith("Hello from"), f"unexpected text {text!r}")
    return repr(text)


def anthropic_stream(**auth):
    with anthropic_client(**auth).messages.stream(model=MODEL, max_tokens=50, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
    ensure(text.startswith("Hello from"), f"unexpected streamed text {text!r}")
    return repr(text)


def expect_error(call, error_class, status, check_body):
    """Runs `call`, which must raise the SDK's `error_class` with `status` and a parsed body."""
    try:
        call()
    except error_class as e:
        ensure(e.status_code == status, f"status {e.status_code}, expected {status}")
        ensure(isinstance(e.body, dict), f"the error body was not parsed: {e.body!r}")
        check_body(e.body, e.response.headers)
        return f"{type(e).__name__} {e.status_code}: {e.message}"
    except Exception as e:  # noqa: BLE001 - any other exception is the failure being tested
        raise CheckFailed(f"expected {error_class.__name__}, got {type(e).__name__}: {e}") from e
    raise CheckFailed(f"expected {error_class.__name__}, the call succeeded")


def openai_refuses_without_key():
    """The OpenAI SDK itself will not send a request without a key."""
    try:
        openai.OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="", max_retries=0)
    except openai.OpenAIError as e:
        ensure("api_key" in str(e), f"unexpected error {e}")
        return f"refused by the SDK: {e}"
    raise CheckFailed("the OpenAI SDK accepted an empty key")


def openai_error(type_, code):
    def check(body, _headers):
        # The OpenAI SDK hands over the `error` object of the body.
        ensure(body.get("type") == type_, f"error.type {body.get('type')!r}, expected {type_!r}: {body}")
        ensure(body.get("code") == code, f"error.code {body.get('code')!r}, expected {code!r}: {body}")

    return check


def anthropic_error(type_):
    def check(body, _headers):
        ensure(body.get("type") == "error", f"type {body.get('type')!r}: {body}")
        got = body.get("error", {}).get("type")
        ensure(got == type_, f"error.type {got!r}, expected {type_!r}: {body}")

    return check


def with_retry_after(check):
    def checked(body, headers):
        check(body, headers)
        retry = headers.get("retry-after")
        ensure(retry is not None and retry.isdigit() and 1 <= int(retry) <= 61, f"Retry-After {retry!r}")
        ensure(headers.get("x-ratelimit-remaining-requests") == "0", "x-ratelimit-remaining-requests is not 0")

    return checked


def main():
    good, chat_only, limited = os.environ["GOOD_KEY"], os.environ["CHAT_ONLY_KEY"], os.environ["LIMITED_KEY"]
    checks = [
        ("openai: text with a client key", lambda: openai_text(good)),
        ("openai: stream with a client key", lambda: openai_stream(good)),
        ("anthropic: text, key as api_key (x-api-key)", lambda: anthropic_text(api_key=good)),
        ("anthropic: stream, key as auth_token (Bearer)", lambda: anthropic_stream(auth_token=good)),
        ("openai: no key", openai_refuses_without_key),
        (
            "anthropic: no key (both auth headers omitted) is AuthenticationError",
            lambda: expect_error(
                lambda: anthropic_text(default_headers={"Authorization": anthropic.Omit(), "X-Api-Key": anthropic.Omit()}),
                anthropic.AuthenticationError,
                401,
                anthropic_error("authentication_error"),
            ),
        ),
        (
            "openai: wrong key is AuthenticationError",
            lambda: expect_error(
                lambda: openai_text("sk-not-a-client"),
                openai.AuthenticationError,
                401,
                openai_error("invalid_request_error", "invalid_api_key"),
            ),
        ),
        (
            "anthropic: wrong key is AuthenticationError",
            lambda: expect_error(
                lambda: anthropic_text(api_key="sk-not-a-client"),
                anthropic.AuthenticationError,
                401,
                anthropic_error("authentication_error"),
            ),
        ),
        ("openai: chat-only key on chat", lambda: openai_text(chat_only)),
        (
            "anthropic: chat-only key on messages is PermissionDeniedError",
            lambda: expect_error(
                lambda: anthropic_text(api_key=chat_only),
                anthropic.PermissionDeniedError,
                403,
                anthropic_error("permission_error"),
            ),
        ),
        ("openai: limited key, request 1 of 2", lambda: openai_text(limited)),
        ("anthropic: limited key, request 2 of 2", lambda: anthropic_text(api_key=limited)),
        (
            "openai: limited key, request 3 is RateLimitError",
            lambda: expect_error(
                lambda: openai_text(limited),
                openai.RateLimitError,
                429,
                with_retry_after(openai_error("requests", "rate_limit_exceeded")),
            ),
        ),
        (
            "anthropic: limited key, request 3 is RateLimitError",
            lambda: expect_error(
                lambda: anthropic_text(api_key=limited),
                anthropic.RateLimitError,
                429,
                with_retry_after(anthropic_error("rate_limit_error")),
            ),
        ),
    ]
    failed = 0
    for name, check in checks:
        try:
            print(f"ok   {name}: {check()}")
        except Exception as e:  # noqa: BLE001 - report every failing check, then exit 1
            failed += 1
            print(f"FAIL {name}: {e}")
            traceback.print_exc(file=sys.stderr)
    print(f"{len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
