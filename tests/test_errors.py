"""lb.errors: the conventions every endpoint shares.

The JSON error envelope for unknown routes and wrong methods, request-body checks
(size 413, content type 415, JSON 400, in that order, before the guard's 401), an
integer of any length being valid JSON (it reaches the field checks, a 422, not a
400), the internal error that tells nothing, and the access log that carries no secrets.
Validation messages naming the field are in test_fields.py.
"""
import io
import logging

import pytest

from helpers.data import INGEST, PASSWORD
from helpers.http import BEARER, LISTED_MODELS, REMOTE, error, ingest, login, token

SETUP = "/api/dashboard-auth/password/setup"
LOGIN = "/api/dashboard-auth/password/login"
CHANGE = "/api/dashboard-auth/password/change"
LOGOUT = "/api/dashboard-auth/logout"
# Endpoints that take a JSON body and a dashboard session (or the ingest token).
GUARDED_BODY_PATHS = [CHANGE, "/api/accounts", "/api/request-logs"]
LIMIT = 2048  # MAX_BODY_BYTES of the apps built for the size checks


def padded(size):
    """A valid JSON object body of exactly ``size`` bytes."""
    head, tail = '{"password": "', '"}'
    return head + "x" * (size - len(head) - len(tail)) + tail


# -- unknown routes, wrong methods, slashes ----------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/nope"),
    ("GET", "/accounts/"),  # the dashboard's pages (web/test_pages.py) have no trailing-slash twins
    ("GET", "/api"),
    ("POST", "/api/nope"),
    ("GET", "/api/dashboard-auth"),
    ("GET", "/api/dashboard/overview/extra"),
    ("DELETE", "/api/accounts/acc_x/more"),
    ("GET", "/static/nope.js"),
])
def test_unknown_routes_answer_the_not_found_envelope(client, method, path):
    response = client.open(path, method=method, json={"a": 1} if method == "POST" else None)
    assert error(response) == (404, "not_found")
    assert response.mimetype == "application/json"


@pytest.mark.parametrize("method, path, allowed", [
    ("POST", "/api/models", "GET"),
    ("DELETE", "/api/dashboard/overview", "GET"),
    ("PUT", "/healthz", "GET"),
    ("POST", "/api/dashboard-auth/session", "GET"),
    ("GET", LOGIN, "POST"),
    ("GET", LOGOUT, "POST"),
    ("PUT", "/api/accounts", "POST"),
    ("DELETE", "/api/request-logs", "GET"),
])
def test_wrong_methods_answer_method_not_allowed(client, method, path, allowed):
    response = client.open(path, method=method)
    assert error(response) == (405, "method_not_allowed")
    assert response.mimetype == "application/json"
    assert allowed in response.headers["Allow"]


@pytest.mark.parametrize("method, path", [
    ("GET", "/healthz/"),
    ("GET", "/api/models/"),
    ("GET", "/api/dashboard/overview/"),
    ("GET", "/api/dashboard-auth/session/"),
    ("POST", "/api/dashboard-auth/logout/"),
    ("GET", "/api/accounts/"),
    ("POST", "/api/request-logs/"),
    ("GET", "/api/usage/"),
])
def test_a_trailing_slash_is_not_found_never_a_redirect(client, method, path):
    response = client.open(path, method=method)
    assert error(response) == (404, "not_found")
    assert "Location" not in response.headers


@pytest.mark.parametrize("path, expected", [
    ("//healthz", 200),  # werkzeug's router ignores leading slashes: served, not redirected
    ("//api/models", 200),
    ("/api//models", 404),
    ("/api/dashboard-auth//session", 404),
    ("/api/dashboard//overview", 404),
])
def test_double_slashes_never_redirect(client, path, expected):
    # PATH_INFO is set directly: the test client would read "//host/..." as a URL with a host.
    response = client.get("/", environ_overrides={"PATH_INFO": path})
    assert response.status_code == expected
    assert "Location" not in response.headers
    if expected == 404:
        assert error(response) == (404, "not_found")
    else:
        assert "error" not in response.get_json()


# -- body size, content type, JSON syntax ---------------------------------------------------

