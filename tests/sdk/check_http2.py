"""The official OpenAI Python SDK over HTTP/2 (httpx with http2=True) against a TLS listener
whose certificate a test CA signed: a chat answer and a stream, each checked to have come
over HTTP/2. Usage: check_http2.py BASE_URL CA_FILE. Exit 0 when everything held."""

import sys

import openai

try:  # the HTTP client the SDK itself is built on
    import httpx2 as httpx
except ImportError:
    import httpx


def main():
    base_url, ca_file = sys.argv[1], sys.argv[2]
    http = httpx.Client(http2=True, verify=ca_file, timeout=30)
    client = openai.OpenAI(base_url=base_url, api_key="sk-http2-test", max_retries=0, http_client=http)

    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "What is 2+2?"}]
    )
    assert raw.http_response.http_version == "HTTP/2", raw.http_response.http_version
    assert raw.headers.get("x-switchyard-provider") == "p", dict(raw.headers)
    text = raw.parse().choices[0].message.content
    assert text == "Hello from p", text

    with client.chat.completions.with_streaming_response.create(
        model="m", messages=[{"role": "user", "content": "Count"}], stream=True
    ) as response:
        assert response.http_response.http_version == "HTTP/2", response.http_response.http_version
        pieces = [c.choices[0].delta.content or "" for c in response.parse() if c.choices]
    assert "".join(pieces) == "Hello from p", pieces
    print("http2 ok")


if __name__ == "__main__":
    main()
