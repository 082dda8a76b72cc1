"""Benchmark: the proxy under waitress in front of the fake upstream, measured against the fake upstream itself.

Three processes on loopback: the fake Codex upstream (tests/fixtureapps/upstream.py), the real server
(``app.py --waitress``: one account, an API key, a request log per stream in SQLite) and this one, the
load generator, which sends the same request both ways: (1) one stream at a time, direct and proxied
interleaved, for the time to the body's first byte and to its last ("added": proxied minus direct), and beside
them the same answer asked as a Chat Completions stream (POST /v1/chat/completions, translated both ways: its
added time, and what the translation costs over the pass-through);
(2) concurrent keep-alive clients for some seconds, for requests/s and errors; (3) a thousand concurrent
10-second streams through the default server: all complete? their first bytes, a dashboard request
meanwhile, its RSS and CPU; (4) the load of (2) through one worker process and through two, interleaved;
(5) twenty requests at once of a key capped at 2 in flight, through two workers. It prints one table,
each figure beside its target, and writes it as JSON; only a broken setup fails it.

    python bench/proxy_bench.py                   # the full run, about two minutes
    python bench/proxy_bench.py --sequential 100 --seconds 2 --streams 8 --stream-seconds 1
    python bench/proxy_bench.py --profile         # then phases 1 and 2 against a profiled server
"""
import argparse
import base64
import contextlib
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server, its RSS, the free port, the percentile)

