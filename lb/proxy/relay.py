"""A served answer on its way to the client: the SSE stream event by event, or one JSON answer collected.

``relay`` is the generator behind a streaming response. It runs after the
request context is gone (waitress iterates it), so it takes everything it
needs as arguments, and its request log is written by lb.proxy.ledger.finish
on a connection of its own when the stream ends.
"""
import json
import logging

import urllib3

from lb.accounts import STATUS_COLUMNS
from lb.proxy import balancer
from lb.proxy.ledger import finish
from lb.proxy.upstream import (COMPLETED, ENDING, FAILED, INCOMPLETE, TERMINAL, error_of, failure_code,
                               response_of, usage_of)

log = logging.getLogger(__name__)


def record(event, ledger, headers, now):
    """What a terminal or ``error`` event says of the request (and, for a usage limit, of the account)."""
    if event.type == COMPLETED:
        ledger.outcome("ok", usage=usage_of(response_of(event)))
    elif event.type == INCOMPLETE:
        details = response_of(event).get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        ledger.outcome("ok", f"incomplete:{reason or 'unknown'}", usage_of(response_of(event)))
    else:
        outcome = balancer.after_error(200, error_of(event), headers, now)
        # The status alone: the stream's headers came with its first event, and their usage is written already.
        ledger.change(ledger.account_id, {k: v for k, v in outcome.changes.items() if k in STATUS_COLUMNS})
        ledger.outcome(outcome.log_status, outcome.error_code, usage_of(response_of(event)))


def failed_event(code, message):
    """The stream's own ``response.failed``: how a failure after the first byte reaches the client."""
    data = {"type": FAILED, "response": {"status": "failed", "error": {"code": code, "message": message}}}
    return f"event: {FAILED}\ndata: ".encode() + json.dumps(data).encode() + b"\n\n"


class PassThrough:
    """The shape of a Responses stream on its way out: the upstream's events as they came, and the proxy's
    own ``response.failed`` for a failure. (lb.proxy.chat.Chunks is the other shape.)"""

    @staticmethod
    def events(batch):
        return batch[0].raw if len(batch) == 1 else b"".join(event.raw for event in batch)

    failure = staticmethod(failed_event)


def _count_failure(ledger, metrics):
    """Count a served stream that ended in an upstream failure (its first event had come: lb.proxy.failover
    counted the failures before it)."""
    if ledger.status not in ("ok", "cancelled"):
        metrics.upstream_error(ledger.error_code)


def relay(served, ledger, proxy, arrived, shape=PassThrough):
    """Yield the upstream's events as they arrive, in the ``shape`` the client reads; when the stream ends, the
    client goes away or the upstream fails, write the request log and the account's changes, in one
    transaction. ``arrived``: the request's perf_counter() on arrival, for the first-byte figures."""
    ended = False  # a terminal event reached the client
    metrics = proxy.metrics
    metrics.first_byte(arrived, served.waited)
    metrics.open_streams.inc()
    try:
        for batch in served.batches():  # what one read brought: passed on at once, in one write
            for event in batch:
                if event.type in ENDING:
                    record(event, ledger, served.headers, proxy.clock())
                    ended = ended or event.type in TERMINAL
            shaped = shape.events(batch)
            if shaped:  # an empty write could end a chunked answer
                yield shaped
        if not ended:
            ledger.outcome("error", "stream_incomplete")
            yield shape.failure("stream_incomplete", "The upstream ended the stream before the response was done")
    except GeneratorExit:
        if not ended:  # the client went away first: no penalty for the account
            ledger.outcome("cancelled", "client_disconnected")
        raise
    except urllib3.exceptions.HTTPError as exc:
        code = failure_code(exc)
        log.warning("account %s: the stream broke off (%s)", ledger.account_id, code)
        ledger.outcome("error", code)
        yield shape.failure(code, "The upstream went silent" if code == "stream_idle_timeout"
                            else "The upstream connection broke")
    finally:
        try:
            served.close()
            _count_failure(ledger, metrics)
            finish(ledger, proxy)
        finally:  # open until its log is written: at 0, every stream so far has its log
            metrics.open_streams.dec()
            proxy.capacity.give_back()


def collect(served, ledger, proxy, parsed_type):
    """Read a whole stream for one JSON answer: (terminal event or None, parsed data of ``parsed_type`` events).
    The caller finishes the ledger."""
    terminal, items = None, []
    try:
        for event in (event for batch in served.batches() for event in batch):
            if event.type == parsed_type and event.data is not None:
                items.append(event.data)
            elif event.type in ENDING:
                record(event, ledger, served.headers, proxy.clock())
                terminal = event if event.type in TERMINAL else terminal
        if terminal is None and ledger.status == "ok":
            ledger.outcome("error", "stream_incomplete")
    except urllib3.exceptions.HTTPError as exc:
        ledger.outcome("error", failure_code(exc))
    finally:
        served.close()
        _count_failure(ledger, metrics=proxy.metrics)
    return terminal, items
