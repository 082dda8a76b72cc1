"""How many proxied requests this process carries at once. Past its capacity a new one is answered at once,
503 server_busy with Retry-After, rather than left waiting unseen for a thread.

A request takes its place as it arrives and gives it back when its answer has
been sent: a stream in the relay's own ``finally`` (it outlives its request),
anything else when its request ends.
"""
import threading

from lb.errors import ApiError


class Capacity:
    """The places of one process (not a rule across processes: each has its own threads)."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self):
        """Take a place, or raise the 503 of a full server."""
        with self._lock:
            if self.used >= self.limit:
                raise ApiError(503, "server_busy", f"The server is carrying its capacity of {self.limit} requests; "
                               "try again shortly", {"Retry-After": "1"})
            self.used += 1

    def give_back(self):
        with self._lock:
            self.used -= 1
