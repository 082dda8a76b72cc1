"""The overview: the billing period, and the dashboard's home figures from one statement."""
import re
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

from lb import store
from lb.clock import DAY_MS, HOUR_MS, iso

# accountCounts names each status in camelCase: rate_limited is rateLimited.
ACCOUNT_KEYS = tuple(re.sub(r"_([a-z])", lambda m: m[1].upper(), status) for status in store.ACCOUNT_STATUSES)


def billing_period(now, cycle_day):
    """The billing period [start, end) in epoch ms holding ``now``: a month from ``cycle_day``."""
    moment = datetime.fromtimestamp(now / 1000, tz=timezone.utc)
    year, month = moment.year, moment.month
    if moment.day < cycle_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    start = datetime(year, month, cycle_day, tzinfo=timezone.utc)
    end = datetime(year + month // 12, month % 12 + 1, cycle_day, tzinfo=timezone.utc)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def rounded(numerator, denominator, places):
    """``numerator / denominator`` rounded half up to ``places`` decimals.

    Decimal, not float ``round``: 150 micro-USD is 0.00015 exactly, which is 0.0002, not 0.0001.
    """
    exact = Decimal(numerator) / Decimal(denominator)
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def money(micros, places):
    """Micro-USD as dollars rounded half up to ``places`` decimals."""
    return rounded(micros, 1_000_000, places)


def error_rate(requests, failures, cancelled):
    """Failures per hundred finished requests; always a float, 0.0 with none."""
    counted = requests - cancelled
    return rounded(failures * 100, counted, 2) if counted else 0.0


def overview_params(now, cycle_day):
    """The billing period [start, end) and the parameters of ``store.OVERVIEW_SQL``."""
    start, end = billing_period(now, cycle_day)
    after = now - DAY_MS + 1  # requestedAt > now - 24 h
    first_hour = -(-after // HOUR_MS)
    return start, end, (start // HOUR_MS, end // HOUR_MS, first_hour, after, first_hour * HOUR_MS)


def overview(now, cycle_day):
    """The contract's overview object at ``now``."""
    start, end, params = overview_params(now, cycle_day)
    *counts, input_tokens, output_tokens, cached, cost, requests, failures, cancelled = store.overview_row(params)
    return {
        "accountCounts": {"total": sum(counts), **dict(zip(ACCOUNT_KEYS, counts))},
        "usageSummary": {
            "totalTokens": input_tokens + output_tokens,
            "totalCost": money(cost, 4),
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "cachedInputTokens": cached,
            "periodStart": iso(start),
            "periodEnd": iso(end),
        },
        "requestCount": requests,
        "errorRate": error_rate(requests, failures, cancelled),
    }
