"""Demo data: accounts in mixed statuses and request logs over the last 35 days."""
import random

import click

from lb import accounts, ingest
from lb.api import iso, now_ms
from lb.store import ACCOUNT_STATUSES, SEED_CATALOG, db

DAY_MS = 24 * 3600 * 1000
STATUS_WEIGHTS = (("ok", 95.5), ("error", 1.5), ("rate_limit", 0.8), ("quota", 0.7), ("cancelled", 1.5))


def demo_items(count, account_ids, now, rng):
    """``count`` request-log items in the ingest API's shape, spread over 35 days."""
    models = [m[0] for m in SEED_CATALOG]
    statuses, weights = zip(*STATUS_WEIGHTS)
    for _ in range(count):
        status = rng.choices(statuses, weights)[0]
        input_tokens = int(rng.lognormvariate(8, 1.2))
        yield {
            "requestedAt": iso(now - rng.randrange(35 * DAY_MS)),
            "accountId": rng.choice(account_ids) if account_ids else None,
            "model": rng.choices(models, weights=(30, 5, 15, 15, 10, 10, 10, 5))[0],
            "inputTokens": input_tokens,
            "cachedInputTokens": int(input_tokens * rng.choice((0, 0, 0.3, 0.6, 0.9))),
            "outputTokens": int(rng.lognormvariate(6, 1.1)),
            "status": status,
            "errorCode": None if status in ("ok", "cancelled") else f"upstream_{status}",
            "latencyMs": int(rng.lognormvariate(7, 0.6)),
        }


def load_demo(n_accounts, n_logs, seed=None):
    """Create accounts and ingest logs through the same code as the API; return (accounts, logs)."""
    rng = random.Random(seed)
    tag = rng.randrange(16**6)
    ids = []
    for i in range(n_accounts):
        data = {"email": f"demo{i + 1}-{tag:06x}@example.com", "planType": rng.choice(("plus", "pro", "team")),
                "status": ACCOUNT_STATUSES[i % len(ACCOUNT_STATUSES)] if i % 2 else "active"}
        ids.append(accounts.create(data).id)
    now = now_ms()
    items = list(demo_items(n_logs, ids, now, rng))
    stored = 0
    for start in range(0, len(items), ingest.MAX_BATCH):
        accepted, _ = ingest.ingest({"requests": items[start:start + ingest.MAX_BATCH]}, now)
        stored += accepted
    return len(ids), stored


def init_app(app):
    @app.cli.command("demo-data")
    @click.option("--accounts", "n_accounts", default=8, show_default=True, help="accounts to create")
    @click.option("--logs", "n_logs", default=5000, show_default=True, help="request logs to ingest")
    @click.option("--seed", type=int, default=None, help="random seed, for repeatable data")
    def demo_data_command(n_accounts, n_logs, seed):
        """Load demo accounts and request logs for trying the dashboard out."""
        with db.connection_context():
            made, stored = load_demo(n_accounts, n_logs, seed)
        click.echo(f"created {made} accounts and {stored} request logs")
