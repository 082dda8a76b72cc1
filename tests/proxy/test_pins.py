"""The prompt cache kept warm (contract 17): a conversation's pin survives its account's momentary limit (served
elsewhere, or waited for when the cooldown ends within LB_STICKY_WAIT_MS) and moves only with the account's
status; a request without prompt_cache_key gets one derived from its key, instructions and first input item,
used for the pin only."""
import pytest

from fixtureapps.upstream import Fail
from helpers.data import NOW_MS, NOW_S, logs, pool_account, write
from helpers.http import V1, ask
from lb import tables
from lb.crypto import digest
from lb.proxy.ledger import pin_key

pytestmark = pytest.mark.uses_upstream

MOMENTARY = {"error": {"type": "rate_limit_error", "code": "rate_limit_exceeded_momentarily", "message": "slow down"}}
USAGE_LIMIT = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                         "resets_at": NOW_S + 900}}


@pytest.fixture
def sleeps(clock):
    """The app's injected sleep: it records and moves the test clock."""
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock.advance(seconds)

    sleep.slept = slept
    return sleep


@pytest.fixture
def app(make_app, upstream, token_server, sleeps):
    return make_app(UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, UPSTREAM_READ_TIMEOUT=2, SLEEP=sleeps)


@pytest.fixture
def three(app, clock):
    """Accounts a, b, c, chosen in that order when nothing is pinned."""
    return (pool_account(app, clock, "a"), pool_account(app, clock, "b", secondary_used_percent=10.0),
            pool_account(app, clock, "c", secondary_used_percent=20.0))


def served(app):
    return [log.account_id for log in logs(app) if log.status == "ok"]


def pinned_to(app, cache_key):
    with app.app_context(), tables.db.connection_context():
        pin = tables.StickyPin.get_or_none(tables.StickyPin.key == pin_key(cache_key))
        return pin and pin.account_id


def conv(key="conv-1"):
    return {"prompt_cache_key": key}


def test_a_momentary_limit_serves_elsewhere_and_the_pin_stays_for_the_next_turn(app, client, clock, upstream,
                                                                                  three, sleeps):
    a, b, _ = three
    ask(client, conv())
    upstream.plan("ws-a", Fail(429, MOMENTARY, headers={"Retry-After": "7"}))
    ask(client, conv())  # a is cooling for 7 s: b serves this turn
    assert pinned_to(app, "conv-1") == a
    ask(client, conv())  # still cooling, longer than the wait: served elsewhere, the pin stays
    assert pinned_to(app, "conv-1") == a and sleeps.slept == []
    clock.advance(7)
    ask(client, conv())
    assert served(app) == [a, b, b, a] and pinned_to(app, "conv-1") == a


def test_a_usage_limit_moves_the_pin(app, client, clock, upstream, three):
    a, b, _ = three
    ask(client, conv())
    upstream.plan("ws-a", Fail(429, USAGE_LIMIT))
    ask(client, conv())
    assert pinned_to(app, "conv-1") == b
    clock.advance(901)  # a is back, but the conversation has moved on to b's cache
    ask(client, conv())
    assert served(app) == [a, b, b]


@pytest.mark.parametrize("status", ["paused", "deactivated", "quota_exceeded"])
def test_the_statuses_that_move_a_pin(app, client, clock, three, status):
    a, b, _ = three
    ask(client, conv())
    write(app, a, status=status, resets_at=NOW_MS + 3_600_000)
    ask(client, conv())
    assert pinned_to(app, "conv-1") == b and served(app) == [a, b]


def test_a_cooldown_ending_within_the_wait_is_waited_for(app, client, clock, three, sleeps):
    a, b, _ = three
    ask(client, conv())
    write(app, a, cooldown_until=NOW_MS + 1500)  # another request met a momentary 429 with Retry-After 1.5
    ask(client, conv())
    assert sleeps.slept == [1.5] and served(app) == [a, a]
    write(app, a, cooldown_until=int(clock() * 1000) + 2500)  # longer than LB_STICKY_WAIT_MS: no wait
    ask(client, conv())
    assert sleeps.slept == [1.5] and served(app) == [a, a, b] and pinned_to(app, "conv-1") == a


