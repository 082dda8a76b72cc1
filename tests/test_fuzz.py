"""Property-based fuzzing of every operation in lb/openapi.json with schemathesis, against the real server.

One waitress server (``app.py --waitress``, its own process) for the module, in front of the fake upstream and the
fake token endpoint, on this pass's database (SQLite, or PostgreSQL under scripts/with-postgres.sh). Before the
fuzzing it is set up through the API: a dashboard password, the session cookie, an API key and an imported account
with a live access token. Then each operation is one test: schemathesis generates cases from the description the
server serves (valid ones and, where the operation takes input, invalid ones), each is sent with the operation's
credentials, and every answer must

- not be a 5xx (``not_a_server_error``),
- have a described status code, content type and headers, and a body that conforms to the described schema,
- if an error: be in its envelope, exactly: ``{"error": {"code", "message"}}`` outside the proxy, OpenAI's
  ``{"error": {"message", "type", "code", "param"}}`` on /v1/... and /backend-api/... (the fake upstream answers
  200, so every proxy error is the proxy's own).

Who sends what: dashboard operations the fixture session's cookie; POST /api/request-logs either the ingest
bearer or the cookie; the proxy the API key as bearer; GET /metrics its token. The operations that change the
sign-in state (AUTH_STATE below) get a throwaway session each, minted in the database, so they can never log the
fixture session out; the password is random, so change, remove and login can only fail. An ``{id}`` is, case by
case, the generated value, the fixture's (reads only), or a throwaway key or account made for that case (writes),
so DELETE and regenerate never take away the key and account the proxy cases rely on. A proxy body's model is,
case by case, the generated one or an enabled catalog model, so streams are really relayed.

Bounded for the suite: FUZZ_EXAMPLES (default 50) cases per operation, derandomized, so a run is reproducible;
``make fuzz`` runs many more.
"""
import json
import os
import secrets
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_headers_conformance, response_schema_conformance, status_code_conformance,
)

from fixtureapps.issuer import Issuer
from fixtureapps.token_server import TokenServer
from fixtureapps.upstream import FakeUpstream
from helpers.data import INGEST, POSTGRES_URL, ROOT, auth_json, empty_postgres, id_token, jwt
from helpers.http import COOKIE, LISTED_MODELS
from helpers.servers import app_server, call, call_with_cookie
from lb import create_app, sessions, tables

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
REPORT = os.environ.get("FUZZ_REPORT")  # a file to write {operation: {status: count}} to, after the module
SPEC_FILE = os.path.join(ROOT, "lb", "openapi.json")
METHODS = ("get", "put", "post", "delete", "patch")
PROXY_PREFIXES = ("/v1/", "/backend-api/")
METRICS = "metrics-token-for-fuzzing"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]

# Operations that change who is signed in: each case gets a session of its own (see the module's docstring).
AUTH_STATE = {
    "POST /api/dashboard-auth/logout",
    "POST /api/dashboard-auth/password/login",  # a successful login ends the session it came with
    "POST /api/dashboard-auth/password/change",  # ends every other session
    "DELETE /api/dashboard-auth/password",  # removes the password and every session
    "POST /api/dashboard-auth/totp/setup/start",
    "POST /api/dashboard-auth/totp/setup/confirm",  # turns TOTP on: the fixture session would owe a code
    "POST /api/dashboard-auth/totp/verify",  # replaces the session's token
    "POST /api/dashboard-auth/totp/disable",
}
# Resource ids: (collection, fields to create a throwaway one).
RESOURCES = {"/api/accounts/": ("/api/accounts", lambda: {"email": f"fuzz-{secrets.token_hex(4)}@example.com"}),
             "/api/api-keys/": ("/api/api-keys", lambda: {"name": f"fuzz-{secrets.token_hex(4)}"})}


