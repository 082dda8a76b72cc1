"""Retention of the raw request logs (contract 16): older logs deleted in short batches, one pruner at a time.

``requestLogRetentionDays`` (null: keep forever) names the age past which raw
request logs go. The cut is ``now - days`` floored to a whole hour, so every
hour of the rollups (lb.rollups) is either wholly before it (its logs gone, its
sums kept) or wholly after it (logs and sums both there). Only ``request_log``
rows are deleted: the rollups, the keys' use and the audit log stay, so every
total (the overview, usage, key limits) is the same before and after a prune.

The prune runs under a database lease (the ``lease`` row ``request-log-prune``,
renewed in each batch's own transaction), so two processes or instances never
prune at once. Each batch is one short write transaction deleting the oldest
ids in index order; its size adapts to keep the transaction near
TARGET_BATCH_SECONDS (well under a second on SQLite and PostgreSQL), and the
pruner pauses between batches as long as the last one took, so proxied
requests and ingest get the write lock in between.

The settings row's ``logs_pruned_before`` is raised to the cut *before* the
first batch: readers then answer range edges before it from the rollups
(lb.rollups.range_sums), and ``rebuild`` leaves those hours alone while their
logs go. ``last_prune_at`` and ``last_prune_removed`` are written at the end.

The background pruner (``Pruner``) is a thread of each serving process,
started by lb.jobs.start; it prunes once every LB_PRUNE_INTERVAL_SECONDS
across all instances (it skips while the last prune, anyone's, is younger).
``flask --app lb prune`` prunes now.
"""
import logging
import os
import socket
import threading
import time
from typing import NamedTuple

import click

from lb import store
from lb.background import Loop
from lb.clock import DAY_MS, HOUR_MS, iso, now_ms
from lb.tables import db

log = logging.getLogger(__name__)

LEASE = "request-log-prune"
LEASE_MS = 60 * 1000  # a pruner gone this long (or a batch stalled this long) leaves the job to another
FIRST_BATCH = 1000  # rows of the first batch; later ones grow or shrink towards the target time
MIN_BATCH, MAX_BATCH = 100, 20000
TARGET_BATCH_SECONDS = 0.1  # each batch's write transaction, aimed at; MAX_BATCH bounds it whatever the disk


class Result(NamedTuple):
    """What one prune did."""

    cut: int  # epoch ms: logs before it were deleted
    removed: int
    batches: int
    longest_batch_s: float  # the longest write transaction of a batch, in seconds
    seconds: float  # the whole prune, pauses included


class LeaseLost(Exception):
    """Another pruner holds the lease now (ours ran out during a stalled batch): stop without deleting more."""


def cut_for(now, days):
    """The cut of a prune at ``now`` keeping ``days``: logs before it go. A whole hour."""
    return (now - days * DAY_MS) // HOUR_MS * HOUR_MS


def holder_name(tag=""):
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident():x}{tag}"


def prune(now, days=None, holder=None, batch=FIRST_BATCH, pause=time.sleep, on_batch=None, clock=None):
    """Prune the raw request logs at ``now`` (epoch ms), keeping ``days`` (default: the setting).

    Returns a Result, or None when there is nothing to do: retention is off
    (null) or another pruner holds the lease. ``clock()`` (epoch ms) times the
    lease's renewals and the end of the prune; by default ``now`` moved on by
    the time the prune has taken. ``pause(seconds)`` waits between batches
    (the tests pass a no-op); ``on_batch(removed, seconds)`` is told of each
    batch (the benchmark, the tests). Needs an open connection.
    """
    started = time.perf_counter()
    if clock is None:
        def clock():
            return now + int((time.perf_counter() - started) * 1000)
    holder = holder or holder_name()
    if days is None:
        days = store.settings().request_log_retention_days
        if days is None:
            return None
    cut = cut_for(now, days)

    def lease_now():
        at = clock()
        return at, at + LEASE_MS

    with db.atomic():
        if not store.take_lease(LEASE, holder, *lease_now()):
            return None
        store.mark_pruned_before(cut)  # first: readers and rebuild treat the hours before it as pruned
    removed = batches = 0
    longest = 0.0
    size = batch
    try:
        while True:
            began = time.perf_counter()
            try:
                with db.atomic():
                    if not store.take_lease(LEASE, holder, *lease_now()):
                        raise LeaseLost
                    deleted = store.delete_logs_before(cut, size)
            except LeaseLost:
                log.warning("request-log prune: the lease went to another pruner; stopping")
                break
            took = time.perf_counter() - began
            removed += deleted
            batches += 1
            longest = max(longest, took)
            if on_batch is not None:
                on_batch(deleted, took)
            if deleted < size:
                break
            # Towards the target: double while well under it, halve while over it.
            if took < TARGET_BATCH_SECONDS / 2:
                size = min(MAX_BATCH, size * 2)
            elif took > TARGET_BATCH_SECONDS:
                size = max(MIN_BATCH, size // 2)
            pause(max(took, 0.005))  # the others' turn at the write lock: at least as long as ours
        with db.atomic():
            store.record_prune(clock(), removed)
    finally:
        with db.atomic():
            store.release_lease(LEASE, holder)
    return Result(cut, removed, batches, longest, time.perf_counter() - started)


class Pruner(Loop):
    """The background pruner of one app (``app.extensions["lb_pruner"]``): a thread ticking every
    LB_PRUNE_INTERVAL_SECONDS (0: never) that prunes when retention is on and the last prune is that old."""

    name = "request-log-prune"

    def __init__(self, app):
        super().__init__(app)
        self.interval_ms = app.config["PRUNE_INTERVAL_SECONDS"] * 1000

    def period(self):
        return self.interval_ms / 1000

    def clock_ms(self):
        return int(self.app.config["CLOCK"]() * 1000)

    def tick(self, now, pause=time.sleep):
        """One step: the prune's Result, or None when retention is off, a prune is recent, or another runs."""
        with self.app.app_context(), db.connection_context():
            row = store.settings()
            if row.request_log_retention_days is None:
                return None
            if row.last_prune_at is not None and now - row.last_prune_at < self.interval_ms:
                return None  # some instance pruned within the interval
            result = prune(now, row.request_log_retention_days, pause=pause, clock=self.clock_ms)
        if result is not None and result.removed:
            log.info("pruned %d request logs before %s in %.1f s", result.removed, iso(result.cut), result.seconds)
        return result

    def step(self, now):
        self.tick(now)


def init_app(app):
    app.extensions["lb_pruner"] = Pruner(app)

    @app.cli.command("prune")
    def prune_command():
        """Delete the raw request logs older than requestLogRetentionDays now (the rollups stay)."""
        with db.connection_context():
            days = store.settings().request_log_retention_days
            if days is None:
                click.echo("retention is off (requestLogRetentionDays is null): nothing pruned")
                return
            result = prune(now_ms(), days, clock=now_ms)
        if result is None:
            raise click.ClickException("another process is pruning now: try again when it is done")
        longest = result.longest_batch_s * 1000
        click.echo(f"pruned {result.removed} request logs before {iso(result.cut)} "
                   f"in {result.seconds:.1f} s ({result.batches} batches, longest {longest:.0f} ms)")
