"""lb.rollups: the hourly summary tables, kept exact by ingest, equal to a rebuild, right at hour edges."""
import random

import pytest

from helpers.http import BEARER, create_account, ingest
from lb import rollups
from lb.clock import DAY_MS, HOUR_MS, iso
from lb.tables import HourlyGroupUsage, HourlyUsage, RequestLog, db

HOUR = HOUR_MS
MODELS = ("gpt-4o-mini", "o3-pro", "gpt-5.1-codex", "not-in-catalog")
STATUSES = ("ok", "ok", "ok", "error", "rate_limit", "quota", "cancelled")


def snapshot():
    """Both summary tables as comparable sets of tuples."""
    hourly = set(HourlyUsage.select().tuples())
    keyed = set(HourlyGroupUsage.select().tuples())
    return hourly, keyed


def brute_force(since, until, by=None):
    """The sums of ``range_sums`` computed by a Python loop over every raw log."""
    result = {}
    for log in RequestLog.select():
        if log.requested_at < since or (until is not None and log.requested_at >= until):
            continue
        key = {None: None, "day": log.requested_at // DAY_MS,
               "model": log.model, "account": log.account_id}[by]
        sums = result.setdefault(key, [0] * 7)
        for i, value in enumerate((1, log.status in ("error", "rate_limit", "quota"),
                                   log.status == "cancelled", log.input_tokens, log.output_tokens,
                                   log.cached_input_tokens, log.cost)):
            sums[i] += int(value)
    return {key: rollups.Sums(*sums) for key, sums in result.items()}


@pytest.fixture
def workload(app, authed, clock):
    """A mixed workload: batches, duplicates, a deleted account, logs on and around hour edges."""
    rng = random.Random(7)
    account_ids = [create_account(authed, f"u{i}@example.com")["id"] for i in range(3)]
    now = int(clock() * 1000)
    base = now // HOUR * HOUR - 30 * HOUR
    edges = [base + h * HOUR + d for h in range(30) for d in (-1, 0, 1)]
    for batch in range(4):
        items = []
        for i in range(250):
            at = rng.choice(edges) if i % 3 == 0 else base + rng.randrange(31 * HOUR)
            tokens = rng.randrange(5000)
            items.append({
                "requestId": f"r{rng.randrange(700)}",  # repeats across and inside batches
                "requestedAt": iso(min(at, now)),
                "accountId": rng.choice(account_ids + [None]),
                "model": rng.choice(MODELS),
                "inputTokens": tokens,
                "cachedInputTokens": rng.randrange(tokens + 1),
                "outputTokens": rng.randrange(3000),
                "status": rng.choice(STATUSES),
            })
        ingest(authed, items, headers=BEARER)
        if batch == 1:
            assert authed.delete(f"/api/accounts/{account_ids.pop(0)}").status_code == 204
    return base, now


def test_rebuild_equals_incremental(app, workload):
    with app.app_context(), db.connection_context():
        incremental = snapshot()
        assert incremental[0], "the workload must have produced summary rows"
        rollups.rebuild()
        assert snapshot() == incremental


def test_rebuild_command(app, workload):
    with app.app_context(), db.connection_context():
        before = snapshot()
        HourlyUsage.delete().execute()
    result = app.test_cli_runner().invoke(args=["rebuild-summaries"])
    assert result.exit_code == 0 and "rebuilt" in result.output
    with app.app_context(), db.connection_context():
        assert snapshot() == before


@pytest.mark.parametrize("by", [None, "day", "model", "account"])
def test_range_sums_match_raw_logs_at_every_edge(app, workload, by):
    base, now = workload
    offsets = (-HOUR, -1, 0, 1, HOUR // 2, HOUR - 1, HOUR)
    with app.app_context(), db.connection_context():
        for start in (base + 3 * HOUR + d for d in offsets):
            for until in [None] + [base + 20 * HOUR + d for d in offsets] + [start + 1, start + HOUR - 1]:
                got = rollups.range_sums(start, until, by)
                expected = brute_force(start, until, by)
                if by is None:
                    expected.setdefault(None, rollups.Sums())
                assert got == expected, (start, until, by)
