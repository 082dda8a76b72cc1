"""Usage breakdowns by day, model or account over a time range."""
from datetime import datetime, timezone

from lb.api import invalid, iso
from lb.stats import money
from lb.summary import DAY_MS, range_sums

GROUPS = ("day", "model", "account")
MAX_RANGE_MS = 366 * DAY_MS


def figures(values):
    """The public figures of one set of sums (cost in micro-USD)."""
    requests, failures, _cancelled, input_tokens, output_tokens, cached, cost = values
    return {
        "requests": requests,
        "errors": failures,
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "cachedInputTokens": cached,
        "totalTokens": input_tokens + output_tokens,
        "cost": money(cost, 4),
    }


def day_key(day):
    return datetime.fromtimestamp(day * DAY_MS / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def breakdown(since, until, group_by):
    """Usage rows grouped by ``group_by`` and their totals over [since, until)."""
    if until <= since:
        raise invalid("until", "must be after since")
    if until - since > MAX_RANGE_MS:
        raise invalid("until", "must be at most 366 days after since")
    sums = range_sums(since, until, group_by)
    if group_by == "day":
        # Every day of the range has a row, zeros where nothing happened.
        days = range(since // DAY_MS, (until - 1) // DAY_MS + 1)
        keyed = [(day_key(d), sums.get(d, [0] * 7)) for d in days]
    else:
        # Sorted by key; logs without an account (key null) come last.
        keyed = sorted(sums.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    totals = [sum(column) for column in zip([0] * 7, *sums.values())]
    return {
        "since": iso(since),
        "until": iso(until),
        "groupBy": group_by,
        "rows": [{"key": k, **figures(v)} for k, v in keyed],
        "totals": figures(totals),
    }
