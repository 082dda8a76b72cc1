"""Helpers and constants shared by the tests (fixtures live in conftest.py)."""
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import pyotp
import pytest
from playhouse.db_url import connect as connect_url

from fixtureapps.token_server import Answer

from lb import credentials, crypto, refresh, tables

# Set by `make test` for its PostgreSQL pass; unset, the tests use SQLite files.
POSTGRES_URL = os.environ.get("LB_TEST_DATABASE_URL")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

START = datetime(2026, 11, 25, 7, 0, 0, tzinfo=timezone.utc).timestamp()
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
BOOTSTRAP = "bootstrap-token-for-tests"
INGEST = "ingest-token-for-tests"
BEARER = {"Authorization": f"Bearer {INGEST}"}
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
AUTH = "/api/dashboard-auth"
COOKIE = "dashboard_session"
OVERVIEW = "/api/dashboard/overview"
MODELS = "/api/models"
LOGS = "/api/request-logs"
DASHBOARD = [OVERVIEW, MODELS]
AUTH_REQUIRED = {"error": {"code": "authentication_required", "message": "Authentication is required"}}
TOTP_REQUIRED = {"error": {"code": "totp_required", "message": "TOTP verification is required for dashboard access"}}

# GET /api/models on a fresh database: the seeded catalog, enabled, in position order.
LISTED_MODELS = [
    {"id": "gpt-5.3-codex", "name": "GPT-5.3 Codex"},
    {"id": "gpt-5.3-codex-spark", "name": "GPT-5.3 Codex Spark"},
    {"id": "gpt-5.2", "name": "GPT-5.2"},
    {"id": "gpt-5.1-codex", "name": "GPT-5.1 Codex"},
    {"id": "gpt-5.1-codex-mini", "name": "GPT-5.1 Codex Mini"},
    {"id": "gpt-5-codex", "name": "GPT-5 Codex"},
    {"id": "gpt-4o-mini", "name": "GPT-4o Mini"},
    {"id": "o3-pro", "name": "o3 Pro"},
]

# GET /session states without TOTP; the clock starts at 07:00Z and sessions last 12 h.
EXPIRES = "2026-11-25T19:00:00Z"
SIGNED_IN = {"isPasswordConfigured": True, "isPasswordVerified": True, "isTotpConfigured": False,
             "isTotpVerified": False, "isTotpRequiredOnLogin": False, "authenticated": True,
             "expiresAt": EXPIRES}
SIGNED_OUT = dict(SIGNED_IN, isPasswordVerified=False, authenticated=False, expiresAt=None)
NO_PASSWORD = dict(SIGNED_OUT, isPasswordConfigured=False)


class Clock:
    """A settable clock in epoch seconds; tests move it instead of sleeping."""

    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


# -- requests ----------------------------------------------------------------------------

def post(client, path, payload=None, **kwargs):
    """POST a JSON body (or none when ``payload`` is None)."""
    if payload is None:
        return client.post(path, **kwargs)
    return client.post(path, json=payload, **kwargs)


def send_logs(client, items, **kwargs):
    """POST ``items`` as one batch to /api/request-logs; the response, whatever its status."""
    return post(client, LOGS, {"requests": items}, **kwargs)


