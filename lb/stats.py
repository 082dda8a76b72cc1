"""Figures for the dashboard: the billing period, the overview and model list."""
from datetime import datetime, timezone

from peewee import Case, fn

from lb.api import iso
from lb.store import FAILED_STATUSES, Account, CatalogModel, RequestLog

DAY_MS = 24 * 3600 * 1000
FUTURE_MS = 5 * 60 * 1000  # how far ahead of the clock a log may be stamped


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


def token_sums(since, until):
    """Summed tokens and cost (micro-USD) of the logs in [since, until)."""
    row = (
        RequestLog.select(
            fn.COALESCE(fn.SUM(RequestLog.input_tokens), 0),
            fn.COALESCE(fn.SUM(RequestLog.output_tokens), 0),
            fn.COALESCE(fn.SUM(RequestLog.cached_input_tokens), 0),
            fn.COALESCE(fn.SUM(RequestLog.cost), 0),
        )
        .where((RequestLog.requested_at >= since) & (RequestLog.requested_at < until))
        .tuples()
        .get()
    )
    return tuple(int(v) for v in row)


def recent_counts(after):
    """(requests, failures, cancelled) among the logs stamped after ``after``."""
    failed = fn.SUM(Case(None, [(RequestLog.status.in_(FAILED_STATUSES), 1)], 0))
    cancelled = fn.SUM(Case(None, [(RequestLog.status == "cancelled", 1)], 0))
    row = (
        RequestLog.select(fn.COUNT(RequestLog.id), fn.COALESCE(failed, 0), fn.COALESCE(cancelled, 0))
        .where(RequestLog.requested_at > after)
        .tuples()
        .get()
    )
    return tuple(int(v) for v in row)


def money(micros, places):
    return round(micros / 1_000_000, places)


def error_rate(requests, failures, cancelled):
    counted = requests - cancelled
    return round(failures * 100 / counted, 2) if counted else 0


def overview(now, cycle_day):
    start, end = billing_period(now, cycle_day)
    input_tokens, output_tokens, cached, cost = token_sums(start, end)
    requests, failures, cancelled = recent_counts(now - DAY_MS)
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
