"""The Peewee data layer: models, the seed catalog, and every hand-written statement.

Times are stored as integer milliseconds since the epoch (UTC) and money as
integer micro-dollars, so sums are exact and comparisons are cheap on both
SQLite and PostgreSQL.
"""
import functools
import logging
from decimal import Decimal

from peewee import (BigAutoField, BigIntegerField, BooleanField, CharField, CompositeKey, DatabaseError,
                    DatabaseProxy, DecimalField, IntegerField, Model, TextField)

log = logging.getLogger(__name__)

db = DatabaseProxy()  # bound by lb.database.init_app


class Unavailable(Exception):
    """The database does not answer, or cannot take writes (the web layer answers 503)."""

    def __init__(self, message="The database does not answer"):
        super().__init__(message)
        self.message = message


ACCOUNT_STATUSES = ("active", "paused", "rate_limited", "quota_exceeded", "deactivated")
LOG_STATUSES = ("ok", "error", "rate_limit", "quota", "cancelled")
FAILED_STATUSES = ("error", "rate_limit", "quota")

# (id, name, USD per million tokens: input, cached input, output)
SEED_CATALOG = (
    ("gpt-5.3-codex", "GPT-5.3 Codex", "1.75", "0.175", "14"),
    ("gpt-5.3-codex-spark", "GPT-5.3 Codex Spark", "1.75", "0.175", "14"),
    ("gpt-5.2", "GPT-5.2", "1.75", "0.175", "14"),
    ("gpt-5.1-codex", "GPT-5.1 Codex", "1.25", "0.125", "10"),
    ("gpt-5.1-codex-mini", "GPT-5.1 Codex Mini", "0.25", "0.025", "2"),
    ("gpt-5-codex", "GPT-5 Codex", "1.25", "0.125", "10"),
    ("gpt-4o-mini", "GPT-4o Mini", "0.15", "0.075", "0.6"),
    ("o3-pro", "o3 Pro", "20", "20", "80"),
)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Account(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    email = CharField(max_length=254)
    email_key = CharField(max_length=254, unique=True)  # lower-cased, for uniqueness
    plan_type = CharField(max_length=64, null=True)
    status = CharField(max_length=16)
    status_reason = TextField(null=True)
    created_at = BigIntegerField()
    updated_at = BigIntegerField()


class RequestLog(BaseModel):
    id = BigAutoField()
    request_id = CharField(max_length=200, null=True, unique=True)
    requested_at = BigIntegerField()
    # No foreign key: a log keeps the id of an account that was deleted.
    account_id = CharField(max_length=40, null=True)
    model = CharField(max_length=128)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cached_input_tokens = BigIntegerField(default=0)
    status = CharField(max_length=16)
    error_code = CharField(max_length=200, null=True)
    latency_ms = BigIntegerField(null=True)
    cost = BigIntegerField(default=0)  # micro-USD

    class Meta:
        indexes = (
            # Keyset pages walk (requested_at, id); status rides along so the
            # overview counts a partial hour from the index alone.
            (("requested_at", "id", "status"), False),
            (("account_id", "requested_at", "id"), False),
            (("model", "requested_at", "id"), False),
        )


class HourlyUsage(BaseModel):
    """Per-hour sums of the request logs, kept in step by every ingest."""

    hour = BigIntegerField(primary_key=True)  # requested_at // 3,600,000
    requests = BigIntegerField(default=0)
    failures = BigIntegerField(default=0)
    cancelled = BigIntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    cached_input_tokens = BigIntegerField(default=0)
    cost = BigIntegerField(default=0)


class HourlyKeyUsage(HourlyUsage):
    """The same sums per hour, account and model, for the usage breakdowns."""

    hour = BigIntegerField()
    account_id = CharField(max_length=40)  # "" for logs without an account
    model = CharField(max_length=128)

    class Meta:
        primary_key = CompositeKey("hour", "account_id", "model")


class CatalogModel(BaseModel):
    id = CharField(primary_key=True, max_length=128)
    name = CharField(max_length=200)
    position = IntegerField()
    enabled = BooleanField(default=True)
    # USD per million tokens.
    input_price = DecimalField(max_digits=14, decimal_places=6)
    cached_input_price = DecimalField(max_digits=14, decimal_places=6)
    output_price = DecimalField(max_digits=14, decimal_places=6)


class DashboardSettings(BaseModel):
    """The single row (id 1) holding the dashboard's credentials."""

    id = IntegerField(primary_key=True)
    password_hash = CharField(max_length=512, null=True)
    totp_secret = TextField(null=True)  # sealed (lb.crypto)
    totp_last_step = BigIntegerField(default=0)


class DashboardSession(BaseModel):
    token_hash = CharField(primary_key=True, max_length=64)
    created_at = BigIntegerField()
    expires_at = BigIntegerField()
    password_verified = BooleanField(default=False)
    totp_verified = BooleanField(default=False)


class AuthFailure(BaseModel):
    id = BigAutoField()
    client = CharField(max_length=64)
    at = BigIntegerField()

    class Meta:
        indexes = ((("client", "at"), False),)


class TotpSetup(BaseModel):
    token_hash = CharField(primary_key=True, max_length=64)
    session_hash = CharField(max_length=64)
    secret = TextField()  # sealed (lb.crypto)
    expires_at = BigIntegerField()


MODELS = (Account, RequestLog, HourlyUsage, HourlyKeyUsage, CatalogModel,
          DashboardSettings, DashboardSession, AuthFailure, TotpSetup)


def create_schema():
    """Create missing tables and seed the catalog once; safe to repeat."""
    with db.atomic():
        db.create_tables(MODELS, safe=True)
        if not CatalogModel.select().exists():
            CatalogModel.insert_many([
                {"id": mid, "name": name, "position": i, "input_price": Decimal(p_in),
                 "cached_input_price": Decimal(p_cached), "output_price": Decimal(p_out)}
                for i, (mid, name, p_in, p_cached, p_out) in enumerate(SEED_CATALOG)]).execute()
        DashboardSettings.insert(id=1).on_conflict_ignore().execute()
        if db.obj.for_update:  # PostgreSQL: older versions made the sealed columns too narrow
            for table, column in (("dashboard_settings", "totp_secret"), ("totp_setup", "secret")):
                if any(c.name == column and c.data_type != "text" for c in db.get_columns(table)):
                    db.execute_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT")


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
    query = CatalogModel.select(CatalogModel.id, CatalogModel.input_price, CatalogModel.cached_input_price,
                                CatalogModel.output_price)
    return {m.id: (Decimal(m.input_price), Decimal(m.cached_input_price), Decimal(m.output_price)) for m in query}


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


def enabled_models():
    """(id, name) of each enabled catalog model, in catalog order."""
    return list(_execute("SELECT id, name FROM catalog_model WHERE enabled = ? ORDER BY position, id", (True,)))


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
