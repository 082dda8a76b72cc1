"""Hourly rollups of the request logs: kept by every ingest, read by the overview and usage.

A time range is answered from the summary rows of the whole hours inside it,
plus the raw logs of the (at most two) partial hours at its edges, so the
figures are exact while the rows read grow with hours, not with requests.
The summaries of hours whose raw logs were pruned (lb.retention) stay: an
edge inside the pruned time counts from the start of its hour (range_sums).
"""
from collections import defaultdict
from typing import NamedTuple

import click
from peewee import SQL, Case, fn

from lb.clock import DAY_MS, HOUR_MS, HOURS_PER_DAY
from lb import store
from lb.tables import FAILED_STATUSES, HourlyGroupUsage, HourlyUsage, RequestLog, db


class Sums(NamedTuple):
    """The figures kept for a set of logs (cost in micro-USD); also the rollup tables' columns."""

    requests: int = 0
    failures: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost: int = 0


SUMS = Sums._fields
NONE = ""  # the key of logs without an account or API key (a NULL would defeat the upsert)
GROUP = ("hour", "account_id", "model", "api_key_id")


def _zero():
    return [0] * len(SUMS)


# -- keeping the summaries ------------------------------------------------------

def add_rows(rows):
    """Add freshly stored rows (``ingest.LogRow``, cost included) to both summaries."""
    by_hour, by_key = defaultdict(_zero), defaultdict(_zero)
    for row in rows:
        hour = row.requested_at // HOUR_MS
        failed, cancelled = row.status in FAILED_STATUSES, row.status == "cancelled"
        for sums in (by_hour[hour], by_key[(hour, row.account_id or NONE, row.model, row.api_key_id or NONE)]):
            sums[0] += 1
            sums[1] += failed
            sums[2] += cancelled
            sums[3] += row.input_tokens
            sums[4] += row.output_tokens
            sums[5] += row.cached_input_tokens
            sums[6] += row.cost
    _upsert(HourlyUsage, ("hour",), by_hour)
    _upsert(HourlyGroupUsage, GROUP, by_key)


def _upsert(model, keys, groups):
    """Insert each group's sums, or add them to the row already there: in key order, so concurrent writers
    lock the rows they share in the same order (no deadlock on PostgreSQL)."""
    rows = [(*(key if isinstance(key, tuple) else (key,)), *values) for key, values in sorted(groups.items())]
    for start in range(0, len(rows), 100):
        store.upsert_sums(model._meta.table_name, keys, SUMS, rows[start:start + 100])


def _raw_sums(*keys):
    failed = Case(None, [(RequestLog.status.in_(FAILED_STATUSES), 1)], 0)
    cancelled = Case(None, [(RequestLog.status == "cancelled", 1)], 0)
    return RequestLog.select(
        *keys,
        fn.COUNT(RequestLog.id),
        fn.COALESCE(fn.SUM(failed), 0),
        fn.COALESCE(fn.SUM(cancelled), 0),
        fn.COALESCE(fn.SUM(RequestLog.input_tokens), 0),
        fn.COALESCE(fn.SUM(RequestLog.output_tokens), 0),
        fn.COALESCE(fn.SUM(RequestLog.cached_input_tokens), 0),
        fn.COALESCE(fn.SUM(RequestLog.cost), 0),
    )


def rebuild():
    """Recompute both summaries from the raw logs: of the hours at or after ``logs_pruned_before`` only, as the
    raw logs of earlier hours were pruned (lb.retention) and their summaries are all that is left of them."""
    hour = RequestLog.requested_at / HOUR_MS
    with db.atomic():
        pruned_before = store.lock_settings().logs_pruned_before  # a prune cannot move it meanwhile
        first = 0 if pruned_before is None else pruned_before // HOUR_MS
        HourlyUsage.delete().where(HourlyUsage.hour >= first).execute()
        HourlyGroupUsage.delete().where(HourlyGroupUsage.hour >= first).execute()
        since = RequestLog.requested_at >= first * HOUR_MS
        HourlyUsage.insert_from(_raw_sums(hour).where(since).group_by(SQL("1")),
                                fields=[getattr(HourlyUsage, n) for n in ("hour",) + SUMS]).execute()
        account, key = fn.COALESCE(RequestLog.account_id, NONE), fn.COALESCE(RequestLog.api_key_id, NONE)
        HourlyGroupUsage.insert_from(
            _raw_sums(hour, account, RequestLog.model, key).where(since)
            .group_by(SQL("1"), SQL("2"), SQL("3"), SQL("4")),
            fields=[getattr(HourlyGroupUsage, n) for n in GROUP + SUMS]).execute()


