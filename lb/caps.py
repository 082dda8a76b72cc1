"""Per-key caps: requests and tokens in a sliding minute, and requests in flight.

They are counted in the database, so they hold exactly across threads,
workers and instances: a request is admitted in one short write transaction
that counts the key's use and, when there is room, records the request and
leases it a slot. A slot is a lease its process renews while the request
runs (lb.proxy.leases): the slots of a killed process free themselves within
LEASE_MS. Tokens are counted as a request ends, when they are known.
"""
import math
from typing import NamedTuple, Optional

from lb import store
from lb.errors import ApiError, invalid
from lb.tables import db

WINDOW_MS = 60 * 1000  # the sliding minute
LEASE_MS = 60 * 1000  # a slot its process stopped renewing is free after this
RENEW_MS = 20 * 1000  # how often a process renews the slots it holds
MAX_CAP = 10**12


class Caps(NamedTuple):
    """A key's caps, None where it has none."""

    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None
    concurrent_requests: Optional[int] = None


NAMES = {"requestsPerMinute": "requests_per_minute", "tokensPerMinute": "tokens_per_minute",
         "concurrentRequests": "concurrent_requests"}
NONE = Caps()


def of_row(row):
    """The Caps in an api_key row's columns."""
    return Caps(row.requests_per_minute, row.tokens_per_minute, row.concurrent_requests)


def parse(value):
    """A body's ``caps`` as the api_key columns: an object of the three names, each null (no cap) or a
    positive integer; a name left out is null. 422 naming ``caps`` or ``caps.<name>``."""
    if value is None:
        return dict.fromkeys(NAMES.values())
    if not isinstance(value, dict):
        raise invalid("caps", "must be an object of requestsPerMinute, tokensPerMinute and concurrentRequests")
    columns = {}
    for name, column in NAMES.items():
        cap = value.get(name)
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or not 0 < cap <= MAX_CAP):
            raise invalid(f"caps.{name}", "must be null or a whole number from 1 to 10^12")
        columns[column] = cap
    return columns


def as_json(caps):
    return {name: getattr(caps, column) for name, column in NAMES.items()}


def in_use(key_id, now):
    """What the key uses now, by cap: requests and tokens in the last minute, requests in flight."""
    use = store.caps_use(key_id, now - WINDOW_MS, now)
    return {"requestsPerMinute": use.requests, "tokensPerMinute": use.tokens, "concurrentRequests": use.slots}


def admit(key, now):
    """Admit a request of ``key`` under its caps: the id of the slot it leases (None without a
    concurrentRequests cap), or the 429 rate_limit_exceeded naming the cap that is reached."""
    caps = key.caps
    if caps == NONE:
        return None
    since = now - WINDOW_MS
    with db.atomic():
        store.lock_api_key(key.id)
        store.forget_key_use(key.id, since, now)
        use = store.caps_use(key.id, since, now)
        _refuse_over(caps, use, now)
        if caps.requests_per_minute is not None:
            store.add_key_use(key.id, now, 1, 0)
        if caps.concurrent_requests is not None:
            return store.take_slot(key.id, now + LEASE_MS)
    return None


def _refuse_over(caps, use, now):
    if caps.concurrent_requests is not None and use.slots >= caps.concurrent_requests:
        _refuse("concurrentRequests", caps.concurrent_requests, f"{use.slots} in flight", 1)
    if caps.requests_per_minute is not None and use.requests >= caps.requests_per_minute:
        _refuse("requestsPerMinute", caps.requests_per_minute, f"{use.requests} in the last minute",
                _seconds_until(use.first_request_at, now))
    if caps.tokens_per_minute is not None and use.tokens >= caps.tokens_per_minute:
        _refuse("tokensPerMinute", caps.tokens_per_minute, f"{use.tokens} in the last minute",
                _seconds_until(use.first_tokens_at, now))


def _seconds_until(first_at, now):
    """Seconds until the oldest use counted leaves the sliding minute (1 at least)."""
    return max(1, math.ceil((first_at + WINDOW_MS - now) / 1000)) if first_at is not None else 1


def _refuse(name, cap, used, retry_after):
    raise ApiError(429, "rate_limit_exceeded", f"API key cap reached: {name} {cap} ({used}); "
                   f"retry after {retry_after} s", {"Retry-After": str(retry_after)})


def count_tokens(key, at, tokens):
    """Count a finished request's tokens against a key with a tokensPerMinute cap (in the caller's
    transaction); nothing for other keys."""
    if key is not None and key.caps.tokens_per_minute is not None and tokens:
        store.add_key_use(key.id, at, 0, tokens)
