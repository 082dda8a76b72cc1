"""One proxied request's bookkeeping: what it did to accounts, its sticky pin, its key's use, and its log row.

A Ledger only gathers, as long as the client request lives; ``write`` puts
what it gathered in the database in one transaction: the account changes
(through lb.accounts.apply), the pin, the key's last use and, once the
request has ended, its log row (through lb.ingest.store_batch, like every
request log), its tokens against the key's caps and the freeing of its
slot. It runs on a connection the caller holds; ``finish`` borrows one of
its own, so a stream that ends long after its request needs none in
between.
"""
import json
import secrets
import threading
import time
import uuid

from lb import accounts, alerts, caps, ingest, store
from lb.clock import HOUR_MS
from lb.crypto import digest
from lb.ingest import LogRow
from lb.proxy.upstream import Usage
from lb.tables import db

STICKY_MS = HOUR_MS  # a prompt_cache_key unseen this long is free to go to any account
KEY_USE_MS = 60 * 1000  # a key's lastUsedAt is written at most once a minute
PRUNE_MS = 60 * 1000  # lapsed pins are deleted at most once a minute


def request_id(now):
    """A fresh UUIDv7: the epoch ms first, so the unique index on request ids grows at its end."""
    value = ((now & ((1 << 48) - 1)) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
             | 0b10 << 62 | secrets.randbits(62))
    return str(uuid.UUID(int=value))


def pin_key(cache_key):
    """Pins are kept under a hash: a prompt_cache_key may be a conversation id, not for the database to show."""
    return digest(cache_key)


def derived_key(api_key_id, body):
    """The cache key of a conversation whose client sends none: its API key (or none), its instructions and
    its first input item (the same on every turn), from the Responses ``body`` sent upstream."""
    items = body.get("input")
    first = items[0] if isinstance(items, list) and items else items
    return "derived:" + digest(json.dumps([api_key_id, body.get("instructions") or "", first], sort_keys=True,
                                          separators=(",", ":")))


def pinned(cache_key, now):
    """The account that served ``cache_key`` within the last hour, if any (on the open connection)."""
    pin = store.sticky_pin(pin_key(cache_key))
    return pin.account_id if pin is not None and pin.seen_at > now - STICKY_MS else None


class Ledger:
    """The request log in the making (account, status, tokens) and the writes that go with the request."""

    def __init__(self, requested_at, model, api_key=None):
        self.requested_at = requested_at  # epoch ms
        self.started = time.monotonic()  # for the log's latency
        self.model = model
        self.api_key = api_key
        self.api_key_id = api_key.id if api_key is not None else None
        self.key_use = api_key is not None and (api_key.last_used_at or 0) <= requested_at - KEY_USE_MS
        self.account_id = None
        self.status, self.error_code, self.usage = "ok", None, Usage()
        self.changes = {}  # account id -> columns not yet written
        self.pin_to = None  # (pin key, account id) not yet written
        self.slot_id = None  # the key's slot under its concurrentRequests cap (lb.caps), freed at the end
        self.finished = False

    def serving(self, account_id):
        """The account now trying the request: the log names the one that served it, or the last tried."""
        self.account_id = account_id

    def outcome(self, status, error_code=None, usage=None):
        self.status, self.error_code = status, error_code
        if usage is not None:
            self.usage = usage

    def pin(self, cache_key, account_id):
        self.pin_to = (pin_key(cache_key), account_id)

    def change(self, account_id, changes):
        """Account columns to write with the next ``write``."""
        if changes:
            self.changes.setdefault(account_id, {}).update(changes)

    def log_row(self, now):
        latency = int((time.monotonic() - self.started) * 1000)
        return LogRow(request_id(now), self.requested_at, self.account_id, self.model, self.usage.input_tokens,
                      self.usage.output_tokens, self.usage.cached_input_tokens, self.status, self.error_code,
                      latency, self.api_key_id)


def write(ledger, now, ended=False, instruments=None):
    """On the open connection, in one transaction: what ``ledger`` gathered and, once the request has
    ``ended``, its log row. ``instruments`` (lb.metrics) count the stored log."""
    if not (ended or ledger.changes):  # before the end, only what other requests should see at once
        return
    with db.atomic():
        for account_id, changes in ledger.changes.items():
            accounts.apply(account_id, changes, now)
        if ledger.pin_to:
            store.save_pin(*ledger.pin_to, now)
        if ledger.key_use:
            store.key_used(ledger.api_key_id, now)
        if ended:
            # The proxy's own log names an account that may have been deleted meanwhile: no reference check.
            ingest.store_batch([ledger.log_row(now)], check_references=False, instruments=instruments)
            alerts.request_ended(ledger.status, ledger.error_code, now)  # the pool ran dry, or serves again
            caps.count_tokens(ledger.api_key, now, ledger.usage.input_tokens + ledger.usage.output_tokens)
            if ledger.slot_id is not None:
                store.free_slot(ledger.slot_id)
    ledger.changes, ledger.pin_to, ledger.key_use = {}, None, False


def finish(ledger, proxy):
    """The request has ended: write its log and what is pending, on a connection of its own, then prune the
    lapsed pins if their minute has come. ``proxy``: the app's lb.proxy.Proxy (clock, metrics, pins)."""
    now = proxy.clock()
    with db.connection_context():
        write(ledger, now, ended=True, instruments=proxy.metrics)
        proxy.pins.prune(now)
    ledger.finished = True
    if ledger.slot_id is not None:
        proxy.leases.drop(ledger.slot_id)


class Pins:
    """When lapsed sticky pins were last pruned, for one app: at most once a minute, whichever thread comes."""

    def __init__(self):
        self.pruned_at = 0
        self.lock = threading.Lock()

    def prune(self, now):
        """On the open connection, after the request's transaction (which it would otherwise lengthen, and on
        PostgreSQL lock rows another instance's request may hold): a transaction of its own."""
        with self.lock:
            if now - self.pruned_at < PRUNE_MS:
                return
            self.pruned_at = now
        with db.atomic():  # on SQLite, queued with the other writers
            store.prune_pins(now - STICKY_MS)
