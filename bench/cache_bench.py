"""Benchmark: how much of the upstream's prompt cache the proxy's pinning keeps (contract section 17).

The real server (``app.py --waitress``, four accounts, an API key, SQLite) in front of the fake upstream in
its cache-aware mode (tests/fixtureapps/upstream.py CacheModel: each account remembers the prompt prefixes it
has served, and an answer's ``cached_tokens`` is the longest of them). Conversations go through POST
/v1/responses (not streamed), each turn re-sending the conversation so far plus a new user message, interleaved:
turn k of every conversation before turn k+1, ``--clients`` requests at a time. Four runs, each on a fresh
database and a fresh upstream cache: {0 %, 5 %} of upstream requests answered a momentary 429 (Retry-After: 1)
x {with, without} a prompt_cache_key per conversation. All conversations share the instructions and differ from
their first input item on, so a key derived from the instructions and the first item tells them apart.

Each run's cache-hit share (cached tokens / input tokens, over the turns served, from the answers' usage) is
printed beside the share a perfect pin would give: the same turns, in the same order, replayed through the same
token model with every turn of a conversation on the account that served its first one; and their ratio. A
refused turn (429 or 503 to the client) is retried once after a second, as a client would; if refused again it
counts as a failed turn and the conversation goes on without it. Figures are printed beside their targets and
written as JSON, never asserted.

    python bench/cache_bench.py                        # 50 conversations x 20 turns, four runs
    python bench/cache_bench.py --conversations 6 --turns 3 --rates 0,20
"""
import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import random
import shutil
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the server runner, the free port)
import proxy_bench  # noqa: E402  (accounts and keys stored in-process)
from fixtureapps.upstream import CacheModel, FakeUpstream  # noqa: E402  (bench puts tests/ on the path)

ROOT = bench.ROOT
PATH = "/v1/responses"
MODEL = "gpt-5.3-codex"
TARGET = 0.90  # of the perfect share, each run: printed beside the figures, never asserted
INSTRUCTIONS = ("You are a coding agent working in the user's repository. Read before you write, keep changes "
                "small, run the tests, and explain what you changed and why. ") * 12  # ~1,900 characters
WORDS = ("the function returns a list of accounts sorted by usage and the test expects the cache to stay warm "
         "when the proxy moves a request to another account after a momentary limit").split()


def text(rng, low, high):
    """Seeded filler of ``low``..``high`` characters."""
    out, size = [], rng.randrange(low, high)
    while sum(map(len, out)) + len(out) < size:
        out.append(rng.choice(WORDS))
    return " ".join(out)


def message(role, content):
    part = "input_text" if role == "user" else "output_text"
    return {"type": "message", "role": role, "content": [{"type": part, "text": content}]}


class Conversation:
    """One client's conversation: its history, and the user messages of its turns (the same in every run)."""

    def __init__(self, i, turns, seed):
        rng = random.Random(f"{seed}-{i}")
        self.i, self.key, self.history = i, f"bench-conversation-{seed}-{i}", []
        self.messages = [f"Conversation {i}. " + text(rng, 600, 2400)] + [text(rng, 100, 1200)
                                                                         for _ in range(turns - 1)]


class Run:
    """One run's turns as they were served: (order, conversation, turn, account, input, cached, body)."""

    def __init__(self):
        self.served, self.lock = [], threading.Lock()
        self.refused = self.failed = 0

    def add(self, *row):
        with self.lock:
            self.served.append((len(self.served), *row))


