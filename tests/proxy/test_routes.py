"""lb.proxy.routes: the OpenAI envelope, keys and their limits, headers, one JSON answer, models."""
import json

import pytest

from fixtureapps.upstream import Compact, Fail, Stream
from helpers.data import NOW_MS, logs, pool_account, set_catalog
from helpers.http import CODEX, REMOTE, V1, ask, ingest, openai_error, post, setup_password, sse

pytestmark = pytest.mark.uses_upstream


@pytest.fixture
def pooled(app, clock):
    return pool_account(app, clock, "a")


def new_key(client, **fields):
    """Create an API key through the dashboard API; (its id, the key)."""
    response = post(client, "/api/api-keys", {"name": "laptop", **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"], response.get_json()["key"]


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


# -- routes and the envelope -----------------------------------------------------------------

@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/v1/nothing", 404, "not_found"),
    ("POST", "/backend-api/codex/responses/", 404, "not_found"),
    ("GET", V1, 405, "method_not_allowed"),
    ("GET", CODEX, 405, "method_not_allowed"),
    ("DELETE", "/v1/models", 405, "method_not_allowed"),
])
def test_errors_on_the_proxy_paths_use_the_openai_envelope(client, method, path, status, code):
    response = client.open(path, method=method)
    assert openai_error(response)[:2] == (status, code)
    assert response.get_json()["error"]["type"] == "invalid_request_error"


def test_the_dashboard_keeps_its_own_envelope(client):
    assert client.get("/api/nothing").get_json() == {"error": {"code": "not_found", "message": "Not found"}}


def test_body_checks_come_in_order_size_type_json_then_key(make_app, upstream, token_server):
    app = make_app(UPSTREAM_URL=upstream.url, PROXY_MAX_BODY_BYTES=4096)
    client = app.test_client()
    wrong_key = {"Authorization": "Bearer sk-clb-unknown"}
    big = json.dumps({"model": "gpt-5.3-codex", "input": "x" * 5000})
    cases = [
        (dict(data=big, content_type="text/plain"), (413, "payload_too_large")),
        (dict(data="{}", content_type="text/plain"), (415, "unsupported_media_type")),
        (dict(data="{}", content_type="application/json", headers={**wrong_key, "Content-Encoding": "gzip"}),
         (415, "unsupported_media_type")),
        (dict(data="{not json", content_type="application/json"), (400, "invalid_request_error")),
        (dict(data="[1, 2]", content_type="application/json"), (400, "invalid_request_error")),
        (dict(data='{"model": NaN}', content_type="application/json"), (400, "invalid_request_error")),
        (dict(data="{}", content_type="application/json"), (401, "invalid_api_key")),
    ]
    for kwargs, expected in cases:
        headers = {**wrong_key, **kwargs.pop("headers", {})}
        assert openai_error(client.post(CODEX, headers=headers, **kwargs))[:2] == expected
    assert upstream.count() == 0 and logs(app) == []


def test_the_proxy_takes_bodies_the_dashboard_would_refuse(app, client, upstream, pooled):
    long_input = "x" * (app.config["MAX_BODY_BYTES"] + 10)
    response = ask(client, {"input": [{"type": "message", "role": "user",
                                       "content": [{"type": "input_text", "text": long_input}]}]})
    assert response.status_code == 200
    assert upstream.requests[0].body["input"][0]["content"][0]["text"] == long_input
    assert post(client, "/api/request-logs", {"requests": [], "pad": long_input}).status_code == 413


# -- who may use the proxy ------------------------------------------------------------------

def test_without_keys_required_only_this_machine_may_come_without_a_key(client, upstream, pooled):
    assert ask(client).status_code == 200
    assert openai_error(ask(client, environ_base=REMOTE))[:3] == (401, "invalid_api_key", "authentication_error")
    assert upstream.count() == 1


def test_with_keys_required_every_request_needs_one(app, authed, upstream, pooled):
    key_id, key = new_key(authed)
    assert authed.patch("/api/settings", json={"apiKeyRequired": True}).status_code == 200
    assert openai_error(ask(authed))[:2] == (401, "invalid_api_key")
    response = ask(authed, headers=bearer(key), environ_base=REMOTE)
    assert response.status_code == 200
    assert [(log.api_key_id, log.status) for log in logs(app)] == [(key_id, "ok")]


