"""Usage breakdowns by day, model, account or API key over a time range, from the rollups."""
from datetime import datetime, timezone

from lb.clock import DAY_MS, iso
from lb.errors import invalid
from lb.money import dollars, percent
from lb.rollups import Sums, range_sums

GROUPS = ("day", "model", "account", "apiKey")
MAX_RANGE_MS = 366 * DAY_MS


def figures(sums):
    """The public figures of one ``Sums``."""
    return {
        "requests": sums.requests,
        "errors": sums.failures,
        "inputTokens": sums.input_tokens,
        "outputTokens": sums.output_tokens,
        "cachedInputTokens": sums.cached_input_tokens,
        "totalTokens": sums.input_tokens + sums.output_tokens,
        "cost": dollars(sums.cost, 4),
        "cachedInputShare": percent(sums.cached_input_tokens, sums.input_tokens),
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
        keyed = [(day_key(d), sums.get(d, Sums())) for d in days]
    else:
        # Sorted by key; logs without an account (key null) come last.
        keyed = sorted(sums.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    totals = Sums._make(sum(column) for column in zip(Sums(), *sums.values()))
    return {
        "since": iso(since),
        "until": iso(until),
        "groupBy": group_by,
        "rows": [{"key": k, **figures(v)} for k, v in keyed],
        "totals": figures(totals),
    }