def turn(port, key, conversation, k, with_key, upstream, run):
    """Send turn ``k`` of ``conversation`` (retried once, a second later, when refused); record it if served."""
    items = conversation.history + [message("user", conversation.messages[k])]
    body = {"model": MODEL, "instructions": INSTRUCTIONS, "input": items, "stream": False, "store": False}
    if with_key:
        body["prompt_cache_key"] = conversation.key
    data = json.dumps(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for attempt in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", PATH, data, headers)
            response = conn.getresponse()
            answer = response.read()
        finally:
            conn.close()
        if response.status == 200:
            break
        if response.status not in (429, 503):
            raise RuntimeError(f"turn {k} of conversation {conversation.i}: {response.status} {answer[:300]!r}")
        with run.lock:
            run.refused += 1
        if attempt == 0:
            time.sleep(1.0)
    else:
        with run.lock:
            run.failed += 1
        return  # the client gives up on this message; its next turn goes on from the history it has
    answer = json.loads(answer)
    usage = answer["usage"]
    n = int(answer["id"].removeprefix("resp_"))  # the fake upstream's request number
    account = upstream.requests[n - 1].account
    run.add(conversation.i, k, account, usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"],
            {"instructions": INSTRUCTIONS, "input": items})
    text_out = "".join(part["text"] for item in answer["output"] if item.get("type") == "message"
                       for part in item["content"] if part.get("type") == "output_text")
    conversation.history = items + [message("assistant", text_out)]


def perfect_share(served):
    """The cache-hit share of the same turns, in the same order, each on its conversation's first account."""
    first, model, inputs, cached = {}, CacheModel(), 0, 0
    for _, conversation, _, account, _, _, body in served:
        first.setdefault(conversation, account)
        i, c = model.usage(first[conversation], body)
        inputs, cached = inputs + i, cached + c
    return cached / inputs if inputs else 0.0


def one_run(opts, work, template, key, rate, with_key):
    """A fresh database (a copy of ``template``) and upstream cache; all the turns; the run's figures."""
    data_dir = os.path.join(work, f"data-{rate}-{with_key}")
    shutil.copytree(template, data_dir)
    upstream = FakeUpstream().start()
    upstream.cache = CacheModel(limit_rate=rate / 100, seed=opts.seed)
    server = None
    try:
        port = bench.free_port()
        server = bench.start_server(data_dir, port, os.path.join(work, "server.log"), UPSTREAM_URL=upstream.url)
        conversations = [Conversation(i, opts.turns, opts.seed) for i in range(opts.conversations)]
        run, started = Run(), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(opts.clients) as pool:
            for k in range(opts.turns):  # every conversation's turn k before any turn k + 1
                for done in [pool.submit(turn, port, key, c, k, with_key, upstream, run) for c in conversations]:
                    done.result()
        seconds = time.perf_counter() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        upstream.stop()
    with contextlib.closing(sqlite3.connect(os.path.join(data_dir, "lb.db"))) as db:
        logged = db.execute("SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cached_input_tokens), 0) "
                            "FROM request_log WHERE status = 'ok'").fetchone()
    inputs, cached = sum(r[4] for r in run.served), sum(r[5] for r in run.served)
    first = {}
    for _, conversation, _, account, *_ in run.served:
        first.setdefault(conversation, account)
    moved = sum(1 for _, conversation, _, account, *_ in run.served if account != first[conversation])
    share, perfect = (cached / inputs if inputs else 0.0), perfect_share(run.served)
    return {"limit_rate_pct": rate, "prompt_cache_key": with_key, "turns": opts.conversations * opts.turns,
            "served": len(run.served), "failed_turns": run.failed, "client_refusals": run.refused,
            "upstream_429s": upstream.cache.limited, "moved_turns": moved,
            "input_tokens": inputs, "cached_tokens": cached, "logs_agree": list(logged) == [inputs, cached],
            "share_pct": round(100 * share, 2), "perfect_pct": round(100 * perfect, 2),
            "ratio": round(share / perfect, 3) if perfect else 0.0, "seconds": round(seconds, 1),
            "turns_per_s": round(opts.conversations * opts.turns / seconds, 1)}


def table(results):
    head = ("429s", "cache key", "served", "failed", "refused", "upstream 429", "moved", "cache hit", "perfect",
            "ratio", "target", "")
    rows = [head]
    for r in results:
        miss = r["ratio"] < TARGET
        rows.append((f"{r['limit_rate_pct']:g} %", "sent" if r["prompt_cache_key"] else "none",
                     f"{r['served']}/{r['turns']}", str(r["failed_turns"]), str(r["client_refusals"]),
                     str(r["upstream_429s"]), str(r["moved_turns"]), f"{r['share_pct']:.2f} %",
                     f"{r['perfect_pct']:.2f} %", f"{r['ratio']:.3f}", f">= {TARGET}",
                     f"MISS by {TARGET - r['ratio']:.3f}" if miss else "PASS"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) if i in (0, 1, len(head) - 1) else v.rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths))) for row in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20, help="of each conversation")
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--rates", default="0,5", help="percents of upstream requests answered a momentary 429")
    parser.add_argument("--clients", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench-results", "cache_bench.json"))
    opts = parser.parse_args(argv)
    started = time.perf_counter()
    with bench.workdir("cache-bench-") as work:
        template = os.path.join(work, "template")
        [(_, key)] = proxy_bench.prepare(template, workspaces=[f"ws-cache-{i}" for i in range(opts.accounts)])
        results = []
        for rate in (float(r) for r in opts.rates.split(",")):
            for with_key in (True, False):
                print(f"run: {rate:g} % momentary 429s, prompt_cache_key {'sent' if with_key else 'none'}: "
                      f"{opts.conversations} conversations x {opts.turns} turns", file=sys.stderr)
                results.append(one_run(opts, work, template, key, rate, with_key))
        print(f"{opts.conversations} conversations x {opts.turns} turns, interleaved, {opts.accounts} accounts, "
              f"{opts.clients} requests in flight; {os.cpu_count()} CPUs; run {time.perf_counter() - started:.1f} s")
        print(table(results))
        print("turns/s: " + ", ".join(f"{r['turns_per_s']}" for r in results) +
              "; request logs agree with the answers: " + ("yes" if all(r["logs_agree"] for r in results) else "NO"))
        bench.write_figures(opts.out, {"results": results, "target_ratio": TARGET,
                                       "machine": {"cpus": os.cpu_count()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
