"""Demo data: accounts in mixed statuses and request logs over the last 35 days."""
import random

import click

from lb import accounts, rollups
from lb.clock import DAY_MS, now_ms
from lb.ingest import MAX_BATCH, LogRow, store_batch
from lb.tables import ACCOUNT_STATUSES, SEED_CATALOG, Account, RequestLog, db

DEMO_EMAILS = "demo%@example.com"  # every demo account's address has this shape (a LIKE pattern)

STATUS_WEIGHTS = (("ok", 95.5), ("error", 1.5), ("rate_limit", 0.8), ("quota", 0.7), ("cancelled", 1.5))


def demo_rows(count, account_ids, now, rng):
    """``count`` request logs spread over the 35 days before ``now``."""
    models = [m[0] for m in SEED_CATALOG]
    statuses, weights = zip(*STATUS_WEIGHTS)
    for _ in range(count):
        status = rng.choices(statuses, weights)[0]
        input_tokens = int(rng.lognormvariate(8, 1.2))
        yield LogRow(
            request_id=None,
            requested_at=now - rng.randrange(35 * DAY_MS),
            account_id=rng.choice(account_ids) if account_ids else None,
            model=rng.choices(models, weights=(30, 5, 15, 15, 10, 10, 10, 5))[0],
            input_tokens=input_tokens,
            cached_input_tokens=int(input_tokens * rng.choice((0, 0, 0.3, 0.6, 0.9))),
            output_tokens=int(rng.lognormvariate(6, 1.1)),
            status=status,
            error_code=None if status in ("ok", "cancelled") else f"upstream_{status}",
            latency_ms=int(rng.lognormvariate(7, 0.6)),
        )


def load_demo(n_accounts, n_logs, now, seed=None):
    """Create accounts and store logs through the same code as the API; return (accounts, logs)."""
    rng = random.Random(seed)
    tag = rng.randrange(16**6)
    ids = []
    for i in range(n_accounts):
        data = {"email": f"demo{i + 1}-{tag:06x}@example.com", "planType": rng.choice(("plus", "pro", "team")),
                "status": ACCOUNT_STATUSES[i % len(ACCOUNT_STATUSES)] if i % 2 else "active"}
        ids.append(accounts.create(data, now).id)
    rows = list(demo_rows(n_logs, ids, now, rng))
    stored = 0
    for start in range(0, len(rows), MAX_BATCH):
        accepted, _ = store_batch(rows[start:start + MAX_BATCH])
        stored += accepted
    return len(ids), stored


def demo_account_ids():
    return [a.id for a in Account.select(Account.id).where(Account.email ** DEMO_EMAILS)]


def remove_demo():
    """Remove the demo accounts and their request logs; the rollups are rebuilt. Returns (accounts, logs)."""
    ids = demo_account_ids()
    with db.atomic():
        logs = RequestLog.delete().where(RequestLog.account_id.in_(ids)).execute() if ids else 0
        Account.delete().where(Account.id.in_(ids)).execute()
        rollups.rebuild()
    return len(ids), logs


def init_app(app):
    count = click.IntRange(min=0)

    @app.cli.command("demo-data")
    @click.option("--accounts", "n_accounts", type=count, default=8, show_default=True, help="accounts to create")
    @click.option("--logs", "n_logs", type=count, default=5000, show_default=True, help="request logs to store")
    @click.option("--seed", type=int, default=None, help="random seed, for repeatable data")
    @click.option("--reset", is_flag=True, help="first remove the demo data of an earlier run")
    def demo_data_command(n_accounts, n_logs, seed, reset):
        """Load demo accounts and request logs for trying the dashboard out."""
        with db.connection_context():
            if reset:
                gone, logs = remove_demo()
                click.echo(f"removed {gone} demo accounts and {logs} of their request logs")
            elif demo_account_ids():
                raise click.ClickException("demo data is already loaded; --reset replaces it")
            made, stored = load_demo(n_accounts, n_logs, now_ms(), seed)
        click.echo(f"created {made} accounts and {stored} request logs")
