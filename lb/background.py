"""A background thread of one app that ticks until it is stopped: the usage poll (lb.jobs), the request
logs' pruner (lb.retention) and the webhook's sender (lb.alerts) are each one.

The thread is the process's own; what must hold across processes (one poll,
one pruner, one delivery) is a database row the tick changes atomically.
A database that does not answer, or a bug in one tick, is logged, and the
next tick tries again: the thread outlives any one of them.
"""
import logging
import threading

from peewee import DatabaseError

log = logging.getLogger(__name__)


class Loop:
    """Subclasses name the thread, and give ``period()`` (seconds to the next tick; a falsy one at the
    start: the loop never starts) and ``step(now)`` (one tick at ``now``, epoch ms of the app's clock)."""

    name = "background"

    def __init__(self, app):
        self.app = app
        self.stop = threading.Event()
        self._thread = None

    def period(self):
        raise NotImplementedError

    def step(self, now):
        raise NotImplementedError

    def start(self):
        if self._thread is None and self.period():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self):
        clock = self.app.config["CLOCK"]
        while not self.stop.wait(self.period()):
            try:
                self.step(int(clock() * 1000))
            except DatabaseError:
                log.warning("%s: the database did not answer; the next tick tries again", self.name, exc_info=True)
            except Exception:  # noqa: BLE001 - the thread outlives any one tick
                log.exception("%s: a tick failed; the next one tries again", self.name)
