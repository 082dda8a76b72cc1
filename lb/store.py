"""Every hand-written statement, in one place. No HTTP inside.

Reads hand back named tuples (or model instances), never positional rows.
The hot paths (the proxy's few statements per request, the overview, ingest)
are written by hand: building them with the query builder costs more than
running them.
"""
import functools
from collections import namedtuple
from decimal import Decimal
from typing import NamedTuple, Optional

from lb.clock import HOUR_MS
from lb.tables import ACCOUNT_STATUSES, FAILED_STATUSES, DashboardSession, DashboardSettings, db


def lock_settings():
    """The settings row, re-read inside a write transaction and held until it ends.

    SQLite's IMMEDIATE transaction already holds the one write lock; PostgreSQL
    locks the row, so check-then-write steps on it (the first password, enabling
    TOTP, counting an attempt) run one at a time across instances.
    """
    query = DashboardSettings.select().where(DashboardSettings.id == 1)
    return (query.for_update() if db.obj.for_update else query).get()


def price_table():
    """Map each catalog model id to its prices (input, cached input, output)."""
    rows = _execute("SELECT id, input_price, cached_input_price, output_price FROM catalog_model")
    # str() first: SQLite hands a DECIMAL column back as a float, and Decimal(0.175) is not 0.175.
    return {mid: tuple(Decimal(str(price)) for price in prices) for mid, *prices in rows}


# -- hand-written statements: the hot paths, where building a query costs more than running it.
# Placeholders are written "?" and adapted to the bound database; status lists come from the constants.

@functools.lru_cache(maxsize=64)
def _with_placeholder(sql, param):
    return sql.replace("?", param)


def _sql(sql):
    """``sql`` with its ``?`` placeholders in the bound database's style."""
    return _with_placeholder(sql, db.obj.param)


def _execute(sql, params=()):
    return db.execute_sql(_sql(sql), params)


def settings():
    """The dashboard's single settings row."""
    return list(DashboardSettings.raw("SELECT * FROM dashboard_settings WHERE id = 1"))[0]


def pool_exhausted_at():
    """When the pool last ran dry (lb.alerts), or None while it serves."""
    return _execute("SELECT pool_exhausted_at FROM dashboard_settings WHERE id = 1").fetchone()[0]


def mark_pool_exhausted(at):
    """Note that the pool ran dry at ``at``, or (None) that it serves again, unless it is so already;
    whether this changed it. One conditional statement: of two instances, one does."""
    if at is None:
        return _execute("UPDATE dashboard_settings SET pool_exhausted_at = NULL "
                        "WHERE id = 1 AND pool_exhausted_at IS NOT NULL").rowcount > 0
    return _execute("UPDATE dashboard_settings SET pool_exhausted_at = ? WHERE id = 1 AND pool_exhausted_at IS NULL",
                    (at,)).rowcount > 0


def account_status(account_id):
    """An account's status, or None if there is no such account."""
    row = _execute("SELECT status FROM account WHERE id = ?", (account_id,)).fetchone()
    return None if row is None else row[0]


def live_session(token_hash, now):
    """The session row with ``token_hash`` that has not expired at ``now``, or None."""
    sql = _sql("SELECT * FROM dashboard_session WHERE token_hash = ? AND expires_at > ?")
    rows = list(DashboardSession.raw(sql, token_hash, now))
    return rows[0] if rows else None


# -- the proxy's hot path: a handful of statements per request, none built by the query builder, and rows
# read as named tuples of the columns (booleans as stored: 0/1 on SQLite), not model instances.

@functools.lru_cache(maxsize=16)
def _row_type(columns):
    return namedtuple("Row", columns)


def _rows(sql, params=()):
    cursor = _execute(sql, params)
    row = _row_type(tuple(column[0] for column in cursor.description))
    return [row._make(values) for values in cursor.fetchall()]


def sticky_sessions():
    """The stickySessions setting, read alone."""
    return bool(_execute("SELECT sticky_sessions FROM dashboard_settings WHERE id = 1").fetchone()[0])


