"""Metrics for operators: ``GET /metrics`` in the Prometheus text format, off unless ``LB_METRICS_TOKEN`` is set.

Each app keeps its instruments in a registry of its own (``app.extensions["lb_metrics"]``),
never prometheus_client's global one. They are handed to whoever counts: the
proxy through its ``app.extensions["lb_proxy"]`` (a stream outlives its request
context), ``ingest.store_batch`` as an argument. ``current()`` is a no-op
where there is no app, or metrics are off. Labels hold only
small fixed sets: route family, HTTP status, account or log status, error code.
"""
import re
import time

from flask import Response, current_app, has_app_context, request
from peewee import fn
from prometheus_client import (CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily

from lb.auth import token_required
from lb.errors import is_proxy_path
from lb.tables import ACCOUNT_STATUSES, LOG_STATUSES, Account, db
from lb.web.pages import PATHS as PAGE_PATHS

# Seconds from a millisecond to minutes: a proxied first byte may wait on a long reasoning turn.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
CODE = re.compile(r"[a-z0-9_.:-]{1,64}")
MAX_CODES = 64  # distinct error-code labels kept; later new ones count as "other"


def family(path):
    """The route family of a path, a label of a handful of values."""
    if path.startswith("/api/") or path == "/api":
        return "dashboard"
    if is_proxy_path(path):
        return "proxy"
    if path == "/healthz":
        return "health"
    if path == "/metrics":
        return "metrics"
    if path in PAGE_PATHS or path.startswith("/static/"):
        return "page"
    return "other"


class Metrics:
    """One app's instruments, in its own registry."""

    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.http_requests = Counter("codexlb_http_requests", "HTTP requests answered, by route family and status",
                                     ["family", "status"], registry=registry)
        self.proxy_first_byte = Histogram(
            "codexlb_proxy_first_byte_seconds", "Proxied streams: from the request's arrival to its first event "
            "ready to send", buckets=BUCKETS, registry=registry)
        self.upstream_first_byte = Histogram(
            "codexlb_upstream_first_byte_seconds", "Proxied streams: the serving account's upstream call, from "
            "the request sent to its first event", buckets=BUCKETS, registry=registry)
        self.proxy_added = Histogram(
            "codexlb_proxy_added_seconds", "Proxied streams: the proxy's own part of the first byte (the first "
            "minus the upstream's; accounts tried before included)", buckets=BUCKETS, registry=registry)
        self.upstream_errors = Counter("codexlb_upstream_errors", "Failed upstream attempts and streams, by error "
                                       "code", ["code"], registry=registry)
        self.failovers = Counter("codexlb_failovers", "Requests moved on to another account", registry=registry)
        self.open_streams = Gauge("codexlb_open_streams", "Streams being relayed now", registry=registry)
        self.ingest_rows = Counter("codexlb_ingest_rows", "Request-log rows handed to the store, proxied or "
                                   "posted (duplicates included)", registry=registry)
        self.request_logs = Counter("codexlb_request_logs", "Request logs stored, by status", ["status"],
                                    registry=registry)
        registry.register(_AccountsCollector())
        # Children looked up once: the hot path then costs a dict lookup, not labels().
        self._http = {}
        self._codes = {}
        self._log_status = {status: self.request_logs.labels(status) for status in LOG_STATUSES}

    def answered(self, path, status):
        key = (family(path), status)
        child = self._http.get(key)
        if child is None:
            child = self._http.setdefault(key, self.http_requests.labels(*key))
        child.inc()

    def first_byte(self, arrived, upstream_seconds):
        """A stream's first event is ready: ``arrived`` is the request's perf_counter()."""
        total = time.perf_counter() - arrived
        self.proxy_first_byte.observe(total)
        self.upstream_first_byte.observe(upstream_seconds)
        self.proxy_added.observe(max(0.0, total - upstream_seconds))

    def upstream_error(self, code):
        label = code if isinstance(code, str) and CODE.fullmatch(code) else "other"
        if label not in self._codes and len(self._codes) >= MAX_CODES:
            label = "other"
        child = self._codes.get(label)
        if child is None:
            child = self._codes.setdefault(label, self.upstream_errors.labels(label))
        child.inc()

    def failover(self):
        self.failovers.inc()

    def stored(self, offered, rows):
        """``offered`` rows reached the store, ``rows`` (LogRows) of them were stored."""
        self.ingest_rows.inc(offered)
        counts = {}
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        for status, count in counts.items():
            self._log_status[status].inc(count)


class _AccountsCollector:
    """``codexlb_accounts{status}``, read from the database at each scrape (the request's connection)."""

    def collect(self):
        db.connect(reuse_if_open=True)
        counts = dict.fromkeys(ACCOUNT_STATUSES, 0)
        counts.update(Account.select(Account.status, fn.COUNT(Account.id)).group_by(Account.status).tuples())
        gauge = GaugeMetricFamily("codexlb_accounts", "Accounts by status", labels=["status"])
        for status, count in counts.items():
            gauge.add_metric([status], count)
        yield gauge


class _Off:
    """The instruments where there are none (no app, or metrics off): every call does nothing."""

    class _Nothing:
        def inc(self, amount=1):
            pass

        def dec(self, amount=1):
            pass

    open_streams = _Nothing()

    def answered(self, path, status):
        pass

    def first_byte(self, arrived, upstream_seconds):
        pass

    def upstream_error(self, code):
        pass

    def failover(self):
        pass

    def stored(self, offered, rows):
        pass


OFF = _Off()


def current():
    """The current app's Metrics, or OFF outside an app context or with metrics off."""
    return current_app.extensions.get("lb_metrics", OFF) if has_app_context() else OFF


@token_required("METRICS_TOKEN")
def scrape():
    output = generate_latest(current_app.extensions["lb_metrics"].registry)
    return Response(output, 200, {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Cache-Control": "no-store"})


def _count(response):
    current_app.extensions["lb_metrics"].answered(request.path, response.status_code)
    return response


def init_app(app):
    if not app.config["METRICS_TOKEN"]:
        app.extensions["lb_metrics"] = OFF  # no route (GET /metrics is the JSON 404), nothing counted
        return
    disable_created_metrics()  # no *_created series: process-wide, and this app is its only user
    app.extensions["lb_metrics"] = Metrics()
    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
    app.after_request(_count)
