"""One client request tried on up to three accounts, until one serves it.

No Flask request in here: the routes hand over a ``Call`` (what to send),
a ``Ledger`` (what the request does, lb.proxy.ledger) and the app's
``Proxy`` (upstream, clock, metrics). ``send`` returns a Served answer to
relay, a Failed one to answer with, or the balancer's refusal. The app
context is needed for a token refresh. Each attempt borrows a connection
for its short database work and gives it back before the upstream is
called; nothing is held while the upstream or the client is awaited.
"""
import json
import logging
import time
from typing import Iterator, NamedTuple, Optional

import urllib3

from lb import refresh, store
from lb.errors import ApiError
from lb.proxy import balancer, ledger as ledgers
from lb.proxy.upstream import ERROR, FAILED, PARSED, batches, chunks, error_of, failure_code
from lb.tables import db

log = logging.getLogger(__name__)

MAX_ACCOUNTS = 3
ERROR_BODY_BYTES = 1 << 20  # what is kept of an upstream error answer
FAILED_EVENTS = (FAILED, ERROR)


class Call(NamedTuple):
    """What to send upstream: ``headers`` are the client's, already filtered by the routes."""

    path: str
    body: bytes
    headers: dict
    stream: bool  # an SSE answer (responses) or one JSON answer (compaction)
    cache_key: Optional[str] = None  # the prompt_cache_key, when sticky sessions are on
    parse: frozenset = PARSED  # the event types whose JSON the caller needs


class Served(NamedTuple):
    """A 200 to relay: a stream with its first batch of events read, or a whole JSON body."""

    account_id: str
    headers: dict  # for the client
    response: object  # the urllib3 answer, released by close()
    first: Optional[list] = None  # the Events that arrived first
    rest: Optional[Iterator[list]] = None  # the later ones, a list per read
    body: Optional[bytes] = None
    waited: float = 0.0  # seconds from the request sent upstream to its first event

    def batches(self):
        yield self.first
        yield from self.rest

    def close(self):
        self.response.close()
        self.response.release_conn()


class Failed(NamedTuple):
    """An answer that ends an attempt; the client's answer when it is the last one: the upstream's own
    (``status``, ``headers``, ``body`` as sent), or, when the proxy failed before one came, ``error``."""

    status: int
    headers: dict
    body: bytes
    log_status: str
    error_code: str
    failover: bool  # another account may answer better
    error: Optional[ApiError] = None


def client_headers(headers):
    """What goes back to the client of an upstream answer: its type, the x-codex-* usage, its request id."""
    kept = {name: value for name, value in headers.items() if name.startswith("x-codex-")}
    for name in ("content-type", "x-request-id"):
        if name in headers:
            kept[name] = headers[name]
    return kept


def _failed(status, code, message, log_code):
    """A failed attempt the proxy answers itself (no upstream answer to pass on)."""
    return Failed(status, {}, b"", "error", log_code, failover=True, error=ApiError(status, code, message))


# -- the attempts --------------------------------------------------------------------------

def send(call, ledger, proxy):
    """Try ``call`` on the eligible accounts, at most MAX_ACCOUNTS of them, in the balancer's order."""
    tried, failed, wait_ms = [], None, proxy.sticky_wait_ms
    for _ in range(MAX_ACCOUNTS):
        choice, credentials = _choose(call, ledger, proxy, tried, wait_ms)
        if choice.wait_until is not None:  # the conversation's account is free again in a moment: once
            proxy.sleep(max(0, choice.wait_until - proxy.clock()) / 1000)
            wait_ms = 0
            choice, credentials = _choose(call, ledger, proxy, tried, wait_ms)
        if choice.account is None:
            return failed or choice
        result = credentials if isinstance(credentials, Failed) else attempt(
            choice.account, credentials, call, ledger, proxy, choice.pin_to)
        if isinstance(result, Failed):
            proxy.metrics.upstream_error(result.error_code)
        if not isinstance(result, Failed) or not result.failover:
            return result
        log.warning("account %s: upstream %d %s; trying another account", choice.account.id, result.status,
                    result.error_code)
        proxy.metrics.failover()
        failed = result
    return failed


def _choose(call, ledger, proxy, tried, wait_ms=0):
    """On a borrowed connection (the request's own, the first time), given back before the upstream is
    called (or waited for): write what the last attempt did to its account (other requests see it at once),
    choose the next account, and get its fresh credentials. (choice, Credentials or a Failed refresh)."""
    now = proxy.clock()
    with db.connection_context():
        ledgers.write(ledger, now)
        pinned = ledgers.pinned(call.cache_key, now) if call.cache_key else None
        choice = balancer.choose(store.all_accounts(), now, pinned, tried, wait_ms)
        if choice.account is None:
            return choice, None
        tried.append(choice.account.id)
        ledger.serving(choice.account.id)
        try:
            return choice, refresh.fresh_credentials(choice.account.id, now, account=choice.account)
        except refresh.RefreshFailed as failure:
            return choice, _refresh_failed(failure)


