"""The proxy's share of the soak: a fake upstream with a limited account, streaming clients, and the check
that every client request has its one request log.

The upstream (the tests' FakeUpstream, in a thread of the soak's own process) serves four accounts: three
stream every request, the fourth answers each one 429 ``usage_limit_reached``, back in a second, so that
the pool keeps meeting it, failing over, and coming back to it. A request's text carries its number and its
kind, and the number comes back as the stream's input tokens: a request log names the client request it
logs. Each client has an API key of its own, so its cancelled streams (no usage) can be counted too.
"""
import collections
import dataclasses
import http.client
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import proxy_bench  # noqa: E402  (prepare, PATH)
import rawdb  # noqa: E402
from fixtureapps.upstream import Fail, FakeUpstream, Stream  # noqa: E402

SERVING = ("ws-soak-a", "ws-soak-b", "ws-soak-c")
LIMITED = "ws-soak-limited"
LIMIT = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                   "resets_in_seconds": 1}}
# A client's kind: "whole" reads its streams to the end, "cancel" hangs up after the first event, "probe"
# sends the same stream to the upstream directly and through the proxy, in turn (the added latency).
ANSWERS = {"whole": Stream(delay=0.02),  # about 0.25 s
           "cancel": Stream(delay=0.1, deltas=20),  # 2.5 s: the hang-up always comes first
           "probe": Stream()}  # at once
PER_RUN = 100_000  # request numbers a client may use in one run (a crash test's cycle)
TEXT = re.compile(rb"soak (\d+) (whole|cancel|probe)")
TERMINAL = b"event: response.completed"