ROOT = bench.ROOT
PATH = "/backend-api/codex/responses"
WORKSPACE = "ws-bench"
BODY = json.dumps({"model": "gpt-5.3-codex", "stream": True, "store": False, "input": [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
    "tools": [], "tool_choice": "auto", "parallel_tool_calls": True}).encode()
COMPLETED = b"event: response.completed"  # in a Responses stream that completed
CHAT_PATH = "/v1/chat/completions"
CHAT_BODY = json.dumps({"model": "gpt-5.3-codex", "stream": True,
                        "messages": [{"role": "user", "content": "say hi"}]}).encode()
CHAT_DONE = b"data: [DONE]"  # in a chunk stream that completed
TARGETS = {  # from the issues; printed beside the figures, never asserted
    "added_ttfb_p50_ms": ("<=", 1.5), "added_last_p50_ms": ("<=", 2.0), "proxied_rps": (">=", 300),
    "chat_translation_ttfb_p50_ms": ("<=", 0.3),  # what the chat translation may add to the pass-through's first byte
    "rps_ratio": (">=", 0.5), "proxied_errors": ("<=", 0), "streams_incomplete": ("<=", 0),
    "streams_first_byte_p99_ms": ("<=", 2000), "streams_first_byte_max_ms": ("<=", 5000),
    "dashboard_during_streams_ms": ("<=", 1000), "streams_rss_peak_mb": ("<=", 400),
    "workers_rps_ratio": (">=", 1.3), "workers_errors": ("<=", 0), "workers_logs_missing": ("<=", 0),
    "cap_served": ("<=", 2)}
IDLE = r"^(?!.*(_thread.lock|select\.select|threading\.py|handler_thread|wasyncore))"  # waiting, not working


# -- the processes ------------------------------------------------------------------------------

def serve_fake_upstream(seconds):
    """(Its own process) the fake upstream, each stream spread over ``seconds``, until killed."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from fixtureapps.upstream import FakeUpstream, Stream, _events
    upstream = FakeUpstream().start()
    upstream.default = Stream(delay=seconds / (len(_events(Stream(), 1, "m")) - 1))  # the delay is between events
    print(upstream.url, flush=True)
    signal.pause()


def serve_profiled(out):
    """(The server's process) ``app.py --waitress`` with a cProfile in every thread, merged into ``out`` once
    SIGINT has stopped waitress (and so its threads)."""
    import cProfile
    import pstats
    # thread_time: CPU seconds, so time spent waiting (on the upstream, a socket, a lock) does not count.
    profiles, run = [cProfile.Profile(time.thread_time)], threading.Thread.run

    def profiled_run(self):
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()  # this thread's calls only
        try:
            run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run
    import app
    try:
        profiles[0].runcall(app.main, ["--waitress"])
    except KeyboardInterrupt:
        pass
    pstats.Stats(*profiles).dump_stats(out)


def start_profiled(data_dir, port, log_path, out, **settings):
    """bench.start_server, with the profiling wrapper in front of app.py."""
    return bench.start_server(data_dir, port, log_path, [sys.executable, __file__, "--profiled-server", out],
                              **settings)


@contextlib.contextmanager
def serving(work, key, stream_seconds=0.0, profile_out=None, **settings):
    """The fake upstream and the server in front of it: (upstream process, server process, direct, proxied)."""
    procs = [subprocess.Popen([sys.executable, __file__, "--fake-upstream", str(stream_seconds)],
                              stdout=subprocess.PIPE)]
    try:
        url, port = procs[0].stdout.readline().decode().strip(), bench.free_port()
        if not url:
            raise RuntimeError("the fake upstream did not start")
        data_dir, log = os.path.join(work, "data"), os.path.join(work, "server.log")
        procs.append(start_profiled(data_dir, port, log, profile_out, UPSTREAM_URL=url, **settings) if profile_out
                     else bench.start_server(data_dir, port, log, UPSTREAM_URL=url, **settings))
        direct = Target("direct", int(url.rsplit(":", 1)[1].split("/")[0]),
                        {"Authorization": "Bearer upstream-token", "chatgpt-account-id": WORKSPACE})
        yield procs[0], procs[1], direct, Target("proxied", port, {"Authorization": f"Bearer {key}"})
    finally:
        for proc in reversed(procs):  # SIGINT lets the profiled server write its profile
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if profile_out and proc is not procs[0] else signal.SIGTERM)
                proc.wait(timeout=30)
        procs[0].stdout.close()


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare(data_dir, workspaces=(WORKSPACE,), keys=1, database_url=None, capped=False):
    """Accounts with credentials (one per workspace, ws-x@example.com) and API keys, stored in-process:
    the keys' [(id, key)]; ``capped``: the last key is capped at 2 concurrent requests."""
    from lb import create_app, credentials
    from lb import keys as api_keys
    from lb import tables

    def jwt(claims):  # signed by nobody: nothing checks the signature
        head, body = (base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                      for part in ({"alg": "RS256", "typ": "JWT"}, claims))
        return f"{head}.{body}.c2lnbmF0dXJl"

    now = time.time()
    app = create_app({"DATA_DIR": data_dir, "CHECKPOINT_SECONDS": 0, "DATABASE_URL": database_url})
    with app.app_context(), tables.db.connection_context():
        for workspace in workspaces:
            claims = {"email": f"{workspace}@example.com", "sub": f"auth0|{workspace}",
                      "https://api.openai.com/auth": {"chatgpt_plan_type": "plus", "chatgpt_account_id": workspace}}
            auth = {"auth_mode": "chatgpt", "tokens": {
                "id_token": jwt(claims), "access_token": jwt({"exp": int(now) + 10 * 86400, "jti": workspace}),
                "refresh_token": f"rt_{workspace}-refresh-token-0123456789", "account_id": workspace}}
            credentials.import_auth_json(auth, int(now * 1000))
        caps = [{"concurrentRequests": 2} if capped and i == keys - 1 else None for i in range(keys)]
        made = [api_keys.create({"name": f"bench {i}", "caps": caps[i]}, int(now * 1000)) for i in range(keys)]
        return [(row.id, key) for row, key in made]


# -- the load -----------------------------------------------------------------------------------

class Target:
    """Where the streams go, the fake upstream or the proxy; the same request either way (or its Chat Completions
    form: ``path``, ``body`` and ``done``, what a completed stream holds)."""

    def __init__(self, name, port, headers, path=PATH, body=BODY, done=COMPLETED):
        self.name, self.port, self.closed = name, port, 0
        self.path, self.body, self.done = path, body, done
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **headers}

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def stream(self, conn):
        """One stream over ``conn`` (which http.client reopens if the server closed it): (ms to the first
        body byte, ms to the last, completed)."""
        started = time.perf_counter()
        conn.request("POST", self.path, self.body, self.headers)
        response = conn.getresponse()
        first = response.read1(65536)
        ttfb = time.perf_counter()
        rest = response.read()
        done = time.perf_counter()
        self.closed += response.will_close  # the server ends the connection with the stream
        ok = response.status == 200 and self.done in first + rest
        return (ttfb - started) * 1000, (done - started) * 1000, ok


def chat_target(proxied):
    """The proxy's Chat Completions endpoint, asked the same question as ``proxied``."""
    return Target("chat", proxied.port, {"Authorization": proxied.headers["Authorization"]}, CHAT_PATH, CHAT_BODY,
                  CHAT_DONE)


def sequential(targets, count, warmup):
    """Each target's (ttfb ms, last-byte ms) lists; A/B interleaved, so that drift hits both alike."""
    conns, times = [t.connect() for t in targets], [([], []) for _ in targets]
    for i in range(warmup + count):
        for j in (range(len(targets)) if i % 2 else reversed(range(len(targets)))):
            first, last, ok = targets[j].stream(conns[j])
            if not ok:
                raise RuntimeError(f"{targets[j].name}: a sequential stream did not complete")
            if i >= warmup:
                times[j][0].append(first)
                times[j][1].append(last)
    for conn in conns:
        conn.close()
    return times


def _client_process(args):
    """(A client process) ``threads`` keep-alive clients from ``start`` to ``end`` (epoch s): (done, errors)."""
    target, threads, start, end = args
    counts = [[0, 0] for _ in range(threads)]

    def client(mine):
        conn = target.connect()
        time.sleep(max(0.0, start - time.time()))
        while time.time() < end:
            try:
                ok = target.stream(conn)[2]
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
            if time.time() < end:  # what ends after the window is not counted
                mine[0 if ok else 1] += 1
        conn.close()

    workers = [threading.Thread(target=client, args=(mine,)) for mine in counts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def load(opts, target, work):
    """(requests/s, errors) of ``opts.clients`` keep-alive clients for ``opts.seconds``: wrk's (its non-2xx
    answers and socket errors, timeouts included, are errors), or Python threads spread over processes."""
    if opts.load == "wrk":
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY.decode())}\n')
            f.writelines(f'wrk.headers["{k}"] = "{v}"\n' for k, v in target.headers.items())
        out = subprocess.run(["wrk", "-t2", f"-c{opts.clients}", f"-d{opts.seconds}s", "--timeout", "60s", "-s",
                              script, f"http://127.0.0.1:{target.port}{PATH}"],
                             capture_output=True, text=True, check=True).stdout
        errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout|Non-2xx or 3xx responses:) (\d+)", out)))
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), errors
    procs = opts.client_procs
    shares = [opts.clients // procs + (i < opts.clients % procs) for i in range(procs)]
    start = time.time() + 1.0  # every process is up by then
    with multiprocessing.Pool(procs) as pool:
        results = pool.map(_client_process, [(target, n, start, start + opts.seconds) for n in shares if n])
    return sum(r[0] for r in results) / opts.seconds, sum(r[1] for r in results)


def long_streams(target, count, pid, seconds):
    """``count`` streams at once, each on a connection of its own, through the default server; the first bytes,
    a dashboard request's time halfway through, the server's peak RSS and CPU."""
    results = [(0.0, 0.0, False)] * count

    def one(i):
        with contextlib.suppress(OSError, http.client.HTTPException):
            results[i] = target.stream(target.connect())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    cpu, started, peak, dashboard_ms = cpu_s(pid), time.perf_counter(), 0.0, None
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, bench.tree_rss_mb(pid))
        if dashboard_ms is None and time.perf_counter() - started >= seconds / 2:
            asked = time.perf_counter()
            with bench.Client(target.port) as client:
                client.call("GET", "/api/dashboard-auth/session")
            dashboard_ms = round((time.perf_counter() - asked) * 1000, 1)
        time.sleep(0.05)
    complete = sum(r[2] for r in results)
    firsts = [r[0] for r in results if r[2]] or [0.0]
    return {"streams": count, "streams_complete": complete, "streams_incomplete": count - complete,
            "streams_wall_s": round(time.perf_counter() - started, 2),
            "streams_first_byte_p50_ms": round(bench.percentile(firsts, 50), 1),
            "streams_first_byte_p99_ms": round(bench.percentile(firsts, 99), 1),
            "streams_first_byte_max_ms": round(max(firsts), 1),
            "slowest_stream_s": round(max(r[1] for r in results) / 1000, 2),
            "dashboard_during_streams_ms": dashboard_ms,
            "streams_server_cpu_s": round(cpu_s(pid) - cpu, 2), "streams_rss_peak_mb": round(peak, 1)}


