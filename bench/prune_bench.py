"""Benchmark: pruning a million request logs (contract 16, lb.retention) while proxied streams and ingest run.

The real server (``app.py --waitress``, one account, an API key, SQLite) in front of the fake upstream, its
database seeded with ``--logs`` request logs older than a week (through ``ingest.store_batch``, so the rollups
hold them) and requestLogRetentionDays set to 7. This process runs ``--streams`` keep-alive clients streaming
through the proxy and one ingest writer (POST /api/request-logs, 50 fresh logs a batch, back to back), first
for ``--seconds`` without a prune, then for as long as ``flask --app lb prune`` (its own process, the operator's
command) takes. It prints the logs removed, the prune's duration and its longest write transaction (its
longest batch: the longest it held SQLite's write lock), the proxied first-byte p50/p99/max and the ingest
batches' p99/max without and with the prune, the errors (must be 0), and checks the old logs are gone and
the rollups' totals unchanged. Figures are printed and written as JSON, never asserted.

    python bench/prune_bench.py                       # 1,000,000 logs, a few minutes
    python bench/prune_bench.py --logs 3000 --seconds 1 --streams 2   # seconds, for the tests
"""
import argparse
import contextlib
import http.client
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server runner, the work dir, the percentile)
import proxy_bench  # noqa: E402  (the fake upstream and the server in front of it, accounts and keys)

ROOT = bench.ROOT
DAY_MS = 24 * 3600 * 1000
RETENTION_DAYS = 7
STREAM_SECONDS = 0.2  # each proxied stream's length, its events spread over it
INGEST_BATCH = 50