@pytest.mark.parametrize("change", [{"enabled": False}, "regenerate", "delete", "expire"])
def test_a_key_that_is_sent_is_always_checked(authed, clock, upstream, pooled, change):
    key_id, key = new_key(authed, expiresAt="2026-11-25T08:00:00Z")
    assert ask(authed, headers=bearer(key)).status_code == 200
    if change == "regenerate":
        post(authed, f"/api/api-keys/{key_id}/regenerate")
    elif change == "delete":
        authed.delete(f"/api/api-keys/{key_id}")
    elif change == "expire":
        clock.advance(3600)
    else:
        authed.patch(f"/api/api-keys/{key_id}", json=change)
    assert openai_error(ask(authed, headers=bearer(key)))[:2] == (401, "invalid_api_key")
    for header in ("Bearer sk-clb-not-a-key", "Basic " + key, "Bearer"):
        assert openai_error(ask(authed, headers={"Authorization": header}))[:2] == (401, "invalid_api_key")
    assert upstream.count() == 1


def test_the_model_must_be_named_and_allowed(app, authed, upstream, pooled):
    _, key = new_key(authed, allowedModels=["gpt-5.3-codex"])
    assert openai_error(ask(authed, {"model": None}, headers=bearer(key)))[:2] == (400, "invalid_request_error")
    assert openai_error(ask(authed, {"model": 5}, headers=bearer(key)))[:2] == (400, "invalid_request_error")
    refused = ask(authed, {"model": "gpt-4o-mini"}, headers=bearer(key))
    assert openai_error(refused)[:3] == (403, "model_not_allowed", "permission_error")
    assert openai_error(ask(authed, {"model": "not-in-the-catalog"}))[:2] == (403, "model_not_allowed")
    set_catalog(app, "gpt-4o-mini", enabled=False)
    assert openai_error(ask(authed, {"model": "gpt-4o-mini"}))[:2] == (403, "model_not_allowed")
    assert ask(authed, {"model": "gpt-5.3-codex"}, headers=bearer(key)).status_code == 200
    assert ask(authed, {"model": "o3-pro"}).status_code == 200  # no key: any enabled model
    assert upstream.count() == 2 and len(logs(app)) == 2  # refused requests never reach the pool, nor the logs


def test_a_key_limit_reached_is_429_naming_it(app, authed, upstream, pooled):
    key_id, key = new_key(authed, limits=[{"metric": "totalTokens", "window": "day", "max": 100}])
    assert ask(authed, headers=bearer(key)).status_code == 200  # 120 + 30 tokens: now past the limit
    refused = ask(authed, headers=bearer(key))
    assert openai_error(refused)[:3] == (429, "rate_limit_exceeded", "rate_limit_error")
    message = refused.get_json()["error"]["message"]
    assert "totalTokens" in message and "2026-11-26T00:00:00Z" in message
    # In the contract's order: a wrong model is 403 before the limit.
    assert openai_error(ask(authed, {"model": "nope"}, headers=bearer(key)))[0] == 403
    assert upstream.count() == 1 and len(logs(app)) == 1


def test_ingested_logs_of_a_key_count_against_its_limits(authed, upstream, pooled):
    key_id, key = new_key(authed, limits=[{"metric": "costUsd", "window": "month", "max": 1}])
    ingest(authed, [{"model": "o3-pro", "inputTokens": 100_000, "apiKeyId": key_id}])  # $2
    assert openai_error(ask(authed, headers=bearer(key)))[:2] == (429, "rate_limit_exceeded")


def test_an_accepted_key_records_its_last_use_at_most_once_a_minute(app, authed, clock, upstream, pooled):
    key_id, key = new_key(authed)
    ask(authed, headers=bearer(key))
    first = authed.get(f"/api/api-keys/{key_id}").get_json()["lastUsedAt"]
    assert first == "2026-11-25T07:00:00Z"
    clock.advance(30)
    ask(authed, headers=bearer(key))
    assert authed.get(f"/api/api-keys/{key_id}").get_json()["lastUsedAt"] == first
    clock.advance(31)
    ask(authed, headers=bearer(key))
    assert authed.get(f"/api/api-keys/{key_id}").get_json()["lastUsedAt"] == "2026-11-25T07:01:01Z"


# -- what crosses the proxy -------------------------------------------------------------------

