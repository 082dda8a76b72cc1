"""lb.retention: raw request logs older than requestLogRetentionDays are pruned in batches, under one lease across
processes; the rollups stay, so every total (the overview, usage, key limits) is the same before and after a prune,
and a rebuild of the summaries after it keeps them; the audit log and the keys' use are never touched."""
import multiprocessing
import random

import pytest

from helpers import pruning
from helpers.data import NOW_MS
from helpers.http import BEARER, create_account, error, ingest, names_field, overview
from lb import ingest as ingest_module
from lb import retention, rollups
from lb.clock import DAY_MS, HOUR_MS, iso
from lb.tables import AuditEntry, HourlyGroupUsage, HourlyUsage, KeyUse, Lease, RequestLog, db

SETTINGS = "/api/settings"
USAGE = "/api/usage"
# The clock starts at 2026-11-25T07:00Z: a week's retention cuts at 2026-11-18T07:00Z.
CUT = NOW_MS - 7 * DAY_MS
MODELS = ("gpt-4o-mini", "o3-pro", "gpt-5.1-codex", "not-in-catalog")
STATUSES = ("ok", "ok", "ok", "error", "rate_limit", "cancelled")


def no_pause(_seconds):
    pass


def keep_days(client, days):
    response = client.patch(SETTINGS, json={"requestLogRetentionDays": days})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def prune(app, clock, **kwargs):
    with app.app_context(), db.connection_context():
        return retention.prune(int(clock() * 1000), pause=no_pause, clock=lambda: int(clock() * 1000),
                               **{"batch": 40, **kwargs})


def stamps(app):
    with app.app_context(), db.connection_context():
        return sorted(RequestLog.select(RequestLog.requested_at).tuples())


def rollup_rows(app):
    with app.app_context(), db.connection_context():
        return sorted(HourlyUsage.select().tuples()), sorted(HourlyGroupUsage.select().tuples())


@pytest.fixture
def history(app, authed, clock):
    """Twenty days of logs of two accounts and two keys with day, week and month limits, some on and around
    the cut; the key ids."""
    rng = random.Random(5)
    accounts = [create_account(authed, f"u{i}@example.com")["id"] for i in range(2)]
    limits = [{"metric": metric, "window": window, "max": 10**9}
              for metric in ("totalTokens", "costUsd") for window in ("day", "week", "month")]
    key_ids = [authed.post("/api/api-keys", json={"name": f"k{i}", "limits": limits}).get_json()["id"]
               for i in range(2)]
    stamps = [CUT - 1, CUT, CUT + 1, CUT - HOUR_MS + 1, NOW_MS - 1] + [
        NOW_MS - rng.randrange(20 * DAY_MS) for _ in range(597)]
    items = [{"requestId": f"r{i}", "requestedAt": iso(at), "accountId": rng.choice(accounts + [None]),
              "apiKeyId": rng.choice(key_ids + [None]), "model": rng.choice(MODELS),
              "inputTokens": (tokens := rng.randrange(1, 5000)), "cachedInputTokens": rng.randrange(tokens),
              "outputTokens": rng.randrange(3000), "status": rng.choice(STATUSES)} for i, at in enumerate(stamps)]
    for start in range(0, len(items), 200):
        ingest(authed, items[start:start + 200], headers=BEARER)
    return key_ids


def totals(client, key_ids):
    """Every total a prune must leave alone: the overview, usage by each grouping over the billing period and
    over a month back from a midnight, and each key's limits' ``used``."""
    figures = {"overview": overview(client)}
    for since, until in ((None, None), ("2026-10-26T00:00:00Z", "2026-11-25T08:00:00Z")):
        for by in ("day", "model", "account", "apiKey"):
            query = {"groupBy": by, **({"since": since, "until": until} if since else {})}
            response = client.get(USAGE, query_string=query)
            assert response.status_code == 200, response.get_json()
            figures[(since, by)] = response.get_json()
    figures["limits"] = [client.get(f"/api/api-keys/{key}").get_json()["limits"] for key in key_ids]
    return figures


