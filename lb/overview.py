"""The overview: the billing period, and the dashboard's home figures from one statement."""
import re
from datetime import datetime, timezone

from lb import store
from lb.clock import DAY_MS, iso
from lb.money import dollars, percent, rounded
from lb.tables import ACCOUNT_STATUSES

# accountCounts names each status in camelCase: rate_limited is rateLimited.
ACCOUNT_KEYS = {status: re.sub(r"_([a-z])", lambda m: m[1].upper(), status) for status in ACCOUNT_STATUSES}


def billing_period(now, cycle_day):
    """The billing period [start, end) in epoch ms holding ``now``: a month from ``cycle_day``."""
    moment = datetime.fromtimestamp(now / 1000, tz=timezone.utc)
    year, month = moment.year, moment.month
    if moment.day < cycle_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    start = datetime(year, month, cycle_day, tzinfo=timezone.utc)
    end = datetime(year + month // 12, month % 12 + 1, cycle_day, tzinfo=timezone.utc)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def error_rate(requests, failures, cancelled):
    """Failures per hundred finished requests; always a float, 0.0 with none."""
    counted = requests - cancelled
    return rounded(failures * 100, counted, 2) if counted else 0.0


def overview(now, cycle_day):
    """The contract's overview object at ``now``: the billing period holding it, and the last 24 hours."""
    start, end = billing_period(now, cycle_day)
    found = store.overview(start, end, now - DAY_MS + 1)  # requestedAt > now - 24 h
    return {
        "accountCounts": {"total": sum(found.account_counts.values()),
                          **{ACCOUNT_KEYS[status]: count for status, count in found.account_counts.items()}},
        "usageSummary": {
            "totalTokens": found.input_tokens + found.output_tokens,
            "totalCost": dollars(found.cost, 4),
            "inputTokens": found.input_tokens,
            "outputTokens": found.output_tokens,
            "cachedInputTokens": found.cached_input_tokens,
            "periodStart": iso(start),
            "periodEnd": iso(end),
        },
        "requestCount": found.requests,
        "errorRate": error_rate(found.requests, found.failures, found.cancelled),
        # The prompt cache at work: cached input per hundred input tokens, the same 24 hours.
        "cachedInputShare": percent(found.window_cached_input_tokens, found.window_input_tokens),
    }
