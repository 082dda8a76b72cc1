"""lb.jobs: the usage poll runs under a database lease, one runner across processes and instances, each account
polled once an interval (the stalest first), a failing one asked again only after a pause; and two real
servers on one database poll each account once, not twice."""
import time

import pytest

from fixtureapps.upstream import Usage, usage_payload
from helpers.data import NOW_MS, pool_account, row
from helpers.servers import app_server, eventually
from lb import jobs

pytestmark = pytest.mark.uses_upstream

INTERVAL_MS = 300 * 1000


@pytest.fixture
def two_pollers(app, make_app, upstream, token_server):
    """Two apps on the test's database, as two instances would be: their pollers (not started: ticked)."""
    other = make_app(UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url)
    return app.extensions["lb_jobs"], other.extensions["lb_jobs"]


def polled(upstream):
    return [r.account for r in upstream.requests if r.path.endswith("/wham/usage")]


def test_one_holder_of_the_lease_polls_the_stalest_account_first(app, clock, upstream, two_pollers):
    first, second = two_pollers
    a, b = pool_account(app, clock, "a"), pool_account(app, clock, "b", usage_checked_at=NOW_MS - INTERVAL_MS - 1000)
    manual_or_paused = pool_account(app, clock, "c", status="paused")
    assert first.tick(NOW_MS) == a  # never checked: first
    assert second.tick(NOW_MS + 10) is None  # the other instance does not hold the lease
    assert first.tick(NOW_MS + 20) == b
    assert first.tick(NOW_MS + 30) is None  # each was checked within the interval; a paused one is never polled
    assert polled(upstream) == ["ws-a", "ws-b"] and row(app, manual_or_paused).usage_checked_at is None
    assert row(app, a).usage_checked_at == NOW_MS and row(app, a).primary_used_percent == 25.0
    # The holder goes quiet: once its lease has run out, the other takes the job over.
    later = NOW_MS + jobs.LEASE_MS + 100
    assert second.tick(later) is None and first.tick(later + 1) is None  # nothing due yet, but 2 holds it now
    due = NOW_MS + INTERVAL_MS + 50  # a is due again; the lease has run out meanwhile: whoever ticks takes it
    assert second.tick(due) == a and first.tick(due + 1) is None


def test_a_failing_account_is_asked_again_only_after_a_pause(app, clock, upstream, two_pollers):
    poller, _ = two_pollers
    a, b = pool_account(app, clock, "a"), pool_account(app, clock, "b", usage_checked_at=NOW_MS - INTERVAL_MS - 1000)
    upstream.usage["ws-a"] = [Usage(500, {"error": "server_error"})]
    assert poller.tick(NOW_MS) == a  # failed: nothing changed
    assert row(app, a).usage_checked_at is None
    assert poller.tick(NOW_MS + 10) == b  # a is left alone for a while
    assert poller.tick(NOW_MS + 20) is None
    assert poller.tick(NOW_MS + jobs.FAILED_BACKOFF_MS + 10) == a  # then asked again, and answered
    assert row(app, a).usage_checked_at == NOW_MS + jobs.FAILED_BACKOFF_MS + 10


def test_what_the_poll_says_goes_through_the_account_rules(app, clock, upstream, two_pollers):
    poller, _ = two_pollers
    a = pool_account(app, clock, "a")
    upstream.usage["ws-a"] = [Usage(body=usage_payload(plan="team", primary=(100, 900), limit_reached=True))]
    assert poller.tick(NOW_MS) == a
    account = row(app, a)
    assert (account.status, account.resets_at, account.plan_type) == ("rate_limited", NOW_MS + 900_000, "team")


def test_two_servers_on_one_database_poll_each_account_once_an_interval(make_app, tmp_path, upstream,
                                                                         token_server):
    app = make_app(CLOCK=time.time)
    accounts = [pool_account(app, time.time, name) for name in ("a", "b")]
    servers = [app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url,
                          USAGE_POLL_SECONDS=2) for _ in range(2)]
    try:
        started = time.monotonic()
        for server in servers:
            server.start()
        # An idle account's figures change with no proxied request at all.
        assert eventually(lambda: all(row(app, a).usage_checked_at for a in accounts), seconds=15)
        time.sleep(max(0.0, 5.5 - (time.monotonic() - started)))  # three intervals of polling, whoever holds it
        counts = {name: polled(upstream).count(name) for name in ("ws-a", "ws-b")}
    finally:
        for server in servers:
            server.stop()
    # One runner holds the job: every poll came from the same server's process, none from the other's.
    assert [sum("usage polled" in line for line in server.log().splitlines()) > 0 for server in servers].count(
        True) == 1
    assert all(1 <= count <= 4 for count in counts.values()), counts  # about once every 2 s
    assert row(app, accounts[0]).plan_type == "plus" and row(app, accounts[0]).primary_used_percent == 25.0
