"""What the retention tests run in processes of their own (multiprocessing, spawn): a pruner and an ingest
writer, each with its own app on the test's database, as two instances would be."""
import time


def own_app(where, now_ms):
    """An app on ``where``: (the data dir, the PostgreSQL URL or None). The URL is passed, not read from the
    environment: the tests' fixtures take every LB_ variable out of it."""
    from lb import create_app
    data_dir, database_url = where
    settings = {"DATA_DIR": data_dir, "CLOCK": lambda: now_ms / 1000, "TESTING": True, "CHECKPOINT_SECONDS": 0,
                "USAGE_POLL_SECONDS": 0, "PRUNE_INTERVAL_SECONDS": 0, "BOOTSTRAP_TOKEN": "unused",
                "OAUTH_ISSUER": "http://127.0.0.1:9"}
    if database_url:
        settings["DATABASE_URL"] = database_url
    return create_app(settings)


def pruner(where, now_ms, days, name, start, results):
    """Prune until a prune of this process finds nothing left; put (name, runs, refusals) on ``results``:
    each run as (removed, [(batch start, batch end) in wall-clock seconds])."""
    from lb import retention
    from lb.tables import db
    app = own_app(where, now_ms)
    runs, refusals = [], 0
    start.wait()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            batches = []

            def seen(removed, took, batches=batches):
                end = time.time()
                batches.append((end - took, end))

            with app.app_context(), db.connection_context():
                # Small first batches and a pause between them: the prune lasts long enough to be contended.
                result = retention.prune(now_ms, days, holder=name, batch=50,
                                         pause=lambda _: time.sleep(0.02), on_batch=seen)
            if result is None:
                refusals += 1
                time.sleep(0.005)
                continue
            runs.append((result.removed, batches))
            if result.removed == 0:
                break
    finally:
        results.put((name, runs, refusals))


def ingester(where, now_ms, batches, size, start, results):
    """Store ``batches`` batches of ``size`` new logs (stamped just before ``now_ms``) through store_batch; put
    the number stored on ``results``."""
    from lb import ingest
    from lb.tables import db
    app = own_app(where, now_ms)
    stored = 0
    start.wait()
    try:
        for b in range(batches):
            rows = [ingest.LogRow(f"new-{b}-{i}", now_ms - 1 - i, None, "gpt-4o-mini", 100, 10)
                    for i in range(size)]
            with app.app_context(), db.connection_context():
                stored += ingest.store_batch(rows, check_references=False)[0]
    finally:
        results.put(("ingester", stored))