def test_a_prune_removes_the_logs_before_the_cut_and_keeps_the_rest(app, authed, clock, history):
    keep_days(authed, 7)
    with app.app_context(), db.connection_context():
        AuditEntry.create(at=CUT - 30 * DAY_MS, action="old.entry")  # older than any log: still never pruned
        KeyUse.create(api_key_id=history[0], at=CUT - DAY_MS, requests=1, tokens=5)
        audit_before = AuditEntry.select().count()
    before, summaries = stamps(app), rollup_rows(app)
    old = [s for s in before if s[0] < CUT]
    assert (CUT - 1,) in old and (CUT,) in before and len(old) > 100

    result = prune(app, clock)
    assert (result.cut, result.removed) == (CUT, len(old)) and result.batches > 3
    after = stamps(app)
    assert after == [s for s in before if s[0] >= CUT] and (CUT,) in after and (CUT + 1,) in after
    assert rollup_rows(app) == summaries  # the rollups are never touched
    with app.app_context(), db.connection_context():
        assert AuditEntry.select().count() == audit_before
        assert KeyUse.select().count() == 1
        assert Lease.get_by_id(retention.LEASE).expires_at == 0  # let go at the end
    last = authed.get(SETTINGS).get_json()["lastPrune"]
    assert last == {"at": iso(NOW_MS), "removed": len(old), "before": iso(CUT)}

    again = prune(app, clock)  # nothing older left: nothing removed, and it says so
    assert again.removed == 0 and authed.get(SETTINGS).get_json()["lastPrune"]["removed"] == 0


def test_every_total_is_the_same_before_and_after_a_prune(app, authed, clock, history):
    before = totals(authed, history)
    assert before["overview"]["requestCount"] > 0 and before["limits"][0][5]["used"] > 0
    assert any(row["requests"] for row in before[(None, "day")]["rows"][:10])  # the pruned days had logs
    keep_days(authed, 7)
    assert prune(app, clock).removed > 100
    assert totals(authed, history) == before


def test_rebuilding_the_summaries_after_a_prune_keeps_every_total(app, authed, clock, history):
    before, summaries = totals(authed, history), rollup_rows(app)
    keep_days(authed, 7)
    prune(app, clock)
    result = app.test_cli_runner().invoke(args=["rebuild-summaries"])
    assert result.exit_code == 0, result.output
    assert rollup_rows(app) == summaries and totals(authed, history) == before


def test_an_edge_inside_the_pruned_time_counts_from_the_start_of_its_hour(app, authed, clock, history):
    def used(since, until):
        response = authed.get(USAGE, query_string={"since": iso(since), "until": iso(until), "groupBy": "model"})
        return response.get_json()["totals"]

    off_hour = CUT - 3 * HOUR_MS + 20 * 60 * 1000  # inside the pruned time, twenty minutes into its hour
    whole_hour = used(CUT - 3 * HOUR_MS, NOW_MS)
    exact = used(off_hour, NOW_MS)
    tail = used(CUT - 5 * DAY_MS - HOUR_MS, CUT - 5 * DAY_MS)  # a whole hour inside the pruned time
    assert exact["requests"] < whole_hour["requests"]  # the hour's first twenty minutes had logs
    keep_days(authed, 7)
    prune(app, clock)
    assert used(off_hour, NOW_MS) == whole_hour  # no longer exact: the hour's summary counts whole
    assert used(CUT - 3 * HOUR_MS, NOW_MS) == whole_hour
    assert used(CUT - 5 * DAY_MS - HOUR_MS, CUT - 5 * DAY_MS + 59 * 60 * 1000) == tail  # ends at its hour's start
    # An edge at or after the cut is exact still.
    assert used(CUT + 1, NOW_MS)["requests"] == used(CUT, NOW_MS)["requests"] - 1


@pytest.mark.parametrize("value", [6, 0, -1, True, "30", 7.5, 36501])
def test_a_retention_that_is_not_null_or_7_days_or_more_is_422_and_changes_nothing(app, authed, value):
    keep_days(authed, 30)
    response = authed.patch(SETTINGS, json={"requestLogRetentionDays": value})
    assert response.status_code == 422 and names_field(response, "requestLogRetentionDays"), error(response)
    assert authed.get(SETTINGS).get_json()["requestLogRetentionDays"] == 30


def test_seven_days_is_the_least_and_null_keeps_everything(app, authed, clock, history):
    assert keep_days(authed, 7)["requestLogRetentionDays"] == 7
    assert keep_days(authed, None)["requestLogRetentionDays"] is None
    before = stamps(app)
    with app.app_context(), db.connection_context():
        assert retention.prune(NOW_MS, pause=no_pause) is None  # off: nothing to do
    assert stamps(app) == before and authed.get(SETTINGS).get_json()["lastPrune"] is None
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0 and "retention is off" in result.output and stamps(app) == before


def test_flask_prune_prunes_now_and_says_how_many(app, authed, clock, history):
    keep_days(authed, 10)
    cut = NOW_MS - 10 * DAY_MS
    old = sum(1 for (at,) in stamps(app) if at < cut)
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    assert f"pruned {old} request logs before {iso(cut)}" in result.output
    assert min(stamps(app))[0] >= cut


