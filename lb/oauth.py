"""Sign in with ChatGPT: the Codex CLI's own OAuth client, in a browser (PKCE S256, the address the browser
ended on pasted back) or with a device code (the server polls the issuer).

A flow is a row (tables.OAuthFlow), so that any worker or instance finishes
what another started. Its secrets (the PKCE verifier, the state, the device
ids) are sealed like account tokens and deleted once the flow ends; apart
from the state inside ``authorizationUrl`` no answer or log line carries
them. The tokens a flow obtains make or renew an account exactly as
importing them would (credentials.save), in the transaction that ends the
flow: a failed or cancelled flow changes no account. The same transaction
audits it (account.signed_in), with the client's address for a callback and
none for a device flow completed by the background poller.

One completer at a time: a callback's code exchange and a device flow's
polling hold the flow's lease (``holder``, ``lease_until``), taken in one
UPDATE. A device flow's poller keeps its lease from poll to poll, and
``next_poll_at`` spaces the polls by the issuer's interval.
"""
import base64
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from urllib.parse import parse_qs, urlencode

import click
import urllib3
from flask import current_app
from peewee import DatabaseError

from lb import accounts, audit, credentials, crypto, refresh
from lb.clock import DAY_MS, iso, now_ms
from lb.errors import ApiError, invalid
from lb.fields import get_choice, get_str
from lb.tables import Account, OAuthFlow, db

log = logging.getLogger(__name__)

METHODS = ("browser", "device")
REDIRECT_URI = "http://localhost:1455/auth/callback"  # the Codex CLI's: the issuer allows no other for its client
SCOPE = "openid profile email offline_access"
LIFETIME_MS = 15 * 60 * 1000
KEPT_MS = DAY_MS  # an ended flow can be read this long, then it is deleted
LEASE_MS = 60 * 1000  # longer than a call to the issuer can take (refresh.TIMEOUT)
INTERVALS = (1, 60)  # the device polling interval the issuer may ask for, in seconds
DEFAULT_INTERVAL = 5
PENDING_POLLS = (403, 404)  # the device token endpoint's "not yet"


