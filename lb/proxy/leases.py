"""The key slots this process holds (lb.caps): their leases renewed while their requests run, so that only the
slots of a process that died run out and free themselves.

One thread per app renews them all every RENEW_MS, in one statement; it
starts with the first slot held, and its Leases hang on the app
(``app.extensions["lb_proxy"]``).
"""
import logging
import threading

from peewee import DatabaseError

from lb import store
from lb.caps import LEASE_MS, RENEW_MS
from lb.tables import db

log = logging.getLogger(__name__)


class Leases:
    def __init__(self, clock):
        self.clock = clock  # epoch ms
        self.held = set()
        self._lock = threading.Lock()
        self._thread = None
        self.stop = threading.Event()

    def hold(self, slot_id):
        """Keep ``slot_id`` leased until it is dropped or freed."""
        with self._lock:
            self.held.add(slot_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="key-slot-leases", daemon=True)
                self._thread.start()

    def drop(self, slot_id):
        """Stop renewing a slot its request's last transaction has freed."""
        with self._lock:
            self.held.discard(slot_id)

    def free(self, slot_id):
        """Free a slot whose request ended without its last transaction (an error on the way)."""
        self.drop(slot_id)
        with db.connection_context(), db.atomic():
            store.free_slot(slot_id)

    def renew_once(self):
        """Extend the lease of every slot held, in one statement."""
        with self._lock:
            held = sorted(self.held)
        if held:
            with db.connection_context(), db.atomic():
                store.renew_slots(held, self.clock() + LEASE_MS)

    def _renew(self):
        while not self.stop.wait(RENEW_MS / 1000):
            try:
                self.renew_once()
            except DatabaseError:  # the next round tries again, well within the lease
                log.warning("key slot leases could not be renewed", exc_info=True)
