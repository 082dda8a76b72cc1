"""The rate limit of password and TOTP attempts, counted in the database per client address."""
import math

from flask import request

from lb.clock import now_ms
from lb.errors import ApiError
from lb.store import AuthFailure, db

FAILURE_LIMIT = 8
FAILURE_WINDOW_MS = 60 * 1000


def client_address():
    return (request.remote_addr or "unknown")[:64]


def check_rate_limit():
    """Refuse every attempt from an address with too many recent failures."""
    now = now_ms()
    recent = [
        f.at
        for f in AuthFailure.select(AuthFailure.at)
        .where((AuthFailure.client == client_address()) & (AuthFailure.at > now - FAILURE_WINDOW_MS))
        .order_by(AuthFailure.at)
    ]
    if len(recent) >= FAILURE_LIMIT:
        # Open again once fewer than the limit remain inside the window.
        reopens = recent[len(recent) - FAILURE_LIMIT] + FAILURE_WINDOW_MS
        retry = max(1, math.ceil((reopens - now) / 1000))
        raise ApiError(429, "rate_limited", "Too many failed attempts; try again later",
                       {"Retry-After": str(retry)})


def record_failure():
    now = now_ms()
    with db.atomic():
        AuthFailure.delete().where(AuthFailure.at <= now - FAILURE_WINDOW_MS).execute()
        AuthFailure.create(client=client_address(), at=now)


def fail(code, message, status):
    """Count a failed attempt, then answer it."""
    record_failure()
    raise ApiError(status, code, message)