class Failure(Exception):
    """A flow that cannot complete: the flow fails with ``code``, and the request is answered ``status``."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- the flow object -------------------------------------------------------------------------

def as_json(flow):
    """The flow of the API; its secrets only while it is pending, and then only the state in the URL."""
    secret = _secrets(flow) if flow.status == "pending" else {}
    answer = {"id": flow.id, "method": flow.method, "status": flow.status, "expiresAt": iso(flow.expires_at),
              "accountId": flow.account_id, "created": flow.created,
              "error": {"code": flow.error_code, "message": flow.error_message} if flow.error_code else None}
    issuer = current_app.config["OAUTH_ISSUER"]
    if flow.method == "browser":
        answer.update(authorizationUrl=_authorization_url(secret) if secret else None, redirectUri=REDIRECT_URI)
    else:
        answer.update(userCode=secret.get("user_code"), verificationUrl=issuer + "/codex/device",
                      intervalSeconds=flow.interval_seconds)
    return answer


def _secrets(flow):
    return json.loads(crypto.unseal(flow.secrets)) if flow.secrets else {}


def _challenge(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _authorization_url(secret):
    config = current_app.config
    query = urlencode({"response_type": "code", "client_id": config["OAUTH_CLIENT_ID"], "redirect_uri": REDIRECT_URI,
                       "scope": SCOPE, "code_challenge": _challenge(secret["verifier"]),
                       "code_challenge_method": "S256", "id_token_add_organizations": "true",
                       "codex_cli_simplified_flow": "true", "state": secret["state"], "originator": "codex_cli_rs"})
    return f"{config['OAUTH_ISSUER']}/oauth/authorize?{query}"


# -- start, read, cancel -------------------------------------------------------------------------

def start(data, now):
    """Start a flow from a POST body (method, accountId to re-authenticate); the new row. 422, 404, 502."""
    method = get_choice(data, "method", METHODS)
    if method is None:
        raise invalid("method", "is required")
    target = get_str(data, "accountId", required=False)
    if target is not None:
        accounts.find(target)
    flow = OAuthFlow(id="flow_" + secrets.token_urlsafe(16), method=method, status="pending",
                     target_account_id=target, created_at=now, expires_at=now + LIFETIME_MS)
    if method == "browser":  # 32 random bytes of state; a verifier of 86 characters
        secret = {"state": secrets.token_urlsafe(32), "verifier": secrets.token_urlsafe(64)}
    else:
        secret, interval, expires_in = _device_code()
        flow.interval_seconds = interval
        flow.next_poll_at = now + interval * 1000
        if expires_in is not None:
            flow.expires_at = min(flow.expires_at, now + expires_in * 1000)
    flow.secrets = crypto.seal(json.dumps(secret))
    with db.atomic():
        _sweep(now)
        flow.save(force_insert=True)
    log.info("sign-in %s started (%s%s)", flow.id, method, f", re-authenticating {target}" if target else "")
    return flow


def _sweep(now):
    """End the flows that expired unseen (their secrets go) and delete those ended long ago."""
    _expire(OAuthFlow.expires_at <= now)
    OAuthFlow.delete().where(OAuthFlow.expires_at < now - KEPT_MS).execute()


def _expire(where):
    OAuthFlow.update(status="expired", error_code="oauth_flow_expired", secrets=None, holder=None,
                     lease_until=None,
                     error_message="The sign-in was not completed in time; start again").where(
        (OAuthFlow.status == "pending") & where).execute()


def find(flow_id, now):
    """The flow, ended as expired if its time has passed; 404 oauth_flow_not_found."""
    flow = OAuthFlow.get_or_none(OAuthFlow.id == flow_id)
    if flow is None:
        raise ApiError(404, "oauth_flow_not_found", "Sign-in flow not found")
    if flow.status == "pending" and now >= flow.expires_at:
        _expire(OAuthFlow.id == flow_id)
        flow = OAuthFlow.get_by_id(flow_id)
    return flow


def watch(flow_id, now):
    """The flow, as find gives it; a pending device flow's poller is woken in this process, so that a flow
    whose first poller is gone (its instance stopped) is taken over by one that serves it."""
    flow = find(flow_id, now)
    if flow.status == "pending" and flow.method == "device":
        current_app.extensions["lb_oauth"].wake()
    return flow


def cancel(flow_id):
    """Delete the flow, ended or not: its polling stops and a later read is 404."""
    if not OAuthFlow.delete().where(OAuthFlow.id == flow_id).execute():
        raise ApiError(404, "oauth_flow_not_found", "Sign-in flow not found")
    log.info("sign-in %s cancelled", flow_id)


# -- the browser method: the pasted callback -------------------------------------------------

def _callback_params(text):
    """The query of a pasted address (whole, or its query string), first value of each name."""
    query = text.strip().split("#", 1)[0]
    query = query.split("?", 1)[1] if "?" in query else query
    try:
        params = parse_qs(query, max_num_fields=64)
    except ValueError:
        raise invalid("callbackUrl", "has too many parameters") from None
    return {name: values[0] for name, values in params.items()}


def callback(flow_id, data, now, ip=None):
    """Complete a browser flow with the address the browser ended on (``callbackUrl``); the flow. ``ip``: the
    client's address, for the audit log."""
    flow = _pending(flow_id, now)
    text = get_str(data, "callbackUrl", max_len=8192)
    if flow.method != "browser":
        raise invalid("callbackUrl", "is for the browser method: a device flow completes by itself")
    params = _callback_params(text)
    secret = _secrets(flow)
    state, error = params.get("state"), params.get("error")
    if state is None and error is None:
        raise invalid("callbackUrl", "has no state: paste the whole address the browser ended on")
    if state is not None and not crypto.constant_equal(state, secret["state"]):
        raise ApiError(400, "oauth_state_mismatch",
                       "That address is from another sign-in (its state does not match): paste the one this "
                       "sign-in ended on")
    if error is not None:
        code = error if refresh.CODE.fullmatch(error) else "an unnamed error"
        _fail(flow_id, None, Failure(400, "oauth_denied", f"The sign-in was refused: {code}"))
    if not params.get("code"):
        raise invalid("callbackUrl", "has no code: paste the address the browser ended on after signing in")
    holder = "callback:" + secrets.token_hex(8)
    if not _take(flow_id, holder, now):
        raise ApiError(409, "oauth_flow_finished", "This sign-in is being completed by another request")
    return _complete(flow, holder, params["code"], REDIRECT_URI, secret["verifier"], now, ip)