# -- reading a range ----------------------------------------------------------------

def _group_key(by, day, model, account, api_key):
    """The GROUP BY key of ``by``, from the columns that hold a day, a model, an account and a key."""
    return {None: [], "day": [day], "model": [model], "account": [account], "apiKey": [api_key]}[by]


def _summary_query(by, api_key_id):
    table = HourlyUsage if by in (None, "day") and api_key_id is None else HourlyGroupUsage
    key = _group_key(by, table.hour / HOURS_PER_DAY, HourlyGroupUsage.model, HourlyGroupUsage.account_id,
                     HourlyGroupUsage.api_key_id)
    query = table.select(*key, *[fn.SUM(getattr(table, name)) for name in SUMS])
    return table, query if api_key_id is None else query.where(HourlyGroupUsage.api_key_id == api_key_id)


def _raw_query(by, api_key_id):
    key = _group_key(by, RequestLog.requested_at / DAY_MS, RequestLog.model, RequestLog.account_id,
                     RequestLog.api_key_id)
    query = _raw_sums(*key)
    return query if api_key_id is None else query.where(RequestLog.api_key_id == api_key_id)


def range_sums(since, until=None, by=None, api_key_id=None):
    """Sums over logs with ``since <= requestedAt < until`` (no upper bound if None), by key.

    Returns {key: Sums}; without ``by`` the one key is None. Logs without an
    account (or key) have key None. ``api_key_id`` keeps only that key's logs.
    """
    # An edge inside the pruned time (lb.retention) cannot be exact: its hour's raw logs are gone. It counts
    # as the start of its hour, the hour's summary deciding (whole hours, and day, week and billing-period
    # edges, are exact either way). Only an edge off the hour asks where the pruned time ends.
    if since % HOUR_MS or (until is not None and until % HOUR_MS):
        pruned_before = store.logs_pruned_before()
        if pruned_before is not None:
            since = since // HOUR_MS * HOUR_MS if since < pruned_before else since
            if until is not None and until < pruned_before:
                until = until // HOUR_MS * HOUR_MS
    # Whole hours [first_hour, end_hour) come from the summary, the edges from raw logs.
    first_hour = -(-since // HOUR_MS)
    if until is None:
        end_hour = None
        raw_ranges = [(since, first_hour * HOUR_MS)]
    else:
        end_hour = max(first_hour, until // HOUR_MS)
        raw_ranges = [(since, min(first_hour * HOUR_MS, until)), (end_hour * HOUR_MS, until)]

    results = defaultdict(_zero)

    def merge(query, keyed):
        for row in query.tuples():
            key, values = (row[0], row[1:]) if keyed else (None, row)
            if by in ("account", "apiKey") and key == NONE:
                key = None
            if not values[0]:  # no rows: an aggregate of nothing
                continue
            target = results[key]
            for i, value in enumerate(values):
                target[i] += int(value)

    keyed = by is not None
    if end_hour is None or end_hour > first_hour:
        table, query = _summary_query(by, api_key_id)
        query = query.where(table.hour >= first_hour)
        if end_hour is not None:
            query = query.where(table.hour < end_hour)
        merge(query.group_by(SQL("1")) if keyed else query, keyed)
    for low, high in raw_ranges:
        if high > low:
            query = _raw_query(by, api_key_id).where((RequestLog.requested_at >= low)
                                                     & (RequestLog.requested_at < high))
            merge(query.group_by(SQL("1")) if keyed else query, keyed)
    if not keyed:
        results[None]  # a range with no logs still has its (zero) totals
    return {key: Sums._make(values) for key, values in results.items()}


def init_app(app):
    @app.cli.command("rebuild-summaries")
    def rebuild_command():
        """Recompute the hourly usage summaries from the raw request logs."""
        with db.connection_context():
            rebuild()
        click.echo("summaries rebuilt")
