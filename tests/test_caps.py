"""lb.caps: per-key caps, in the key object and on the proxy.

requestsPerMinute and tokensPerMinute count over a sliding 60 s (tokens as a
request ends), concurrentRequests the requests in flight; a request over a
cap is the OpenAI-envelope 429 rate_limit_exceeded naming the cap, with
Retry-After, and is no request log. A slot whose lease its process stopped
renewing frees itself. (Exactness across processes: test_instances.py.)
"""
import threading

import pytest

from fixtureapps.upstream import Stream
from helpers.data import NOW_MS, logs, pool_account
from helpers.http import CODEX, ask, names_field, ok, openai_error, post
from lb import caps, keys, tables
from lb.proxy.leases import Leases

pytestmark = pytest.mark.uses_upstream

API_KEYS = "/api/api-keys"
NO_CAPS = {"requestsPerMinute": None, "tokensPerMinute": None, "concurrentRequests": None}


def new_key(client, **fields):
    """(the key object, the key) of a key made through the dashboard API."""
    response = post(client, API_KEYS, {"name": "agents", **fields})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    return body, body["key"]


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def refused(response):
    """The cap a 429 names, and its Retry-After."""
    assert openai_error(response) == (429, "rate_limit_exceeded", "rate_limit_error")
    message = response.get_json()["error"]["message"]
    assert message.startswith("API key cap reached: ")
    return message.split(": ", 1)[1].split(" ")[0], int(response.headers["Retry-After"])


@pytest.fixture
def pooled(app, clock):
    return pool_account(app, clock, "a")


# -- in the key object -------------------------------------------------------------------------

def test_caps_are_set_by_create_and_replaced_whole_by_a_patch(authed):
    body, _ = new_key(authed, caps={"requestsPerMinute": 60, "tokensPerMinute": 10**6, "concurrentRequests": 2})
    assert body["caps"] == {"requestsPerMinute": 60, "tokensPerMinute": 10**6, "concurrentRequests": 2}
    changed = ok(authed.patch(f"{API_KEYS}/{body['id']}", json={"caps": {"concurrentRequests": 1}}))
    assert changed["caps"] == {**NO_CAPS, "concurrentRequests": 1}  # a name left out is null
    assert ok(authed.patch(f"{API_KEYS}/{body['id']}", json={"name": "renamed"}))["caps"] == changed["caps"]
    assert ok(authed.patch(f"{API_KEYS}/{body['id']}", json={"caps": None}))["caps"] == NO_CAPS
    assert ok(authed.get(f"{API_KEYS}/{body['id']}"))["capsInUse"] == {
        "requestsPerMinute": 0, "tokensPerMinute": 0, "concurrentRequests": 0}


@pytest.mark.parametrize("value, field", [
    ("fast", "caps"), ([1], "caps"), (5, "caps"),
    ({"requestsPerMinute": 0}, "caps.requestsPerMinute"), ({"requestsPerMinute": -1}, "caps.requestsPerMinute"),
    ({"tokensPerMinute": 1.5}, "caps.tokensPerMinute"), ({"tokensPerMinute": "100"}, "caps.tokensPerMinute"),
    ({"concurrentRequests": True}, "caps.concurrentRequests"),
    ({"concurrentRequests": 10**12 + 1}, "caps.concurrentRequests"),
])
def test_a_bad_cap_is_422_naming_it_and_changes_nothing(authed, value, field):
    assert names_field(post(authed, API_KEYS, {"name": "x", "caps": value}), field)
    body, _ = new_key(authed, caps={"requestsPerMinute": 5})
    assert names_field(authed.patch(f"{API_KEYS}/{body['id']}", json={"name": "y", "caps": value}), field)
    after = ok(authed.get(f"{API_KEYS}/{body['id']}"))
    assert (after["name"], after["caps"]) == ("agents", {**NO_CAPS, "requestsPerMinute": 5})


# -- on the proxy --------------------------------------------------------------------------------

def test_requests_per_minute_count_over_a_sliding_minute(app, authed, client, clock, pooled):
    body, key = new_key(authed, caps={"requestsPerMinute": 2})
    assert ask(client, headers=bearer(key)).status_code == 200
    clock.advance(20)
    assert ask(client, headers=bearer(key)).status_code == 200
    clock.advance(10)
    assert refused(ask(client, headers=bearer(key))) == ("requestsPerMinute", 30)  # the first leaves in 30 s
    assert ok(authed.get(f"{API_KEYS}/{body['id']}"))["capsInUse"]["requestsPerMinute"] == 2
    clock.advance(30)  # the first request is a minute old: a place in the window
    assert ask(client, headers=bearer(key)).status_code == 200
    assert refused(ask(client, headers=bearer(key)))[0] == "requestsPerMinute"
    assert len(logs(app)) == 3  # the refusals are no request logs