def _pending(flow_id, now):
    flow = find(flow_id, now)
    if flow.status == "expired":
        raise ApiError(409, "oauth_flow_finished", "This sign-in expired; start again")
    if flow.status != "pending":
        raise ApiError(409, "oauth_flow_finished", f"This sign-in has already {flow.status}")
    return flow


# -- completing: the code exchanged, the account made or renewed --------------------------------

def _take(flow_id, holder, now, until=None, **also):
    """Take (or keep) the flow's lease for ``holder``; whether it holds it. One statement decides."""
    free = OAuthFlow.holder.is_null() | (OAuthFlow.holder == holder) | (OAuthFlow.lease_until <= now)
    where = (OAuthFlow.id == flow_id) & (OAuthFlow.status == "pending") & (OAuthFlow.expires_at > now) & free
    if "next_poll_at" in also:  # a poll: only once it is due
        where &= OAuthFlow.next_poll_at <= now
    return OAuthFlow.update(holder=holder, lease_until=until or now + LEASE_MS, **also).where(where).execute() > 0


def _fail(flow_id, holder, failure):
    """End the flow as failed with ``failure`` (if ``holder`` still holds it, when given), then raise it as an
    ApiError."""
    where = (OAuthFlow.id == flow_id) & (OAuthFlow.status == "pending")
    if holder:
        where &= OAuthFlow.holder == holder
    OAuthFlow.update(status="failed", error_code=failure.code, error_message=failure.message, secrets=None,
                     holder=None, lease_until=None).where(where).execute()
    log.warning("sign-in %s failed: %s", flow_id, failure.code)
    raise ApiError(failure.status, failure.code, failure.message)


def _complete(flow, holder, code, redirect_uri, verifier, now, ip=None):
    """Exchange the code (lease held) and store the account; the completed flow, or ApiError."""
    try:
        values = _exchange(code, redirect_uri, verifier, now)
        return _finish(flow, holder, values, now, ip)
    except Failure as failure:
        _fail(flow.id, holder, failure)


