"""Fixtures: a fresh app and database per test, and an injected clock.

The database is a SQLite file under the test's tmp_path, or, when
LB_TEST_DATABASE_URL names a PostgreSQL server (``make test`` starts one
when PostgreSQL is installed), that database emptied before each test.
The browser tests drive Debian's chromium (``$CHROMIUM``, else /usr/bin/chromium,
installed by scripts/chromium.sh) through Playwright, which never downloads one.
"""
import os
import subprocess
import time

import pytest

from fixtureapps.issuer import Issuer
from fixtureapps.token_server import TokenServer
from fixtureapps.upstream import FakeUpstream
from helpers.data import BOOTSTRAP, INGEST, POSTGRES_URL, ROOT, Clock, empty_postgres, pool_account
from helpers.http import setup_password
from helpers.servers import LOOPBACK_NOWHERE, app_server
from lb import create_app, keys, tables


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
            "OAUTH_ISSUER": LOOPBACK_NOWHERE,  # never auth.openai.com; a test that signs in names its fake issuer
        }
        if POSTGRES_URL:
            settings["DATABASE_URL"] = POSTGRES_URL
        settings.update(overrides)
        return create_app(settings)

    yield make
    if tables.db.obj is not None:
        tables.db.obj.close_all()  # pooled connections would pile up over the suite


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
    srv = app_server(tmp_path / "data").start()
    yield srv
    srv.stop()


def running(server):
    """Start a fake server for a fixture, and stop it after the test."""
    server.start()
    yield server
    server.stop()


@pytest.fixture
def upstream():
    """The fake Codex upstream (tests/fixtureapps/upstream.py) on loopback."""
    yield from running(FakeUpstream())


@pytest.fixture
def issuer(clock):
    """The fake ChatGPT sign-in (tests/fixtureapps/issuer.py) on loopback; its tokens' exp follows the clock."""
    yield from running(Issuer(clock=clock))


@pytest.fixture
def token_server():
    """The fake OAuth token endpoint (tests/fixtureapps/token_server.py) on loopback."""
    yield from running(TokenServer())


@pytest.fixture
def proxied(make_app, tmp_path, upstream, token_server):
    """The real server in front of the fake upstream, with account "a" in its pool and an API key:
    (the server, the key, an in-process app on the same database to look at it)."""
    app = make_app(CLOCK=time.time)  # the server's clock is the real one
    pool_account(app, time.time, "a")
    with app.app_context(), tables.db.connection_context():
        _, key = keys.create({"name": "client"}, int(time.time() * 1000))
    server = app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_TOKEN_URL=token_server.url, THREADS=40)
    server.start()
    yield server, key, app
    server.stop()


# -- the browser ---------------------------------------------------------------------------------

# Headless and quiet: no GPU, no sandbox (root here), no calls home, /tmp instead of a small /dev/shm.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path():
    """Debian's chromium: ``$CHROMIUM``, else /usr/bin/chromium, installed by scripts/chromium.sh if missing."""
    path = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    if os.path.exists(path):
        return path
    found = subprocess.run([os.path.join(ROOT, "scripts", "chromium.sh")], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.fail(f"no chromium at {path}, and scripts/chromium.sh could not install it: {found.stderr.strip()}")
    return found.stdout.strip()


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session. Playwright gives it a fresh --user-data-dir, removed on close."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page in a context of its own (1280x800); ``page.console_errors`` collects console errors and
    uncaught exceptions, for the test to assert it stays empty."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.console_errors = []

    def on_console(message):
        if message.type == "error":
            tab.console_errors.append(f"console: {message.text} ({message.location.get('url')})")

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: tab.console_errors.append(f"uncaught: {exc}"))
    yield tab
    context.close()
