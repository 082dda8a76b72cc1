"""lb.background: the thread every background job runs on ticks at the app's clock, outlives a database that
does not answer and a bug in one tick, stops when told, and never starts without a period."""
import logging
import threading

from peewee import OperationalError

from helpers.data import NOW_MS
from lb.background import Loop


class Counting(Loop):
    """Ticks every millisecond; the first ticks raise ``failures``, one each; then it says it is done."""

    name = "counting"

    def __init__(self, app, failures=(), every=0.001):
        super().__init__(app)
        self.failures, self.every = list(failures), every
        self.ticks = []
        self.done = threading.Event()

    def period(self):
        return self.every

    def step(self, now):
        self.ticks.append(now)
        if self.failures:
            raise self.failures.pop(0)
        self.done.set()


def test_a_loop_ticks_at_the_apps_clock_and_outlives_a_failed_tick(app, caplog):
    caplog.set_level(logging.WARNING, logger="lb.background")
    loop = Counting(app, [OperationalError("database is locked"), KeyError("a bug")])
    loop.start()
    try:
        assert loop.done.wait(10)
    finally:
        loop.stop.set()
        loop._thread.join(10)
    assert not loop._thread.is_alive()
    assert loop.ticks[:3] == [NOW_MS] * 3  # the test's clock, which does not move
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:2] == ["counting: the database did not answer; the next tick tries again",
                            "counting: a tick failed; the next one tries again"]


def test_a_loop_without_a_period_never_starts_and_starts_once(app):
    off = Counting(app, every=0)
    off.start()
    assert off._thread is None and off.ticks == []
    on = Counting(app)
    on.start()
    thread = on._thread
    on.start()
    assert on._thread is thread
    on.stop.set()
    thread.join(10)