def _exchange(code, redirect_uri, verifier, now):
    """The account an authorization code stands for: credentials.read_auth_json's values. Failure."""
    config = current_app.config
    status, answer = _post(config["OAUTH_TOKEN_URL"], form={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": config["OAUTH_CLIENT_ID"], "code_verifier": verifier})
    if status is None:
        raise Failure(502, "oauth_exchange_failed", "The issuer's token endpoint is unreachable")
    if status != 200 or not isinstance(answer, dict):
        issuer_code = refresh.error_code(answer) or f"HTTP {status}"
        raise Failure(502, "oauth_exchange_failed", f"The issuer refused the code: {issuer_code}")
    tokens = {name: answer.get(name) for name in credentials.TOKENS}
    try:
        return credentials.read_auth_json({"tokens": tokens}, now)
    except ApiError as exc:  # a 422 naming the claim: no account can be made of these tokens
        raise Failure(502, "oauth_exchange_failed", f"The issuer's tokens cannot make an account: {exc.message}")


def _finish(flow, holder, values, now, ip):
    if flow.target_account_id:
        target = Account.get_or_none(Account.id == flow.target_account_id)
        if target is None:
            raise Failure(404, "account_not_found", "The account to re-authenticate was deleted meanwhile")
        if (target.email_key, target.chatgpt_account_id or values["chatgpt_account_id"]) != (
                values["email_key"], values["chatgpt_account_id"]):
            raise Failure(409, "oauth_account_mismatch",
                          f"That sign-in was for another account: sign in as {target.email}")

    def end(account, created):
        ended = OAuthFlow.update(status="completed", account_id=account.id, created=created, secrets=None,
                                 holder=None, lease_until=None).where(
            (OAuthFlow.id == flow.id) & (OAuthFlow.holder == holder) & (OAuthFlow.status == "pending")).execute()
        if not ended:  # cancelled meanwhile: the account is left as it was
            raise ApiError(404, "oauth_flow_not_found", "The sign-in was cancelled")
        audit.record("account.signed_in", now, ip, target=("account", account.id),
                     detail={"email": account.email, "chatgptAccountId": account.chatgpt_account_id,
                             "method": flow.method, "created": created})

    account, created = credentials.save(values, now, then=end)
    log.info("sign-in %s completed: account %s %s", flow.id, account.id, "created" if created else "renewed")
    return OAuthFlow.get_by_id(flow.id)


# -- the device method ---------------------------------------------------------------------------------

def _interval(value):
    """The issuer's polling interval (a number or a string of one), within INTERVALS."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return DEFAULT_INTERVAL
    if not math.isfinite(seconds):
        return DEFAULT_INTERVAL
    return int(min(max(math.ceil(seconds), INTERVALS[0]), INTERVALS[1]))


def _device_code():
    """Ask the issuer for a device code: (secrets, interval, expires_in or None); 502 oauth_unavailable."""
    config = current_app.config
    status, answer = _post(config["OAUTH_ISSUER"] + "/api/accounts/deviceauth/usercode",
                           json_body={"client_id": config["OAUTH_CLIENT_ID"]})
    if status is None:
        raise ApiError(502, "oauth_unavailable", "The issuer is unreachable")
    if status == 404:
        raise ApiError(502, "oauth_unavailable",
                       "Device codes are not enabled for this workspace: use the browser method")
    answer = answer if isinstance(answer, dict) else {}
    device_auth_id, user_code = answer.get("device_auth_id"), answer.get("user_code") or answer.get("usercode")
    if status != 200 or not all(isinstance(v, str) and 0 < len(v) <= 512 for v in (device_auth_id, user_code)):
        raise ApiError(502, "oauth_unavailable", f"The issuer gave no device code (HTTP {status})")
    expires_in = answer.get("expires_in")
    expires_in = int(expires_in) if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) \
        and math.isfinite(expires_in) and expires_in > 0 else None
    return {"device_auth_id": device_auth_id, "user_code": user_code}, _interval(answer.get("interval")), expires_in


def poll_device(flow_id, holder, now):
    """One poll of a pending device flow, if it is due and ``holder`` is its poller (or it has none); the
    flow as it then is, or None once it is gone (cancelled)."""
    flow = OAuthFlow.get_or_none(OAuthFlow.id == flow_id)
    if flow is None or flow.status != "pending" or flow.method != "device":
        return flow
    if now >= flow.expires_at:
        return find(flow_id, now)
    interval = flow.interval_seconds * 1000
    if not _take(flow_id, holder, now, now + interval + LEASE_MS, next_poll_at=now + interval):
        return flow  # not due yet, or another poller's
    secret = _secrets(flow)
    issuer = current_app.config["OAUTH_ISSUER"]
    status, answer = _post(issuer + "/api/accounts/deviceauth/token", json_body=secret)
    try:
        if status in PENDING_POLLS or status is None or status >= 500:
            if status not in PENDING_POLLS:
                log.warning("sign-in %s: the issuer did not answer the device poll (%s)", flow_id, status)
            return OAuthFlow.get_or_none(OAuthFlow.id == flow_id)
        if status != 200:
            code = refresh.error_code(answer) or f"HTTP {status}"
            _fail(flow_id, holder, Failure(400, "oauth_denied", f"The issuer refused the device code: {code}"))
        answer = answer if isinstance(answer, dict) else {}
        code, verifier = answer.get("authorization_code"), answer.get("code_verifier")
        if not (isinstance(code, str) and code and isinstance(verifier, str) and verifier):
            _fail(flow_id, holder, Failure(502, "oauth_exchange_failed", "The issuer's device answer has no code"))
        return _complete(flow, holder, code, issuer + "/deviceauth/callback", verifier, now)
    except ApiError:  # the flow has recorded why it ended
        return OAuthFlow.get_or_none(OAuthFlow.id == flow_id)


class DevicePoller:
    """This process's poller of pending device flows (``app.extensions["lb_oauth"]``): a thread, started
    once the process serves and woken by a new or watched flow, that sleeps while no flow is due."""

    def __init__(self, app):
        self.app = app
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.serving = False
        self._woken = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    def start(self):
        self.serving = True
        self.wake()  # flows left pending by a process that stopped

    def wake(self):
        if not self.serving:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="device-sign-in", daemon=True)
                self._thread.start()
        self._woken.set()

    def _pending(self):
        return OAuthFlow.select(OAuthFlow.id, OAuthFlow.holder, OAuthFlow.lease_until, OAuthFlow.next_poll_at,
                                OAuthFlow.expires_at).where(
            (OAuthFlow.method == "device") & (OAuthFlow.status == "pending"))

    def round(self, now):
        """Poll each pending device flow that is due; seconds until one may be this poller's to poll again, or
        None when none is pending. A flow another poller holds is looked at again when its lease runs out (or
        when a read of it wakes this one)."""
        for flow in self._pending():
            poll_device(flow.id, self.holder, now)
        turns = [min(flow.expires_at, flow.next_poll_at if flow.holder in (None, self.holder) else
                     max(flow.next_poll_at, flow.lease_until or 0)) for flow in self._pending()]
        return max(0.05, (min(turns) - now) / 1000) if turns else None

    def _run(self):
        clock = self.app.config["CLOCK"]
        while True:
            try:
                with self.app.app_context(), db.connection_context():
                    wait = self.round(int(clock() * 1000))
            except DatabaseError:
                log.warning("device sign-in: the database did not answer", exc_info=True)
                wait = 1.0
            except Exception:  # a bug must not end the thread: the flows would never be polled again
                log.exception("device sign-in: a round failed")
                wait = 1.0
            self._woken.wait(wait)
            self._woken.clear()


# -- the issuer ------------------------------------------------------------------------------------

def _post(url, json_body=None, form=None):
    """POST to the issuer: (status, the JSON answer or None), or (None, None) when it is unreachable."""
    if form is not None:
        data, kind = urlencode(form).encode("ascii"), "application/x-www-form-urlencoded"
    else:
        data, kind = json.dumps(json_body).encode("utf-8"), "application/json"
    try:
        response = current_app.extensions["lb_refresh"].http.request(
            "POST", url, body=data, headers={"Content-Type": kind, "Accept": "application/json"},
            timeout=refresh.TIMEOUT)
    except urllib3.exceptions.HTTPError as exc:
        log.warning("the OAuth issuer is unreachable: %s", type(exc).__name__)
        return None, None
    try:
        return response.status, json.loads(response.data.decode("utf-8"))
    except (ValueError, RecursionError):
        return response.status, None


# -- the command -----------------------------------------------------------------------------------

def _run_in_terminal(device, account_id):
    flow = start({"method": "device" if device else "browser", "accountId": account_id}, now_ms())
    shown = as_json(flow)
    try:
        if device:
            click.echo(f"Open {shown['verificationUrl']} and enter this code (within 15 minutes):\n\n"
                       f"    {shown['userCode']}\n\nWaiting for the sign-in...")
            holder = f"cli:{socket.gethostname()}:{os.getpid()}"
            while flow is not None and flow.status == "pending":
                time.sleep(max(0.0, (flow.next_poll_at - now_ms()) / 1000))
                flow = poll_device(flow.id, holder, now_ms())
        else:
            click.echo(f"Open this address in any browser and sign in:\n\n{shown['authorizationUrl']}\n\n"
                       "The browser then goes to http://localhost:1455/auth/callback?code=..., a page that "
                       "usually fails to load there: copy that address from the address bar.")
            flow = callback(flow.id, {"callbackUrl": click.prompt("Address")}, now_ms())
    except (KeyboardInterrupt, click.Abort):
        cancel(flow.id)
        raise click.Abort() from None
    return flow


def init_app(app):
    app.extensions["lb_oauth"] = DevicePoller(app)

    @app.cli.command("login-account")
    @click.option("--device", is_flag=True, help="Sign in with a device code instead of a pasted address.")
    @click.option("--account", "account_id", help="Re-authenticate this account (its id).")
    def login_account_command(device, account_id):
        """Sign in with ChatGPT and add (or renew) the account, as the dashboard does."""
        with db.connection_context():
            try:
                flow = _run_in_terminal(device, account_id)
            except ApiError as exc:
                raise click.ClickException(exc.message) from None
            if flow is None:
                raise click.ClickException("The sign-in was cancelled")
            if flow.status != "completed":
                raise click.ClickException(flow.error_message or f"The sign-in {flow.status}")
            account = Account.get_by_id(flow.account_id)
        click.echo(f"signed in: {account.email} ({account.chatgpt_account_id}), "
                   f"{'created' if flow.created else 'renewed'} as {account.id}")
