"""Usage breakdowns by day, model or account over a time range."""
from datetime import datetime, timezone

from peewee import SQL, Case, fn

from lb.api import invalid, iso
from lb.logs import time_range
from lb.stats import DAY_MS, money
from lb.store import FAILED_STATUSES, RequestLog

GROUPS = ("day", "model", "account")
MAX_RANGE_MS = 366 * DAY_MS
FIELDS = ("requests", "errors", "inputTokens", "outputTokens", "cachedInputTokens", "cost")


def _aggregates():
    failed = Case(None, [(RequestLog.status.in_(FAILED_STATUSES), 1)], 0)
    return [
        fn.COUNT(RequestLog.id),
        fn.COALESCE(fn.SUM(failed), 0),
        fn.COALESCE(fn.SUM(RequestLog.input_tokens), 0),
        fn.COALESCE(fn.SUM(RequestLog.output_tokens), 0),
        fn.COALESCE(fn.SUM(RequestLog.cached_input_tokens), 0),
        fn.COALESCE(fn.SUM(RequestLog.cost), 0),
    ]


def figures(values):
    """The public figures of one row of sums (cost in micro-USD)."""
    requests, errors, input_tokens, output_tokens, cached, cost = (int(v) for v in values)
    return {
        "requests": requests,
        "errors": errors,
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "cachedInputTokens": cached,
        "totalTokens": input_tokens + output_tokens,
        "cost": money(cost, 4),
    }


def day_key(ms):
    return datetime.fromtimestamp(ms // DAY_MS * DAY_MS / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def breakdown(since, until, group_by):
    """Usage rows grouped by ``group_by`` and their totals over [since, until)."""
    if until <= since:
        raise invalid("until", "must be after since")
    if until - since > MAX_RANGE_MS:
        raise invalid("until", "must be at most 366 days after since")
    if group_by == "day":
        key = (RequestLog.requested_at / DAY_MS).alias("key")
    else:
        key = (RequestLog.model if group_by == "model" else RequestLog.account_id).alias("key")
    grouped = time_range(RequestLog.select(key, *_aggregates()), since, until).group_by(SQL("1")).tuples()
    sums = {k: v for k, *v in grouped}
    if group_by == "day":
        days = range(since // DAY_MS, (until - 1) // DAY_MS + 1)
        keyed = [(day_key(d * DAY_MS), sums.get(d, [0] * 6)) for d in days]
    else:
        # Sorted by key; logs without an account (key null) come last.
        keyed = sorted(sums.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    totals = time_range(RequestLog.select(*_aggregates()), since, until).tuples().get()
    return {
        "since": iso(since),
        "until": iso(until),
        "groupBy": group_by,
        "rows": [{"key": k, **figures(v)} for k, v in keyed],
        "totals": figures(totals),
    }
