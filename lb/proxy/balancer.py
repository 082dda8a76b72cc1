"""Which account serves a request, and what an upstream answer does to an account.

Pure functions over account rows (anything with the Account columns) and a
clock in epoch ms: no database, no HTTP. The proxy reads the rows, asks here,
and writes back the changes these functions return.
"""
import math
import re
from typing import NamedTuple, Optional

from lb.accounts import WAITING_STATUSES as WAITING
from lb.accounts import has_credentials

RATE_LIMIT_CODES = ("usage_limit_reached", "rate_limit_exceeded")
QUOTA_CODES = ("insufficient_quota", "quota_exceeded")
PERMANENT_CODES = ("account_suspended", "account_deleted")
RATE_LIMIT_MS = 5 * 60 * 1000  # rate_limited with no reset given: back in 5 minutes
QUOTA_MS = 60 * 60 * 1000  # quota_exceeded with no reset given: back in an hour
COOLDOWN_MS = 10 * 1000  # a momentary 429 without Retry-After
PASS_THROUGH = (400, 403, 404, 413, 422)  # the client's own problem: no failover, no change to the account
# In a 200's first event, the codes that mean "the server failed" (as a 5xx would): another account may do.
SERVER_CODES = ("server_error", "server_is_overloaded", "slow_down", "internal_error", "upstream_error",
                "service_unavailable")


def comes_back(account, now):
    """A rate_limited or quota_exceeded account whose expected reset has passed (it becomes active)."""
    return account.status in WAITING and account.resets_at is not None and account.resets_at <= now


def eligible(account, now):
    """May serve a request now: active (or back from a wait), with credentials, not cooling down."""
    if not has_credentials(account) or (account.cooldown_until or 0) > now:
        return False
    return account.status == "active" or comes_back(account, now)


def order_key(account):
    """Lowest secondary used percent, then primary (never seen counts as 0 %), then least recently used."""
    return (account.secondary_used_percent or 0.0, account.primary_used_percent or 0.0,
            account.last_used_at or 0, account.id)


# The statuses that move a conversation's pin to another account; any other (a momentary limit, a failed
# attempt) leaves it with its account, whose prompt cache the next turn reads.
PIN_MOVES = ("rate_limited", "quota_exceeded", "deactivated", "paused")


class Choice(NamedTuple):
    """The account to try, or why there is none: ``refusal`` is usage_limit_reached, cooldown or no_accounts;
    or ``wait_until``: the pinned account is free again then, soon enough to wait for it."""

    account: object = None
    refusal: Optional[str] = None
    message: str = ""
    resets_at: Optional[int] = None  # usage_limit_reached: the earliest expected reset (epoch ms)
    retry_after_s: Optional[int] = None  # cooldown: seconds until the first account is free again
    pin_to: Optional[str] = None  # the account the conversation stays pinned to if this one serves
    wait_until: Optional[int] = None  # epoch ms


def keeps_pin(owner):
    """Whether a conversation stays pinned to ``owner`` while another account serves it."""
    return owner is not None and owner.status not in PIN_MOVES and has_credentials(owner)


def choose(accounts, now, pinned_id=None, tried=(), wait_ms=0):
    """The account for the next attempt: the sticky pin while it is eligible, else the least used; the pin
    stays with its account unless that one's status moves it. A pinned account cooling down for at most
    ``wait_ms`` more, not tried yet, is waited for."""
    owner = next((a for a in accounts if a.id == pinned_id), None)
    kept = owner.id if keeps_pin(owner) else None
    if kept and owner.id not in tried and now < (owner.cooldown_until or 0) <= now + wait_ms and eligible(
            owner, owner.cooldown_until):
        return Choice(pin_to=kept, wait_until=owner.cooldown_until)
    candidates = [a for a in accounts if a.id not in tried and eligible(a, now)]
    if candidates:
        pinned = [a for a in candidates if a.id == pinned_id]
        account = pinned[0] if pinned else min(candidates, key=order_key)
        return Choice(account, pin_to=kept or account.id)
    return refusal([a for a in accounts if a.id not in tried], now)


def refusal(accounts, now):
    """Why none of ``accounts`` can take a request now."""
    usable = [a for a in accounts if has_credentials(a) and a.status not in ("paused", "deactivated")]
    waiting = [a for a in usable if a.status in WAITING and not comes_back(a, now)]
    if usable and len(waiting) == len(usable):
        resets = [a.resets_at for a in waiting if a.resets_at is not None]
        return Choice(refusal="usage_limit_reached", resets_at=min(resets) if resets else None,
                      message="Every account has reached its usage limit")
    if usable:
        cooling = [a.cooldown_until for a in usable if (a.cooldown_until or 0) > now]
        if cooling:
            return Choice(refusal="cooldown", retry_after_s=max(1, math.ceil((min(cooling) - now) / 1000)),
                          message="Every account is briefly rate limited; try again shortly")
    if not accounts:
        message = "No accounts are configured"
    elif not any(has_credentials(a) for a in accounts):
        message = "No account has credentials; import an auth.json"
    else:
        message = "No account is active: all are paused or deactivated"
    return Choice(refusal="no_accounts", message=message)