def kinds(clients):
    """The kinds of ``clients`` streaming clients: an eighth cancel, two probe, the rest read whole."""
    cancel, probe = max(1, clients // 8), min(2, max(0, clients - 2))
    return ["probe"] * probe + ["cancel"] * cancel + ["whole"] * (clients - probe - cancel)


class SoakUpstream(FakeUpstream):
    """The answer to each request: 429 for the limited account, else the stream its text asks for, with its
    number as the input tokens. Counts what it answered, per account, instead of keeping every request."""

    def __init__(self):
        super().__init__()
        self.answered = collections.Counter()  # (account, "429" or kind) -> how many

    def _next(self, path, headers, raw, scripted):
        account = headers.get("chatgpt-account-id")
        found = TEXT.search(raw)
        with self._lock:
            kind = "429" if account == LIMITED else found[2].decode() if found else "unknown"
            self.answered[account, kind] += 1
            n = sum(self.answered.values())
        if kind == "429":
            return n, None, Fail(429, LIMIT)
        if not found:
            return n, None, Fail(400, {"error": {"message": "not a soak request", "code": "bad_request"}})
        return n, None, dataclasses.replace(ANSWERS[kind], usage=(int(found[1]), 0, 7))


def prepare(data_dir, clients, database_url=None):
    """The four accounts and one API key per client: [(key id, key)]."""
    return proxy_bench.prepare(data_dir, SERVING + (LIMITED,), keys=clients, database_url=database_url)


def _body(number, kind):
    return json.dumps({"model": "gpt-5.3-codex", "stream": True, "store": False, "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"soak {number} {kind}"}]}],
        "tools": [], "tool_choice": "auto", "parallel_tool_calls": True}).encode()


def one_stream(conn, headers, number, kind, hang_up=False):
    """Send one stream over ``conn``: (outcome, ms to the first body byte). The outcome is "ok" (the body
    ended after response.completed), "cancelled" (``hang_up``: the connection closed after the first read),
    "http <status>" for any other answer, "broken" (the connection failed: the server went away) or "refused"
    (the server is down: the request never reached it)."""
    started = time.perf_counter()
    try:
        conn.request("POST", proxy_bench.PATH, _body(number, kind), headers)
        response = conn.getresponse()
        if response.status != 200:
            response.read()
            return f"http {response.status}", None
        first = response.read1(65536)
        ttfb = (time.perf_counter() - started) * 1000
        if hang_up:
            conn.close()
            return "cancelled", ttfb
        rest = response.read()  # to the chunked body's end: the server has logged the stream by then
        return ("ok" if TERMINAL in first + rest else "incomplete"), ttfb
    except (OSError, http.client.HTTPException) as exc:
        conn.close()  # and so ready for the next request
        return "refused" if isinstance(exc, ConnectionRefusedError) else "broken", None


def _client(port, upstream_port, key, index, kind, first, deadline, out):
    """One client's streams until ``deadline``: its outcomes by request number (from ``first`` up, plus the
    client's index in ten millions) and its first-byte times."""
    proxied = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    direct = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    mine = {"kind": kind, "outcomes": {}, "ttfb": [], "direct_ttfb": [], "hung_up": []}  # hung up when (epoch s)
    number = index * 100 * PER_RUN + first  # under 2**31, as a token count must be
    while time.time() < deadline:
        number += 1
        if kind == "probe":  # the same stream straight to the upstream first: the floor of the proxied one
            _, ms = one_stream(direct, {**headers, "chatgpt-account-id": "direct-probe",
                                        "Authorization": "Bearer upstream-token"}, number, kind)
            mine["direct_ttfb"].append(ms)
        outcome, ms = one_stream(proxied, {**headers, "Authorization": f"Bearer {key}"}, number, kind,
                                 hang_up=kind == "cancel")
        if outcome != "refused":  # a request made
            mine["outcomes"][number] = outcome
        if outcome == "cancelled":
            mine["hung_up"].append(time.time())
        if ms is not None:
            mine["ttfb"].append(ms)
        if outcome in ("broken", "refused"):
            time.sleep(0.05)  # the server is down (a crash test): do not spin
    proxied.close()
    direct.close()
    out[index] = mine


def streamers(args):
    """(A client process) threads of streaming clients until the deadline: {client index: its results}."""
    port, upstream_port, clients, deadline = args  # clients: [(index, kind, key, first request number)]
    out = {}
    threads = [threading.Thread(target=_client, args=(port, upstream_port, key, index, kind, first, deadline, out))
               for index, kind, key, first in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def logged(where):
    """The proxy's request logs per API key: {key id: (Counter of an ok log's input tokens, Counter of
    statuses)}, and the ok logs served by the limited account."""
    [(limited,)] = rawdb.rows(where, "SELECT id FROM account WHERE chatgpt_account_id = ?", (LIMITED,))
    per_key = collections.defaultdict(lambda: (collections.Counter(), collections.Counter()))
    by_limited = 0
    for key_id, status, tokens, account_id in rawdb.rows(
            where, "SELECT api_key_id, status, input_tokens, account_id FROM request_log WHERE api_key_id IS NOT NULL"):
        per_key[key_id][1][status] += 1
        if status == "ok":
            per_key[key_id][0][tokens] += 1
            by_limited += account_id == limited
    return per_key, by_limited


def compare(clients, keys, where, kills=()):
    """Each client's requests against its key's logs: every stream the client read to its end logged ok once,
    every hang-up logged cancelled, nothing else. Around a crash (``kills``: when, epoch s) a request that
    broke may have its log or not, and so may a hang-up the server had not finished with (within a cancelled
    stream's length of the kill): those streams were still in flight."""
    per_key, by_limited = logged(where)
    figures = collections.Counter(ok_served_by_limited=by_limited)
    in_flight = ANSWERS["cancel"].delay * (ANSWERS["cancel"].deltas + 8) + 1  # its events' time, and a second
    for index, results in clients.items():
        tokens, statuses = per_key[keys[index][0]]
        outcomes = results["outcomes"]
        ok = {n for n, outcome in outcomes.items() if outcome == "ok"}
        broken = {n for n, outcome in outcomes.items() if outcome == "broken"}
        cancels = len(results["hung_up"])
        unsure = sum(any(kill - in_flight <= at <= kill for kill in kills) for at in results["hung_up"])
        figures["logs_lost"] += len(ok - set(tokens))
        figures["logs_doubled"] += sum(count - 1 for count in tokens.values())
        figures["logs_stray"] += len(set(tokens) - ok - broken)  # logged ok, but not ok for the client
        figures["logs_wrong_status"] += (max(0, cancels - unsure - statuses["cancelled"])
                                         + max(0, statuses["cancelled"] - cancels)
                                         + sum(n for status, n in statuses.items() if status not in ("ok", "cancelled")))
    return dict(sorted(figures.items()))


def outcomes(clients):
    """How the client requests ended, over all clients: {"ok": n, "cancelled": n, "http 502": n, ...}."""
    return dict(collections.Counter(o for results in clients.values() for o in results["outcomes"].values()))


def account_states(where):
    """{workspace: (status, status_reason)} of the soak's accounts."""
    return {ws: (status, reason) for ws, status, reason in
            rawdb.rows(where, "SELECT chatgpt_account_id, status, status_reason FROM account")}


def states_as_dictated(states, limited_hits):
    """The serving accounts active, and the limited one rate_limited by usage_limit_reached once the
    upstream has said so (it never said anything else), else still active."""
    limited = ("rate_limited", "usage_limit_reached") if limited_hits else ("active", None)
    return states.get(LIMITED) == limited and all(states.get(ws) == ("active", None) for ws in SERVING)
