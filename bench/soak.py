"""Soak: the whole service under mixed load, on SQLite: streaming clients through the proxy, ingest
writers and dashboard readers, all at once against the real server under waitress.

For ``--seconds`` (60 by default):
- 32 streaming clients (bench/streams.py) send Codex requests with API keys through the proxy to a fake
  upstream of four accounts, one of which answers every request 429 usage_limit_reached; an eighth of the
  clients hang up after the first event, two probes send each stream to the upstream directly too;
- 4 writer processes post 1000-row batches of fresh request logs (every fifth batch is sent again, as a
  gateway retrying would);
- 8 reader processes walk the overview, usage and request-log pages.
Then it checks what a user relies on: no 5xx, no "database is locked", every acknowledged requestId
stored exactly once, every client stream logged exactly once with the status it had (ok, cancelled),
none served by the limited account, the accounts' statuses those the upstream gave, the overview and
usage equal to a raw recount of the logs, and the WAL file bounded. It prints one report and writes the
figures as JSON; it asserts nothing about speed.

The added latency is measured twice: by the probes (proxied first byte minus direct, so waiting for a
free waitress thread counts) and by the server (its codexlb_proxy_added_seconds histogram: from the
request's arrival in the app).

    python bench/soak.py                        # 60 s
    python bench/soak.py --seconds 10           # the short run CI makes
    python bench/soak.py --checkpoint-seconds 0 # without the WAL checkpointer, to compare
    python bench/soak.py --threads 64           # a waitress thread for every client
"""
import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server, client and percentile helpers)
import rawdb  # noqa: E402  (reads of the database itself)
import streams  # noqa: E402  (the fake upstream, the streaming clients, their logs)
from lb.money import dollars  # noqa: E402

WRITERS, READERS, BATCH = 4, 8, 1000
CLIENTS, CLIENT_PROCS = 32, 2  # streaming clients through the proxy, and the processes they run in
METRICS_TOKEN = "soak-metrics-token"
READS = ("/api/dashboard/overview", "/api/usage?groupBy=model", "/api/request-logs?limit=50")


def _call(client, method, path, payload=None, headers=None):
    """(status, body) of one call; status 0 when the connection broke (the server went away: a crash test)."""
    try:
        response, data = client.call(method, path, payload, headers)
        return response.status, data
    except (OSError, http.client.HTTPException):
        client.conn.close()  # reopened by the next call
        time.sleep(0.05)  # the server may be down: do not spin
        return 0, b""


def _writer(args):
    """Post batches until the deadline; return (acknowledged ids, statuses, locked answers). ``writer`` names
    the batches: request ids w<writer>-<batch>-<row>."""
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
            status, data = _call(client, "POST", "/api/request-logs", {"requests": items},
                                 {"Authorization": f"Bearer {bench.INGEST_TOKEN}"})
            statuses.append(status)
            locked += b"locked" in data
            if status == 201:
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
            status, data = _call(client, "GET", path)
            if path == READS[0] and status == 200:
                overview.append((time.perf_counter() - started) * 1000)
            statuses.append(status)
            locked += b"locked" in data
            n += 1
    return overview, statuses, locked


def raw_recount(where):
    """Counts and sums straight from request_log, and each requestId's copies beyond the first."""
    [(count, tokens_in, tokens_out, cost)] = rawdb.rows(
        where, "SELECT COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost) FROM request_log")
    [(doubled,)] = rawdb.rows(where, "SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM request_log")
    ids = {row[0] for row in rawdb.rows(where, "SELECT request_id FROM request_log")}
    return {"count": count, "input": int(tokens_in or 0), "output": int(tokens_out or 0), "cost": int(cost or 0),
            "doubled": doubled, "ids": ids}


def file_mb(path):
    return os.path.getsize(path) / (1 << 20) if os.path.exists(path) else 0.0


