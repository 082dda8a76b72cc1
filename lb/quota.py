"""Quotas that stay current: an account's ``GET <upstream>/wham/usage``, and what its answer does to the account.

What an answer does goes through lb.accounts.apply, like every change of an
account: the plan and both windows' used percent and reset; ``rate_limited``
until a future reset when the limit is reached; ``active`` again once a
reset has passed. A 401 refreshes the token once; 402, 403 and 404
deactivate the account; any other failure changes nothing.
"""
import json
import logging
import math

import urllib3

from lb import accounts, refresh
from lb.accounts import WAITING_STATUSES
from lb.errors import ApiError

log = logging.getLogger(__name__)

PATH = "wham/usage"
DEACTIVATING = (402, 403, 404)
WINDOWS = (("primary_window", "primary"), ("secondary_window", "secondary"))


class UsageUnavailable(Exception):
    """The upstream gave no usage: unreachable, or an answer that changes nothing."""


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _reset(window, now):
    """When a window resets (epoch ms): its reset_at (epoch s), else reset_after_seconds from now; or None."""
    at, after = _number(window.get("reset_at")), _number(window.get("reset_after_seconds"))
    return int(at * 1000) if at is not None else now + int(after * 1000) if after is not None else None


def changes_from(payload, account, now):
    """The account columns a /wham/usage answer sets (a dict; UsageUnavailable if it is not one)."""
    if not isinstance(payload, dict):
        raise UsageUnavailable("usage_invalid_answer")
    changes = {"usage_checked_at": now}
    if isinstance(payload.get("plan_type"), str) and 0 < len(payload["plan_type"]) <= 64:
        changes["plan_type"] = payload["plan_type"]
    limits = payload.get("rate_limit") if isinstance(payload.get("rate_limit"), dict) else {}
    resets = []
    for field, column in WINDOWS:
        window = limits.get(field) if isinstance(limits.get(field), dict) else {}
        percent, reset = _number(window.get("used_percent")), _reset(window, now)
        if percent is not None:
            changes[f"{column}_used_percent"] = float(percent)
        if reset is not None:
            changes[f"{column}_resets_at"] = reset
            resets.append((percent or 0, reset))
    future = [reset for _, reset in resets if reset > now]
    if limits.get("limit_reached") is True and future:
        # The window at its limit decides; when none says so, the later reset is the safe one.
        full = [reset for percent, reset in resets if percent >= 100 and reset > now]
        changes.update(status="rate_limited", resets_at=max(full or future), status_reason="usage_limit_reached")
    elif account.status in WAITING_STATUSES and account.resets_at is not None and account.resets_at <= now:
        changes.update(status="active", resets_at=None, status_reason=None)
    return changes


def poll(account, now, upstream):
    """Poll one account (a row with credentials) and write what the answer says; the changes written.
    Needs an app context and an open database connection (no transaction: the upstream is awaited).
    Raises UsageUnavailable or refresh.RefreshFailed."""
    credentials = refresh.fresh_credentials(account.id, now, account=account)
    answer = _ask(upstream, credentials)
    if answer.status == 401:  # the token may have been revoked early: refresh once, ask again
        answer = _ask(upstream, refresh.fresh_credentials(account.id, now, rejected=credentials.access_token))
    if answer.status in DEACTIVATING:
        changes = {"status": "deactivated", "resets_at": None, "status_reason": f"usage_api_{answer.status}"}
    elif answer.status != 200:
        raise UsageUnavailable(f"usage_http_{answer.status}")
    else:
        try:
            payload = json.loads(answer.data)
        except (ValueError, RecursionError):
            raise UsageUnavailable("usage_invalid_answer") from None
        changes = changes_from(payload, account, now)
    accounts.apply(account.id, changes, now)
    log.info("account %s: usage polled (%s)", account.id, changes.get("status", "unchanged status"))
    return changes


def refresh_now(account_id, now, upstream):
    """POST /api/accounts/<id>/refresh-usage: poll one account now; the account row as it then is."""
    account = accounts.find(account_id)
    if not accounts.has_credentials(account):
        raise ApiError(409, "no_credentials", "The account has no credentials to ask for its usage with")
    try:
        poll(account, now, upstream)
    except (UsageUnavailable, refresh.RefreshFailed) as failure:
        code = failure.code if isinstance(failure, refresh.RefreshFailed) else str(failure)
        raise ApiError(502, "upstream_error", f"The upstream gave no usage ({code})") from None
    return accounts.find(account_id)


def _ask(upstream, credentials):
    headers = {"Authorization": f"Bearer {credentials.access_token}", "Accept": "application/json"}
    if credentials.chatgpt_account_id:
        headers["chatgpt-account-id"] = credentials.chatgpt_account_id
    try:
        return upstream.get(PATH, headers)
    except urllib3.exceptions.HTTPError as exc:
        log.warning("usage poll: the upstream did not answer (%s)", type(exc).__name__)
        raise UsageUnavailable("upstream_unavailable") from None
