"""The database binding: which database, its files and pragmas, its schema and upgrades, a connection per
request, the WAL kept small, and the 503 answer while it is unavailable."""
import logging
import os
import sqlite3
import threading
import time
from decimal import Decimal

import click
from flask import request
from peewee import DatabaseError
from playhouse.db_url import connect as connect_url
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.pool import MaxConnectionsExceeded, PooledSqliteDatabase

from lb.config import ConfigError, private_file
from lb.errors import Unavailable, envelope
from lb.tables import MODELS, SEED_CATALOG, CatalogModel, DashboardSettings, db

log = logging.getLogger(__name__)

# A request that finds every pooled connection in use waits this long for one: each is held only for a few
# short statements, never while a stream is relayed, so a small pool serves many streams.
POOL_WAIT_SECONDS = 30
# After a checkpoint SQLite cuts the WAL file back to this size.
JOURNAL_SIZE_LIMIT = 64 << 20
# The checkpointer truncates the WAL once it is larger than this.
CHECKPOINT_AT_BYTES = 16 << 20


class QueuedSqliteDatabase(PooledSqliteDatabase):
    """SQLite whose writing transactions queue on a lock in this process, from BEGIN to COMMIT or ROLLBACK.

    SQLite takes one writer at a time, and a connection that finds the file
    locked sleeps and retries (1, 2, 5 ... 100 ms): under a burst of short
    writes the lock then sits idle while the writers sleep. Threads of this
    process wait on a lock instead, and each goes the moment the last one
    commits; another process still meets the busy timeout.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._holds = threading.local()

    def begin(self, lock_type=None):
        self._writer.acquire()
        self._holds.writer = True
        try:
            super().begin(lock_type)
        except BaseException:
            self._release()
            raise

    def commit(self):
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._release()

    def _release(self):
        if getattr(self._holds, "writer", False):
            self._holds.writer = False
            self._writer.release()


def sqlite_path(config):
    """The SQLite file the settings name, or None for another database."""
    url = config.get("DATABASE_URL")
    if not url:
        return os.path.join(config["DATA_DIR"], "lb.db")
    return url.split(":///", 1)[1] if url.startswith("sqlite:") else None


def open_database(config):
    """Build the database named by the settings (SQLite in the data dir by default)."""
    path = sqlite_path(config)
    if path is not None:
        # Owner-only: it holds the password hash. SQLite gives -wal and -shm the database file's mode.
        for suffix in ("", "-wal", "-shm"):
            private_file(path + suffix, create=not suffix)
        # WAL lets readers run beside the writer; the timeout makes writers
        # wait for each other; IMMEDIATE takes the write lock at BEGIN, so a
        # transaction that reads first cannot fail "busy" when it upgrades.
        # Pooled: a request's connect/close borrows and returns a connection,
        # so the pragmas run once per connection, not once per request.
        # synchronous=NORMAL: a commit is in the WAL file when it returns, so it
        # survives the process being killed (kill -9) and restarted; only a power
        # cut or kernel crash may lose the last commits before the next
        # checkpoint. FULL would add an fsync to every commit, every proxied
        # request's log among them: the slowest step of a request here.
        return QueuedSqliteDatabase(
            path,
            max_connections=config["DATABASE_POOL"],
            timeout=POOL_WAIT_SECONDS,
            stale_timeout=600,
            pragmas={"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1, "busy_timeout": 10000,
                     "journal_size_limit": JOURNAL_SIZE_LIMIT},
            lock_type="IMMEDIATE",
            autoconnect=False,
            check_same_thread=False,  # a pooled connection serves one thread at a time, not always the same
        )
    url = config["DATABASE_URL"]
    if url.startswith(("postgres://", "postgresql://")):
        # Pooled, like SQLite above.
        return connect_url(url.replace("://", "+pool://", 1), autoconnect=False,
                           max_connections=config["DATABASE_POOL"], timeout=POOL_WAIT_SECONDS, stale_timeout=600)
    return connect_url(url, autoconnect=False)


# -- the WAL ----------------------------------------------------------------------------
# Readers that never stop starve SQLite's automatic (passive) checkpoint, and
# nothing else ever shrinks the WAL file. One thread truncates it now and then.

def checkpoint(path, busy_ms=200):
    """Checkpoint ``path``'s WAL and truncate it; False if readers or a writer kept it busy."""
    conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def keep_wal_small(path, every_seconds, stop):
    """Until ``stop`` is set: every so often, truncate the WAL once it has outgrown CHECKPOINT_AT_BYTES."""
    while not stop.wait(every_seconds):
        try:
            size = os.path.getsize(path + "-wal")
        except OSError:
            continue
        if size > CHECKPOINT_AT_BYTES and not checkpoint(path):
            log.info("WAL checkpoint postponed: the database is busy (WAL %d MiB)", size >> 20)


