"""Account tokens kept fresh: refreshed near expiry or after a 401, once per account across threads and instances.

Tokens leave this module in clear only inside the ``Credentials`` that
``fresh_credentials`` hands the proxy; no answer, log line or error message
carries one.
"""
import json
import logging
import math
import re
import threading
import time
from collections import namedtuple

import urllib3
from flask import current_app
from peewee import IntegrityError

from lb import accounts, crypto
from lb.accounts import has_credentials
from lb.clock import DAY_MS
from lb.credentials import TOKENS, jwt_claims, profile
from lb.errors import ApiError
from lb.tables import Account

log = logging.getLogger(__name__)

SCOPE = "openid profile email"
EXPIRY_MARGIN_MS = 5 * 60 * 1000  # refresh an access token this close to its exp
REFRESH_INTERVAL_MS = 8 * DAY_MS  # ... or, when its exp cannot be read, this long after the last refresh
LEASE_MS = 30 * 1000  # one refresh per account across instances; longer than a token call can take
WAIT_MS = 2 * LEASE_MS  # give up waiting for another refresh (transient) after this
POLL_SECONDS = 0.1
# Connect and read 10 s each, 20 s in all: a call ends well inside the lease.
TIMEOUT = urllib3.Timeout(connect=10.0, read=10.0, total=20.0)
PERMANENT_CODES = ("refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated")
CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # an error code worth repeating; anything else is not echoed

Credentials = namedtuple("Credentials", "access_token chatgpt_account_id")


class RefreshFailed(Exception):
    """No usable access token: ``permanent`` when the account was deactivated, else skip it this time."""

    def __init__(self, code, permanent):
        super().__init__(f"token refresh failed: {code}")
        self.code, self.permanent = code, permanent


# -- refresh ----------------------------------------------------------------------------------

def _account(account_id):
    account = Account.get_or_none(Account.id == account_id)
    if account is None:
        raise RefreshFailed("account_not_found", permanent=False)
    if not has_credentials(account):
        raise RefreshFailed("no_credentials", permanent=False)
    return account


def _unseal(sealed, account_id):
    try:
        return crypto.unseal(sealed)
    except crypto.Unreadable:
        log.error("account %s: its stored tokens do not open with this encryption key", account_id)
        raise RefreshFailed("credentials_unreadable", permanent=False) from None


def _credentials(account):
    return Credentials(_unseal(account.access_token, account.id), account.chatgpt_account_id or None)


def is_expiring(access_token, last_refresh_at, now):
    """Whether an access token needs a refresh before use at ``now``."""
    claims = jwt_claims(access_token)
    exp = claims.get("exp") if claims else None
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and math.isfinite(exp):
        return exp * 1000 - now < EXPIRY_MARGIN_MS
    return last_refresh_at is None or now - last_refresh_at >= REFRESH_INTERVAL_MS


def fresh_credentials(account_id, now, account=None, rejected=None):
    """The account's access token and ChatGPT account id, refreshed first when it expires within 5 minutes, or
    when it is ``rejected``: the token an upstream 401 just refused. ``now`` in epoch ms; ``account``: its row,
    if just read. Needs an app context (the settings and the encryption key) and an open database connection
    outside any transaction; raises RefreshFailed."""
    account = _account(account_id) if account is None or not has_credentials(account) else account
    credentials = _credentials(account)
    # A stored token other than the rejected one is a refresh that another thread or instance did after the
    # same 401: it is used as it is, and the new refresh token is not spent again.
    refused = rejected is not None and crypto.constant_equal(credentials.access_token, rejected)
    if refused or is_expiring(credentials.access_token, account.last_refresh_at, now):
        return refresh(account, now)
    return credentials


class Refresher:
    """One app's way to the token endpoint (``app.extensions["lb_refresh"]``): its connection pool, and a lock
    per account id so that the threads of this process refresh an account one at a time."""

    def __init__(self):
        # No retries: a POST whose answer was lost may have spent the refresh token.
        self.http = urllib3.PoolManager(retries=False)
        self._locks = {}
        self._guard = threading.Lock()

    def lock(self, account_id):
        with self._guard:
            return self._locks.setdefault(account_id, threading.Lock())


def refresh(account, now):
    """Refresh the tokens read in ``account`` (a row); if another refresh stored new ones since, reuse those.

    The refresh token is spent by its use, so it is used once: threads of this
    process wait on a lock, instances on a lease column, and whoever waited
    finds the stored refresh token changed and takes the new tokens. No
    transaction is open during the call to the token endpoint.
    """
    lock = current_app.extensions["lb_refresh"].lock(account.id)
    if not lock.acquire(timeout=WAIT_MS / 1000):
        raise RefreshFailed("refresh_busy", permanent=False)
    try:
        current, lease = _take_lease(account.id, account.refresh_token, now)
        if lease is None:
            return _credentials(current)
        return _exchange(current, lease, now)
    finally:
        lock.release()