def described_operations():
    with open(SPEC_FILE, encoding="utf-8") as file:
        paths = json.load(file)["paths"]
    return [f"{method.upper()} {path}" for path, item in paths.items() for method in item if method in METHODS]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """The server, set up through its API: what a case needs to reach it (a dict)."""
    if POSTGRES_URL:
        empty_postgres()
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    upstream, token_server, issuer = FakeUpstream().start(), TokenServer().start(), Issuer().start()
    server = app_server(data_dir, UPSTREAM_URL=upstream.url, OAUTH_ISSUER=issuer.url, OAUTH_TOKEN_URL=token_server.url,
                        METRICS_TOKEN=METRICS, UPSTREAM_READ_TIMEOUT=5, THREADS=8)
    server.start()
    try:
        port = server.port
        status, _, cookie = call_with_cookie(port, "POST", "/api/dashboard-auth/password/setup",
                                             {"password": secrets.token_urlsafe(24)})
        assert status == 200 and cookie, status
        status, key = call(port, "POST", "/api/api-keys", {"name": "fuzzer"}, cookie)
        assert status == 201, key
        status, account = call(port, "POST", "/api/accounts/import", fuzz_auth_json("fuzz"), cookie)
        assert status == 201, account
        # An app in this process on the same database, to mint throwaway sessions without a login (a login is
        # rate limited per address, and the fuzzer's wrong passwords use that up).
        settings_ = {"DATA_DIR": str(data_dir), "CLOCK": time.time, "CHECKPOINT_SECONDS": 0}
        if POSTGRES_URL:
            settings_["DATABASE_URL"] = POSTGRES_URL
        app = create_app(settings_)
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/api/openapi.json")
        statuses = {}
        yield {"server": server, "base_url": f"http://127.0.0.1:{port}", "schema": schema, "cookie": cookie,
               "key": key, "account": account, "app": app, "statuses": statuses}
        if REPORT:
            with open(REPORT, "w", encoding="utf-8") as file:
                json.dump(statuses, file, indent=1, sort_keys=True)
    finally:
        server.stop()
        upstream.stop()
        token_server.stop()
        issuer.stop()
        if tables.db.obj is not None:
            tables.db.obj.close_all()


def fuzz_auth_json(name):
    """A valid auth.json of ``<name>@example.com`` in workspace ``ws-<name>``, its access token good for ten days
    of the real clock (the server's)."""
    access = jwt({"exp": int(time.time()) + 10 * 86400, "jti": f"access-{name}"})
    return auth_json(id_token(email=f"{name}@example.com", workspace=f"ws-{name}"), access=access,
                     account_id=f"ws-{name}")


def throwaway_session(app):
    """A fresh, fully verified session's Cookie header, made in the database."""
    with app.app_context(), tables.db.connection_context():
        token, _ = sessions.start_session()
    return {"Cookie": f"{COOKIE}={token}"}


def throwaway_resource(target, prefix):
    """A new API key or account (through the API), for a case that may change or delete it: its id."""
    collection, fields = RESOURCES[prefix]
    status, created = call(target["server"].port, "POST", collection, fields(), target["cookie"])
    assert status == 201, created
    return created["id"]


def credentials(case, label, path, target, data):
    """The headers that authenticate one case of operation ``label``. Mostly ours, in place of the Authorization
    header and session cookie schemathesis generates from the security schemes; now and then its own (random or
    none), which must be refused in the operation's envelope."""
    if data.draw(st.sampled_from(["ours"] * 4 + ["generated"]), label="credentials") == "generated":
        return {}
    if case.headers:
        case.headers.pop("Authorization", None)  # a case-insensitive dict
    if case.cookies:
        case.cookies.pop(COOKIE, None)
    if path.startswith(PROXY_PREFIXES):
        return {"Authorization": f"Bearer {target['key']['key']}"}
    if path == "/metrics":
        return {"Authorization": f"Bearer {METRICS}"}
    if label in AUTH_STATE:
        if data.draw(st.booleans(), label="forget failed attempts"):
            forget_failures(target["app"])  # so the case reaches the password or code check, not the 429
        return throwaway_session(target["app"])
    if label == "POST /api/request-logs" and data.draw(st.booleans(), label="ingest bearer"):
        return {"Authorization": f"Bearer {INGEST}"}
    return dict(target["cookie"])


