"""Benchmark: the overview, models and ingest through the real server under waitress.

For each database size it builds (or reuses) a SQLite database through the
ingest store code, starts ``python app.py --waitress`` on a free loopback
port and measures it from this process over keep-alive HTTP. It prints one
table and writes the same figures as JSON.

    python bench/bench.py                      # 10k, 100k, 1M logs
    python bench/bench.py --ten-million        # and 10M (slow to build)
    python bench/bench.py --sizes 2000 --smoke # a few seconds, for CI
"""
import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from helpers.servers import Server, children, free_port  # noqa: E402  (the server runner the tests use too)

PASSWORD = "benchmark password"
INGEST_TOKEN = "bench-ingest-token"
DAY_MS = 24 * 3600 * 1000
MODELS = ("gpt-5.3-codex", "gpt-5.2", "gpt-5.1-codex", "gpt-5.1-codex-mini", "gpt-4o-mini", "o3-pro")
STATUSES = ("ok",) * 95 + ("error", "rate_limit", "quota", "cancelled", "cancelled")
TARGETS = {  # from the issue; printed beside the figures, never asserted
    "overview_p50_ms": 5.0, "overview_p95_ms": 15.0, "overview_p50_ms_10m": 10.0, "models_p50_ms": 2.0,
    "overview_rps": 500, "ingest_rows_per_s": 20000, "rss_mb": 100, "ratio": 3.0,
}


# -- building a database ------------------------------------------------------

