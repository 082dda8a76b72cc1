"""lb.proxy.relay: the stream on its way to the client, event by event, logged once, and what ends it early."""
import threading
import uuid

import pytest

from fixtureapps.upstream import Stream
from helpers.data import NOW_MS, logs, pool_account, row
from helpers.http import CODEX, CODEX_BODY, ask, sse
from lb import tables

pytestmark = pytest.mark.uses_upstream


@pytest.fixture
def pooled(app, clock):
    return pool_account(app, clock, "a")


def open_stream(client, body=None):
    """Start a streaming request; its chunks as the client reads them, one at a time."""
    response = client.post(CODEX, json={**{k: v for k, v in CODEX_BODY.items() if v is not None}, **(body or {})},
                           buffered=False)
    assert response.status_code == 200
    return response, iter(response.response)


def no_connection_held():
    return tables.db.is_closed() and not tables.db.obj._in_use


def test_events_reach_the_client_one_by_one_before_the_stream_ends(app, client, upstream, pooled):
    gate = threading.Event()
    upstream.default = Stream(text="one two", gate=gate)
    response, chunks = open_stream(client)
    assert sse(next(chunks))[0][0] == "response.created"
    seen = []
    while "response.output_item.done" not in seen:  # every event up to the held end, as it arrives
        seen += [kind for kind, _ in sse(next(chunks))]
    assert "response.completed" not in seen
    assert no_connection_held()  # the stream waits on the upstream holding no database connection
    assert logs(app) == []  # the log is written when the request ends
    gate.set()
    rest = b"".join(chunks)
    assert sse(rest)[-1][0] == "response.completed"
    response.close()
    assert no_connection_held()
    [log] = logs(app)
    assert (log.status, log.input_tokens, log.cached_input_tokens, log.output_tokens) == ("ok", 120, 20, 30)


def test_the_stream_passes_byte_for_byte(client, upstream, pooled):
    direct = Stream(text="exactly these bytes")
    upstream.default = direct
    proxied = ask(client).get_data()
    kinds = [kind for kind, _ in sse(proxied)]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3, "response.output_text.done",
                     "response.content_part.done", "response.output_item.done", "response.completed"]
    deltas = [data["delta"] for kind, data in sse(proxied) if kind == "response.output_text.delta"]
    assert "".join(deltas) == "exactly these bytes"
    assert proxied.count(b"\n\n") == len(kinds) and proxied.endswith(b"\n\n")


def test_one_log_per_request_with_what_it_was(app, authed, clock, upstream, pooled):
    key = authed.post("/api/api-keys", json={"name": "k"}).get_json()
    ask(authed, {"model": "gpt-5.1-codex"}, headers={"Authorization": f"Bearer {key['key']}"})
    clock.advance(1)
    ask(authed)
    first, second = logs(app)
    assert (first.account_id, first.api_key_id, first.model, first.requested_at) == (
        pooled, key["id"], "gpt-5.1-codex", NOW_MS)
    assert first.latency_ms >= 0 and first.cost > 0  # priced from the catalog, like an ingested log
    ids = [uuid.UUID(log.request_id) for log in (first, second)]
    assert [i.version for i in ids] == [7, 7] and ids[0] < ids[1]
    assert ids[0].int >> 80 == NOW_MS  # time-ordered: the unique index grows at its end
    listed = authed.get("/api/request-logs").get_json()["requests"]
    assert [item["requestId"] for item in listed] == [str(ids[1]), str(ids[0])]
    overview = authed.get("/api/dashboard/overview").get_json()
    assert overview["requestCount"] == 2  # the rollups saw them: the same store code as the ingest
    assert overview["usageSummary"]["inputTokens"] == 240


def test_an_incomplete_response_is_ok_with_its_reason(app, client, upstream, pooled):
    upstream.default = Stream(end="incomplete")
    assert sse(ask(client).get_data())[-1][0] == "response.incomplete"
    [log] = logs(app)
    assert (log.status, log.error_code, log.output_tokens) == ("ok", "incomplete:max_output_tokens", 30)


def test_a_stream_cut_without_its_end_gets_a_failed_event(app, client, upstream, pooled):
    upstream.default = Stream(end="cut")
    events = sse(ask(client).get_data())
    assert events[-1][0] == "response.failed"
    assert events[-1][1]["response"]["error"]["code"] == "stream_incomplete"
    assert [(log.status, log.error_code) for log in logs(app)] == [("error", "stream_incomplete")]


def test_an_upstream_silent_too_long_ends_the_stream(make_app, clock, upstream, token_server):
    app = make_app(UPSTREAM_URL=upstream.url, UPSTREAM_READ_TIMEOUT=0.3)
    pool_account(app, clock, "a")
    upstream.default = Stream(gate=threading.Event())  # never opened: the end never comes
    events = sse(ask(app.test_client()).get_data())
    assert events[0][0] == "response.created"
    assert events[-1][1]["response"]["error"]["code"] == "stream_idle_timeout"
    assert [(log.status, log.error_code) for log in logs(app)] == [("error", "stream_idle_timeout")]


def test_a_failure_after_the_first_byte_stays_in_the_stream(app, client, clock, upstream, pooled):
    pool_account(app, clock, "b", secondary_used_percent=50.0)
    upstream.plan("ws-a", Stream(end="failed", error={"code": "usage_limit_reached", "message": "limit",
                                                      "resets_in_seconds": 60}))
    events = sse(ask(client).get_data())
    assert events[0][0] == "response.created" and events[-1][0] == "response.failed"
    assert upstream.accounts() == ["ws-a"]  # no failover once the client has bytes
    assert (row(app, pooled).status, row(app, pooled).resets_at) == ("rate_limited", NOW_MS + 60_000)
    assert [(log.status, log.error_code) for log in logs(app)] == [("rate_limit", "usage_limit_reached")]


def test_a_client_that_goes_away_is_logged_cancelled_and_costs_the_account_nothing(app, client, upstream, pooled):
    gate = threading.Event()
    upstream.default = Stream(gate=gate)
    response, chunks = open_stream(client, {"prompt_cache_key": "conv-1"})
    next(chunks)
    next(chunks)
    response.close()  # what waitress does when the client has hung up
    gate.set()
    [log] = logs(app)
    assert (log.status, log.error_code, log.account_id) == ("cancelled", "client_disconnected", pooled)
    account = row(app, pooled)
    assert (account.status, account.cooldown_until, account.resets_at) == ("active", None, None)
    assert no_connection_held()