def test_the_background_pruner_prunes_once_an_interval_and_only_when_retention_is_on(app, authed, clock, history):
    pruner = app.extensions["lb_pruner"]
    interval = pruner.interval_ms
    assert pruner.tick(NOW_MS, pause=no_pause) is None  # retention is off
    keep_days(authed, 7)
    first = pruner.tick(NOW_MS, pause=no_pause)
    assert first.removed > 0 and first.cut == CUT
    assert pruner.tick(NOW_MS + interval - 1, pause=no_pause) is None  # pruned within the interval
    ingest(authed, [{"requestId": "late", "requestedAt": iso(CUT - 5), "model": "o3-pro"}], headers=BEARER)
    later = pruner.tick(NOW_MS + interval, pause=no_pause)
    assert later.removed == 1 and min(stamps(app))[0] >= CUT  # an old log stored since goes at the next prune


def test_a_lease_held_by_another_pruner_stops_a_prune(app, authed, clock, history):
    keep_days(authed, 7)
    before = stamps(app)
    with app.app_context(), db.connection_context():
        Lease.insert(name=retention.LEASE, holder="elsewhere", expires_at=NOW_MS + 1000).execute()
        assert retention.prune(NOW_MS, pause=no_pause) is None
    assert stamps(app) == before
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code != 0 and "another process is pruning" in result.output
    with app.app_context(), db.connection_context():
        assert retention.prune(NOW_MS + 1000, pause=no_pause).removed > 0  # a lease run out is taken over


def old_and_new(app, old, new):
    """Store ``old`` logs before the cut and ``new`` ones after it, directly through store_batch."""
    rows = [ingest_module.LogRow(f"old-{i}", CUT - 1 - i * 7919 % (9 * DAY_MS), None, "o3-pro", 10, 1)
            for i in range(old)]
    rows += [ingest_module.LogRow(f"kept-{i}", CUT + i * 1000, None, "o3-pro", 10, 1) for i in range(new)]
    with app.app_context(), db.connection_context():
        for start in range(0, len(rows), 1000):
            ingest_module.store_batch(rows[start:start + 1000], check_references=False)


def run_processes(targets):
    """Start each (function, args) in a spawned process behind one barrier; their results once all are done."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(len(targets), timeout=60), context.Queue()
    processes = [context.Process(target=function, args=(*args, start, results)) for function, args in targets]
    for process in processes:
        process.start()
    try:
        found = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in processes)
    return found


def data_dir(app):
    """Where the processes find the test's database: its data dir and, in the PostgreSQL pass, its URL."""
    return app.config["DATA_DIR"], app.config.get("DATABASE_URL")


def test_two_processes_pruning_at_once_remove_the_old_logs_exactly_once_one_at_a_time(app, clock):
    old_and_new(app, 3000, 200)
    with app.app_context(), db.connection_context():
        summaries = rollup_rows(app)
    found = run_processes([(pruning.pruner, (data_dir(app), NOW_MS, 7, name)) for name in ("first", "second")])
    removed = sum(r for _, runs, _ in found for r, _ in runs)
    assert removed == 3000  # the union: every old log once, none twice
    assert [at for (at,) in stamps(app)] == [CUT + i * 1000 for i in range(200)]
    assert rollup_rows(app) == summaries
    # One holder at a time: the runs of the two processes never overlap, and the second was turned away.
    spans = sorted((batches[0][0], batches[-1][1], name) for name, runs, _ in found for _, batches in runs)
    for (_, end, name), (start, _, other) in zip(spans, spans[1:]):
        assert name == other or end <= start, spans
    assert sum(refusals for _, _, refusals in found) > 0


def test_a_prune_while_another_process_ingests_loses_none_of_the_new_logs(app, clock):
    old_and_new(app, 3000, 0)
    with app.app_context(), db.connection_context():
        before = rollups.range_sums(0)[None]
    found = run_processes([(pruning.pruner, (data_dir(app), NOW_MS, 7, "pruner")),
                           (pruning.ingester, (data_dir(app), NOW_MS, 30, 50))])
    results = dict((item[0], item[1:]) for item in found)
    assert results["ingester"] == (1500,)
    assert sum(r for r, _ in results["pruner"][0]) == 3000
    with app.app_context(), db.connection_context():
        assert RequestLog.select().count() == 1500
        assert RequestLog.select().where(RequestLog.request_id.startswith("new-")).count() == 1500
        after = rollups.range_sums(0)[None]
    assert after.requests == before.requests + 1500 and after.input_tokens == before.input_tokens + 1500 * 100


def test_the_cut_is_a_whole_hour():
    assert retention.cut_for(NOW_MS + 59 * 60 * 1000, 7) == CUT
    assert retention.cut_for(NOW_MS + 60 * 60 * 1000, 7) == CUT + HOUR_MS
    assert retention.cut_for(NOW_MS, 30) % HOUR_MS == 0
