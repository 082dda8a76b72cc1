"""Background work with a database lease: one runner across threads, worker processes and instances.

The usage poll (lb.quota) is the job here; ``start`` also starts the device
sign-in poller (lb.oauth), whose lease is each flow's own row, the request
logs' pruner (lb.retention), under a lease of its own, and the webhook's
sender (lb.alerts), whose lease is each outbox row's own. Every process
that serves runs the usage poll's thread; at each tick the thread takes or
renews the job's lease row, and only the holder polls: the pollable account
checked longest ago, once its usage is older than LB_USAGE_POLL_SECONDS, so
each account is polled once an interval, spread over it. A holder that dies frees the lease
when it runs out. Nothing of this runs on a request's path, and it starts
only when a server starts serving (``start``), never in a ``flask`` command
or a workers' parent.
"""
import logging
import os
import socket

from peewee import DatabaseError

from lb import quota, refresh, store
from lb.background import Loop
from lb.tables import db

log = logging.getLogger(__name__)

LEASE = "usage-poll"
LEASE_MS = 60 * 1000  # a holder gone this long leaves the job to another
FAILED_BACKOFF_MS = 60 * 1000  # an account whose poll failed is asked again after this, not at every tick


class UsagePoller(Loop):
    """The usage poll's runner for one app (``app.extensions["lb_jobs"]``)."""

    name = "usage-poll"

    def __init__(self, app):
        super().__init__(app)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.interval_ms = app.config["USAGE_POLL_SECONDS"] * 1000
        self.failed = {}  # account id -> when it may be asked again (epoch ms)

    def tick(self, now):
        """One step: take or renew the lease and, holding it, poll the account most due; its id, or None."""
        proxy = self.app.extensions["lb_proxy"]
        with self.app.app_context(), db.connection_context():
            with db.atomic():
                if not store.take_lease(LEASE, self.holder, now, now + LEASE_MS):
                    return None
            self.failed = {account_id: at for account_id, at in self.failed.items() if at > now}
            account = store.stalest_account(now - self.interval_ms, skip=sorted(self.failed))
            if account is None:
                return None
            try:
                quota.poll(account, now, proxy.upstream)
            except (quota.UsageUnavailable, refresh.RefreshFailed) as failure:
                log.warning("account %s: usage poll failed (%s)", account.id, failure)
                self.failed[account.id] = now + FAILED_BACKOFF_MS
            return account.id

    def period(self):
        """Seconds between ticks: the interval spread over the accounts, between 1 s and the interval
        (0: no poll)."""
        if not self.interval_ms:
            return 0
        try:
            with self.app.app_context(), db.connection_context():
                count = store.pollable_accounts()
        except DatabaseError:
            count = 1
        return min(max(1.0, self.interval_ms / 1000 / max(1, count)), self.interval_ms / 1000)

    def step(self, now):
        self.tick(now)


def init_app(app):
    app.extensions["lb_jobs"] = UsagePoller(app)


def start(app):
    """Start the app's background jobs: called as a server starts serving, in each worker process."""
    app.extensions["lb_jobs"].start()
    app.extensions["lb_pruner"].start()  # lb.retention: the request logs' pruner
    app.extensions["lb_oauth"].start()
    app.extensions["lb_alerts"].start()