# -- what an upstream answer does ------------------------------------------------------------

class Outcome(NamedTuple):
    """What to do after an upstream answer: ``action`` is serve, failover or pass_through.

    ``changes`` are the account columns to write (status, resets_at, cooldown,
    usage); ``log_status`` and ``error_code`` are the request log's.
    """

    action: str
    changes: dict
    log_status: str = "ok"
    error_code: Optional[str] = None


def error_code(error):
    """The upstream error's code: ``code``, else ``type``, lower-cased; upstream_error without one."""
    if isinstance(error, dict):
        for field in ("code", "type"):
            if isinstance(error.get(field), str) and error[field]:
                return error[field].lower()
    return "upstream_error"


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def usage_changes(headers, now):
    """The account's usage from the x-codex-primary-*/secondary-* headers of any answer, stamped checked now
    when there is any."""
    changes = {}
    for window in ("primary", "secondary"):
        percent = _number(headers.get(f"x-codex-{window}-used-percent"))
        if percent is not None:
            changes[f"{window}_used_percent"] = percent
        reset_at = _number(headers.get(f"x-codex-{window}-reset-at"))
        after = _number(headers.get(f"x-codex-{window}-reset-after-seconds"))
        if reset_at is not None:
            changes[f"{window}_resets_at"] = int(reset_at * 1000)
        elif after is not None:
            changes[f"{window}_resets_at"] = now + int(after * 1000)
    if changes:
        changes["usage_checked_at"] = now
    return changes


def _reset(error, headers, now, default_ms):
    """When a limited account is expected back: the error's resets_at / resets_in_seconds, the headers, a default."""
    error = error if isinstance(error, dict) else {}
    at, within = _number(error.get("resets_at")), _number(error.get("resets_in_seconds"))
    if at is not None:
        return int(at * 1000)
    if within is not None:
        return now + int(within * 1000)
    from_headers = [v for k, v in usage_changes(headers, now).items() if k.endswith("_resets_at") and v > now]
    return min(from_headers) if from_headers else now + default_ms


def _retry_after(headers, error):
    seconds = _number(headers.get("retry-after"))
    if seconds is None and isinstance(error, dict):
        found = re.search(r"try again in (\d+(?:\.\d+)?)\s*(ms|s|seconds)", str(error.get("message", "")))
        if found:
            seconds = float(found[1]) / (1000 if found[2] == "ms" else 1)
    return int(seconds * 1000) if seconds is not None and seconds > 0 else COOLDOWN_MS


def after_error(status, error, headers, now):
    """What an upstream error (an HTTP status >= 400, or a response.failed event: status 200) does.

    ``headers``: the answer's headers with lower-cased names; ``error``: its error object.
    """
    code = error_code(error)
    changes = usage_changes(headers, now)
    if code in RATE_LIMIT_CODES:
        changes.update(status="rate_limited", resets_at=_reset(error, headers, now, RATE_LIMIT_MS),
                       status_reason=code)
        return Outcome("failover", changes, "rate_limit", code)
    if code in QUOTA_CODES or code == "usage_not_included":
        reset = None if code == "usage_not_included" else _reset(error, headers, now, QUOTA_MS)
        changes.update(status="quota_exceeded", resets_at=reset, status_reason=code)
        return Outcome("failover", changes, "quota", code)
    if code in PERMANENT_CODES:
        changes.update(status="deactivated", resets_at=None, status_reason=code)
        return Outcome("failover", changes, "error", code)
    if status == 429:  # a momentary limit: skip the account a while, its status stays
        changes["cooldown_until"] = now + _retry_after(headers, error)
        return Outcome("failover", changes, "rate_limit", code)
    if status in PASS_THROUGH or (status == 200 and code not in SERVER_CODES):
        # The client's own problem (context_length_exceeded, ...): another account would answer the same.
        return Outcome("pass_through", changes, "error", code)
    return Outcome("failover", changes, "error", code)  # 5xx, 401, and a response.failed the server caused


def after_success(account, headers, now):
    """A 200 that streams: the account serves; its usage and last use are updated, and a wait it came back from ends."""
    changes = {**usage_changes(headers, now), "last_used_at": now}
    if account.status in WAITING:
        changes.update(status="active", resets_at=None, status_reason=None)
    return Outcome("serve", changes)