def api_key_by_hash(key_hash):
    """The api_key row with this hash (a named tuple), or None."""
    rows = _rows("SELECT * FROM api_key WHERE key_hash = ?", (key_hash,))
    return rows[0] if rows else None


def all_accounts():
    """Every account row, as named tuples."""
    return _rows("SELECT * FROM account")


@functools.lru_cache(maxsize=64)
def _update_account_sql(columns, keep_pause, expected):
    sets = ", ".join(f"{name} = ?" for name in columns)
    conditions = "".join(f" AND {name} = ?" for name in expected)
    return _sql(f"UPDATE account SET {sets} WHERE id = ?{conditions}"
                + (" AND status <> 'paused'" if keep_pause else ""))


def update_account(account_id, changes, keep_pause=False, expect=None):
    """Write ``changes`` (column: value) to one account, only while the columns of ``expect`` hold its values,
    and with ``keep_pause`` only if it is not paused; whether it was written. (lb.accounts.apply calls this.)"""
    columns, expected = tuple(sorted(changes)), tuple(sorted(expect or ()))
    params = [changes[c] for c in columns] + [account_id] + [expect[c] for c in expected]
    return db.execute_sql(_update_account_sql(columns, keep_pause, expected), params).rowcount > 0


class Pin(NamedTuple):
    account_id: str
    seen_at: int  # epoch ms


def sticky_pin(key):
    """The Pin kept under ``key``, or None."""
    row = _execute("SELECT account_id, seen_at FROM sticky_pin WHERE key = ?", (key,)).fetchone()
    return Pin._make(row) if row is not None else None


def save_pin(key, account_id, now):
    _execute("INSERT INTO sticky_pin (key, account_id, seen_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
             "SET account_id = excluded.account_id, seen_at = excluded.seen_at", (key, account_id, now))


def prune_pins(seen_before):
    """Delete the pins last seen at or before ``seen_before`` (epoch ms)."""
    _execute("DELETE FROM sticky_pin WHERE seen_at <= ?", (seen_before,))


def key_used(key_id, now):
    _execute("UPDATE api_key SET last_used_at = ? WHERE id = ?", (now, key_id))


# -- background jobs (lb.jobs) ---------------------------------------------------------------------

def take_lease(name, holder, now, until):
    """Take or renew the lease ``name`` for ``holder`` until ``until``, unless another holder's runs beyond
    ``now``; whether ``holder`` holds it. One statement decides, so of two takers one wins."""
    _execute("INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
             (name, holder, until))
    return _execute("UPDATE lease SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at <= ?)",
                    (holder, until, name, holder, now)).rowcount > 0


def release_lease(name, holder):
    """Let the lease ``name`` go at once, if ``holder`` still holds it."""
    _execute("UPDATE lease SET expires_at = 0 WHERE name = ? AND holder = ?", (name, holder))


# -- retention (lb.retention) -------------------------------------------------------------------------

def logs_pruned_before():
    """Epoch ms (a whole hour) before which the raw request logs are pruned, or None."""
    return _execute("SELECT logs_pruned_before FROM dashboard_settings WHERE id = 1").fetchone()[0]


def mark_pruned_before(cut):
    """Raise logs_pruned_before to ``cut`` (never lower it)."""
    _execute("UPDATE dashboard_settings SET logs_pruned_before = ? WHERE id = 1 "
             "AND (logs_pruned_before IS NULL OR logs_pruned_before < ?)", (cut, cut))


def delete_logs_before(cut, limit):
    """Delete at most ``limit`` of the oldest request logs stamped before ``cut``, in index order; how many."""
    return _execute("DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE requested_at < ? "
                    "ORDER BY requested_at, id LIMIT ?)", (cut, limit)).rowcount


def record_prune(at, removed):
    _execute("UPDATE dashboard_settings SET last_prune_at = ?, last_prune_removed = ? WHERE id = 1", (at, removed))


POLLABLE = ("WHERE access_token IS NOT NULL AND refresh_token IS NOT NULL "
            "AND status IN ('active', 'rate_limited', 'quota_exceeded')")