def test_client_credentials_and_forwarding_headers_never_reach_the_upstream(app, authed, upstream, pooled):
    _, key = new_key(authed)
    sent = {"Authorization": f"Bearer {key}", "Cookie": "dashboard_session=secret",
            "X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "Forwarded": "for=198.51.100.7",
            "X-Real-IP": "198.51.100.7", "True-Client-IP": "198.51.100.7", "CF-Connecting-IP": "198.51.100.7",
            "chatgpt-account-id": "ws-stolen", "Accept-Encoding": "gzip", "Connection": "x-private",
            "X-Private": "hop", "session-id": "conv-1", "originator": "codex_exec",
            "User-Agent": "codex_exec/0.169.0", "x-codex-turn-metadata": '{"turn": 1}'}
    response = ask(authed, headers=sent)
    assert response.status_code == 200
    got = upstream.requests[0].headers
    for name in ("cookie", "x-forwarded-for", "x-forwarded-proto", "forwarded", "x-real-ip", "true-client-ip",
                 "cf-connecting-ip", "x-private"):
        assert name not in got, name
    assert got.get("accept-encoding", "identity") == "identity"  # the proxy reads the stream: never compressed
    assert got["authorization"].startswith("Bearer ") and "sk-clb" not in got["authorization"]
    assert got["chatgpt-account-id"] == "ws-a"
    assert (got["session-id"], got["originator"], got["user-agent"]) == ("conv-1", "codex_exec", "codex_exec/0.169.0")
    assert got["x-codex-turn-metadata"] == '{"turn": 1}' and got["accept"] == "text/event-stream"


def test_the_answer_carries_the_upstream_usage_headers_and_request_id_only(client, upstream, pooled):
    upstream.default = Stream(headers={"x-codex-primary-used-percent": "12.5", "Set-Cookie": "upstream=1",
                                       "Keep-Alive": "timeout=5"})
    response = ask(client)
    assert response.headers["x-codex-primary-used-percent"] == "12.5"
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["Content-Type"] == "text/event-stream"
    assert "Set-Cookie" not in response.headers and "Keep-Alive" not in response.headers


def test_the_codex_body_goes_upstream_as_sent(client, upstream, pooled):
    raw = b'{"model":"gpt-5.3-codex","stream":true,"input":[],  "client_metadata":{"x":1}}'
    assert client.post(CODEX, data=raw, content_type="application/json").status_code == 200
    assert client.post(CODEX, json={"model": "gpt-5.3-codex", "input": []}).status_code == 200
    assert upstream.requests[0].raw == raw
    assert upstream.requests[1].body == {"model": "gpt-5.3-codex", "input": [], "stream": True}


# -- /v1/responses ---------------------------------------------------------------------------

def test_v1_bodies_are_made_what_the_upstream_accepts(client, upstream, pooled):
    body = {"model": "gpt-5.3-codex", "input": "say hi", "max_output_tokens": 50, "temperature": 0.2,
            "store": True, "tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f"}],
            "include": ["reasoning.encrypted_content"], "metadata": {"kept": "yes"}}
    assert client.post(V1, json=body).status_code == 200
    sent = upstream.requests[0].body
    assert sent == {"model": "gpt-5.3-codex", "instructions": "", "store": False, "stream": True,
                    "input": [{"type": "message", "role": "user",
                               "content": [{"type": "input_text", "text": "say hi"}]}],
                    "tools": [{"type": "web_search"}, {"type": "function", "name": "f"}],
                    "include": ["reasoning.encrypted_content"], "metadata": {"kept": "yes"}}