@pytest.mark.parametrize("path", [SETUP, LOGIN, LOGOUT, "/api/accounts", "/api/request-logs"])
def test_a_body_over_the_limit_is_payload_too_large(make_app, path):
    client = make_app(MAX_BODY_BYTES=LIMIT).test_client()
    response = client.post(path, data=padded(LIMIT + 1), content_type="application/json")
    assert error(response) == (413, "payload_too_large")


def test_a_body_at_the_limit_is_read(make_app):
    client = make_app(MAX_BODY_BYTES=LIMIT).test_client()
    response = client.post(SETUP, data=padded(LIMIT), content_type="application/json")
    assert error(response) == (422, "validation_error")  # read and judged: the password is too long
    assert "password" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("data, expected", [
    (padded(LIMIT * 2), (413, "payload_too_large")),
    # Valid JSON padded with spaces: cut at the limit it would parse, so it must be refused.
    ('{"password": "%s"}' % PASSWORD + " " * LIMIT, (413, "payload_too_large")),
    (padded(LIMIT + 1), (413, "payload_too_large")),
    (padded(LIMIT), (422, "validation_error")),
])
def test_a_chunked_body_is_held_to_the_limit(make_app, data, expected):
    # A chunked body has no Content-Length; the server says it terminates the stream.
    client = make_app(MAX_BODY_BYTES=LIMIT).test_client()
    response = client.post(SETUP, input_stream=io.BytesIO(data.encode()), content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert error(response) == expected


@pytest.mark.parametrize("content_type, data", [
    ("text/plain", '{"password": "long enough password"}'),
    ("application/x-www-form-urlencoded", "password=long+enough+password"),
    ("multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="p"\r\n\r\nv\r\n--x--\r\n'),
    ("application/jsonp", '{"password": "long enough password"}'),
    (None, '{"password": "long enough password"}'),
    (None, None),  # no body at all on an endpoint that takes one
])
@pytest.mark.parametrize("path", [SETUP, LOGIN, "/api/accounts", "/api/request-logs"])
def test_bodies_that_are_not_json_are_unsupported(client, path, content_type, data):
    kwargs = {} if content_type is None else {"content_type": content_type}
    response = client.post(path, data=data, **kwargs)
    assert error(response) == (415, "unsupported_media_type")


def test_a_plain_text_body_on_a_bodiless_endpoint_is_unsupported(authed):
    response = authed.post(LOGOUT, data="bye", content_type="text/plain")
    assert error(response) == (415, "unsupported_media_type")


@pytest.mark.parametrize("method, path, status, body", [
    ("POST", LOGOUT, 200, {"status": "ok"}),
    ("GET", "/api/models", 200, {"models": LISTED_MODELS}),
])
def test_requests_without_a_body_need_no_content_type(authed, method, path, status, body):
    response = authed.open(path, method=method)
    assert response.status_code == status
    assert response.get_json() == body


def test_json_with_a_charset_parameter_is_accepted(client):
    response = client.post(SETUP, data='{"password": "%s"}' % PASSWORD,
                           content_type="application/json; charset=utf-8")
    assert response.status_code == 200
    assert response.get_json()["isPasswordConfigured"] is True


@pytest.mark.parametrize("data", [
    b"",
    b"{",
    b'{"password": "x",}',
    b'{"password": "x"} trailing',
    b"{'password': 'x'}",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b"NaN",
    b"[]",
    b'[{"password": "long enough password"}]',
    b'"a string"',
    b"42",
    b"null",
    b"true",
    b'{"password": "\xff\xfe"}',
    b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    b"[" * 100000 + b"]" * 100000,
])
@pytest.mark.parametrize("path", [SETUP, "/api/accounts"])
def test_malformed_json_is_invalid_json(client, path, data):
    response = client.post(path, data=data, content_type="application/json")
    assert error(response) == (400, "invalid_json")


HUGE = "9" * 5000  # longer than int() reads (4300 digits), but valid JSON


@pytest.mark.parametrize("path, data, message", [
    ("/api/request-logs", '{"requests": [{"model": "gpt-4o-mini", "inputTokens": %s}]}' % HUGE,
     "requests[0].inputTokens must be between 0 and "),
    ("/api/request-logs", '{"requests": [{"model": "gpt-4o-mini", "inputTokens": -%s}]}' % HUGE,
     "requests[0].inputTokens must be between 0 and "),
    ("/api/request-logs", '{"requests": [{"model": "gpt-4o-mini", "outputTokens": 1%s}]}' % ("0" * 100),
     "requests[0].outputTokens must be between 0 and "),
    ("/api/accounts", '{"email": %s}' % HUGE, "email must be a string"),
    ("/api/accounts", '{"email": -%s}' % HUGE, "email must be a string"),
])
def test_an_integer_of_any_length_is_valid_json_and_reaches_the_field_checks(authed, path, data, message):
    response = authed.post(path, data=data, content_type="application/json", headers=BEARER)
    assert error(response) == (422, "validation_error")
    assert response.get_json()["error"]["message"].startswith(message)


@pytest.mark.parametrize("path", GUARDED_BODY_PATHS)
@pytest.mark.parametrize("data, content_type, expected", [
    ("x" * (LIMIT + 1), "text/plain", (413, "payload_too_large")),
    (padded(LIMIT + 1), "application/json", (413, "payload_too_large")),
    ("{broken", "text/plain", (415, "unsupported_media_type")),
    ("{broken", "application/json", (400, "invalid_json")),
    ('{"a": NaN}', "application/json", (400, "invalid_json")),
    ("{}", "application/json", (401, "authentication_required")),  # 401 before the 422
])
def test_checks_run_in_contract_order(make_app, path, data, content_type, expected):
    # A remote client while no password is set: not let in, whatever the body.
    client = make_app(MAX_BODY_BYTES=LIMIT).test_client()
    response = client.post(path, data=data, content_type=content_type, environ_base=REMOTE)
    assert error(response) == expected


@pytest.mark.parametrize("data, content_type, expected", [
    (padded(LIMIT + 1), "application/json", (413, "payload_too_large")),
    ("[]", "text/plain", (415, "unsupported_media_type")),
    ("[]", "application/json", (400, "invalid_json")),
    ('{"requests": []}', "application/json", (401, "authentication_required")),
])
def test_a_wrong_ingest_token_is_judged_after_the_body(make_app, data, content_type, expected):
    client = make_app(MAX_BODY_BYTES=LIMIT).test_client()
    response = client.post("/api/request-logs", data=data, content_type=content_type,
                           headers={"Authorization": "Bearer wrong"})
    assert error(response) == expected


# -- unexpected errors and the access log --------------------------------------------------

def test_an_unexpected_error_is_internal_error_without_details(make_app, caplog):
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    def explode():
        raise RuntimeError("secret detail of the failure")

    app.add_url_rule("/api/explode", "explode", explode)
    response = app.test_client().get("/api/explode")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "Unexpected error"}}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "secret detail" not in text
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert "Traceback" in caplog.text and "secret detail of the failure" in caplog.text