def ingest(client, items, **kwargs):
    """POST ``items`` as one batch to /api/request-logs, assert 201, return the body ({accepted, duplicates})."""
    response = send_logs(client, items, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def create_account(client, email="ann@example.com", **fields):
    """POST an account, assert 201, return it."""
    response = post(client, "/api/accounts", {"email": email, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def overview(client):
    """The body of a 200 GET /api/dashboard/overview."""
    return ok(client.get(OVERVIEW))


def set_catalog(app, model_id, **fields):
    """Change one stored catalog row directly (there is no endpoint for it)."""
    with app.app_context(), tables.db.connection_context():
        tables.CatalogModel.update(**fields).where(tables.CatalogModel.id == model_id).execute()


# -- dashboard sign-in ---------------------------------------------------------------------

def setup_password(client, password=PASSWORD):
    response = post(client, AUTH + "/password/setup", {"password": password})
    assert response.status_code == 200, response.get_json()
    return response


def login(client, password=PASSWORD):
    return post(client, AUTH + "/password/login", {"password": password})


def change(client, current=PASSWORD, new=NEW_PASSWORD):
    return post(client, AUTH + "/password/change", {"currentPassword": current, "newPassword": new})


def remove(client, password=PASSWORD):
    return client.delete(AUTH + "/password", json={"password": password})


def enable_totp(client, clock):
    """Set up TOTP through the API; return the secret."""
    start = post(client, AUTH + "/totp/setup/start").get_json()
    code = pyotp.TOTP(start["secret"]).at(clock())
    response = post(client, AUTH + "/totp/setup/confirm", {"setupToken": start["setupToken"], "code": code})
    assert response.status_code == 200, response.get_json()
    return start["secret"]


def state(client, **kwargs):
    """The body of a 200 GET /api/dashboard-auth/session."""
    return ok(client.get(AUTH + "/session", **kwargs))


def token(client):
    """The session token in ``client``'s cookie jar."""
    return client.get_cookie(COOKIE).value


def with_cookie(app, value):
    """A new client that presents a copied session token."""
    client = app.test_client()
    client.set_cookie(COOKIE, value)
    return client


def session_cookie(response):
    """The ``dashboard_session`` Set-Cookie of ``response``: (value, {lower-cased attribute: value})."""
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]
    assert len(headers) == 1, response.headers
    first, *attributes = [part.strip() for part in headers[0].split(";")]
    flags = {}
    for attribute in attributes:
        name, _, value = attribute.partition("=")
        flags[name.lower()] = value
    return first.partition("=")[2], flags


# -- answers --------------------------------------------------------------------------------

def error(response):
    """(status, error code) of an error response, asserting the envelope shape."""
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"]


def message(response):
    """The message of an error response."""
    return response.get_json()["error"]["message"]


def ok(response):
    """The JSON body of a 200 answer."""
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def denied(response):
    """The JSON body of a 401 answer."""
    assert response.status_code == 401, response.get_json()
    return response.get_json()


def assert_limited(response, retry_after):
    """A 429 that names when to try again."""
    assert error(response) == (429, "rate_limited")
    assert response.headers["Retry-After"] == str(retry_after)


# -- accounts with credentials: auth.json files and tokens built by hand ------------------------

IMPORT = "/api/accounts/import"
ACCOUNTS = "/api/accounts"
AUTH_CLAIMS = "https://api.openai.com/auth"
NOW = "2026-11-25T07:00:00Z"
NOW_S = int(START)
NOW_MS = NOW_S * 1000
DAY_S = 86400


# -- tokens, built by hand ------------------------------------------------------------------

def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(claims):
    """A JWT with a dummy signature (nobody checks it)."""
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.ZHVtbXktc2lnbmF0dXJl"


def id_token(email="ann@example.com", plan="plus", workspace="ws-personal", **claims):
    auth = {key: value for key, value in (("chatgpt_plan_type", plan), ("chatgpt_account_id", workspace))
            if value is not None}
    body = {"email": email, AUTH_CLAIMS: auth, "sub": "auth0|user-1", **claims}
    return jwt({key: value for key, value in body.items() if value is not None})


def access_token(expires_in=3600, tag="1"):
    """An access-token JWT expiring ``expires_in`` seconds after the test clock's start."""
    return jwt({"exp": NOW_S + expires_in, "jti": f"access-{tag}"})


ID_1, ACCESS_1, REFRESH_1 = id_token(), access_token(), "rt_refresh-token-one-0123456789"
ID_2 = id_token(email="Ann@Example.com", plan="pro")
ACCESS_2, REFRESH_2 = access_token(7200, "2"), "rt_refresh-token-two-0123456789"


def auth_json(id_tok=ID_1, access=ACCESS_1, refresh=REFRESH_1, account_id="ws-personal",
              last_refresh="2026-11-20T06:00:00Z"):
    """An auth.json as the Codex CLI writes it."""
    return {"OPENAI_API_KEY": None, "auth_mode": "chatgpt",
            "tokens": {"id_token": id_tok, "access_token": access, "refresh_token": refresh, "account_id": account_id},
            "last_refresh": last_refresh}


def new_tokens(**tokens):
    """A token endpoint's 200 answer."""
    return Answer(200, {"token_type": "Bearer", "expires_in": 864000, **tokens})


def imported(client, payload=None, status=201, **fields):
    """POST an auth.json (``auth_json(**fields)`` by default), assert ``status``, return the account."""
    response = post(client, IMPORT, payload if payload is not None else auth_json(**fields))
    assert response.status_code == status, response.get_json()
    return response.get_json()


def listed(client):
    return ok(client.get(ACCOUNTS))["accounts"]


def row(app, account_id):
    with app.app_context(), tables.db.connection_context():
        return tables.Account.get_by_id(account_id)


def stored_tokens(app, account_id):
    """(id, access, refresh) tokens as stored, unsealed."""
    account = row(app, account_id)
    fernet = app.extensions["lb_fernet"]
    return tuple(crypto.unseal(getattr(account, name), fernet) for name in credentials.TOKENS)


def write(app, account_id, **fields):
    """Change stored columns directly, as another instance would."""
    with app.app_context(), tables.db.connection_context():
        tables.Account.update(**fields).where(tables.Account.id == account_id).execute()


def fresh(app, account_id, clock, force=False):
    """fresh_credentials; ``force``: as after an upstream 401 on the stored access token."""
    rejected = stored_tokens(app, account_id)[1] if force else None
    with app.app_context(), tables.db.connection_context():
        return refresh.fresh_credentials(account_id, int(clock() * 1000), rejected=rejected)


def refresh_fails(app, account_id, clock, force=True):
    with pytest.raises(refresh.RefreshFailed) as raised:
        fresh(app, account_id, clock, force=force)
    return raised.value


# -- the real server: app.py --waitress in its own process ---------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, payload=None, headers=None):
    """One request over a fresh connection: (status, parsed JSON body or None)."""
    status, body, _ = call_with_cookie(port, method, path, payload, headers)
    return status, body


def call_with_cookie(port, method, path, payload=None, headers=None):
    """Like ``call``, plus the headers that present the session cookie it set: (status, body, headers)."""
    headers = dict(headers or {})
    body = None
    if payload is not None:
        body = json.dumps(payload)
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    cookies = [h.split(";")[0] for h in response.headers.get_all("Set-Cookie") or [] if h.startswith(COOKIE + "=")]
    return response.status, json.loads(data) if data else None, {"Cookie": cookies[-1]} if cookies else {}


def wait_for(port, seconds=30):
    """Whether a server on ``port`` answers /healthz with 200 within ``seconds`` (polling a process starting up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if call(port, "GET", "/healthz")[0] == 200:
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Server:
    """``app.py --waitress`` on a free loopback port; ``settings`` are more LB_* variables."""

    def __init__(self, data_dir, **settings):
        self.data_dir, self.port, self.proc = str(data_dir), free_port(), None
        self.log_path = os.path.join(os.path.dirname(self.data_dir), f"server-{self.port}.log")
        self.settings = {"THREADS": 4, **settings}

    def start(self, command_prefix=()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
        env.update(LB_DATA_DIR=self.data_dir, LB_PORT=str(self.port), LB_INGEST_TOKEN=INGEST)
        if POSTGRES_URL:
            env["LB_DATABASE_URL"] = POSTGRES_URL
        env.update({f"LB_{name}": str(value) for name, value in self.settings.items()})
        # The log goes to a file: a pipe nobody reads would stall the server once full.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*command_prefix, sys.executable, os.path.join(ROOT, "app.py"),
                                          "--waitress"], env=env, stdout=subprocess.DEVNULL, stderr=log)
        if wait_for(self.port):
            return self
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("server did not start: " + self.log())

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    def kill_hard(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# -- the database -----------------------------------------------------------------------------

def empty_postgres():
    """Drop every table of the test database, so the next app starts from nothing."""
    database = connect_url(POSTGRES_URL)
    with database.connection_context(), database.bind_ctx(tables.MODELS):
        database.drop_tables(tables.MODELS, safe=True, cascade=True)


# -- the proxy -------------------------------------------------------------------------------

CODEX = "/backend-api/codex/responses"
V1 = "/v1/responses"
CODEX_BODY = {"model": "gpt-5.3-codex", "stream": True, "store": False, "input": [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
    "tools": [], "tool_choice": "auto", "parallel_tool_calls": True, "prompt_cache_key": None}


def pool_account(app, clock, name, **columns):
    """An account with credentials, imported as from ``<name>@example.com``'s auth.json in workspace
    ``ws-<name>`` (the fake upstream's plans are keyed by that workspace); ``columns`` are then written."""
    workspace = f"ws-{name}"
    access = jwt({"exp": int(clock()) + 10 * 86400, "jti": f"access-{name}"})  # good for ten days of the clock
    data = auth_json(id_token(email=f"{name}@example.com", workspace=workspace), account_id=workspace, access=access)
    with app.app_context(), tables.db.connection_context():
        account, _ = credentials.import_auth_json(data, int(clock() * 1000))
    if columns:
        write(app, account.id, **columns)
    return account.id


def ask(client, body=None, path=CODEX, headers=None, **kwargs):
    """POST a Responses request to the proxy (the Codex CLI's by default) and read the whole answer."""
    payload = {key: value for key, value in {**CODEX_BODY, **(body or {})}.items() if value is not None}
    response = client.post(path, json=payload, headers=headers or {}, **kwargs)
    response.get_data()  # a stream is relayed, and logged, as it is read
    return response


def sse(data):
    """The (type, parsed data) of each SSE event in a body."""
    found = []
    for block in data.decode().replace("\r\n", "\n").split("\n\n"):
        lines = block.strip("\n").split("\n")
        kind = next((line[6:].strip() for line in lines if line.startswith("event:")), None)
        payload = "\n".join(line[5:].lstrip() for line in lines if line.startswith("data:"))
        if kind or payload:
            found.append((kind, json.loads(payload) if payload else None))
    return found


def logs(app):
    """Every stored request log, oldest first."""
    with app.app_context(), tables.db.connection_context():
        return list(tables.RequestLog.select().order_by(tables.RequestLog.id))


def openai_error(response):
    """The (status, code, type) of an OpenAI-envelope error answer; the envelope's shape checked."""
    error = response.get_json()["error"]
    assert set(error) >= {"message", "type", "code", "param"} and error["param"] is None, error
    assert isinstance(error["message"], str) and error["message"]
    return response.status_code, error["code"], error["type"]
