"""Figures for the dashboard: the billing period, the overview and model list."""
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

from lb.api import iso
from lb.store import db, portable
from lb.summary import DAY_MS, HOUR_MS


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
    return rounded(micros, 1_000_000, places)


def error_rate(requests, failures, cancelled):
    counted = requests - cancelled
    return rounded(failures * 100, counted, 2) if counted else 0


ACCOUNT_KEYS = ("active", "paused", "rateLimited", "quotaExceeded", "deactivated")

# The whole overview in one statement: account counts; the billing period from
# the hourly summary (its edges are whole hours); the last 24 hours from the
# summary's whole hours plus the raw logs of the partial hour at its start.
# Open-ended, so logs stamped a little ahead of the clock count too.
OVERVIEW_SQL = """
SELECT
  (SELECT COUNT(*) FROM account WHERE status = 'active'),
  (SELECT COUNT(*) FROM account WHERE status = 'paused'),
  (SELECT COUNT(*) FROM account WHERE status = 'rate_limited'),
  (SELECT COUNT(*) FROM account WHERE status = 'quota_exceeded'),
  (SELECT COUNT(*) FROM account WHERE status = 'deactivated'),
  p.input_tokens, p.output_tokens, p.cached, p.cost,
  w.requests + r.requests, w.failures + r.failures, w.cancelled + r.cancelled
FROM
  (SELECT COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens,
          COALESCE(SUM(cached_input_tokens), 0) AS cached, COALESCE(SUM(cost), 0) AS cost
     FROM hourly_usage WHERE hour >= ? AND hour < ?) AS p,
  (SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(failures), 0) AS failures,
          COALESCE(SUM(cancelled), 0) AS cancelled
     FROM hourly_usage WHERE hour >= ?) AS w,
  (SELECT COUNT(*) AS requests,
          COUNT(*) FILTER (WHERE status IN ('error', 'rate_limit', 'quota')) AS failures,
          COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled
     FROM request_log WHERE requested_at >= ? AND requested_at < ?) AS r
"""


def overview_params(now, cycle_day):
    """The billing period [start, end) and the parameters of OVERVIEW_SQL."""
    start, end = billing_period(now, cycle_day)
    after = now - DAY_MS + 1  # requestedAt > now - 24 h
    first_hour = -(-after // HOUR_MS)
    return start, end, (start // HOUR_MS, end // HOUR_MS, first_hour, after, first_hour * HOUR_MS)


def overview_figures(now, cycle_day):
    """The raw figures of the overview: one row of integers (cost in micro-USD)."""
    start, end, params = overview_params(now, cycle_day)
    row = db.execute_sql(portable(OVERVIEW_SQL), params).fetchone()
    return start, end, [int(v) for v in row]


def overview(now, cycle_day):
    start, end, figures = overview_figures(now, cycle_day)
    *counts, input_tokens, output_tokens, cached, cost, requests, failures, cancelled = figures
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


MODELS_SQL = "SELECT id, name FROM catalog_model WHERE enabled = ? ORDER BY position, id"


def enabled_models():
    return [{"id": mid, "name": name} for mid, name in db.execute_sql(portable(MODELS_SQL), (True,))]