def pollable_accounts():
    """How many accounts the usage poll looks after: with credentials, active or waiting."""
    return _execute(f"SELECT COUNT(*) FROM account {POLLABLE}").fetchone()[0]


def stalest_account(checked_before, skip=()):
    """The pollable account whose usage was checked longest ago, at or before ``checked_before`` (never
    checked first), leaving out the ids of ``skip``; or None."""
    marks = "".join(" AND id <> ?" for _ in skip)
    rows = _rows(f"SELECT * FROM account {POLLABLE} AND (usage_checked_at IS NULL OR usage_checked_at <= ?){marks} "
                 "ORDER BY usage_checked_at IS NOT NULL, usage_checked_at, id LIMIT 1", (checked_before, *skip))
    return rows[0] if rows else None


# -- per-key caps (lb.caps): what a key used in the last minute, and its slots in flight ------------------

def lock_api_key(key_id):
    """Inside a write transaction, hold the key's row until it ends: on PostgreSQL a row lock, so that one
    key's admissions run one at a time across instances (SQLite's IMMEDIATE transaction already holds the one
    write lock)."""
    if db.obj.for_update:
        _execute("SELECT id FROM api_key WHERE id = ? FOR UPDATE", (key_id,))


class CapsUse(NamedTuple):
    """A key's use: requests and tokens since a moment, the slots still leased, and the first request and
    first tokens counted (epoch ms, None without any)."""

    requests: int
    tokens: int
    slots: int
    first_request_at: Optional[int]
    first_tokens_at: Optional[int]


CAPS_USE_SQL = """
SELECT
  (SELECT COALESCE(SUM(requests), 0) FROM key_use WHERE api_key_id = ? AND at > ?),
  (SELECT COALESCE(SUM(tokens), 0) FROM key_use WHERE api_key_id = ? AND at > ?),
  (SELECT COUNT(*) FROM key_slot WHERE api_key_id = ? AND expires_at > ?),
  (SELECT MIN(at) FROM key_use WHERE api_key_id = ? AND at > ? AND requests > 0),
  (SELECT MIN(at) FROM key_use WHERE api_key_id = ? AND at > ? AND tokens > 0)
"""


def caps_use(key_id, since, now):
    """The key's CapsUse: what it used after ``since``, and its slots leased beyond ``now``."""
    row = _execute(CAPS_USE_SQL, (key_id, since, key_id, since, key_id, now, key_id, since, key_id, since)).fetchone()
    return CapsUse(int(row[0]), int(row[1]), int(row[2]), row[3], row[4])


def forget_key_use(key_id, since, now):
    """Delete the key's use at or before ``since`` and its slots whose lease ran out by ``now``."""
    _execute("DELETE FROM key_use WHERE api_key_id = ? AND at <= ?", (key_id, since))
    _execute("DELETE FROM key_slot WHERE api_key_id = ? AND expires_at <= ?", (key_id, now))


def add_key_use(key_id, at, requests, tokens):
    _execute("INSERT INTO key_use (api_key_id, at, requests, tokens) VALUES (?, ?, ?, ?)",
             (key_id, at, requests, tokens))


def take_slot(key_id, expires_at):
    """A new slot of the key, leased until ``expires_at``; its id."""
    return _execute("INSERT INTO key_slot (api_key_id, expires_at) VALUES (?, ?) RETURNING id",
                    (key_id, expires_at)).fetchone()[0]


def free_slot(slot_id):
    _execute("DELETE FROM key_slot WHERE id = ?", (slot_id,))


def renew_slots(slot_ids, expires_at):
    """Extend the leases of ``slot_ids`` (a process's slots still in use) to ``expires_at``."""
    marks = ", ".join("?" * len(slot_ids))
    _execute(f"UPDATE key_slot SET expires_at = ? WHERE id IN ({marks})", (expires_at, *slot_ids))


@functools.lru_cache(maxsize=16)
def _upsert_sums_sql(table, keys, sums, count):
    columns = keys + sums
    values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * count)
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in sums)
    return _sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {added}")


def upsert_sums(table, keys, sums, rows):
    """Insert rows of (*keys, *sums) into a rollup table, or add their sums to the rows already there."""
    params = [value for row in rows for value in row]
    db.execute_sql(_upsert_sums_sql(table, tuple(keys), tuple(sums), len(rows)), params)


