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
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server and its client)
import rawdb  # noqa: E402  (reads of the database itself)
import soak  # noqa: E402  (the load and the summaries' recount)
import streams  # noqa: E402  (the fake upstream and the streams' logs)


def stored_batches(where):
    """The database's health (SQLite's integrity_check; PostgreSQL's server outlives the kill: "n/a") and
    its ingest batches, {batch: rows stored}."""
    health = "n/a" if rawdb.is_postgres(where) else rawdb.rows(where, "PRAGMA integrity_check")[0][0]
    ids = rawdb.rows(where, "SELECT request_id FROM request_log WHERE request_id LIKE 'w%'")
    return health, collections.Counter(request_id.rsplit("-", 1)[0] for request_id, in ids)


def after_crash(where, acked, clients, keys, kills, limited_hits):
    """The checks made with the server down: the figures, each 0 or True when all is well."""
    health, batches = stored_batches(where)
    acked_batches = {request_id.rsplit("-", 1)[0] for request_id in acked}
    figures = {"integrity_ok": None if health == "n/a" else health == "ok",
               "acked_batches_lost": len(acked_batches - set(batches)),
               "batches_in_part": sum(rows != soak.BATCH for rows in batches.values())}
    figures.update(streams.compare(clients, keys, where, kills))
    states = streams.account_states(where)
    figures["accounts_as_dictated"] = (streams.states_as_dictated(states, limited_hits)
                                       or streams.states_as_dictated(states, 0))  # the 429 may not be written
    return figures


def worst_of(values):
    """A check's worst over the cycles: False if any was, the largest count, None where not applicable."""
    if values[0] is None:
        return None
    return all(values) if isinstance(values[0], bool) else max(values)


def crash(data_dir, cycles, seconds, clients=soak.CLIENTS, seed=1, database_url=None):
    """``cycles`` of the soak's load for ``seconds``, each cut by a SIGKILL and followed by the checks; the
    last start only checks the summaries. The figures."""
    rng = random.Random(seed)
    keys = streams.prepare(data_dir, clients, database_url)
    port, where = bench.free_port(), database_url or os.path.join(data_dir, "lb.db")
    settings = {"DATABASE_URL": database_url} if database_url else {}
    log_path = os.path.join(data_dir, "server.log")
    acked, seen, kills, checks, stats = [], {}, [], [], collections.Counter()
    with multiprocessing.Pool(soak.WRITERS + soak.READERS + soak.CLIENT_PROCS) as pool:  # before any thread
        upstream = streams.SoakUpstream().start()
        upstream_port = int(upstream.url.rsplit(":", 1)[1].split("/")[0])
        cookie = None
        try:
            for cycle in range(cycles + 1):  # the last start only checks the summaries
                server = bench.start_server(data_dir, port, log_path=log_path, UPSTREAM_URL=upstream.url, **settings)
                cookie = cookie or bench.session_cookie(port)  # sessions live in the database: one login
                summaries = soak.summaries_equal(port, cookie, where)
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
                tally(loads, acked, seen, stats)
                limited = sum(n for (account, _), n in upstream.answered.items() if account == streams.LIMITED)
                checks.append(after_crash(where, acked, seen, keys, kills, limited))
        finally:
            with contextlib.suppress(NameError):
                if server.poll() is None:
                    server.kill()
            upstream.stop()
    return totals(cycles, seconds, database_url, acked, seen, checks, stats)


def tally(loads, acked, seen, stats):
    """Fold one cycle's load into the run's: the acknowledged ingest ids, what each streaming client saw, and
    the dashboard's counts."""
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


def totals(cycles, seconds, database_url, acked, seen, checks, stats):
    """The run's figures: its counts, and each check at its worst over the cycles."""
    ended = streams.outcomes(seen)
    worst = {name: worst_of([c[name] for c in checks]) for name in checks[0]}
    return {"cycles": cycles, "database": "PostgreSQL" if database_url else "SQLite", "seconds_per_cycle": seconds,
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
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server whose user may create databases: "
                        "the run uses a fresh database on it (dropped afterwards) instead of SQLite")
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "bench-results", "crash.json"))
    opts = parser.parse_args(argv)
    return soak.in_fresh_dir(lambda data, url: crash(data, opts.cycles, opts.seconds, opts.clients, opts.seed, url),
                             opts.out, opts.postgres)


if __name__ == "__main__":
    main()
