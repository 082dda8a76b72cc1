"""Fixtures: a fresh app and database per test, and an injected clock.

The database is a SQLite file under the test's tmp_path, or, when
LB_TEST_DATABASE_URL names a PostgreSQL server (``make test`` starts one
when PostgreSQL is installed), that database emptied before each test.
"""
import time

import pytest

from fixtureapps.token_server import TokenServer
from fixtureapps.upstream import FakeUpstream
from helpers import BOOTSTRAP, INGEST, POSTGRES_URL, Clock, Server, empty_postgres, pool_account, setup_password
from lb import create_app, keys, store


def pytest_report_header():
    return f"database: {'PostgreSQL ' + POSTGRES_URL if POSTGRES_URL else 'SQLite'}"


def pytest_collection_modifyitems(config, items):
    """Under PostgreSQL, leave out the tests that are about SQLite itself (they run in the SQLite pass)."""
    if POSTGRES_URL:
        kept = [item for item in items if "sqlite_only" not in item.keywords]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("LB_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_app(tmp_path, clock):
    """Build an app on this test's own data directory (and database), with extra settings."""
    if POSTGRES_URL:
        empty_postgres()

    def make(**overrides):
        settings = {
            "DATA_DIR": str(tmp_path / "data"),
            "CLOCK": clock,
            "TESTING": True,
            # A cheaper scrypt keeps the suite fast; production uses werkzeug's default cost.
            "PASSWORD_HASH_METHOD": "scrypt:4096:8:1",
            "BOOTSTRAP_TOKEN": BOOTSTRAP,
            "INGEST_TOKEN": INGEST,
            "CHECKPOINT_SECONDS": 0,  # no WAL thread per test app; lb.database.checkpoint is tested directly
        }
        if POSTGRES_URL:
            settings["DATABASE_URL"] = POSTGRES_URL
        settings.update(overrides)
        return create_app(settings)

    yield make
    if store.db.obj is not None:
        store.db.obj.close_all()  # pooled connections would pile up over the suite


@pytest.fixture
def app(make_app, request):
    """The test's app. In a module marked ``uses_token_server`` it refreshes tokens at the fake endpoint;
    marked ``uses_upstream``, it also proxies to the fake upstream, with a 2-second idle timeout."""
    if request.node.get_closest_marker("uses_upstream"):
        return make_app(OAUTH_TOKEN_URL=request.getfixturevalue("token_server").url,
                        UPSTREAM_URL=request.getfixturevalue("upstream").url, UPSTREAM_READ_TIMEOUT=2)
    if request.node.get_closest_marker("uses_token_server"):
        return make_app(OAUTH_TOKEN_URL=request.getfixturevalue("token_server").url)
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def authed(client):
    """A client with a configured password and a fully verified session."""
    setup_password(client)
    return client


@pytest.fixture
def server(tmp_path):
    """The real server (waitress, its own process) on this test's data dir or PostgreSQL database."""
    if POSTGRES_URL:
        empty_postgres()
    srv = Server(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def upstream():
    """The fake Codex upstream (tests/fixtureapps/upstream.py) on loopback."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def token_server():
    """The fake OAuth token endpoint (tests/fixtureapps/token_server.py) on loopback."""
    server = TokenServer().start()
    yield server
    server.stop()


@pytest.fixture
def proxied(make_app, tmp_path, upstream, token_server):
    """The real server in front of the fake upstream, with account "a" in its pool and an API key:
    (the server, the key, an in-process app on the same database to look at it)."""
    app = make_app(CLOCK=time.time)  # the server's clock is the real one
    pool_account(app, time.time, "a")
    with app.app_context(), store.db.connection_context():
        _, key = keys.create({"name": "client"}, int(time.time() * 1000))
    server = Server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, THREADS=40)
    server.start()
    yield server, key, app
    server.stop()