class CatalogEntry(NamedTuple):
    id: str
    name: str
    added_at: int  # epoch ms; null only in a catalog older than the column


def enabled_models():
    """The CatalogEntry of each enabled catalog model, in catalog order."""
    cursor = _execute("SELECT id, name, added_at FROM catalog_model WHERE enabled = ? ORDER BY position, id", (True,))
    return [CatalogEntry._make(row) for row in cursor]


# The whole overview in one statement: account counts by status; the billing
# period from the hourly summary (its edges are whole hours); the last 24 hours
# from the summary's whole hours plus the raw logs of the partial hour at its
# start. Open-ended, so logs stamped a little ahead of the clock count too.
# Parameters: see overview_params.
OVERVIEW_SQL = f"""
SELECT
  {", ".join(f"(SELECT COUNT(*) FROM account WHERE status = '{s}')" for s in ACCOUNT_STATUSES)},
  p.input_tokens, p.output_tokens, p.cached, p.cost,
  w.requests + r.requests, w.failures + r.failures, w.cancelled + r.cancelled,
  w.input_tokens + r.input_tokens, w.cached + r.cached
FROM
  (SELECT COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens,
          COALESCE(SUM(cached_input_tokens), 0) AS cached, COALESCE(SUM(cost), 0) AS cost
     FROM hourly_usage WHERE hour >= ? AND hour < ?) AS p,
  (SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(failures), 0) AS failures,
          COALESCE(SUM(cancelled), 0) AS cancelled, COALESCE(SUM(input_tokens), 0) AS input_tokens,
          COALESCE(SUM(cached_input_tokens), 0) AS cached
     FROM hourly_usage WHERE hour >= ?) AS w,
  (SELECT COUNT(*) AS requests,
          COUNT(*) FILTER (WHERE status IN ({", ".join(f"'{s}'" for s in FAILED_STATUSES)})) AS failures,
          COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled,
          COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(cached_input_tokens), 0) AS cached
     FROM request_log WHERE requested_at >= ? AND requested_at < ?) AS r
"""


class Overview(NamedTuple):
    """OVERVIEW_SQL's answer: accounts by status, the billing period's sums and the window's counts and input."""

    account_counts: dict  # status -> count, every status of ACCOUNT_STATUSES
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost: int  # micro-USD
    requests: int
    failures: int
    cancelled: int
    window_input_tokens: int  # the window's input tokens, cached ones included
    window_cached_input_tokens: int


def overview_params(period_start, period_end, window_start):
    """OVERVIEW_SQL's parameters for the billing period [period_start, period_end) (whole hours) and the window
    from ``window_start`` on, all in epoch ms: the period's hours, the window's first whole hour, its first
    millisecond, and that hour's first millisecond."""
    first_hour = -(-window_start // HOUR_MS)
    return period_start // HOUR_MS, period_end // HOUR_MS, first_hour, window_start, first_hour * HOUR_MS


def overview(period_start, period_end, window_start):
    """The Overview of that period and window (see overview_params), in one statement."""
    values = [int(value) for value in _execute(OVERVIEW_SQL, overview_params(period_start, period_end,
                                                                              window_start)).fetchone()]
    counts = dict(zip(ACCOUNT_STATUSES, values))
    return Overview(counts, *values[len(ACCOUNT_STATUSES):])


@functools.lru_cache(maxsize=8)
def _insert_logs_sql(columns, count):
    # Hand-written: peewee's multi-row INSERT spends more time building SQL than SQLite storing it.
    names = ", ".join(columns)
    values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * count)
    return (f"INSERT INTO request_log ({names}) VALUES {values} "
            f"ON CONFLICT (request_id) DO NOTHING RETURNING {names}")


def insert_logs(columns, rows):
    """Insert ``rows`` (tuples of the named ``columns``) skipping known request ids; return those stored."""
    params = [value for row in rows for value in row]
    return _execute(_insert_logs_sql(tuple(columns), len(rows)), params).fetchall()