def _take_lease(account_id, seen, now):
    """(row, lease expiry) once this instance holds the refresh lease, or (newer row, None) when the
    refresh token is no longer ``seen``: another refresh has been done."""
    started = time.monotonic()
    while True:
        current = _account(account_id)
        if current.refresh_token != seen:
            return current, None
        at = now + int((time.monotonic() - started) * 1000)
        free = Account.refresh_lease_until.is_null() | (Account.refresh_lease_until < at)
        # One statement, no transaction: the lease is taken or not, and nothing stays locked.
        if Account.update(refresh_lease_until=at + LEASE_MS).where(
                (Account.id == account_id) & (Account.refresh_token == seen) & free).execute():
            return current, at + LEASE_MS
        if at - now >= WAIT_MS:
            raise RefreshFailed("refresh_busy", permanent=False)
        _pause()


def _pause():
    """Wait before looking at the row again (another instance holds the lease)."""
    time.sleep(POLL_SECONDS)


def _release(account_id, lease):
    Account.update(refresh_lease_until=None).where(
        (Account.id == account_id) & (Account.refresh_lease_until == lease)).execute()


def _exchange(account, lease, now):
    """Spend the account's refresh token at the token endpoint (lease held) and store the answer."""
    seen = account.refresh_token
    unchanged = (Account.id == account.id) & (Account.refresh_token == seen)
    try:
        refresh_token = _unseal(seen, account.id)
        answer = _call_token_endpoint(refresh_token)
    except RefreshFailed as failure:
        log.warning("account %s: token refresh failed (%s, %s)", account.id, failure.code,
                    "permanent" if failure.permanent else "transient")
        if not failure.permanent:
            _release(account.id, lease)
            raise
        if accounts.apply(account.id, {"status": "deactivated", "status_reason": failure.code,
                                       "refresh_lease_until": None}, now, expect={"refresh_token": seen}):
            raise
        _release(account.id, lease)
        current = _account(account.id)
        if current.refresh_token == seen:  # paused meanwhile: the pause stands, and so does the failure
            raise
        return _credentials(current)  # new tokens were stored meanwhile: they are good
    fernet = current_app.extensions["lb_fernet"]
    new = {name: answer[name] for name in TOKENS if isinstance(answer.get(name), str) and answer[name]}
    # The refresh token is sealed afresh even when the answer keeps it, so waiting callers see a change.
    new.setdefault("refresh_token", refresh_token)
    changes = {name: crypto.seal(value, fernet) for name, value in new.items()}
    changes.update(last_refresh_at=now, refresh_lease_until=None)
    reread = _reread_profile(new.get("id_token"), account, now)
    try:
        written = Account.update(**changes, **reread).where(unchanged).execute()
    except IntegrityError:  # the new email is another account's in this workspace: keep the old one
        reread = {name: value for name, value in reread.items() if name not in ("email", "email_key")}
        written = Account.update(**changes, **reread).where(unchanged).execute()
    if not written:  # an import replaced the tokens during the call; ours are still valid, but so are those
        _release(account.id, lease)
        return _credentials(_account(account.id))
    log.info("account %s: tokens refreshed", account.id)
    return Credentials(new.get("access_token") or _unseal(account.access_token, account.id),
                       account.chatgpt_account_id or None)


def _reread_profile(id_token, account, now):
    """Email and plan from a new id_token, as changes to ``account``; none when it gives no usable email."""
    claims = jwt_claims(id_token) if id_token else None
    if claims is None:
        return {}
    try:
        email, email_key, plan, _ = profile(claims, "id_token")
    except ApiError:
        return {}
    if (email, plan) == (account.email, account.plan_type):
        return {}
    return {"email": email, "email_key": email_key, "plan_type": plan, "updated_at": now}


def error_code(answer):
    """The token endpoint's error code: error.code, error (a string) or code."""
    if not isinstance(answer, dict):
        return None
    error = answer.get("error")
    for code in (error.get("code") if isinstance(error, dict) else None, error, answer.get("code")):
        if isinstance(code, str) and CODE.fullmatch(code):
            return code
    return None


def _call_token_endpoint(refresh_token):
    """The token endpoint's answer to a refresh (a dict); RefreshFailed, permanent or not, otherwise."""
    config = current_app.config
    payload = {"client_id": config["OAUTH_CLIENT_ID"], "grant_type": "refresh_token",
               "refresh_token": refresh_token, "scope": SCOPE}
    try:
        http = current_app.extensions["lb_refresh"].http
        response = http.request("POST", config["OAUTH_TOKEN_URL"], body=json.dumps(payload).encode("utf-8"),
                                headers={"Content-Type": "application/json", "Accept": "application/json"},
                                timeout=TIMEOUT)
    except urllib3.exceptions.HTTPError as exc:  # connection refused, timeouts, a broken answer
        log.warning("token endpoint unreachable: %s", type(exc).__name__)
        raise RefreshFailed("refresh_unreachable", permanent=False) from None
    try:
        answer = json.loads(response.data.decode("utf-8"))
    except (ValueError, RecursionError):
        answer = None
    code = error_code(answer)
    if code in PERMANENT_CODES:
        raise RefreshFailed(code, permanent=True)
    if response.status == 401:
        raise RefreshFailed("refresh_unauthorized", permanent=True)
    if response.status != 200:
        raise RefreshFailed(code or f"refresh_http_{response.status}", permanent=False)
    if not isinstance(answer, dict):
        raise RefreshFailed("refresh_invalid_answer", permanent=False)
    return answer


def init_app(app):
    app.extensions["lb_refresh"] = Refresher()
