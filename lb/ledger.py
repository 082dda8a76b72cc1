"""One proxied request's bookkeeping: the account changes it causes, its sticky pin, and its request log.

A Ledger lives as long as the client request. It writes in short
transactions of its own (``write`` at once, ``flush`` what was gathered,
``finish`` with the log row), each on a borrowed connection, so a stream in
between holds none.
"""
import secrets
import time
import uuid

from lb import ingest, metrics, store
from lb.clock import HOUR_MS
from lb.crypto import digest
from lb.ingest import LogRow
from lb.tables import StickyPin, db
from lb.upstream import Usage

STICKY_MS = HOUR_MS  # a prompt_cache_key unseen this long is free to go to any account
KEY_USE_MS = 60 * 1000  # a key's lastUsedAt is written at most once a minute
PRUNE_MS = 60 * 1000  # lapsed pins are deleted at most once a minute
_pruned_at = [0]


def request_id(now):
    """A fresh UUIDv7: the epoch ms first, so the unique index on request ids grows at its end."""
    value = ((now & ((1 << 48) - 1)) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
             | 0b10 << 62 | secrets.randbits(62))
    return str(uuid.UUID(int=value))


def pin_key(cache_key):
    """Pins are kept under a hash: a prompt_cache_key may be a conversation id, not for the database to show."""
    return digest(cache_key)


class Ledger:
    """The request log in the making (account, status, tokens) and the writes that go with the request."""

    def __init__(self, clock, model, api_key=None, instruments=metrics.OFF, arrived=None):
        self.clock = clock  # () -> epoch ms
        self.requested_at = clock()
        self.started = time.monotonic()
        # The app's metrics, for the stream that outlives the request; its arrival and the serving
        # account's wait for its first event (lb.pool), in perf_counter() seconds.
        self.metrics = instruments
        self.arrived = time.perf_counter() if arrived is None else arrived
        self.upstream_wait = 0.0
        self.model = model
        self.api_key_id = api_key.id if api_key is not None else None
        self._key_use = api_key is not None and (api_key.last_used_at or 0) <= self.requested_at - KEY_USE_MS
        self.account_id = None
        self.status, self.error_code, self.usage = "ok", None, Usage()
        self._changes = {}  # account id -> columns not yet written
        self._pin = None

    def now(self):
        return self.clock()

    def serving(self, account_id):
        """The account now trying the request: the log names the one that served it, or the last tried."""
        self.account_id = account_id

    def outcome(self, status, error_code=None, usage=None):
        self.status, self.error_code = status, error_code
        if usage is not None:
            self.usage = usage

    def pinned(self, cache_key):
        """The account that served ``cache_key`` within the last hour, if any (on the open connection)."""
        pin = store.sticky_pin(pin_key(cache_key))
        return pin[0] if pin is not None and pin[1] > self.now() - STICKY_MS else None

    def pin(self, cache_key, account_id):
        self._pin = (pin_key(cache_key), account_id)

    def change(self, account_id, changes):
        """Account columns to write with the next flush."""
        self._changes.setdefault(account_id, {}).update(changes)

    def write(self, account_id, changes):
        """Account columns to write now (a status change other requests should see at once)."""
        self.change(account_id, changes)
        self.flush()

    def flush(self):
        """Write what was gathered, in one short transaction."""
        if self._changes or self._pin or self._key_use:
            with db.connection_context():
                with db.atomic():
                    self._write(self.now())
                _prune(self.now())

    def finish(self):
        """The request has ended: write its log row, through the ingest's store code, and what is pending."""
        now = self.now()
        latency = int((time.monotonic() - self.started) * 1000)
        row = LogRow(request_id(now), self.requested_at, self.account_id, self.model, self.usage.input_tokens,
                     self.usage.output_tokens, self.usage.cached_input_tokens, self.status, self.error_code,
                     latency, self.api_key_id)
        with db.connection_context():
            with db.atomic():
                self._write(now)
                ingest.store_batch([row], check_references=False, instruments=self.metrics)
            _prune(now)

    def _write(self, now):
        for account_id, changes in self._changes.items():
            _apply(account_id, changes, now)
        self._changes = {}
        if self._pin:
            key, account_id = self._pin
            store.save_pin(key, account_id, now)
            self._pin = None
        if self._key_use:
            store.key_used(self.api_key_id, now)
            self._key_use = False


def _prune(now):
    """At most once a minute, delete the lapsed pins: a statement of its own, after the request's transaction,
    which it would otherwise lengthen (and on PostgreSQL, lock rows another instance's request may hold)."""
    if now - _pruned_at[0] >= PRUNE_MS:
        _pruned_at[0] = now
        with db.atomic():  # a transaction of its own (on SQLite, queued with the others)
            StickyPin.delete().where(StickyPin.seen_at <= now - STICKY_MS).execute()


def _apply(account_id, changes, now):
    """What an upstream answer did to an account. A status change stamps updatedAt and never touches a pause."""
    if not changes:
        return
    if "status" in changes:
        changes = {**changes, "updated_at": now}
    store.update_account(account_id, changes, keep_pause="status" in changes)