def test_tokens_per_minute_count_as_requests_end(app, authed, client, clock, upstream, pooled):
    body, key = new_key(authed, caps={"tokensPerMinute": 200})
    upstream.default = Stream(usage=(120, 20, 30))  # 150 tokens a request
    assert ask(client, headers=bearer(key)).status_code == 200
    assert ask(client, headers=bearer(key)).status_code == 200  # 150 < 200 when it started
    assert ok(authed.get(f"{API_KEYS}/{body['id']}"))["capsInUse"]["tokensPerMinute"] == 300
    clock.advance(15)
    assert refused(ask(client, headers=bearer(key))) == ("tokensPerMinute", 45)
    clock.advance(45)
    assert ask(client, headers=bearer(key)).status_code == 200
    assert [log.status for log in logs(app)] == ["ok"] * 3


def test_concurrent_requests_count_what_is_in_flight(app, authed, client, upstream, pooled):
    body, key = new_key(authed, caps={"concurrentRequests": 1})
    gate = threading.Event()
    upstream.default = Stream(gate=gate)
    held = client.post(CODEX, json={"model": "gpt-5.3-codex", "stream": True, "input": "hi"}, headers=bearer(key),
                       buffered=False)
    assert held.status_code == 200  # admitted: it streams, and holds its slot until it ends
    assert refused(ask(client, headers=bearer(key))) == ("concurrentRequests", 1)
    assert ok(authed.get(f"{API_KEYS}/{body['id']}"))["capsInUse"]["concurrentRequests"] == 1
    gate.set()
    held.get_data()
    held.close()
    assert ask(client, headers=bearer(key)).status_code == 200  # its slot is free again
    assert ok(authed.get(f"{API_KEYS}/{body['id']}"))["capsInUse"]["concurrentRequests"] == 0
    assert [log.status for log in logs(app)] == ["ok", "ok"]


def test_a_request_refused_after_admission_frees_its_slot(app, authed, client, pooled):
    _, key = new_key(authed, caps={"concurrentRequests": 1})
    bad = {"model": "gpt-5.3-codex", "input": "hi", "previous_response_id": "resp_1"}  # the body's own 400
    for _ in range(3):
        assert openai_error(client.post("/v1/responses", json=bad, headers=bearer(key)))[0] == 400
    assert ask(client, headers=bearer(key)).status_code == 200
    with app.app_context(), tables.db.connection_context():
        assert tables.KeySlot.select().count() == 0


def test_a_slot_its_process_stopped_renewing_frees_itself(app, authed, clock):
    body, _ = new_key(authed, caps={"concurrentRequests": 1})
    with app.app_context(), tables.db.connection_context():
        key = keys.find(body["id"])
        assert caps.admit(key, NOW_MS) is not None  # then the process dies: nobody frees or renews it
        with pytest.raises(Exception) as full:
            caps.admit(key, NOW_MS + caps.LEASE_MS - 1)
        assert full.value.code == "rate_limit_exceeded"
        assert caps.admit(key, NOW_MS + caps.LEASE_MS) is not None  # the lease ran out: the slot is free


def test_a_live_process_renews_the_slots_it_holds(app, authed):
    body, _ = new_key(authed, caps={"concurrentRequests": 2})
    now = [NOW_MS]
    leases = Leases(lambda: now[0])
    with app.app_context(), tables.db.connection_context():
        key = keys.find(body["id"])
        held, dropped = caps.admit(key, NOW_MS), caps.admit(key, NOW_MS)
    leases.held.update({held})  # the other one's request ended on the way: not renewed
    now[0] += caps.LEASE_MS - 1000
    leases.renew_once()
    with app.app_context(), tables.db.connection_context():
        expiry = {slot.id: slot.expires_at for slot in tables.KeySlot.select()}
        assert expiry == {held: now[0] + caps.LEASE_MS, dropped: NOW_MS + caps.LEASE_MS}
        assert caps.admit(key, NOW_MS + caps.LEASE_MS) is not None  # the dropped one ran out, the held one not
        with pytest.raises(Exception):
            caps.admit(key, NOW_MS + caps.LEASE_MS)


def test_a_deleted_key_leaves_no_use_behind(app, authed, client, pooled):
    body, key = new_key(authed, caps={"requestsPerMinute": 5, "concurrentRequests": 1, "tokensPerMinute": 10**6})
    assert ask(client, headers=bearer(key)).status_code == 200
    assert authed.delete(f"{API_KEYS}/{body['id']}").status_code == 204
    with app.app_context(), tables.db.connection_context():
        assert tables.KeyUse.select().count() == 0 and tables.KeySlot.select().count() == 0


def test_a_key_without_caps_writes_nothing_for_them(app, authed, client, pooled):
    _, key = new_key(authed)
    assert ask(client, headers=bearer(key)).status_code == 200
    with app.app_context(), tables.db.connection_context():
        assert tables.KeyUse.select().count() == 0 and tables.KeySlot.select().count() == 0
