"""The LLM clients' face: the Codex CLI and the OpenAI SDK, balanced across the accounts.

routes     the views: capacity, key guard, admit, failover, answer (the OpenAI error envelope)
capacity   the requests one process carries at once; past them, 503 server_busy
leases     the per-key caps' slots this process holds, renewed while their requests run
failover   one client request tried on up to three accounts
balancer   which account serves, and what an upstream answer does to it (pure)
upstream   the pooled HTTP client, the SSE reader, the event names
relay      a stream on its way out, or collected into one answer
ledger     the request's account changes, pin, key use and log row, written in one transaction
responses  the /v1/responses body and its one JSON answer (pure)
chat       /v1/chat/completions: the request as a Responses body, the answer and its chunks back (pure)

Where a proxied request holds a database connection, and why:
1. the request's own (lb.database, before_request): the API key and the model's admission;
2. each attempt's (failover._choose, the request's own the first time): the last attempt's status change,
   the choice of account and its fresh credentials, given back before the upstream is called;
3. a refresh after an upstream 401 (failover._credentials);
4. the end (ledger.finish): the log row and what the request did, in one transaction, after the stream.
A stream holds none: it may last many minutes. Nor does a wait for a conversation's account (failover.send).
"""
from typing import Callable, NamedTuple

from lb.proxy import routes
from lb.proxy.capacity import Capacity
from lb.proxy.leases import Leases
from lb.proxy.ledger import Pins
from lb.proxy.upstream import Upstream


class Proxy(NamedTuple):
    """What the proxy keeps for the life of an app (``app.extensions["lb_proxy"]``), handed down to the code
    that outlives a request (a stream)."""

    upstream: Upstream
    clock: Callable[[], int]  # epoch ms, from the app's injected clock
    metrics: object  # lb.metrics.Metrics, or its no-op
    pins: Pins
    capacity: Capacity
    leases: Leases
    sleep: Callable[[float], None]  # seconds, from the app's injected sleep
    sticky_wait_ms: int  # how long a request may wait for its conversation's account


def init_app(app):
    """Register the routes and make the app's upstream pool (lb.metrics must be set up first)."""
    config = app.config
    upstream = Upstream(config["UPSTREAM_URL"], config["UPSTREAM_CONNECT_TIMEOUT"], config["UPSTREAM_READ_TIMEOUT"],
                        maxsize=config["THREADS"])
    clock = config["CLOCK"]

    def clock_ms():
        return int(clock() * 1000)

    app.extensions["lb_proxy"] = Proxy(upstream, clock_ms, app.extensions["lb_metrics"], Pins(),
                                       Capacity(config["CAPACITY"]), Leases(clock_ms), config["SLEEP"],
                                       config["STICKY_WAIT_MS"])
    app.register_blueprint(routes.bp)
