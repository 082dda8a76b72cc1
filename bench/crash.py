"""Crashes: ``kill -9`` the server in the middle of the soak's mixed load, restart it, ten times over.

Each cycle starts ``app.py --waitress`` on the same SQLite data directory, puts the soak's load on it
(bench/soak.py: ingest writers, dashboard readers, streaming clients through the proxy to the fake upstream
with its limited account) and, at a random moment while that load is on, sends the server SIGKILL. The
clients see their connections break and keep trying until the cycle ends. Then, with the server down:

- the database passes ``PRAGMA integrity_check``;
- every ingest batch acknowledged (201) is stored, and every batch stored is stored whole (1000 rows);
- every stream a client read to its end has its request log, ok, exactly once; no client request has two
  logs; a hang-up is logged cancelled (a crash may take the log of one not yet noticed);
- no account is in a state the upstream did not give it: the serving accounts active, the limited one
  active or rate_limited by usage_limit_reached;

and after the restart, before the next load, the overview and usage totals equal a raw recount of the logs.
What a crash may lose: the request logs of the streams in flight (a stream is logged when it ends, just
before its last byte goes out) and the ingest batches not yet acknowledged. It prints one report and
writes the figures as JSON.

    python bench/crash.py                       # 10 cycles of 4 s
    python bench/crash.py --cycles 3 --seconds 2
"""
import argparse
import collections
import contextlib
import multiprocessing
import os
import random
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server and its client)
import soak  # noqa: E402  (the load and the summaries' recount)
import streams  # noqa: E402  (the fake upstream and the streams' logs)


def stored_batches(db_path):
    """The database's health and its ingest batches: (integrity_check's answer, {batch: rows stored})."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        health = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute("SELECT request_id FROM request_log WHERE request_id LIKE 'w%'").fetchall()
    return health, collections.Counter(request_id.rsplit("-", 1)[0] for request_id, in rows)


def after_crash(db_path, acked, clients, keys, kills, limited_hits):
    """The checks made with the server down: the figures, each 0 or True when all is well."""
    health, batches = stored_batches(db_path)
    acked_batches = {request_id.rsplit("-", 1)[0] for request_id in acked}
    figures = {"integrity_ok": health == "ok",
               "acked_batches_lost": len(acked_batches - set(batches)),
               "batches_in_part": sum(rows != soak.BATCH for rows in batches.values())}
    figures.update(streams.compare(clients, keys, db_path, kills))
    states = streams.account_states(db_path)
    figures["accounts_as_dictated"] = (streams.states_as_dictated(states, limited_hits)
                                       or streams.states_as_dictated(states, 0))  # the 429 may not be written
    return figures


def crash(data_dir, cycles, seconds, clients=soak.CLIENTS, seed=1):
    rng = random.Random(seed)
    keys = streams.prepare(data_dir, clients)
    port, db_path = bench.free_port(), os.path.join(data_dir, "lb.db")
    log_path = os.path.join(data_dir, "server.log")
    acked, seen, kills, checks, stats = [], {}, [], [], collections.Counter()
    with multiprocessing.Pool(soak.WRITERS + soak.READERS + soak.CLIENT_PROCS) as pool:  # before any thread
        upstream = streams.SoakUpstream().start()
        upstream_port = int(upstream.url.rsplit(":", 1)[1].split("/")[0])
        cookie = None
        try:
            for cycle in range(cycles + 1):  # the last start only checks the summaries
                server = bench.start_server(data_dir, port, log_path=log_path, UPSTREAM_URL=upstream.url)
                cookie = cookie or bench.session_cookie(port)  # sessions live in the database: one login
                summaries = soak.summaries_equal(port, cookie, db_path)
                stats["summaries_unequal"] += summaries != (True, True)
                if cycle == cycles:
                    server.terminate()
                    server.wait(timeout=30)
                    break
                started = time.time()
                loads = soak.start_load(pool, port, upstream_port, cookie, keys, started + seconds, run=cycle)
                time.sleep(rng.uniform(0.3, 0.8) * seconds)
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=30)
                kills.append(time.time())
                stats["killed_after_ms"] += int((time.time() - started) * 1000)
                written, read, streamed = (load.get() for load in loads)
                acked += [i for ids, _, _ in written for i in ids]
                for statuses in [st for _, st, _ in written] + [st for _, st, _ in read]:
                    stats["dashboard_requests"] += len(statuses)
                    stats["dashboard_5xx"] += sum(s >= 500 for s in statuses)
                stats["batches_broken"] += sum(s == 0 for _, st, _ in written for s in st)  # the kill took them
                for share in streamed:
                    for index, results in share.items():
                        seen.setdefault(index, {"kind": results["kind"], "outcomes": {}, "hung_up": []})
                        seen[index]["outcomes"].update(results["outcomes"])
                        seen[index]["hung_up"] += results["hung_up"]
                limited = sum(n for (account, _), n in upstream.answered.items() if account == streams.LIMITED)
                checks.append(after_crash(db_path, acked, seen, keys, kills, limited))
        finally:
            with contextlib.suppress(NameError):
                if server.poll() is None:
                    server.kill()
            upstream.stop()
    ended = streams.outcomes(seen)
    worst = {name: (all(c[name] for c in checks) if isinstance(checks[0][name], bool) else max(c[name] for c in checks))
             for name in checks[0]}
    return {"cycles": cycles, "seconds_per_cycle": seconds,
            "mean_kill_after_s": round(stats["killed_after_ms"] / cycles / 1000, 2),
            "dashboard_requests": stats["dashboard_requests"], "dashboard_5xx": stats["dashboard_5xx"],
            "batches_acknowledged": len({i.rsplit("-", 1)[0] for i in acked}),
            "batches_broken": stats["batches_broken"],
            "proxied_requests": sum(ended.values()), "proxied_outcomes": ended,
            "proxied_5xx": sum(n for outcome, n in ended.items() if outcome.startswith("http 5")),
            **worst, "summaries_unequal": stats["summaries_unequal"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0, help="of load per cycle; the kill comes within")
    parser.add_argument("--clients", type=int, default=soak.CLIENTS, help="streaming clients through the proxy")
    parser.add_argument("--seed", type=int, default=1, help="of the kill moments")
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "bench-results", "crash.json"))
    opts = parser.parse_args(argv)
    return soak.in_fresh_dir(lambda data: crash(data, opts.cycles, opts.seconds, opts.clients, opts.seed), opts.out)


if __name__ == "__main__":
    main()