@pytest.mark.parametrize("field", [
    {"previous_response_id": "resp_1"}, {"truncation": "auto"}, {"include": ["file_search_call.results"]},
    {"tools": [{"type": "code_interpreter"}]}, {"input": 5},
    {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
])
def test_v1_fields_the_upstream_cannot_honour_are_400(app, client, upstream, pooled, field):
    response = client.post(V1, json={"model": "gpt-5.3-codex", "input": "hi", **field})
    assert openai_error(response)[:2] == (400, "invalid_request_error")
    assert upstream.count() == 0 and logs(app) == []


def test_v1_without_stream_answers_one_response_object(app, client, upstream, pooled):
    upstream.default = Stream(text="Hello there", headers={"x-codex-primary-used-percent": "3"})
    response = client.post(V1, json={"model": "gpt-5.3-codex", "input": "hi"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    answer = response.get_json()
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert [item["content"][0]["text"] for item in answer["output"]] == ["Hello there"]
    assert answer["usage"]["input_tokens"] == 120 and answer["usage"]["output_tokens"] == 30
    assert response.headers["x-codex-primary-used-percent"] == "3"
    [log] = logs(app)
    assert (log.status, log.input_tokens, log.cached_input_tokens, log.output_tokens) == ("ok", 120, 20, 30)


def test_v1_with_stream_answers_the_events(client, upstream, pooled):
    response = client.post(V1, json={"model": "gpt-5.3-codex", "input": "hi", "stream": True})
    kinds = [kind for kind, _ in sse(response.get_data())]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def test_v1_without_stream_a_failed_response_is_502(app, client, upstream, pooled):
    upstream.default = Stream(end="failed", error={"code": "context_length_exceeded", "message": "too long"})
    response = client.post(V1, json={"model": "gpt-5.3-codex", "input": "hi"})
    assert openai_error(response)[:2] == (502, "upstream_error")
    assert [(log.status, log.error_code) for log in logs(app)] == [("error", "context_length_exceeded")]


def test_v1_without_stream_an_upstream_error_keeps_its_status(client, upstream, pooled):
    upstream.default = Fail(400, {"detail": "Store must be set to false"})
    response = client.post(V1, json={"model": "gpt-5.3-codex", "input": "hi"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Store must be set to false"}


# -- compaction ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [CODEX + "/compact", V1 + "/compact"])
def test_compaction_is_one_json_answer_passed_on_and_logged(app, client, upstream, pooled, path):
    body = {"model": "gpt-5.3-codex", "input": [], "instructions": "compact this"}
    response = client.post(path, json=body)
    assert response.status_code == 200
    assert response.get_json()["object"] == "response.compaction"
    assert upstream.requests[0].path.endswith("/codex/responses/compact")
    assert upstream.requests[0].body == body and upstream.requests[0].headers["accept"] == "application/json"
    [log] = logs(app)
    assert (log.status, log.account_id, log.input_tokens, log.output_tokens) == ("ok", pooled, 50, 10)


def test_compaction_fails_over_like_a_response(app, client, clock, upstream):
    first, second = pool_account(app, clock, "a"), pool_account(app, clock, "b", secondary_used_percent=50)
    upstream.plan("ws-a", Fail(500, {"error": {"message": "down"}}))
    upstream.plan("ws-b", Compact(body={"object": "response.compaction", "output": []}))
    response = client.post(CODEX + "/compact", json={"model": "gpt-5.3-codex", "input": []})
    assert response.get_json() == {"object": "response.compaction", "output": []}
    assert upstream.accounts() == ["ws-a", "ws-b"]
    assert [(log.account_id, log.status) for log in logs(app)] == [(second, "ok")]
    assert first != second


# -- models ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/models", "/backend-api/codex/models"])
def test_models_lists_the_enabled_catalog_in_the_openai_shape(app, client, path):
    set_catalog(app, "o3-pro", enabled=False)
    answer = client.get(path).get_json()
    assert answer["object"] == "list"
    assert [m["id"] for m in answer["data"]] == ["gpt-5.3-codex", "gpt-5.3-codex-spark", "gpt-5.2", "gpt-5.1-codex",
                                                 "gpt-5.1-codex-mini", "gpt-5-codex", "gpt-4o-mini"]
    assert answer["data"][0] == {"id": "gpt-5.3-codex", "object": "model", "created": NOW_MS // 1000,
                                 "owned_by": "codex-lb"}


def test_models_are_those_the_key_may_use(authed):
    _, key = new_key(authed, allowedModels=["o3-pro", "gpt-4o-mini"])
    answer = authed.get("/v1/models", headers=bearer(key)).get_json()
    assert [m["id"] for m in answer["data"]] == ["gpt-4o-mini", "o3-pro"]
    assert openai_error(authed.get("/v1/models", headers=bearer("sk-clb-nope")))[:2] == (401, "invalid_api_key")
    assert openai_error(authed.get("/v1/models", environ_base=REMOTE))[:2] == (401, "invalid_api_key")


def test_a_dashboard_session_is_no_key(client, upstream):
    setup_password(client)  # the client now holds a dashboard cookie
    assert openai_error(client.get("/v1/models", environ_base=REMOTE))[:2] == (401, "invalid_api_key")
