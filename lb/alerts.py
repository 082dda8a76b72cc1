"""Alerts by webhook: what happened to the pool, told to the team once.

An event is an outbox row (``Alert``), written in the transaction of the
change that caused it, and only while a webhook URL is set and the event is
chosen. A sender thread in every serving process claims due rows one at a
time (a conditional UPDATE: of two instances one wins), POSTs them with a
5 s timeout, and on a failure or a non-2xx answer tries again after 1, 3
and 8 s: the first retry within 2 s, all four tries begun within 30 s.
Nothing of this is on a request's path: a request writes at most a row.

A flapping account is told once: each kind of event of one account is
written at most once per ten-minute span (the row's unique ``dedupe`` key,
so across instances too); a key's limit once per limit and window.
"""
import json
import logging
import os
import socket
import threading

import urllib3

from lb import store
from lb.background import Loop
from lb.clock import iso
from lb.tables import Account, Alert, db

log = logging.getLogger(__name__)

EVENTS = ("account.rate_limited", "account.deactivated", "account.recovered", "pool.exhausted",
          "pool.recovered", "api_key.limit_reached")
TEST_EVENT = "test"
WAITING = ("rate_limited", "quota_exceeded")

TIMEOUT_S = 5.0
RETRY_AFTER_MS = (1000, 3000, 8000)  # after the first, second and third failed try; then it is given up
LEASE_MS = 30 * 1000  # a sender gone this long (mid-POST) leaves the row to another
ACCOUNT_SPAN_MS = 10 * 60 * 1000  # an account's events of one kind: at most one in a span
POLL_S = 1.0  # how often a sender looks for due rows
KEEP_MS = 7 * 24 * 3600 * 1000  # sent and given-up rows are deleted after this
NOTE_MS = 10 * 60 * 1000  # a key refused at a limit: how long this process trusts that its event is written
ERROR_MAX = 200


# -- the events ---------------------------------------------------------------------------------

def chosen(event):
    """The webhook URL if ``event`` is to be sent, else None."""
    row = store.settings()
    if row.webhook_url is None:
        return None
    events = EVENTS if row.webhook_events is None else json.loads(row.webhook_events)
    return row.webhook_url if event in events else None


def payload(event, now, message, account=None, api_key=None):
    """The JSON body: the contract's fields, and the line that Slack-style (``text``) and Discord
    (``content``) incoming webhooks show as it is."""
    line = f"Codex-LB: {message}"
    body = {"event": event, "at": iso(now), "message": message, "text": line, "content": line}
    if account is not None:
        body["account"] = {"id": account.id, "email": account.email, "status": account.status,
                           "statusReason": account.status_reason,
                           "resetsAt": iso(account.resets_at) if account.status in WAITING else None}
    if api_key is not None:
        body["apiKey"] = {"id": api_key.id, "name": api_key.name}
    return body


def emit(event, now, message, *, account=None, api_key=None, dedupe=None):
    """Write the event to the outbox on the open connection (in the caller's transaction), if it is to be
    sent and ``dedupe`` was not written before; whether it was written."""
    if chosen(event) is None:
        return False
    body = payload(event, now, message, account, api_key)
    insert = Alert.insert(event=event, dedupe=dedupe, payload=json.dumps(body), created_at=now, next_attempt_at=now)
    return db.execute(insert.on_conflict_ignore()).rowcount > 0


def status_changed(account_id, before, now):
    """An account's status went from ``before`` to what it is now (lb.accounts.apply): its event, if any."""
    account = Account.get_or_none(Account.id == account_id)
    if account is None or account.status == before:
        return False
    if account.status in WAITING and before not in WAITING:
        event = "account.rate_limited"
        until = f" until {iso(account.resets_at)}" if account.resets_at else ""
        message = f"account {account.email} is {account.status.replace('_', ' ')}{until}"
    elif account.status == "deactivated":
        event, message = "account.deactivated", f"account {account.email} was deactivated"
    elif account.status == "active" and (before in WAITING or before == "deactivated"):
        event, message = "account.recovered", f"account {account.email} is active again"
    else:
        return False
    if account.status_reason:
        message += f" ({account.status_reason})"
    return emit(event, now, message, account=account, dedupe=f"{event}:{account.id}:{now // ACCOUNT_SPAN_MS}")


def request_ended(status, error_code, now):
    """A proxied request's log is being written (lb.proxy.ledger): the pool runs dry at its first
    usage_limit_reached refusal, and is back at its first served request after that. One row decides
    (the settings row's pool_exhausted_at), so of two instances one tells."""
    if error_code == "usage_limit_reached":
        if store.pool_exhausted_at() is None and store.mark_pool_exhausted(now):
            return emit("pool.exhausted", now, "every account has reached its usage limit: requests are refused")
    elif status == "ok":
        if store.pool_exhausted_at() is not None and store.mark_pool_exhausted(None):
            return emit("pool.recovered", now, "the pool serves requests again")
    return False


def limit_key(api_key, limit):
    """One limit of one key in one window: its event is written once."""
    return f"api_key.limit_reached:{api_key.id}:{limit['metric']}:{limit['window']}:{limit['resetsAt']}"