def request_logs(work):
    with contextlib.closing(sqlite3.connect(os.path.join(work, "data", "lb.db"))) as conn:
        return conn.execute("SELECT COUNT(*) FROM request_log").fetchone()[0]


def workers_throughput(opts, work, key):
    """Proxied requests/s through one worker process and through two, interleaved: (figures)."""
    rates, errors, missing = {1: [], 2: []}, 0, 0
    for workers in (1, 2, 1, 2):
        print(f"throughput: {workers} worker(s), {opts.clients} clients for {opts.seconds} s", file=sys.stderr)
        with serving(work, key, WORKERS=workers) as (_, _, _, proxied):
            before = request_logs(work)
            rps, failed = load(opts, proxied, work)
        rates[workers].append(rps)
        errors += failed
        missing += max(0, round(rps * opts.seconds) - (request_logs(work) - before))  # each completed: a log
    one, two = (statistics.mean(rates[n]) for n in (1, 2))
    return {"workers1_rps": round(one), "workers2_rps": round(two), "workers_rps_ratio": round(two / one, 2),
            "workers_errors": errors, "workers_logs_missing": missing}


def capped(work, capped_key, count=20):
    """``count`` requests at once, through two workers, of a key capped at 2 concurrent requests: how many
    were served (the rest refused 429)."""
    with serving(work, capped_key, 2.0, WORKERS=2) as (_, _, _, proxied):
        ready, statuses = threading.Barrier(count), []

        def one():
            conn = proxied.connect()
            ready.wait()
            try:
                conn.request("POST", PATH, BODY, proxied.headers)
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            finally:
                conn.close()

        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return {"cap_served": statuses.count(200), "cap_refused": statuses.count(429)}