def seed(data_dir, count, seed=3):
    """``count`` logs stamped 8 to 38 days ago, and retention set to a week: (seconds taken)."""
    from lb import create_app, database
    from lb.ingest import LogRow, store_batch
    from lb.tables import DashboardSettings, db

    started = time.perf_counter()
    app = create_app({"DATA_DIR": data_dir, "CHECKPOINT_SECONDS": 0})
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    models = bench.MODELS
    with app.app_context(), db.connection_context():
        for done in range(0, count, 20000):
            rows = []
            for i in range(done, min(count, done + 20000)):
                tokens = rng.randrange(200, 20000)
                rows.append(LogRow(f"seed-{i}", now - 8 * DAY_MS - rng.randrange(30 * DAY_MS), None,
                                   models[i % len(models)], tokens, rng.randrange(50, 4000), rng.randrange(tokens),
                                   bench.STATUSES[i % len(bench.STATUSES)], None, rng.randrange(200, 9000)))
            store_batch(rows, check_references=False)
            if (done // 20000) % 10 == 9:
                print(f"  seeded {done + len(rows):,} logs ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
        DashboardSettings.update(request_log_retention_days=RETENTION_DAYS).where(DashboardSettings.id == 1).execute()
    db.close()
    # The seeding's WAL folded back now, not by the server's checkpointer while the load without a prune runs.
    database.checkpoint(os.path.join(data_dir, "lb.db"), busy_ms=10000)
    return time.perf_counter() - started


def totals(db_path):
    """The rollups' totals and the raw logs older than the retention: (requests, input, cost), old logs."""
    cut = int(time.time() * 1000) - RETENTION_DAYS * DAY_MS
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        sums = conn.execute("SELECT SUM(requests), SUM(input_tokens), SUM(cost) FROM hourly_usage").fetchone()
        old = conn.execute("SELECT COUNT(*) FROM request_log WHERE requested_at < ?", (cut,)).fetchone()[0]
        raw = conn.execute("SELECT COUNT(*) FROM request_log").fetchone()[0]
    return tuple(sums), old, raw


class Load:
    """``streams`` clients streaming through the proxy and one ingest writer, until stopped: each stream's first
    byte (ms), each ingest batch's time (ms), and the errors of both."""

    def __init__(self, proxied, port, streams):
        self.proxied, self.port, self.stop = proxied, port, threading.Event()
        self.first_bytes, self.ingest_ms, self.stream_errors, self.ingest_errors, self.ingested = [], [], 0, 0, 0
        self.threads = [threading.Thread(target=self._stream) for _ in range(streams)]
        self.threads.append(threading.Thread(target=self._ingest))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _stream(self):
        conn = self.proxied.connect()
        while not self.stop.is_set():
            try:
                first, _, ok = self.proxied.stream(conn)
            except (OSError, http.client.HTTPException):
                ok, first = False, None
                conn.close()
            if ok:
                self.first_bytes.append(first)
            else:
                self.stream_errors += 1
        conn.close()

    def _ingest(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Bearer {bench.INGEST_TOKEN}", "Content-Type": "application/json"}
        rng = random.Random()
        while not self.stop.is_set():
            body = json.dumps({"requests": [
                {"requestId": f"{rng.getrandbits(128):032x}", "model": "gpt-5.3-codex", "inputTokens": 1000,
                 "outputTokens": 200, "cachedInputTokens": 100, "latencyMs": 900} for _ in range(INGEST_BATCH)]})
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/request-logs", body, headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 201
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
            self.ingest_ms.append((time.perf_counter() - started) * 1000)
            if ok:
                self.ingested += INGEST_BATCH
            else:
                self.ingest_errors += 1
            time.sleep(0.01)
        conn.close()

    def figures(self, name):
        firsts, batches = self.first_bytes or [0.0], self.ingest_ms or [0.0]
        return {f"{name}_streams": len(self.first_bytes), f"{name}_stream_errors": self.stream_errors,
                f"{name}_first_byte_p50_ms": round(bench.percentile(firsts, 50), 1),
                f"{name}_first_byte_p99_ms": round(bench.percentile(firsts, 99), 1),
                f"{name}_first_byte_max_ms": round(max(firsts), 1),
                f"{name}_ingest_batches": len(self.ingest_ms), f"{name}_ingest_errors": self.ingest_errors,
                f"{name}_ingest_p99_ms": round(bench.percentile(batches, 99), 1),
                f"{name}_ingest_max_ms": round(max(batches), 1)}


def prune(data_dir):
    """``flask --app lb prune`` on the database: (its output, seconds it took)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
    env.update(LB_DATA_DIR=data_dir, LB_CHECKPOINT_SECONDS="0")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "lb", "prune"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"flask prune failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip(), took


def run(opts, work):
    data_dir = os.path.join(work, "data")
    (_, key), = proxy_bench.prepare(data_dir)
    print(f"seeding {opts.logs:,} request logs older than {RETENTION_DAYS} days", file=sys.stderr)
    r = {"logs": opts.logs, "seed_s": round(seed(data_dir, opts.logs), 1), "streams": opts.streams}
    db_path = os.path.join(data_dir, "lb.db")
    with proxy_bench.serving(work, key, STREAM_SECONDS) as (_, server, _, proxied):
        with Load(proxied, proxied.port, opts.streams):  # warm up: connections, caches
            time.sleep(min(2.0, opts.seconds))
        before, old_before, _ = totals(db_path)
        print(f"without a prune: {opts.seconds} s", file=sys.stderr)
        with Load(proxied, proxied.port, opts.streams) as load:
            time.sleep(opts.seconds)
        r.update(load.figures("without"))
        ingested = load.ingested
        print("with the prune: flask --app lb prune", file=sys.stderr)
        with Load(proxied, proxied.port, opts.streams) as load:
            output, took = prune(data_dir)
        r.update(load.figures("with"))
        ingested += load.ingested
        streamed = r["without_streams"] + r["with_streams"]
    after, old_after, raw_after = totals(db_path)
    found = re.search(r"pruned (\d+) request logs .* \((\d+) batches, longest (\d+) ms\)", output)
    r.update({"prune_output": output, "removed": int(found[1]), "prune_batches": int(found[2]),
              "longest_write_ms": int(found[3]), "prune_s": round(took, 1), "old_logs_before": old_before,
              "old_logs_left": old_after, "raw_logs_after": raw_after,
              # The rollups grew by exactly what was stored meanwhile: the prune took nothing from them.
              "rollup_requests_before": before[0], "rollup_requests_after": after[0],
              "stored_meanwhile": ingested + streamed, "rollups_kept": after[0] - before[0] == ingested + streamed})
    return r


ROWS = (("logs removed", "removed", "{:,}"), ("prune (flask prune) s", "prune_s", "{}"),
        ("batches", "prune_batches", "{:,}"), ("longest write transaction ms", "longest_write_ms", "{}"),
        ("first byte p50 ms: without / with", ("without_first_byte_p50_ms", "with_first_byte_p50_ms"), "{}"),
        ("first byte p99 ms: without / with", ("without_first_byte_p99_ms", "with_first_byte_p99_ms"), "{}"),
        ("first byte max ms: without / with", ("without_first_byte_max_ms", "with_first_byte_max_ms"), "{}"),
        ("streams: without / with", ("without_streams", "with_streams"), "{:,}"),
        ("ingest batch p99 ms: without / with", ("without_ingest_p99_ms", "with_ingest_p99_ms"), "{}"),
        ("ingest batch max ms: without / with", ("without_ingest_max_ms", "with_ingest_max_ms"), "{}"),
        ("ingest errors: without / with", ("without_ingest_errors", "with_ingest_errors"), "{}"),
        ("stream errors: without / with", ("without_stream_errors", "with_stream_errors"), "{}"),
        ("old logs left", "old_logs_left", "{:,}"), ("rollups kept", "rollups_kept", "{}"))


def table(r):
    lines = []
    for label, keys, fmt in ROWS:
        keys = keys if isinstance(keys, tuple) else (keys,)
        lines.append(f"{label:>38}  " + " / ".join(fmt.format(r[k]) for k in keys))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=int, default=1_000_000, help="request logs older than the retention")
    parser.add_argument("--seconds", type=float, default=30.0, help="of load without a prune")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streaming clients through the proxy")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results", "prune_bench.json"))
    opts = parser.parse_args(argv)
    started = time.perf_counter()
    with bench.workdir("prune-bench-") as work:
        r = run(opts, work)
    r["run_s"] = round(time.perf_counter() - started, 1)
    print(f"{os.cpu_count()} CPUs; run {r['run_s']} s; seeding {r['seed_s']} s")
    print(table(r))
    bench.write_figures(opts.out, {"results": r, "machine": {"cpus": os.cpu_count()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