def attempt(account, credentials, call, ledger, proxy, pin_to=None):
    """One account's try: the upstream's answer, and what it does to the account (gathered in ``ledger``).
    ``pin_to``: the account the conversation stays pinned to when this one serves (itself by default)."""
    now = proxy.clock()
    asked = time.perf_counter()
    try:
        answer = _open(proxy.upstream, call, credentials)
        if answer.status == 401:  # the token may have been revoked early: refresh once, ask again
            _read(answer)
            answer = _open(proxy.upstream, call, _credentials(account.id, now, credentials.access_token))
            if answer.status == 401:
                body = _read(answer)
                ledger.change(account.id, {"status": "deactivated", "resets_at": None,
                                           "status_reason": "upstream_unauthorized"})
                return Failed(401, client_headers(_lower(answer.headers)), body, "error", "upstream_unauthorized",
                              failover=True)
    except refresh.RefreshFailed as failure:
        return _refresh_failed(failure)
    except urllib3.exceptions.HTTPError as exc:
        return _unreachable(exc)
    headers = _lower(answer.headers)
    if answer.status >= 400:
        body = _read(answer)
        outcome = balancer.after_error(answer.status, error_object(body), headers, now)
        ledger.change(account.id, outcome.changes)
        return Failed(answer.status, client_headers(headers), body, outcome.log_status, outcome.error_code,
                      failover=outcome.action == "failover")
    if not call.stream:
        served = Served(account.id, client_headers(headers), answer, body=_read(answer, limit=None))
    else:
        stream = batches(chunks(answer), parse=call.parse)
        try:
            arrived = next(stream)
        except (StopIteration, urllib3.exceptions.HTTPError) as exc:
            answer.close()
            if isinstance(exc, StopIteration):
                return _failed(502, "upstream_error", "The upstream ended the stream before any event",
                               "stream_incomplete")
            return _unreachable(exc)
        waited = time.perf_counter() - asked  # the upstream's part of the first byte
        if arrived[0].type in FAILED_EVENTS:
            outcome = balancer.after_error(200, error_of(arrived[0]), headers, now)
            if outcome.action == "failover":
                body = b"".join(event.raw for event in arrived) + _rest(stream)
                answer.close()
                ledger.change(account.id, outcome.changes)
                return Failed(200, client_headers(headers), body, outcome.log_status, outcome.error_code,
                              failover=True)
        served = Served(account.id, client_headers(headers), answer, first=arrived, rest=stream, waited=waited)
    ledger.change(account.id, balancer.after_success(account, headers, now).changes)
    if call.cache_key:
        ledger.pin(call.cache_key, pin_to or account.id)
    return served


def _credentials(account_id, now, rejected):
    """Credentials after the upstream refused ``rejected``: refreshed, unless another refresh replaced it.
    On a borrowed connection, given back before the upstream is asked again."""
    with db.connection_context():
        return refresh.fresh_credentials(account_id, now, rejected=rejected)


def _refresh_failed(failure):
    return _failed(503, "no_accounts", f"The account's tokens could not be refreshed ({failure.code})", failure.code)


def _open(upstream, call, credentials):
    headers = dict(call.headers)
    headers["Authorization"] = f"Bearer {credentials.access_token}"
    headers["Content-Type"] = "application/json"
    if credentials.chatgpt_account_id:
        headers["chatgpt-account-id"] = credentials.chatgpt_account_id
    return upstream.open(call.path, call.body, headers)


def _unreachable(exc):
    code = failure_code(exc)
    log.warning("upstream %s: %s", code, type(exc).__name__)
    return _failed(502, "upstream_error", "The upstream did not answer" if code == "stream_idle_timeout" else
                   "The upstream could not be reached", code)


def _lower(headers):
    return {name.lower(): value for name, value in headers.items()}


def _read(answer, limit=ERROR_BODY_BYTES):
    """An answer's whole body (an error's cut at ``limit``); the connection goes back to the pool when it can."""
    try:
        body = answer.read(limit + 1 if limit else None)
    except urllib3.exceptions.HTTPError:
        body = b""
    if limit and len(body) > limit:
        answer.close()
        body = body[:limit]
    answer.release_conn()
    return body


def _rest(stream):
    """The events after a failed first one (a short stream), for the client if no other account does better."""
    rest = b""
    try:
        for batch in stream:
            rest += b"".join(event.raw for event in batch)
            if len(rest) > ERROR_BODY_BYTES:
                break
    except urllib3.exceptions.HTTPError:
        pass
    return rest


def error_object(body):
    """The error object of an upstream error answer: ``{"error": {...}}``, ``{"detail": ...}`` or bare."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("error"), dict):
        return data["error"]
    if "detail" in data:
        return {"message": str(data["detail"])}
    return data