# -- the run ------------------------------------------------------------------------------------

def run(opts, work, key, capped_key):
    r = {"load_generator": f"wrk -t2 -c{opts.clients}" if opts.load == "wrk" else
         f"python: {opts.clients} threads in {opts.client_procs} processes, http.client keep-alive"}
    with serving(work, key) as (upstream, server, direct, proxied):
        chat = chat_target(proxied)
        print(f"sequential: {opts.warmup} + {opts.sequential} streams each way (direct, proxied, chat)",
              file=sys.stderr)
        cpu, n = cpu_s(server.pid), opts.warmup + opts.sequential
        (d_first, d_last), (p_first, p_last), (c_first, c_last) = sequential([direct, proxied, chat],
                                                                             opts.sequential, opts.warmup)
        r["server_cpu_ms_per_stream"] = round((cpu_s(server.pid) - cpu) * 1000 / (2 * n), 2)  # both kinds
        r.update({f"{t.name}_closed_pct": round(100 * t.closed / n) for t in (direct, proxied, chat)})
        for name, values in (("direct_ttfb", d_first), ("proxied_ttfb", p_first), ("direct_last", d_last),
                             ("proxied_last", p_last), ("chat_ttfb", c_first), ("chat_last", c_last)):
            r.update({f"{name}_p{q}_ms": round(bench.percentile(values, q), 3) for q in (50, 95)})
        for name in ("ttfb_p50", "ttfb_p95", "last_p50", "last_p95"):
            r[f"added_{name}_ms"] = round(r[f"proxied_{name}_ms"] - r[f"direct_{name}_ms"], 3)
            r[f"added_chat_{name}_ms"] = round(r[f"chat_{name}_ms"] - r[f"direct_{name}_ms"], 3)
        # What the translation costs: the chat stream's added time over the pass-through's.
        r["chat_translation_ttfb_p50_ms"] = round(r["added_chat_ttfb_p50_ms"] - r["added_ttfb_p50_ms"], 3)
        r["chat_translation_last_p50_ms"] = round(r["added_chat_last_p50_ms"] - r["added_last_p50_ms"], 3)
        for target, proc in ((direct, upstream), (proxied, server)):
            print(f"throughput: {target.name}, {opts.clients} clients for {opts.seconds} s", file=sys.stderr)
            cpu = cpu_s(proc.pid)
            rps, r[f"{target.name}_errors"] = load(opts, target, work)
            r[f"{target.name}_rps"] = round(rps)
            used_ms = (cpu_s(proc.pid) - cpu) * 1000
            r[f"{target.name}_cpu_ms_per_request"] = round(used_ms / max(1, rps * opts.seconds), 2)
        r["rps_ratio"] = round(r["proxied_rps"] / r["direct_rps"], 3)
        r["server_rss_mb"] = round(bench.rss_mb(server.pid), 1)
    print(f"long streams: {opts.streams} of {opts.stream_seconds} s, the default server", file=sys.stderr)
    with serving(work, key, opts.stream_seconds) as (_, server, _, proxied):
        r.update(long_streams(proxied, opts.streams, server.pid, opts.stream_seconds))
    r.update(workers_throughput(opts, work, key))
    print("a cap of 2 concurrent requests, 20 at once through 2 workers", file=sys.stderr)
    r.update(capped(work, capped_key))
    with contextlib.closing(sqlite3.connect(os.path.join(work, "data", "lb.db"))) as conn:
        r["request_logs"] = dict(conn.execute("SELECT status, COUNT(*) FROM request_log GROUP BY status"))
    return r


