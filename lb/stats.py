"""Figures for the dashboard: the billing period, the overview and model list."""
from datetime import datetime, timezone

from peewee import fn

from lb.api import iso
from lb.store import Account, CatalogModel
from lb.summary import DAY_MS, range_sums


def billing_period(now, cycle_day):
    """The billing period [start, end) in epoch ms holding ``now``: a month from ``cycle_day``."""
    moment = datetime.fromtimestamp(now / 1000, tz=timezone.utc)
    year, month = moment.year, moment.month
    if moment.day < cycle_day:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    start = datetime(year, month, cycle_day, tzinfo=timezone.utc)
    end = datetime(year + month // 12, month % 12 + 1, cycle_day, tzinfo=timezone.utc)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def account_counts():
    counts = dict(Account.select(Account.status, fn.COUNT(Account.id)).group_by(Account.status).tuples())
    return {
        "total": sum(counts.values()),
        "active": counts.get("active", 0),
        "paused": counts.get("paused", 0),
        "rateLimited": counts.get("rate_limited", 0),
        "quotaExceeded": counts.get("quota_exceeded", 0),
        "deactivated": counts.get("deactivated", 0),
    }


def money(micros, places):
    return round(micros / 1_000_000, places)


def error_rate(requests, failures, cancelled):
    counted = requests - cancelled
    return round(failures * 100 / counted, 2) if counted else 0


def overview(now, cycle_day):
    start, end = billing_period(now, cycle_day)
    _, _, _, input_tokens, output_tokens, cached, cost = range_sums(start, end)[None]
    # The last 24 hours, open-ended: logs stamped a little ahead of the clock count.
    requests, failures, cancelled, *_ = range_sums(now - DAY_MS + 1)[None]
    return {
        "accountCounts": account_counts(),
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


def enabled_models():
    query = (
        CatalogModel.select(CatalogModel.id, CatalogModel.name)
        .where(CatalogModel.enabled == True)  # noqa: E712 (a SQL expression)
        .order_by(CatalogModel.position, CatalogModel.id)
    )
    return [{"id": m.id, "name": m.name} for m in query]
