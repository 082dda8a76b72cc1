"""Requests through Flask's test client, and what their answers must look like."""
import json

import pyotp

from helpers.data import INGEST, NEW_PASSWORD, PASSWORD, auth_json

BEARER = {"Authorization": f"Bearer {INGEST}"}
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}
AUTH = "/api/dashboard-auth"
COOKIE = "dashboard_session"
OVERVIEW = "/api/dashboard/overview"
MODELS = "/api/models"
LOGS = "/api/request-logs"
DASHBOARD = [OVERVIEW, MODELS]
IMPORT = "/api/accounts/import"
ACCOUNTS = "/api/accounts"
CODEX = "/backend-api/codex/responses"
V1 = "/v1/responses"
CODEX_BODY = {"model": "gpt-5.3-codex", "stream": True, "store": False, "input": [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
    "tools": [], "tool_choice": "auto", "parallel_tool_calls": True, "prompt_cache_key": None}
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


def imported(client, payload=None, status=201, **fields):
    """POST an auth.json (``auth_json(**fields)`` by default), assert ``status``, return the account."""
    response = post(client, IMPORT, payload if payload is not None else auth_json(**fields))
    assert response.status_code == status, response.get_json()
    return response.get_json()


def listed(client):
    return ok(client.get(ACCOUNTS))["accounts"]


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


# -- the proxy -------------------------------------------------------------------------------

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


# -- answers --------------------------------------------------------------------------------

def error(response):
    """(status, error code) of an error response, asserting the envelope shape."""
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"]


def names_field(response, field):
    """Whether ``response`` is the 422 validation_error whose message names ``field`` first."""
    return error(response) == (422, "validation_error") and message(response).startswith(field + " ")


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


def openai_error(response):
    """The (status, code, type) of an OpenAI-envelope error answer; the envelope's shape checked."""
    error = response.get_json()["error"]
    assert set(error) >= {"message", "type", "code", "param"} and error["param"] is None, error
    assert isinstance(error["message"], str) and error["message"]
    return response.status_code, error["code"], error["type"]
