"""The rate limit of password and TOTP attempts, counted in the database per client address.

An attempt is recorded before its slow check runs, in the same short write
transaction that counts the address's recent failures, and forgotten when
the check succeeds. So parallel guesses, from threads or processes, cannot
all pass the count before any of them is recorded. A failure that stays
counted is also audited (login.failed), once its check has failed.
"""
import math
from contextlib import contextmanager

from flask import request

from lb import audit, store
from lb.clock import now_ms
from lb.errors import ApiError
from lb.tables import AuthFailure, db

FAILURE_LIMIT = 8
FAILURE_WINDOW_MS = 60 * 1000
# What counts: wrong passwords, wrong or replayed TOTP codes, unknown setup tokens.
FAILURES = ("invalid_credentials", "invalid_totp_code", "invalid_setup_token")


def client_address():
    return (request.remote_addr or "unknown")[:64]


def _retry_after(client, now):
    """Seconds until ``client`` may try again (0: now)."""
    stamps = sorted(f.at for f in AuthFailure.select(AuthFailure.at).where(
        (AuthFailure.client == client) & (AuthFailure.at > now - FAILURE_WINDOW_MS)))
    if len(stamps) < FAILURE_LIMIT:
        return 0
    # Open again once fewer than the limit remain inside the window.
    reopens = stamps[len(stamps) - FAILURE_LIMIT] + FAILURE_WINDOW_MS
    return max(1, math.ceil((reopens - now) / 1000))


def _refuse(retry_after):
    raise ApiError(429, "rate_limited", "Too many failed attempts; try again later",
                   {"Retry-After": str(retry_after)})


def _count(client, now):
    """Inside a write transaction: housekeeping, then the seconds until ``client`` may try again."""
    store.lock_settings()
    # A clock stepped back must not keep failures in the window for longer than it.
    AuthFailure.update(at=now).where(AuthFailure.at > now).execute()
    AuthFailure.delete().where(AuthFailure.at <= now - FAILURE_WINDOW_MS).execute()
    return _retry_after(client, now)


def check_rate_limit():
    """Refuse every attempt from an address with too many recent failures."""
    with db.atomic():
        retry = _count(client_address(), now_ms())
    if retry:
        _refuse(retry)


@contextmanager
def attempt(step):
    """Count one attempt before the block checks a secret; it stays counted only if the block fails it.

    A failure is the block raising one of FAILURES; any other outcome (success,
    a conflict, an unexpected error) forgets the attempt. A failure is audited
    as login.failed with its reason (the error code) and ``step`` (which check:
    password_login, totp_verify, ...), in a transaction of its own: the
    attempt's row was committed before the outcome was known.
    """
    client, now = client_address(), now_ms()
    # One write transaction (IMMEDIATE on SQLite, the settings row locked on
    # PostgreSQL): of parallel attempts, each sees the ones recorded before it.
    with db.atomic():
        retry = _count(client, now)
        recorded = None if retry else AuthFailure.insert(client=client, at=now).execute()
    if retry:
        _refuse(retry)  # after the commit: the housekeeping stands
    failed = False
    try:
        yield
    except ApiError as exc:
        failed = exc.code in FAILURES
        if failed:
            with db.atomic():
                audit.record("login.failed", now, client, detail={"reason": exc.code, "step": step})
        raise
    finally:
        if not failed:
            AuthFailure.delete().where(AuthFailure.id == recorded).execute()
