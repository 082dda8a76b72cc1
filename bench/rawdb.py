"""Raw reads of the service's database for the soak's and the crash test's checks, so that what they check is
what is stored, not what the API says: a SQLite file or a PostgreSQL database, behind one function."""
import contextlib
import secrets
import sqlite3
from urllib.parse import urlsplit


def is_postgres(where):
    return where.startswith(("postgres://", "postgresql://"))


def rows(where, sql, params=()):
    """Every row of one query (``?`` placeholders) on ``where``: a SQLite file's path or a PostgreSQL URL."""
    if not is_postgres(where):
        with contextlib.closing(sqlite3.connect(where)) as conn:
            return conn.execute(sql, params).fetchall()
    import psycopg2
    with contextlib.closing(psycopg2.connect(where)) as conn, conn.cursor() as cursor:
        cursor.execute(sql.replace("?", "%s"), params or None)  # no params: a % in the SQL stays as it is
        return cursor.fetchall()


@contextlib.contextmanager
def fresh_postgres(server_url):
    """A new, empty database on the PostgreSQL server of ``server_url`` (whose user may create one): its URL.
    Dropped afterwards."""
    import psycopg2
    name = f"codexlb_soak_{secrets.token_hex(4)}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True  # CREATE and DROP DATABASE run outside a transaction
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
