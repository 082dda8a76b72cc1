"""Helpers and constants shared by the tests."""
import os
from datetime import datetime, timezone

import pyotp
from playhouse.db_url import connect as connect_url

from lb import store

# Set by `make test` for its PostgreSQL pass; unset, the tests use SQLite files.
POSTGRES_URL = os.environ.get("LB_TEST_DATABASE_URL")

START = datetime(2026, 11, 25, 7, 0, 0, tzinfo=timezone.utc).timestamp()
PASSWORD = "correct horse battery"
BOOTSTRAP = "bootstrap-token-for-tests"
INGEST = "ingest-token-for-tests"
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
AUTH = "/api/dashboard-auth"
COOKIE = "dashboard_session"
DASHBOARD = ["/api/dashboard/overview", "/api/models"]
AUTH_REQUIRED = {"error": {"code": "authentication_required", "message": "Authentication is required"}}


class Clock:
    """A settable clock in epoch seconds; tests move it instead of sleeping."""

    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def post(client, path, payload=None, **kwargs):
    """POST a JSON body (or none when ``payload`` is None)."""
    if payload is None:
        return client.post(path, **kwargs)
    return client.post(path, json=payload, **kwargs)


def setup_password(client, password=PASSWORD):
    response = post(client, "/api/dashboard-auth/password/setup", {"password": password})
    assert response.status_code == 200, response.get_json()
    return response


def login(client, password=PASSWORD):
    return post(client, "/api/dashboard-auth/password/login", {"password": password})


def enable_totp(client, clock):
    """Set up TOTP through the API; return the secret."""
    start = post(client, "/api/dashboard-auth/totp/setup/start").get_json()
    code = pyotp.TOTP(start["secret"]).at(clock())
    response = post(client, "/api/dashboard-auth/totp/setup/confirm",
                    {"setupToken": start["setupToken"], "code": code})
    assert response.status_code == 200, response.get_json()
    return start["secret"]


def error(response):
    """(status, error code) of an error response, asserting the envelope shape."""
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"]


def ok(response):
    """The JSON body of a 200 answer."""
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def denied(response):
    """The JSON body of a 401 answer."""
    assert response.status_code == 401, response.get_json()
    return response.get_json()


def empty_postgres():
    """Drop every table of the test database, so the next app starts from nothing."""
    database = connect_url(POSTGRES_URL)
    with database.connection_context(), database.bind_ctx(store.MODELS):
        database.drop_tables(store.MODELS, safe=True, cascade=True)