def test_the_access_log_names_method_path_and_status(client, caplog):
    caplog.set_level(logging.INFO, logger="lb.access")
    response = client.get("/api/models")
    assert response.status_code == 200 and response.get_json()["models"]
    missing = client.post("/api/nope", json={})
    assert error(missing) == (404, "not_found")
    lines = [r.getMessage() for r in caplog.records if r.name == "lb.access"]
    assert len(lines) == 2
    assert "GET /api/models 200" in lines[0]
    assert "POST /api/nope 404" in lines[1]


def test_the_access_log_carries_no_secrets(authed, caplog):
    caplog.set_level(logging.DEBUG)
    cookie = token(authed)
    response = login(authed)
    assert response.status_code == 200 and response.get_json()["authenticated"] is True
    new_cookie = token(authed)
    bad = authed.get("/api/models?token=query-secret&password=" + PASSWORD.replace(" ", "+"), headers=BEARER)
    assert bad.status_code == 200 and bad.get_json()["models"]
    assert ingest(authed, [], headers=BEARER) == {"accepted": 0, "duplicates": 0}

    lines = [r.getMessage() for r in caplog.records if r.name == "lb.access"]
    assert any("POST /api/dashboard-auth/password/login 200" in line for line in lines)
    assert any("GET /api/models 200" in line for line in lines)
    everything = caplog.text
    for secret in (PASSWORD, PASSWORD.replace(" ", "+"), cookie, new_cookie, INGEST, "query-secret"):
        assert secret not in everything
    assert all("?" not in line for line in lines)