def test_an_account_that_failed_this_request_is_not_waited_for(app, client, upstream, three, sleeps):
    a, b, _ = three
    ask(client, conv())
    upstream.plan("ws-a", Fail(429, MOMENTARY, headers={"Retry-After": "1"}))
    ask(client, conv())
    assert sleeps.slept == [] and served(app) == [a, b] and pinned_to(app, "conv-1") == a


def test_without_a_wait_setting_nothing_waits(make_app, client, clock, upstream, token_server, sleeps):
    app = make_app(UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, SLEEP=sleeps, STICKY_WAIT_MS=0)
    a, b = pool_account(app, clock, "a"), pool_account(app, clock, "b", secondary_used_percent=10.0)
    client = app.test_client()
    ask(client, conv())
    write(app, a, cooldown_until=NOW_MS + 500)
    ask(client, conv())
    assert sleeps.slept == [] and served(app) == [a, b]


# -- the derived key ---------------------------------------------------------------------------

def turn(*texts, instructions="You are terse."):
    """A /v1/responses body re-sending the conversation so far: user, assistant, user, ..."""
    roles = ("user", "assistant")
    return {"model": "gpt-5.3-codex", "instructions": instructions, "input": [
        {"type": "message", "role": roles[i % 2], "content": [{"type": "input_text", "text": text}]}
        for i, text in enumerate(texts)]}


def test_turns_of_one_conversation_without_a_key_stick_together_and_others_spread(app, client, upstream, three):
    a, b, _ = three
    client.post(V1, json=turn("Hello"))
    write(app, a, secondary_used_percent=50.0)  # a is no longer the least used
    client.post(V1, json=turn("Hello", "Hi.", "How are you?"))
    client.post(V1, json=turn("Another conversation"))
    client.post(V1, json=turn("Hello", instructions="Other instructions"))
    assert served(app) == [a, a, b, b]
    assert all("prompt_cache_key" not in request.body for request in upstream.requests)  # never sent upstream


def test_chat_turns_without_a_key_stick_together(app, client, three):
    a, _, _ = three
    system = {"role": "system", "content": "Be brief."}
    client.post("/v1/chat/completions", json={"model": "gpt-5.3-codex", "messages": [
        system, {"role": "user", "content": "Hello"}]})
    write(app, a, secondary_used_percent=50.0)
    client.post("/v1/chat/completions", json={"model": "gpt-5.3-codex", "messages": [
        system, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "More"}]})
    assert served(app) == [a, a]


def test_different_api_keys_never_share_a_derived_pin(app, authed, three):
    a, b, _ = three
    first, second = (authed.post("/api/api-keys", json={"name": name}).get_json()["key"] for name in ("k1", "k2"))
    authed.post(V1, json=turn("Hello"), headers={"Authorization": f"Bearer {first}"})
    write(app, a, secondary_used_percent=50.0)
    authed.post(V1, json=turn("Hello"), headers={"Authorization": f"Bearer {second}"})
    authed.post(V1, json=turn("Hello", "Hi.", "And?"), headers={"Authorization": f"Bearer {first}"})
    assert served(app) == [a, b, a]


def test_a_clients_own_key_is_used_as_given_and_sticky_sessions_off_derives_nothing(app, authed, upstream, three):
    a, b, _ = three
    authed.post(V1, json={**turn("Hello"), "prompt_cache_key": "mine"})
    assert upstream.requests[0].body["prompt_cache_key"] == "mine" and pinned_to(app, "mine") == a
    authed.patch("/api/settings", json={"stickySessions": False})
    authed.post(V1, json=turn("Hi"))
    write(app, a, secondary_used_percent=50.0)
    authed.post(V1, json=turn("Hi", "Hey", "Again"))
    assert served(app) == [a, a, b]
    with app.app_context(), tables.db.connection_context():
        assert tables.StickyPin.select().count() == 1  # the client's key's pin only
    assert digest("mine") == pin_key("mine")
