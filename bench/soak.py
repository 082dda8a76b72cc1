"""Soak: writers and dashboard readers against the real server under waitress, on SQLite.

For ``--seconds`` (60 by default), 4 writer processes post 1000-row batches
of fresh request logs (every fifth batch is sent again, as a gateway retrying
would), and 8 reader processes walk the overview, usage and request-log pages.
Then it checks what a user relies on: no 5xx, no "database is locked", every
acknowledged requestId stored exactly once, the overview and usage equal to a
raw recount of the logs, and the WAL file bounded. It prints one report and
writes the figures as JSON; it asserts nothing about speed.

    python bench/soak.py                        # 60 s
    python bench/soak.py --seconds 10           # the short run CI makes
    python bench/soak.py --checkpoint-seconds 0 # without the WAL checkpointer, to compare
"""
import argparse
import json
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server, client and percentile helpers)

WRITERS, READERS, BATCH = 4, 8, 1000
READS = ("/api/dashboard/overview", "/api/usage?groupBy=model", "/api/request-logs?limit=50")


def _writer(args):
    """Post batches until the deadline; return (acknowledged ids, statuses, locked answers)."""
    port, writer, deadline = args
    rng = random.Random(writer)
    acked, statuses, locked, previous, sent = [], [], 0, None, 0
    with bench.Client(port) as client:
        while time.time() < deadline:
            if previous is not None and sent % 5 == 4:
                items = previous  # a resend: every id is a duplicate now
            else:
                items = [{"requestId": f"w{writer}-{sent}-{i}", "model": rng.choice(bench.MODELS),
                          "inputTokens": 1000 + i, "cachedInputTokens": 100, "outputTokens": 200 + i % 7,
                          "status": rng.choice(bench.STATUSES), "latencyMs": 900} for i in range(BATCH)]
            response, data = client.call("POST", "/api/request-logs", {"requests": items},
                                         {"Authorization": f"Bearer {bench.INGEST_TOKEN}"})
            statuses.append(response.status)
            locked += b"locked" in data
            if response.status == 201:
                acked += [item["requestId"] for item in items]
            previous, sent = items, sent + 1
    return acked, statuses, locked


def _reader(args):
    """Walk the dashboard until the deadline; return (overview latencies in ms, statuses, locked answers)."""
    port, cookie, reader, deadline = args
    overview, statuses, locked = [], [], 0
    with bench.Client(port, cookie) as client:
        n = reader
        while time.time() < deadline:
            path = READS[n % len(READS)]
            started = time.perf_counter()
            response, data = client.call("GET", path)
            if path == READS[0]:
                overview.append((time.perf_counter() - started) * 1000)
            statuses.append(response.status)
            locked += b"locked" in data
            n += 1
    return overview, statuses, locked


def raw_recount(db_path):
    """Counts and sums straight from request_log, and each requestId's copies beyond the first."""
    conn = sqlite3.connect(db_path)
    try:
        count, tokens_in, tokens_out, cost = conn.execute(
            "SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost) FROM request_log").fetchone()
        doubled = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM request_log").fetchone()[0]
        ids = {row[0] for row in conn.execute("SELECT request_id FROM request_log")}
    finally:
        conn.close()
    return {"count": count, "input": tokens_in or 0, "output": tokens_out or 0, "cost": cost or 0,
            "doubled": doubled, "ids": ids}


def file_mb(path):
    return os.path.getsize(path) / (1 << 20) if os.path.exists(path) else 0.0


def soak(data_dir, seconds, checkpoint_seconds):
    port = bench.free_port()
    log_path = os.path.join(data_dir, "server.log")
    server = bench.start_server(data_dir, port, log_path=log_path, CHECKPOINT_SECONDS=checkpoint_seconds)
    db_path = os.path.join(data_dir, "lb.db")
    try:
        cookie = bench.session_cookie(port)
        deadline = time.time() + seconds
        with multiprocessing.Pool(WRITERS + READERS) as pool:
            writers = pool.map_async(_writer, [(port, w, deadline) for w in range(WRITERS)])
            readers = pool.map_async(_reader, [(port, cookie, r, deadline) for r in range(READERS)])
            written, read = writers.get(), readers.get()
        elapsed = seconds
        with bench.Client(port, cookie) as client:
            overview = json.loads(client.call("GET", "/api/dashboard/overview")[1])
            usage = json.loads(client.call("GET", "/api/usage?groupBy=model")[1])["totals"]
        wal_mb, db_mb = file_mb(db_path + "-wal"), file_mb(db_path)
        rss = bench.rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    raw = raw_recount(db_path)
    acked = [i for ids, _, _ in written for i in ids]
    statuses = [s for _, st, _ in written for s in st] + [s for _, st, _ in read for s in st]
    latencies = [ms for lat, _, _ in read for ms in lat]
    with open(log_path, encoding="utf-8", errors="replace") as f:
        locked_in_log = f.read().count("database is locked")
    return {
        "seconds": seconds, "checkpoint_seconds": checkpoint_seconds,
        "requests": len(statuses), "requests_per_s": round(len(statuses) / elapsed, 1),
        "batches": sum(len(st) for _, st, _ in written), "rows_acknowledged": len(acked),
        "http_5xx": sum(s >= 500 for s in statuses), "other_errors": sum(400 <= s < 500 for s in statuses),
        "database_locked": sum(n for *_, n in written) + sum(n for *_, n in read) + locked_in_log,
        "lost_ids": len(set(acked) - raw["ids"]), "doubled_ids": raw["doubled"],
        "overview_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "overview_p95_ms": round(bench.percentile(latencies, 95), 2) if latencies else None,
        "overview_equals_recount": (overview["requestCount"], overview["usageSummary"]["inputTokens"],
                                    overview["usageSummary"]["outputTokens"]) == (raw["count"], raw["input"],
                                                                                  raw["output"]),
        "usage_equals_recount": (usage["requests"], usage["inputTokens"], usage["outputTokens"],
                                 round(usage["cost"], 4)) == (raw["count"], raw["input"], raw["output"],
                                                              round(raw["cost"] / 1e6, 4)),
        "wal_mb": round(wal_mb, 1), "db_mb": round(db_mb, 1), "rss_mb": round(rss, 1),
    }


def report(figures):
    return "\n".join(f"{name:>24}  {value}" for name, value in figures.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--checkpoint-seconds", type=int, default=10, help="LB_CHECKPOINT_SECONDS of the server")
    parser.add_argument("--data", default=None, help="data dir (default: a fresh temporary one)")
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "bench-results", "soak.json"))
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lb-soak-") as scratch:
        data_dir = opts.data or os.path.join(scratch, "data")
        os.makedirs(data_dir, exist_ok=True)
        figures = soak(data_dir, opts.seconds, opts.checkpoint_seconds)
    print(report(figures))
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    with open(opts.out, "w") as f:
        json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