def build(data_dir, size, seed=1):
    """Fill ``data_dir`` with ``size`` logs over 35 days through ``ingest.store_batch``."""
    from lb import accounts, create_app
    from lb.ingest import LogRow, store_batch
    from lb.tables import RequestLog, db

    app = create_app({"DATA_DIR": data_dir})
    with app.app_context(), db.connection_context():
        have = RequestLog.select().count()
        if have >= size:
            return have
        rng = random.Random(seed)
        now = int(time.time() * 1000)
        ids = [a["id"] for a in accounts.all_accounts()] or [
            accounts.create({"email": f"bench{i}@example.com", "status": "active"}, now).id for i in range(12)]
        chunk = 20000
        started = time.perf_counter()
        for done in range(have, size, chunk):
            rows = []
            for _ in range(min(chunk, size - done)):
                tin = rng.randrange(200, 20000)
                rows.append(LogRow(
                    request_id=f"{rng.getrandbits(128):032x}", requested_at=now - rng.randrange(35 * DAY_MS),
                    account_id=rng.choice(ids), model=rng.choice(MODELS), input_tokens=tin,
                    output_tokens=rng.randrange(50, 4000), cached_input_tokens=rng.randrange(tin),
                    status=rng.choice(STATUSES), latency_ms=rng.randrange(200, 9000)))
            store_batch(rows)
            if (done // chunk) % 25 == 0:
                print(f"  built {done + len(rows):,} logs ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
        return RequestLog.select().count()


# -- the server ---------------------------------------------------------------

def start_server(data_dir, port, log_path=None, argv=None, **settings):
    """``app.py --waitress`` (or ``argv``) on ``port``, its log to ``log_path``, through the tests' runner;
    ``settings`` are more LB_* variables. Its process (a Popen)."""
    settings = {"INGEST_TOKEN": INGEST_TOKEN, "USAGE_POLL_SECONDS": 0, **settings}  # the load alone, no poll
    return Server(data_dir, port, log_path or os.devnull, argv, **settings).start().proc


def tree_rss_mb(pid):
    """The RSS of a server and of its worker processes, summed."""
    return rss_mb(pid) + sum(rss_mb(child) for child in children(pid))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    """One keep-alive HTTP connection carrying the session cookie."""

    def __init__(self, port, cookie=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = cookie

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def call(self, method, path, payload=None, headers=None):
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = f"dashboard_session={self.cookie}"
        body = None
        if payload is not None:
            body = json.dumps(payload)
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        return response, data


def session_cookie(port):
    with Client(port) as client:
        response, _ = client.call("POST", "/api/dashboard-auth/password/setup", {"password": PASSWORD})
        if response.status == 409:
            response, _ = client.call("POST", "/api/dashboard-auth/password/login", {"password": PASSWORD})
    assert response.status == 200, response.status
    cookie = response.getheader("Set-Cookie").split(";")[0]
    return cookie.split("=", 1)[1]


def latencies(client, path, count):
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response, _ = client.call("GET", path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, response.status
    return times


def page_latency(client, depth, repeat=20):
    """p50 of the first page of request logs, and of page ``depth`` reached by following cursors."""
    def p50(path):
        return statistics.median(latencies(client, path, repeat))

    first = p50("/api/request-logs?limit=50")
    path, reached = "/api/request-logs?limit=50", 1
    while reached < depth:
        _, data = client.call("GET", path)
        cursor = json.loads(data)["nextCursor"]
        if cursor is None:
            break
        path, reached = f"/api/request-logs?limit=50&cursor={cursor}", reached + 1
    return first, p50(path), reached


def _hammer(args):
    port, cookie, seconds = args
    client = Client(port, cookie)
    done = errors = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            response, _ = client.call("GET", "/api/dashboard/overview")
            done += 1
            errors += response.status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            client.conn.close()
            client = Client(port, cookie)
    client.conn.close()
    return done, errors


def throughput(port, cookie, clients, seconds):
    with multiprocessing.Pool(clients) as pool:
        started = time.perf_counter()
        results = pool.map(_hammer, [(port, cookie, seconds)] * clients)
        elapsed = time.perf_counter() - started
    done = sum(r[0] for r in results)
    return done / elapsed, sum(r[1] for r in results)


def ingest_rate(client, batches, account_ids):
    """Rows per second of 1000-row batches shaped like a gateway's: fresh requests, each with its id."""
    rng = random.Random()
    now = time.time()
    payloads = []
    for _ in range(batches):
        payloads.append({"requests": [
            {"requestId": f"{rng.getrandbits(128):032x}", "accountId": rng.choice(account_ids),
             "requestedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - rng.randrange(60))),
             "model": rng.choice(MODELS), "inputTokens": 1000, "cachedInputTokens": 100, "outputTokens": 200,
             "status": rng.choice(STATUSES), "latencyMs": 900}
            for _ in range(1000)]})
    headers = {"Authorization": f"Bearer {INGEST_TOKEN}"}
    started = time.perf_counter()
    for payload in payloads:
        response, data = client.call("POST", "/api/request-logs", payload, headers)
        assert response.status == 201, data
    return batches * 1000 / (time.perf_counter() - started)


# -- the floor: the same figures by plain SQL in this process -----------------

def floor_ms(db_path, runs=30):
    """The overview's one statement, run by plain sqlite3 with no framework around it."""
    from lb.overview import billing_period
    from lb.store import OVERVIEW_SQL, overview_params

    conn = sqlite3.connect(db_path)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        now = int(time.time() * 1000)
        conn.execute(OVERVIEW_SQL, overview_params(*billing_period(now, 1), now - 86_400_000 + 1)).fetchone()
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return statistics.median(times)


# -- one size -----------------------------------------------------------------

@contextlib.contextmanager
def workdir(prefix):
    """A scratch directory for a benchmark's servers, removed at the end; on a failure, the end of the
    server's log (``<dir>/server.log``) goes to stderr first."""
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    except Exception:
        with contextlib.suppress(OSError), open(os.path.join(work, "server.log"), errors="replace") as f:
            sys.stderr.write("the server's log, its end:\n" + "".join(f.readlines()[-30:]))
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_figures(path, figures):
    """Write a benchmark's figures as JSON to ``path`` and say where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"figures written to {path}")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def measure(data_dir, size, opts):
    print(f"size {size:,}: building", file=sys.stderr)
    started = time.perf_counter()
    logs = build(data_dir, size)
    built = time.perf_counter() - started
    port = free_port()
    server = start_server(data_dir, port)
    try:
        cookie = session_cookie(port)
        with Client(port, cookie) as client:
            latencies(client, "/api/dashboard/overview", opts.warmup)
            overview = latencies(client, "/api/dashboard/overview", opts.requests)
            models = latencies(client, "/api/models", opts.requests)
            first_page, deep_page, depth = page_latency(client, opts.depth)
            rps, errors = throughput(port, cookie, opts.clients, opts.duration)
            _, data = client.call("GET", "/api/accounts")
            ingest = ingest_rate(client, opts.batches, [a["id"] for a in json.loads(data)["accounts"]])
        rss = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    floor = floor_ms(os.path.join(data_dir, "lb.db"))
    p50 = statistics.median(overview)
    return {
        "logs": logs, "build_s": round(built, 1),
        "overview_p50_ms": round(p50, 2), "overview_p95_ms": round(percentile(overview, 95), 2),
        "models_p50_ms": round(statistics.median(models), 2),
        "logs_page1_p50_ms": round(first_page, 2), "logs_deep_page": depth,
        "logs_deep_page_p50_ms": round(deep_page, 2),
        "overview_rps": round(rps), "overview_errors": errors,
        "ingest_rows_per_s": round(ingest), "rss_mb": round(rss, 1),
        "floor_p50_ms": round(floor, 3), "ratio": round(p50 / floor, 1) if floor else None,
    }


COLUMNS = (("logs", "logs", "{:,}"), ("overview p50 ms", "overview_p50_ms", "{}"),
           ("p95 ms", "overview_p95_ms", "{}"), ("models p50 ms", "models_p50_ms", "{}"),
           ("page 1 ms", "logs_page1_p50_ms", "{}"), ("deep page", "logs_deep_page", "{}"),
           ("deep page ms", "logs_deep_page_p50_ms", "{}"),
           ("req/s (8 clients)", "overview_rps", "{:,}"), ("errors", "overview_errors", "{}"),
           ("ingest rows/s", "ingest_rows_per_s", "{:,}"), ("RSS MB", "rss_mb", "{}"),
           ("floor ms", "floor_p50_ms", "{}"), ("p50/floor", "ratio", "{}"))


def table(results):
    head = [c[0] for c in COLUMNS]
    rows = [[fmt.format(r[key]) for _, key, fmt in COLUMNS] for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = [" | ".join(h.rjust(w) for h, w in zip(head, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated log counts")
    parser.add_argument("--ten-million", action="store_true", help="add a 10,000,000-log database")
    parser.add_argument("--smoke", action="store_true", help="tiny run: few requests, 1 s of load")
    parser.add_argument("--data", default=os.path.join(ROOT, "bench-data"), help="where databases are kept")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results", "bench.json"))
    opts = parser.parse_args(argv)
    sizes = [int(s) for s in opts.sizes.split(",")] + ([10_000_000] if opts.ten_million else [])
    opts.warmup, opts.requests, opts.clients, opts.duration, opts.batches, opts.depth = (
        (5, 20, 2, 1, 2, 5) if opts.smoke else (50, 200, 8, 10, 20, 1000))
    results = [measure(os.path.join(opts.data, f"logs-{size}"), size, opts) for size in sizes]
    print(table(results))
    print("targets: " + ", ".join(f"{k} {v}" for k, v in TARGETS.items()))
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    with open(opts.out, "w") as f:
        json.dump({"results": results, "targets": TARGETS, "machine": {"cpus": os.cpu_count()}}, f, indent=2)
    print(f"figures written to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