def limit_reached(api_key, limit, now):
    """A key was refused at one of its limits (``limit``: lb.keys.limits_used's entry): once per window."""
    message = (f"API key {api_key.name} reached its limit of {limit['max']} {limit['metric']} per "
               f"{limit['window']}; it resets at {limit['resetsAt']}")
    return emit("api_key.limit_reached", now, message, api_key=api_key, dedupe=limit_key(api_key, limit))


# -- delivery ----------------------------------------------------------------------------------

def post(http, url, body, timeout=TIMEOUT_S):
    """One POST of ``body``: (delivered, status or None, error or None). Never raises."""
    try:
        answer = http.request("POST", url, body=json.dumps(body).encode(), headers={
            "Content-Type": "application/json", "User-Agent": "codex-lb-alerts"},
            timeout=urllib3.Timeout(total=timeout), retries=False, redirect=False, preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        return False, None, f"{type(reason).__name__}: {reason}"[:ERROR_MAX]
    if 200 <= answer.status < 300:
        return True, answer.status, None
    return False, answer.status, f"the receiver answered {answer.status}"


class Sender(Loop):
    """The outbox's sender for one app (``app.extensions["lb_alerts"]``), and the test event's."""

    name = "alerts"

    def __init__(self, app):
        super().__init__(app)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.http = urllib3.PoolManager(num_pools=4, maxsize=2)
        self.timeout = TIMEOUT_S
        self.noted = {}  # limit keys this process wrote lately -> until when (limit_refused)
        self.lock = threading.Lock()
        self.swept = 0  # when this process last deleted old rows (epoch ms)

    def limit_refused(self, api_key, limit, now):
        """A key's request was refused at ``limit`` (lb.proxy.routes): its event, written in a transaction of
        its own. The outbox row decides across processes; this process asks the database again only every
        NOTE_MS per limit, not at each refused request. Whether it asked."""
        key = limit_key(api_key, limit)
        with self.lock:
            if len(self.noted) > 10000:
                self.noted = {k: t for k, t in self.noted.items() if t > now}
            if self.noted.get(key, 0) > now:
                return False
            self.noted[key] = now + NOTE_MS
        with db.atomic():
            limit_reached(api_key, limit, now)
        return True

    def test(self, now):
        """Send a ``test`` event now, once: {"delivered", "status", "error"}; the URL must be set."""
        url = store.settings().webhook_url
        if url is None:
            return None
        delivered, status, error = post(self.http, url, payload(TEST_EVENT, now, "a test alert from Codex-LB"),
                                        self.timeout)
        return {"delivered": delivered, "status": status, "error": error}

    def claim(self, now):
        """Take the oldest due row for this sender (a conditional UPDATE: one sender wins it); or None."""
        due = (Alert.select().where((Alert.status == "pending") & (Alert.next_attempt_at <= now)
                                    & (Alert.lease_until.is_null() | (Alert.lease_until <= now)))
               .order_by(Alert.id).limit(8))
        for row in due:
            taken = (Alert.update(holder=self.holder, lease_until=now + LEASE_MS)
                     .where((Alert.id == row.id) & (Alert.status == "pending")
                            & (Alert.lease_until.is_null() | (Alert.lease_until <= now))).execute())
            if taken:
                return row
        return None

    def tick(self, now):
        """Send one due event, if any: its id, or None. The POST holds no database connection."""
        with self.app.app_context():
            with db.connection_context():
                row = self.claim(now)
                url = store.settings().webhook_url if row is not None else None
            if row is None:
                return None
            if url is None:
                delivered, status, error = False, None, "no webhook URL is set"
            else:
                delivered, status, error = post(self.http, url, json.loads(row.payload), self.timeout)
            with db.connection_context():
                self.settle(row, delivered, error, int(self.app.config["CLOCK"]() * 1000), url is None)
        level = logging.INFO if delivered else logging.WARNING
        log.log(level, "alert %s %s: %s", row.id, row.event, "sent" if delivered else error)
        return row.id

    def settle(self, row, delivered, error, now, give_up=False):
        tries = row.attempts + 1
        mine = (Alert.id == row.id) & (Alert.holder == self.holder)
        if delivered:
            changes = {"status": "delivered", "sent_at": now, "last_error": None}
        elif give_up or tries > len(RETRY_AFTER_MS):
            changes = {"status": "failed", "last_error": error}
        else:
            changes = {"next_attempt_at": now + RETRY_AFTER_MS[tries - 1], "last_error": error}
        Alert.update(attempts=tries, holder=None, lease_until=None, **changes).where(mine).execute()

    def forget(self, now):
        """Delete sent and given-up rows older than KEEP_MS (their dedupe spans are long over)."""
        Alert.delete().where((Alert.status != "pending") & (Alert.created_at < now - KEEP_MS)).execute()

    def period(self):
        return POLL_S

    def step(self, now):
        """Send what is due, one row after another, and now and then delete the old rows."""
        while self.tick(now) is not None and not self.stop.is_set():
            now = int(self.app.config["CLOCK"]() * 1000)
        if now - self.swept > 3600 * 1000:
            with self.app.app_context(), db.connection_context():
                self.forget(now)
            self.swept = now


def init_app(app):
    app.extensions["lb_alerts"] = Sender(app)