def scrape(port):
    """The server's /metrics, as {sample name with its labels: value}."""
    with bench.Client(port) as client:
        response, data = client.call("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status == 200, response.status
    samples = (line.rsplit(" ", 1) for line in data.decode().splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def histogram_ms(samples, name, q):
    """The ``q``-th percentile of a /metrics histogram, in ms, interpolated within its bucket (as PromQL's
    histogram_quantile does); None when it has no observation."""
    buckets = sorted((float(k.split('le="')[1].split('"')[0]), v) for k, v in samples.items()
                     if k.startswith(name + "_bucket"))
    rank, lower, below = q / 100 * buckets[-1][1], 0.0, 0.0
    for bound, count in buckets:
        if count and count >= rank:
            upper = lower if bound == float("inf") else bound
            return round((lower + (upper - lower) * (rank - below) / (count - below)) * 1000, 2)
        lower, below = bound, count
    return None


def settle(port, where, workers=1, timeout=15):
    """Wait until the server relays no stream (a hang-up is noticed at the stream's next event); the scrape.
    /metrics is one process's: with several workers, wait instead until the request logs stop coming (a second
    without a new one), and there is no scrape (None)."""
    deadline = time.time() + timeout
    if workers > 1:
        count, still = None, 0
        while time.time() < deadline and still < 10:
            now = raw_recount(where)["count"]
            count, still = now, (still + 1 if now == count else 0)
            time.sleep(0.1)
        return None
    while True:
        samples = scrape(port)
        if samples["codexlb_open_streams"] == 0 or time.time() > deadline:
            return samples
        time.sleep(0.1)


def start_load(pool, port, upstream_port, cookie, keys, deadline, run=0):
    """The writers, readers and streaming clients, started in ``pool``: their async results. ``run`` numbers
    a crash test's cycle, so that each names its batches and client requests afresh."""
    clients = [(i, kind, keys[i][1], run * streams.PER_RUN) for i, kind in enumerate(streams.kinds(len(keys)))]
    shares = [clients[i::CLIENT_PROCS] for i in range(CLIENT_PROCS)]
    return (pool.map_async(_writer, [(port, f"{run}.{w}", deadline) for w in range(WRITERS)]),
            pool.map_async(_reader, [(port, cookie, r, deadline) for r in range(READERS)]),
            pool.map_async(streams.streamers, [(port, upstream_port, share, deadline) for share in shares if share]))


def soak(data_dir, seconds, checkpoint_seconds, clients=CLIENTS, database_url=None, **settings):
    """The mixed load on a fresh server for ``seconds``, then the checks: the figures. ``database_url``: an
    empty PostgreSQL database, else SQLite in ``data_dir``; ``settings``: more LB_*."""
    keys = streams.prepare(data_dir, clients, database_url)
    port = bench.free_port()
    log_path = os.path.join(data_dir, "server.log")
    where = database_url or os.path.join(data_dir, "lb.db")
    if database_url:
        settings["DATABASE_URL"] = database_url
    with multiprocessing.Pool(WRITERS + READERS + CLIENT_PROCS) as pool:  # forked before any thread starts
        upstream = streams.SoakUpstream().start()
        server = bench.start_server(data_dir, port, log_path=log_path, CHECKPOINT_SECONDS=checkpoint_seconds,
                                    UPSTREAM_URL=upstream.url, METRICS_TOKEN=METRICS_TOKEN, **settings)
        try:
            cookie = bench.session_cookie(port)
            upstream_port = int(upstream.url.rsplit(":", 1)[1].split("/")[0])
            loads = start_load(pool, port, upstream_port, cookie, keys, time.time() + seconds)
            written, read, streamed = (load.get() for load in loads)
            samples = settle(port, where, settings.get("WORKERS", 1))
            overview_equal, usage_equal = summaries_equal(port, cookie, where)
            rss = bench.tree_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
            upstream.stop()
    clients = {index: results for share in streamed for index, results in share.items()}
    figures = {"seconds": seconds, "database": "PostgreSQL" if database_url else "SQLite",
               "workers": settings.get("WORKERS", 1), "checkpoint_seconds": checkpoint_seconds}
    figures.update(dashboard_figures(written, read, log_path, where))
    figures.update(overview_equals_recount=overview_equal, usage_equals_recount=usage_equal)
    figures.update(proxy_figures(clients, keys, where, upstream, samples, seconds))
    figures["requests"] += figures["proxied_requests"]  # what the server answered (the probes' direct calls not)
    figures["requests_per_s"] = round(figures["requests"] / seconds, 1)
    if not database_url:  # the WAL's growth is SQLite's
        figures.update(wal_mb=round(file_mb(where + "-wal"), 1), db_mb=round(file_mb(where), 1))
    figures["rss_mb"] = round(rss, 1)
    return figures


def summaries_equal(port, cookie, where):
    """Whether the overview and the usage totals equal a raw recount of request_log: (overview, usage)."""
    with bench.Client(port, cookie) as client:
        overview = json.loads(client.call("GET", "/api/dashboard/overview")[1])
        usage = json.loads(client.call("GET", "/api/usage?groupBy=model")[1])["totals"]
    raw = raw_recount(where)
    counted = (raw["count"], raw["input"], raw["output"])
    return ((overview["requestCount"], overview["usageSummary"]["inputTokens"],
             overview["usageSummary"]["outputTokens"]) == counted,
            (usage["requests"], usage["inputTokens"], usage["outputTokens"], usage["cost"])
            == (*counted, dollars(raw["cost"], 4)))  # the service's own rounding: half up, not round()


def dashboard_figures(written, read, log_path, where):
    """The writers' and readers' share: their answers, the ingest's ids, the overview's latency."""
    raw = raw_recount(where)
    acked = [i for ids, _, _ in written for i in ids]
    statuses = [s for _, st, _ in written for s in st] + [s for _, st, _ in read for s in st]
    latencies = [ms for lat, _, _ in read for ms in lat]
    with open(log_path, encoding="utf-8", errors="replace") as f:
        locked_in_log = f.read().count("database is locked")
    return {
        "requests": len(statuses),
        "batches": sum(len(st) for _, st, _ in written), "rows_acknowledged": len(acked),
        "http_5xx": sum(s >= 500 for s in statuses), "other_errors": sum(400 <= s < 500 for s in statuses),
        "broken": sum(s == 0 for s in statuses),
        "database_locked": sum(n for *_, n in written) + sum(n for *_, n in read) + locked_in_log,
        "lost_ids": len(set(acked) - raw["ids"]), "doubled_ids": raw["doubled"],
        "overview_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "overview_p95_ms": round(bench.percentile(latencies, 95), 2) if latencies else None,
    }


def proxy_figures(clients, keys, where, upstream, samples, seconds):
    """The streaming clients' share: what they saw, the logs it left, the accounts, the added latency."""
    ended = streams.outcomes(clients)
    probes = [c for c in clients.values() if c["kind"] == "probe"]
    proxied_ms = [ms for c in probes for ms in c["ttfb"]]
    direct_ms = [ms for c in probes for ms in c["direct_ttfb"] if ms is not None]
    all_ms = [ms for c in clients.values() for ms in c["ttfb"]]
    limited_hits = sum(n for (account, _), n in upstream.answered.items() if account == streams.LIMITED)
    served = sum(n for (account, _), n in upstream.answered.items() if account in streams.SERVING)
    figures = {
        "proxied_requests": sum(ended.values()), "streams_completed": ended.get("ok", 0),
        "streams_cancelled": ended.get("cancelled", 0),
        "proxied_streams_per_s": round(ended.get("ok", 0) / seconds, 1),
        "proxied_other": {k: v for k, v in ended.items() if k not in ("ok", "cancelled")},
        "upstream_429": limited_hits, "upstream_streams": served,
        # /metrics is one process's counts: with several workers, these are not the server's (None).
        "failovers": int(samples["codexlb_failovers_total"]) if samples else None,
        "server_5xx": int(sum(v for k, v in samples.items()
                              if k.startswith("codexlb_http_requests_total") and 'status="5' in k))
        if samples else None,
    }
    figures["http_5xx_proxied"] = sum(v for k, v in ended.items() if k.startswith("http 5"))
    figures.update(streams.compare(clients, keys, where))
    figures["accounts_as_dictated"] = streams.states_as_dictated(streams.account_states(where), limited_hits)
    if proxied_ms and direct_ms:
        for q in (50, 95):
            figures[f"added_ttfb_p{q}_ms"] = round(bench.percentile(proxied_ms, q) - bench.percentile(direct_ms, q), 2)
    for q in (50, 95):  # the same, as the server sees it: its own part of the first byte, queueing included
        figures[f"server_added_p{q}_ms"] = histogram_ms(samples, "codexlb_proxy_added_seconds", q) if samples else None
    figures.update({f"proxied_ttfb_p{q}_ms": round(bench.percentile(all_ms, q), 2) for q in (50, 95) if all_ms})
    return figures


def report(figures):
    return "\n".join(f"{name:>24}  {value}" for name, value in figures.items())


def in_fresh_dir(run, out, postgres=None):
    """``run(data dir, database URL or None)`` on a fresh temporary data directory and, given a ``postgres``
    server, a fresh database on it; print its figures, write them as JSON to ``out`` and return them."""
    with tempfile.TemporaryDirectory(prefix="lb-soak-") as scratch, \
            (rawdb.fresh_postgres(postgres) if postgres else contextlib.nullcontext()) as database_url:
        os.makedirs(os.path.join(scratch, "data"))
        figures = run(os.path.join(scratch, "data"), database_url)
    print(report(figures))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(figures, f, indent=2)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=CLIENTS, help="streaming clients through the proxy")
    parser.add_argument("--threads", type=int, help="LB_THREADS of the server (default: its own)")
    parser.add_argument("--workers", type=int, default=1, help="LB_WORKERS of the server: processes serving it")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server whose user may create databases: "
                        "the run uses a fresh database on it (dropped afterwards) instead of SQLite")
    parser.add_argument("--checkpoint-seconds", type=int, default=10, help="LB_CHECKPOINT_SECONDS of the server")
    parser.add_argument("--out", default=os.path.join(bench.ROOT, "bench-results", "soak.json"))
    opts = parser.parse_args(argv)
    settings = {"THREADS": opts.threads} if opts.threads else {}
    if opts.workers > 1:
        settings["WORKERS"] = opts.workers
    return in_fresh_dir(lambda data, url: soak(data, opts.seconds, opts.checkpoint_seconds, opts.clients, url,
                                               **settings), opts.out, opts.postgres)


if __name__ == "__main__":
    main()
