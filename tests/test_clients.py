"""Real clients through the real server (waitress, its own process): the official openai package, and many
streams at once. The Codex CLI has its own file (test_codex_cli.py)."""
import http.client
import json
import threading
import time

import openai
import pytest

from fixtureapps.upstream import Fail, Stream
from helpers.data import logs
from helpers.http import CODEX, CODEX_BODY, sse


def sdk(server, key):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_openai_package_gets_one_response(proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="Hello through the proxy")
    with sdk(server, key) as client:
        response = client.responses.create(model="gpt-5.3-codex", input="say hello", max_output_tokens=64)
    assert response.output_text == "Hello through the proxy"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 30)
    assert upstream.requests[0].body["input"][0]["content"][0]["text"] == "say hello"
    assert "max_output_tokens" not in upstream.requests[0].body
    assert [(log.status, log.model) for log in logs(app)] == [("ok", "gpt-5.3-codex")]


def test_the_openai_package_streams(proxied, upstream):
    server, key, _ = proxied
    upstream.default = Stream(text="one two three")
    with sdk(server, key) as client:
        with client.responses.stream(model="gpt-5.3-codex", input="count") as stream:
            deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
            final = stream.get_final_response()
    assert deltas == ["one ", "two ", "three"]
    assert final.usage.total_tokens == 150


def test_the_openai_package_lists_the_models(proxied):
    server, key, _ = proxied
    with sdk(server, key) as client:
        models = client.models.list()
    assert [m.id for m in models][:2] == ["gpt-5.3-codex", "gpt-5.3-codex-spark"]
    assert all(m.owned_by == "codex-lb" and m.created > 0 for m in models)


def test_the_openai_package_reads_the_proxy_errors(proxied, upstream):
    server, key, _ = proxied
    with openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="sk-clb-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as raised:
            bad.models.list()
    assert raised.value.code == "invalid_api_key"
    upstream.default = Fail(429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                            "resets_at": int(time.time()) + 600}})
    with sdk(server, key) as client:
        with pytest.raises(openai.RateLimitError):
            client.responses.create(model="gpt-5.3-codex", input="hi")
        with pytest.raises(openai.RateLimitError) as exhausted:  # the pool is now exhausted: the proxy says so
            client.responses.create(model="gpt-5.3-codex", input="hi")
    assert exhausted.value.body["type"] == "usage_limit_reached"


def test_32_slow_streams_at_once_all_complete(proxied, upstream):
    server, key, app = proxied
    upstream.default = Stream(text="a slow answer in many small pieces", delay=0.05)
    results = [None] * 32

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("POST", CODEX, body=json.dumps({**CODEX_BODY, "prompt_cache_key": f"c{i}"}),
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            answer = conn.getresponse()
            results[i] = (answer.status, sse(answer.read()))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None and r[0] == 200 and r[1][-1][0] == "response.completed" for r in results), results
    assert len(logs(app)) == 32 and {log.status for log in logs(app)} == {"ok"}
