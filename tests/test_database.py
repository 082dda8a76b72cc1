"""lb.database: the SQLite file as the service opens it, keeps it and judges it.

Every connection runs in WAL mode with the journal size limit; checkpoint()
truncates the WAL, or says False while a reader holds an older snapshot. For a
server bound by file modes (the suite runs as root, so the server drops the two
capabilities that let root ignore them), a database file or data dir made
read-only after start turns /healthz to 503 service_unavailable until it is
writable again, and a read-only data dir at start is one line on stderr and exit
code 2. /healthz for a missing or replaced file is in test_views.py; an
unreachable PostgreSQL at start in test_config.py.
"""
import os
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from helpers.data import ROOT
from helpers.servers import app_server, call, free_port
from lb import database, tables

pytestmark = pytest.mark.sqlite_only


# -- the connection's pragmas ---------------------------------------------------------------

@pytest.mark.parametrize("pragma, value", [
    ("journal_mode", "wal"),
    ("journal_size_limit", database.JOURNAL_SIZE_LIMIT),
    ("synchronous", 1),  # NORMAL: in WAL mode, durable across a killed process
    ("foreign_keys", 1),
    ("busy_timeout", 10000),
])
def test_every_connection_has_the_pragmas(make_app, pragma, value):
    app = make_app()
    with app.app_context(), tables.db.connection_context():
        assert tables.db.execute_sql(f"PRAGMA {pragma}").fetchone()[0] == value


# -- the WAL ----------------------------------------------------------------------------------

def test_checkpoint_waits_for_an_old_reader_then_truncates_the_wal(tmp_path):
    path = str(tmp_path / "wal.db")
    with closing(sqlite3.connect(path, isolation_level=None)) as writer, \
            closing(sqlite3.connect(path, isolation_level=None)) as reader:
        assert writer.execute("PRAGMA journal_mode=wal").fetchone()[0] == "wal"
        writer.execute("PRAGMA wal_autocheckpoint=0")  # only checkpoint() may shrink the WAL
        writer.execute("CREATE TABLE t (x BLOB)")
        writer.executemany("INSERT INTO t VALUES (randomblob(4096))", [()] * 1000)
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1000  # its snapshot starts here
        writer.executemany("INSERT INTO t VALUES (randomblob(4096))", [()] * 500)
        assert os.path.getsize(path + "-wal") > 4 << 20

        assert database.checkpoint(path, busy_ms=50) is False
        assert os.path.getsize(path + "-wal") > 4 << 20

        reader.execute("COMMIT")
        assert database.checkpoint(path) is True
        assert os.path.getsize(path + "-wal") == 0
        assert writer.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1500


# -- without the power to ignore file modes -------------------------------------------------------

def bound_by_file_modes():
    """The prefix that makes a command obey file modes when the suite runs as root.

    Root ignores file modes through two capabilities; the command runs without
    them. (Not as ``nobody``: the interpreter may live where only root can reach it.)
    """
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--") if os.geteuid() == 0 else ()


def healthz(port):
    return call(port, "GET", "/healthz")


def test_healthz_is_unavailable_while_the_database_or_its_dir_is_read_only(tmp_path):
    data = tmp_path / "data"
    server = app_server(data)
    read_only = (503, {"error": {"code": "service_unavailable",
                                 "message": "The database file or its directory is read-only"}})
    try:
        server.start(command_prefix=bound_by_file_modes())
        assert healthz(server.port) == (200, {"status": "ok"})

        os.chmod(data / "lb.db", 0o444)
        assert healthz(server.port) == read_only
        os.chmod(data / "lb.db", 0o600)
        assert healthz(server.port) == (200, {"status": "ok"})

        os.chmod(data, 0o500)
        assert healthz(server.port) == read_only
        os.chmod(data, 0o700)
        assert healthz(server.port) == (200, {"status": "ok"})
    finally:
        server.stop()
        os.chmod(data, 0o700)
    assert "health check: The database file or its directory is read-only" in server.log()


def test_a_read_only_data_dir_at_start_is_one_line_and_exit_code_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
    env.update(LB_DATA_DIR=str(data), LB_PORT=str(free_port()))
    try:
        result = subprocess.run([*bound_by_file_modes(), sys.executable, os.path.join(ROOT, "app.py"), "--waitress"],
                                env=env, capture_output=True, text=True, timeout=30)
        assert os.listdir(data) == []
    finally:
        os.chmod(data, 0o700)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("codex-lb: ") and str(data) in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
