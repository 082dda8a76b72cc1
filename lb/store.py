"""The data layer's face: the models (lb.models), the catalog, the schema, and every hand-written statement."""
import functools
import logging
import time
from collections import namedtuple
from decimal import Decimal

from peewee import DatabaseError
from playhouse.migrate import SchemaMigrator, migrate

# Re-exported: the rest of the service imports its tables and constants from here.
from lb.models import (ACCOUNT_STATUSES, FAILED_STATUSES, LOG_STATUSES, MODELS, SEED_CATALOG,  # noqa: F401
                       Account, ApiKey, AuthFailure, CatalogModel, DashboardSession, DashboardSettings,
                       HourlyGroupUsage, HourlyUsage, RequestLog, StickyPin, TotpSetup, Unavailable, db)

log = logging.getLogger(__name__)


def create_schema(now=None):
    """Create missing tables, bring older ones up to date, seed the catalog once; safe to repeat.

    ``now`` (epoch ms) stamps the models that enter the catalog. Returns True
    when the rollups must be rebuilt from the raw logs (their table changed shape).
    """
    now = int(time.time() * 1000) if now is None else now
    with db.atomic():
        rebuild = _upgrade()
        db.create_tables(MODELS, safe=True)
        if not CatalogModel.select().exists():
            CatalogModel.insert_many([
                {"id": mid, "name": name, "position": i, "input_price": Decimal(p_in),
                 "cached_input_price": Decimal(p_cached), "output_price": Decimal(p_out), "added_at": now}
                for i, (mid, name, p_in, p_cached, p_out) in enumerate(SEED_CATALOG)]).execute()
        # A catalog made before models were stamped: they count as added now.
        CatalogModel.update(added_at=now).where(CatalogModel.added_at.is_null()).execute()
        DashboardSettings.insert(id=1).on_conflict_ignore().execute()
    return rebuild


def _upgrade():
    """What create_tables cannot do to a database made by an older version: new columns, changed keys."""
    tables = set(db.get_tables())
    migrator = SchemaMigrator.from_database(db.obj)
    for model in MODELS:
        table = model._meta.table_name
        if table not in tables:
            continue
        have = {column.name for column in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in have:
                nullable = field.clone()
                nullable.null = True  # filled below: existing rows need a value before NOT NULL could hold
                migrate(migrator.add_column(table, field.column_name, nullable))
                if field.default is not None:
                    model.update({field: field.default}).where(field.is_null()).execute()
    if db.obj.for_update:  # PostgreSQL: older versions made the sealed columns too narrow
        for table, column in (("dashboard_settings", "totp_secret"), ("totp_setup", "secret")):
            if table in tables and any(c.name == column and c.data_type != "text" for c in db.get_columns(table)):
                db.execute_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT")
    # An account's identity became (email, workspace): the unique index on the email alone goes.
    if "account" in tables and any(i.name == "account_email_key" for i in db.get_indexes("account")):
        db.execute_sql("DROP INDEX account_email_key")
    # The per-hour breakdown gained the API key: its old table goes, rebuilt from the raw logs.
    if "hourly_key_usage" in tables:
        db.execute_sql("DROP TABLE hourly_key_usage")
        return True
    return False


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


def ping():
    """Read a real table (a pooled connection answers SELECT 1 without its file); Unavailable if down."""
    try:
        _execute("SELECT id FROM dashboard_settings WHERE id = 1").fetchone()
    except DatabaseError:
        log.exception("health check failed")
        raise Unavailable from None


def read_only():
    """PostgreSQL: whether this session's transactions are read-only (a standby, or set so)."""
    return _execute("SELECT current_setting('transaction_read_only')").fetchone()[0] == "on"


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
def _update_account_sql(columns, keep_pause):
    sets = ", ".join(f"{name} = ?" for name in columns)
    return _sql(f"UPDATE account SET {sets} WHERE id = ?" + (" AND status <> 'paused'" if keep_pause else ""))


def update_account(account_id, changes, keep_pause=False):
    """Write ``changes`` (column: value) to one account; with ``keep_pause``, not if it is paused."""
    columns = tuple(sorted(changes))
    db.execute_sql(_update_account_sql(columns, keep_pause), [changes[c] for c in columns] + [account_id])


def sticky_pin(key):
    """(account id, seen at) of a pin, or None."""
    return _execute("SELECT account_id, seen_at FROM sticky_pin WHERE key = ?", (key,)).fetchone()


def save_pin(key, account_id, now):
    _execute("INSERT INTO sticky_pin (key, account_id, seen_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
             "SET account_id = excluded.account_id, seen_at = excluded.seen_at", (key, account_id, now))


def key_used(key_id, now):
    _execute("UPDATE api_key SET last_used_at = ? WHERE id = ?", (now, key_id))


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


def enabled_models():
    """(id, name, added_at) of each enabled catalog model, in catalog order."""
    return list(_execute("SELECT id, name, added_at FROM catalog_model WHERE enabled = ? ORDER BY position, id",
                         (True,)))


# The whole overview in one statement: account counts by status; the billing
# period from the hourly summary (its edges are whole hours); the last 24 hours
# from the summary's whole hours plus the raw logs of the partial hour at its
# start. Open-ended, so logs stamped a little ahead of the clock count too.
# Parameters: period start and end hours, the window's first whole hour, the
# window's first millisecond and the first whole hour's first millisecond.
OVERVIEW_SQL = f"""
SELECT
  {", ".join(f"(SELECT COUNT(*) FROM account WHERE status = '{s}')" for s in ACCOUNT_STATUSES)},
  p.input_tokens, p.output_tokens, p.cached, p.cost,
  w.requests + r.requests, w.failures + r.failures, w.cancelled + r.cancelled
FROM
  (SELECT COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens,
          COALESCE(SUM(cached_input_tokens), 0) AS cached, COALESCE(SUM(cost), 0) AS cost
     FROM hourly_usage WHERE hour >= ? AND hour < ?) AS p,
  (SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(failures), 0) AS failures,
          COALESCE(SUM(cancelled), 0) AS cancelled
     FROM hourly_usage WHERE hour >= ?) AS w,
  (SELECT COUNT(*) AS requests,
          COUNT(*) FILTER (WHERE status IN ({", ".join(f"'{s}'" for s in FAILED_STATUSES)})) AS failures,
          COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled
     FROM request_log WHERE requested_at >= ? AND requested_at < ?) AS r
"""


def overview_row(params):
    """OVERVIEW_SQL's one row: five account counts, then period and window sums, as integers."""
    return [int(value) for value in _execute(OVERVIEW_SQL, params).fetchone()]


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