def profile(opts, work, key):
    """Phases 1 and 2, proxied only, each against a fresh server profiled in every thread; print the top."""
    import pstats
    for phase in ("sequential", "throughput"):
        out = os.path.join(os.path.dirname(os.path.abspath(opts.out)), f"proxy_bench_{phase}.prof")
        with serving(work, key, profile_out=out, CHECKPOINT_SECONDS=0) as (_, _, _, proxied):
            if phase == "sequential":
                done = sequential([proxied], opts.sequential, opts.warmup) and opts.warmup + opts.sequential
            else:
                done = round(load(opts, proxied, work)[0] * opts.seconds)
        print(f"\n== server profile, {phase} phase, {done} proxied streams, wall time per thread: {out}")
        stats = pstats.Stats(out, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(r"/lb/", 15)  # where the app's time goes
        stats.strip_dirs().sort_stats("tottime").print_stats(IDLE, 25)  # in what, idle waits left out


ROWS = (  # label, key, unit
    ("first byte p50: direct", "direct_ttfb_p50_ms", "ms"), ("  proxied", "proxied_ttfb_p50_ms", "ms"),
    ("  added", "added_ttfb_p50_ms", "ms"), ("first byte p95: added", "added_ttfb_p95_ms", "ms"),
    ("last byte p50: direct", "direct_last_p50_ms", "ms"), ("  proxied", "proxied_last_p50_ms", "ms"),
    ("  added", "added_last_p50_ms", "ms"), ("last byte p95: added", "added_last_p95_ms", "ms"),
    ("first byte p50 added: Responses", "added_ttfb_p50_ms", "ms"),
    ("  Chat Completions", "added_chat_ttfb_p50_ms", "ms"),
    ("  chat over Responses (translation)", "chat_translation_ttfb_p50_ms", "ms"),
    ("last byte p50 added: Responses", "added_last_p50_ms", "ms"),
    ("  Chat Completions", "added_chat_last_p50_ms", "ms"),
    ("  chat over Responses (translation)", "chat_translation_last_p50_ms", "ms"),
    ("server CPU per proxied stream", "server_cpu_ms_per_stream", "ms"),
    ("connection closed after stream: direct", "direct_closed_pct", "%"), ("  proxied", "proxied_closed_pct", "%"),
    ("  chat", "chat_closed_pct", "%"),
    ("throughput: direct", "direct_rps", "req/s"), ("  proxied", "proxied_rps", "req/s"),
    ("  proxied / direct", "rps_ratio", ""), ("  errors: direct", "direct_errors", ""),
    ("  errors: proxied", "proxied_errors", ""),
    ("  upstream CPU per direct request", "direct_cpu_ms_per_request", "ms"),
    ("  server CPU per proxied request", "proxied_cpu_ms_per_request", "ms"), ("  server RSS", "server_rss_mb", "MB"),
    ("long streams: complete", "streams_complete", ""), ("  incomplete", "streams_incomplete", ""),
    ("  wall time", "streams_wall_s", "s"), ("  first byte p50", "streams_first_byte_p50_ms", "ms"),
    ("  first byte p99", "streams_first_byte_p99_ms", "ms"), ("  first byte max", "streams_first_byte_max_ms", "ms"),
    ("  slowest stream", "slowest_stream_s", "s"), ("  a dashboard request meanwhile", "dashboard_during_streams_ms",
                                                    "ms"),
    ("  server CPU", "streams_server_cpu_s", "s"), ("  server RSS peak", "streams_rss_peak_mb", "MB"),
    ("workers: 1, proxied", "workers1_rps", "req/s"), ("  2, proxied", "workers2_rps", "req/s"),
    ("  2 / 1", "workers_rps_ratio", ""), ("  errors", "workers_errors", ""),
    ("  completed without a log", "workers_logs_missing", ""),
    ("cap of 2 in flight, 20 at once: served", "cap_served", ""), ("  refused", "cap_refused", ""))


def table(r):
    rows = [("figure", "value", "target", "")]
    for label, key, unit in ROWS:
        op, goal = TARGETS.get(key, ("", None))
        miss = goal is not None and not (r[key] <= goal if op == "<=" else r[key] >= goal)
        verdict = "" if goal is None else f"MISS by {abs(r[key] - goal):,.4g}" if miss else "PASS"
        rows.append((label, f"{r[key]:,} {unit}".strip(), f"{op} {'' if goal is None else goal}", verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(v.ljust(w) if i in (0, 3) else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
                     for row in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=500, help="streams each way, one at a time")
    parser.add_argument("--warmup", type=int, default=50, help="streams each way before those, not counted")
    parser.add_argument("--seconds", type=int, default=10, help="of load each way")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of the load")
    parser.add_argument("--load", choices=("auto", "python", "wrk"), default="auto",
                        help="the load generator, the same both ways (auto: wrk if installed, else python)")
    parser.add_argument("--client-procs", type=int, default=2, help="processes the Python clients run in")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent long streams")
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="each long stream's length")
    parser.add_argument("--profile", action="store_true", help="then profile the server (bench-results/*.prof)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results", "proxy_bench.json"))
    parser.add_argument("--fake-upstream", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--profiled-server", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.fake_upstream is not None:
        return serve_fake_upstream(opts.fake_upstream)
    if opts.profiled_server:
        return serve_profiled(opts.profiled_server)
    if opts.load == "auto":
        opts.load = "wrk" if shutil.which("wrk") else "python"
    started = time.perf_counter()
    with bench.workdir("proxy-bench-") as work:
        (_, key), (_, capped_key) = prepare(os.path.join(work, "data"), keys=2, capped=True)
        r = run(opts, work, key, capped_key)
        r["run_s"] = round(time.perf_counter() - started, 1)
        print(f"load generator: {r['load_generator']}; {os.cpu_count()} CPUs; run {r['run_s']} s")
        print(table(r))
        print("request logs written: " + ", ".join(f"{k} {v}" for k, v in sorted(r["request_logs"].items())))
        bench.write_figures(opts.out, {"results": r, "targets": TARGETS, "machine": {"cpus": os.cpu_count()}})
        if opts.profile:
            profile(opts, work, key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