def forget_failures(app):
    """Clear the per-address count of failed password and TOTP attempts."""
    with app.app_context(), tables.db.connection_context():
        tables.AuthFailure.delete().execute()


def choose_import(case, label, data):
    """POST /api/accounts/import: the generated body, or now and then a valid auth.json (a new or the fixture's)."""
    if label != "POST /api/accounts/import":
        return
    choice = data.draw(st.sampled_from(["generated", "generated", "new", "fixture"]), label="auth.json")
    if choice != "generated":
        case.body = fuzz_auth_json("fuzz" if choice == "fixture" else f"fuzz-{secrets.token_hex(4)}")


def choose_id(case, label, target, data):
    """Replace a generated ``{id}`` by the fixture's (reads) or a throwaway one (writes), some of the time."""
    prefix = next((p for p in RESOURCES if case.operation.path.startswith(p)), None)
    if prefix is None or not isinstance(case.path_parameters, dict) or "id" not in case.path_parameters:
        return
    choice = data.draw(st.sampled_from(["generated", "existing"]), label="id")
    if choice == "existing":
        if label.startswith("GET "):
            fixture = target["account"] if prefix == "/api/accounts/" else target["key"]
            case.path_parameters["id"] = fixture["id"]
        else:
            case.path_parameters["id"] = throwaway_resource(target, prefix)


def choose_model(case, data):
    """A proxy body's model: the generated one, or an enabled catalog model (so the request is relayed)."""
    if case.operation.path.startswith(PROXY_PREFIXES) and isinstance(case.body, dict):
        model = data.draw(st.sampled_from([None] + [m["id"] for m in LISTED_MODELS]), label="model")
        if model is not None:
            case.body["model"] = model


def check_envelope(case, response):
    """An error answer is in its envelope, exactly."""
    if response.status_code < 400:
        return
    media = (response.headers.get("content-type") or [""])[0]  # schemathesis: lower-cased names, lists of values
    assert media.startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict), body
    error = body["error"]
    if case.operation.path.startswith(PROXY_PREFIXES):
        keys = {"message", "type", "code", "param"}
        if error.get("code") == "usage_limit_reached":
            keys.add("resets_at")
        assert set(error) == keys, f"not the OpenAI envelope: {body}"
        assert isinstance(error["message"], str) and isinstance(error["type"], str) and error["param"] is None, body
        assert error["code"] is None or isinstance(error["code"], str), body
    else:
        assert set(error) == {"code", "message"}, f"not the dashboard envelope: {body}"
        assert isinstance(error["code"], str) and isinstance(error["message"], str), body


def strategy_of(operation):
    """Valid cases, and invalid ones where the operation takes input to get wrong."""
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    if not (operation.body or any(True for _ in operation.iter_parameters())):
        return positive
    return st.one_of(positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))


@pytest.mark.parametrize("label", described_operations())
def test_operation_holds_to_its_description(target, label):
    method, path = label.split(" ", 1)
    operation = target["schema"][path][method]
    cases = strategy_of(operation)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        case = data.draw(cases, label="case")
        choose_id(case, label, target, data)
        choose_model(case, data)
        choose_import(case, label, data)
        headers = credentials(case, label, path, target, data)
        note(case.as_curl_command(headers=headers))
        response = case.call(base_url=target["base_url"], headers=headers, timeout=30)
        note(f"-> {response.status_code} {response.text[:500]}")
        counts = target["statuses"].setdefault(label, {})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        check_envelope(case, response)
        case.validate_response(response, checks=CHECKS, headers=headers)

    fuzz()