def start_checkpointer(app):
    """Start the WAL-truncating thread for a SQLite app (``CHECKPOINT_SECONDS``; 0 turns it off)."""
    path, every = sqlite_path(app.config), app.config["CHECKPOINT_SECONDS"]
    if path is None or not every:
        return None
    stop = threading.Event()
    threading.Thread(target=keep_wal_small, args=(path, every, stop), name="wal-checkpoint", daemon=True).start()
    return stop


# -- the schema ------------------------------------------------------------------------

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


# -- health -----------------------------------------------------------------------------

def check_writable(app):
    """Unavailable unless the database could take a write now, and after a restart.

    SQLite: the file is still the one opened (not deleted or replaced), and it
    and its directory are writable by this process (a connection opened before
    a chmod would still write, a new one would not). PostgreSQL: the server
    is not read-only (a standby, or default_transaction_read_only).
    """
    path = sqlite_path(app.config)
    if path is None:
        if db.execute_sql("SELECT current_setting('transaction_read_only')").fetchone()[0] == "on":
            raise Unavailable("The database is read-only")
        return
    try:
        inode = os.stat(path).st_ino
    except OSError:
        raise Unavailable("The database file is missing") from None
    if inode != app.extensions["lb_db_inode"]:
        raise Unavailable("The database file was replaced; restart the service")
    if not (os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)):
        raise Unavailable("The database file or its directory is read-only")


def check_health(app):
    """/healthz: the database answers a read of a real table (a pooled connection answers SELECT 1 without
    its file) and could take a write; Unavailable (logged) if not."""
    try:
        db.execute_sql("SELECT id FROM dashboard_settings WHERE id = 1").fetchone()
    except DatabaseError:
        log.exception("health check failed")
        raise Unavailable from None
    try:
        check_writable(app)
    except Unavailable as exc:
        log.warning("health check: %s", exc.message)
        raise


# -- the app ------------------------------------------------------------------------------

def prepare_schema(now=None, reshaped=None):
    """Create or upgrade the schema; call ``reshaped`` (the rollups' rebuild) when the upgrade changed the
    rollups' shape."""
    if create_schema(now) and reshaped is not None:
        reshaped()


def _unavailable(exc):
    return envelope(503, "service_unavailable", exc.message)


def init_app(app, reshaped=None):
    """Bind the proxy to this app's database, create the schema, and open a connection per request.
    ``reshaped`` rebuilds what an upgrade of the schema left to rebuild (lb.rollups.rebuild)."""
    db.initialize(open_database(app.config))
    app.register_error_handler(Unavailable, _unavailable)

    @app.before_request
    def _connect():
        if request.blueprint == "pages" or request.endpoint == "static":
            return  # the dashboard's page and files need no database (lb/web/pages.py)
        try:
            db.connect(reuse_if_open=True)
        except DatabaseError:
            log.exception("cannot connect to the database")
            raise Unavailable from None
        except MaxConnectionsExceeded:
            log.warning("no database connection came free within %d s", POOL_WAIT_SECONDS)
            raise Unavailable("The database is busy; try again shortly") from None

    @app.teardown_request
    def _close(exc):
        if not db.is_closed():
            db.close()

    @app.cli.command("init-db")
    def init_db_command():
        """Create the schema and seed the model catalog."""
        with db.connection_context():
            prepare_schema(reshaped=reshaped)
        click.echo("schema ready")

    try:
        with db.connection_context():
            prepare_schema(int(app.config["CLOCK"]() * 1000), reshaped)
    except DatabaseError as exc:
        # One line for the operator, never the URL: it may carry a password.
        where = "LB_DATABASE_URL" if app.config.get("DATABASE_URL") else f"LB_DATA_DIR {app.config['DATA_DIR']!r}"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the database ({where}) cannot be opened: {reason}") from None
    path = sqlite_path(app.config)
    app.extensions["lb_db_inode"] = os.stat(path).st_ino if path else None
    app.extensions["lb_checkpointer"] = start_checkpointer(app)
