"""Fixtures: a fresh app and SQLite file per test, and an injected clock."""
import os

import pytest

from helpers import BOOTSTRAP, INGEST, Clock, setup_password
from lb import create_app


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
    """Build an app on this test's own data directory, with extra settings."""

    def make(**overrides):
        settings = {
            "DATA_DIR": str(tmp_path / "data"),
            "CLOCK": clock,
            "TESTING": True,
            # A cheaper scrypt keeps the suite fast; production uses werkzeug's default cost.
            "PASSWORD_HASH_METHOD": "scrypt:4096:8:1",
            "BOOTSTRAP_TOKEN": BOOTSTRAP,
            "INGEST_TOKEN": INGEST,
        }
        settings.update(overrides)
        return create_app(settings)

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def authed(client):
    """A client with a configured password and a fully verified session."""
    setup_password(client)
    return client
