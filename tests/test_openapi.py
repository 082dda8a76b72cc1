"""lb/openapi.json: served at /api/openapi.json, structurally sound, naming exactly the app's routes, and true to
what the endpoints answer.

No OpenAPI or JSON Schema package is a dependency, so the structure is checked here (every $ref resolves,
every operation has responses, every path parameter is declared) and real answers are checked against the
description's schemas by ``conforms`` below, a small validator of the JSON Schema keywords the file uses.
"""
import json
import os
import re

import pytest

from helpers.data import NOW_MS, write
from helpers.http import AUTH, AUTH_REQUIRED, BEARER, LOGS, create_account, enable_totp, imported, ingest, ok, post
from lb import audit

SPEC_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lb", "openapi.json")
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # the ones Flask adds on its own


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_FILE, encoding="utf-8") as file:
        return json.load(file)


def resolve(spec, node):
    """``node``, or what its ``$ref`` points to (followed to the end)."""
    while isinstance(node, dict) and "$ref" in node:
        pointer = node["$ref"]
        assert pointer.startswith("#/"), pointer
        node = spec
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(spec):
    """(path, method, operation) of every operation in the description."""
    return [(path, method, operation) for path, item in spec["paths"].items()
            for method, operation in item.items() if method in METHODS]


def schema_of(spec, path, method, status, media="application/json"):
    response = resolve(spec, spec["paths"][path][method]["responses"][str(status)])
    return response["content"][media]["schema"]


# -- a small JSON Schema validator: the keywords lb/openapi.json uses ------------------------------------

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
ANNOTATIONS = {"description", "default", "format", "title", "examples", "deprecated", "readOnly", "writeOnly"}


def problems(spec, schema, value, where="$"):
    """What is wrong with ``value`` against ``schema`` (an empty list when it conforms)."""
    found = []
    if "$ref" in schema:
        found += problems(spec, resolve(spec, {"$ref": schema["$ref"]}), value, where)
    for keyword, rule in schema.items():
        if keyword in ANNOTATIONS or keyword in ("$ref", "properties", "additionalProperties", "items"):
            continue
        if keyword == "type":
            kinds = [rule] if isinstance(rule, str) else rule
            if not any(TYPES[kind](value) for kind in kinds):
                found.append(f"{where}: {value!r} is not of type {rule}")
                return found  # the other keywords would only repeat it
        elif keyword == "required":
            if isinstance(value, dict):
                found += [f"{where}: {name!r} is missing" for name in rule if name not in value]
        elif keyword == "enum":
            if value not in rule:
                found.append(f"{where}: {value!r} is not one of {rule}")
        elif keyword == "const":
            if value != rule:
                found.append(f"{where}: {value!r} is not {rule!r}")
        elif keyword == "anyOf":
            if all(problems(spec, option, value, where) for option in rule):
                found.append(f"{where}: {value!r} matches none of anyOf")
        elif keyword == "allOf":
            for option in rule:
                found += problems(spec, option, value, where)
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if TYPES["number"](value):
                ok_ = {"minimum": value >= rule, "maximum": value <= rule,
                       "exclusiveMinimum": value > rule, "exclusiveMaximum": value < rule}[keyword]
                if not ok_:
                    found.append(f"{where}: {value!r} breaks {keyword} {rule}")
        elif keyword in ("minLength", "maxLength", "minItems", "maxItems"):
            if isinstance(value, (str, list)):
                size = len(value)
                if (size < rule) if keyword.startswith("min") else (size > rule):
                    found.append(f"{where}: length {size} breaks {keyword} {rule}")
        elif keyword == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                found.append(f"{where}: {value!r} does not match {rule}")
        else:
            raise AssertionError(f"the test's validator does not know the keyword {keyword!r} (at {where})")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found += problems(spec, sub, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(spec, schema["items"], item, f"{where}[{i}]")
    return found


def conforms(spec, schema, value):
    found = problems(spec, schema, value)
    assert not found, "\n".join(found)


def required_of(spec, name):
    return set(spec["components"]["schemas"][name]["required"])


# -- the document and where it is served ---------------------------------------------------------------

def test_served_document_is_the_file_without_a_session(make_app, spec):
    app = make_app()
    first = app.test_client()
    ok(post(first, AUTH + "/password/setup", {"password": "correct horse battery"}))
    response = app.test_client().get("/api/openapi.json", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == spec
    assert app.test_client().get(AUTH + "/session").get_json()["authenticated"] is False  # the guard is on


def test_it_is_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert set(spec["components"]["schemas"]) >= {"DashboardError", "OpenAIError"}


def test_the_file_is_indented_json():
    with open(SPEC_FILE, encoding="utf-8") as file:
        text = file.read()
    assert text.startswith('{\n  "openapi"') and text.endswith("}\n")


def test_every_ref_resolves(spec):
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert refs
    broken = []
    for pointer in sorted(set(refs)):
        try:
            resolve(spec, {"$ref": pointer})
        except (KeyError, AssertionError):
            broken.append(pointer)
    assert not broken, f"unresolved $refs: {broken}"


def test_every_operation_is_complete(spec):
    schemes = set(spec["components"]["securitySchemes"])
    ids = []
    for path, method, operation in operations(spec):
        assert path.startswith("/"), path
        assert set(spec["paths"][path]) <= METHODS | {"parameters", "summary", "description"}, path
        ids.append(operation["operationId"])
        responses = operation["responses"]
        assert responses, f"{method.upper()} {path} has no responses"
        assert any(status.startswith("2") for status in responses), f"{method.upper()} {path}: no success"
        for status, response in responses.items():
            assert status == "default" or re.fullmatch(r"[1-5][0-9][0-9]", status), (path, status)
            response = resolve(spec, response)
            assert response.get("description"), (path, method, status)
            for media in response.get("content", {}).values():
                assert "schema" in media, (path, method, status)
            if status >= "400" and status != "default":
                envelope = "OpenAIError" if path.startswith(("/v1/", "/backend-api/")) else "DashboardError"
                text = json.dumps(response["content"]["application/json"]["schema"])
                assert f"#/components/schemas/{envelope}" in text, (path, method, status)
        for requirement in operation.get("security", []):
            assert set(requirement) <= schemes, (path, method, requirement)
        if "requestBody" in operation:
            assert "application/json" in resolve(spec, operation["requestBody"])["content"], (path, method)
    assert len(ids) == len(set(ids)), "operationIds repeat"


def test_every_path_parameter_is_declared(spec):
    for path, method, operation in operations(spec):
        templated = set(re.findall(r"\{([^}]+)\}", path))
        declared = [resolve(spec, p) for p in spec["paths"][path].get("parameters", []) + operation.get(
            "parameters", [])]
        in_path = {p["name"] for p in declared if p["in"] == "path"}
        assert in_path == templated, f"{method.upper()} {path}: declares {in_path}, the path has {templated}"
        assert all(p["required"] is True for p in declared if p["in"] == "path"), (path, method)
        assert all("schema" in p for p in declared), (path, method)


def test_required_properties_are_properties(spec):
    for name, schema in spec["components"]["schemas"].items():
        for part in [schema] + schema.get("allOf", []):
            missing = set(part.get("required", ())) - set(part.get("properties", {}))
            assert not missing, f"{name}: required but not described: {missing}"


# -- the description names exactly the app's routes -----------------------------------------------------

def app_routes(app):
    """{(path template, METHOD)} of the app: Flask's <converter:name> as {}, HEAD and OPTIONS left out."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        template = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "{}", rule.rule)
        found |= {(template, method) for method in rule.methods - IGNORED_METHODS}
    return found


def described_routes(spec):
    """{(path template, METHOD)} of the description; parameter names do not matter ({id} is {})."""
    return {(re.sub(r"\{[^}]+\}", "{}", path), method.upper()) for path, method, _ in operations(spec)}


def test_the_description_names_exactly_the_apps_routes(make_app, spec):
    app = make_app(METRICS_TOKEN="metrics-token-for-tests")  # /metrics exists only with its token set
    served, described = app_routes(app), described_routes(spec)
    missing = sorted(served - described)
    extra = sorted(described - served)
    assert not missing and not extra, (
        "routes of the app missing from lb/openapi.json: "
        + (", ".join(f"{m} {p}" for p, m in missing) or "none")
        + "; routes in lb/openapi.json the app lacks: "
        + (", ".join(f"{m} {p}" for p, m in extra) or "none"))
    assert ("/api/openapi.json", "GET") in served


# -- the description matches what the endpoints answer ---------------------------------------------------

def test_accounts_match_their_schema(app, authed, spec):
    schema = schema_of(spec, "/api/accounts", "post", 201)
    manual = create_account(authed, "bob@example.com", planType="plus", statusReason="testing")
    conforms(spec, schema, manual)
    assert set(manual) == required_of(spec, "Account")
    account = imported(authed)
    conforms(spec, schema_of(spec, "/api/accounts/import", "post", 201), account)
    write(app, account["id"], status="rate_limited", resets_at=NOW_MS + 60_000, primary_used_percent=100.0,
          primary_resets_at=NOW_MS + 60_000)
    waiting = ok(authed.get(f"/api/accounts/{account['id']}"))
    assert waiting["usage"] is not None and waiting["resetsAt"] is not None
    conforms(spec, schema_of(spec, "/api/accounts/{id}", "get", 200), waiting)
    assert set(waiting["usage"]) == required_of(spec, "AccountUsage")
    conforms(spec, schema_of(spec, "/api/accounts", "get", 200), ok(authed.get("/api/accounts")))
    patched = ok(authed.patch(f"/api/accounts/{manual['id']}", json={"planType": None}))
    conforms(spec, schema_of(spec, "/api/accounts/{id}", "patch", 200), patched)
    assert authed.delete(f"/api/accounts/{manual['id']}").status_code == 204


def test_sign_in_flows_match_their_schema(make_app, issuer, spec):
    client = make_app(OAUTH_ISSUER=issuer.url).test_client()
    flows = "/api/oauth/flows"
    browser = post(client, flows, {"method": "browser"}).get_json()
    device = post(client, flows, {"method": "device"}).get_json()
    for flow in (browser, device):
        conforms(spec, schema_of(spec, flows, "post", 201), flow)
        assert required_of(spec, "OAuthFlow") <= set(flow) <= set(spec["components"]["schemas"]["OAuthFlow"]["properties"])
    done = post(client, f"{flows}/{browser['id']}/callback",
                {"callbackUrl": issuer.sign_in(browser["authorizationUrl"])}).get_json()
    conforms(spec, schema_of(spec, f"{flows}/{{id}}/callback", "post", 200), done)
    failed = post(client, flows, {"method": "browser"}).get_json()
    issuer.deny = True
    post(client, f"{flows}/{failed['id']}/callback", {"callbackUrl": issuer.sign_in(failed["authorizationUrl"])})
    for flow in (done, device, failed):
        conforms(spec, schema_of(spec, f"{flows}/{{id}}", "get", 200), ok(client.get(f"{flows}/{flow['id']}")))


def test_api_keys_match_their_schema(authed, spec):
    created = post(authed, "/api/api-keys", {"name": "laptop", "allowedModels": ["gpt-5.3-codex"],
                                             "expiresAt": "2027-01-01T00:00:00Z",
                                             "limits": [{"metric": "costUsd", "window": "month", "max": 50}]})
    assert created.status_code == 201
    key = created.get_json()
    conforms(spec, schema_of(spec, "/api/api-keys", "post", 201), key)
    assert set(key) == required_of(spec, "ApiKey") | {"key"}
    assert set(key["limits"][0]) == required_of(spec, "Limit")
    plain = ok(authed.get(f"/api/api-keys/{key['id']}"))
    conforms(spec, schema_of(spec, "/api/api-keys/{id}", "get", 200), plain)
    assert set(plain) == required_of(spec, "ApiKey")
    conforms(spec, schema_of(spec, "/api/api-keys/{id}/regenerate", "post", 200),
             ok(post(authed, f"/api/api-keys/{key['id']}/regenerate")))
    conforms(spec, schema_of(spec, "/api/api-keys/{id}", "patch", 200),
             ok(authed.patch(f"/api/api-keys/{key['id']}", json={"allowedModels": None, "expiresAt": None})))
    conforms(spec, schema_of(spec, "/api/api-keys", "get", 200), ok(authed.get("/api/api-keys")))


def test_overview_logs_and_usage_match_their_schema(authed, spec):
    account = create_account(authed)
    ingest(authed, [{"model": "gpt-5.3-codex", "inputTokens": 100, "outputTokens": 10, "accountId": account["id"],
                     "requestId": "r1"},
                    {"model": "gpt-5.3-codex", "status": "error", "errorCode": "boom", "latencyMs": 5}],
           headers=BEARER)
    body = ok(authed.get("/api/dashboard/overview"))
    conforms(spec, schema_of(spec, "/api/dashboard/overview", "get", 200), body)
    assert set(body) == required_of(spec, "Overview")
    overview = spec["components"]["schemas"]["Overview"]["properties"]
    assert set(body["accountCounts"]) == set(overview["accountCounts"]["required"])
    assert set(body["usageSummary"]) == set(overview["usageSummary"]["required"])
    page = ok(authed.get(LOGS + "?limit=1"))
    assert page["nextCursor"] is not None
    conforms(spec, schema_of(spec, "/api/request-logs", "get", 200), page)
    assert set(page["requests"][0]) == required_of(spec, "RequestLog")
    conforms(spec, schema_of(spec, "/api/request-logs", "get", 200), ok(authed.get(LOGS)))
    for group in ("day", "account"):
        usage = ok(authed.get(f"/api/usage?groupBy={group}"))
        conforms(spec, schema_of(spec, "/api/usage", "get", 200), usage)
        assert set(usage["totals"]) == required_of(spec, "UsageFigures")
        assert all(set(row) == required_of(spec, "UsageFigures") | {"key"} for row in usage["rows"])


def test_the_audit_log_matches_its_schema(authed, spec):
    account = create_account(authed)
    ok(authed.patch("/api/settings", json={"apiKeyRequired": True}))
    schema = schema_of(spec, "/api/audit-log", "get", 200)
    page = ok(authed.get("/api/audit-log?limit=2"))
    assert page["nextCursor"] is not None
    conforms(spec, schema, page)
    settings_entry, account_entry = page["entries"]
    assert settings_entry["target"] == {"type": "settings", "id": None}
    assert set(account_entry) == required_of(spec, "AuditEntry") | {"target"}
    assert account_entry["target"] == {"type": "account", "id": account["id"]}
    rest = ok(authed.get("/api/audit-log", query_string={"cursor": page["nextCursor"]}))
    conforms(spec, schema, rest)
    assert set(rest["entries"][0]) == required_of(spec, "AuditEntry")  # the first password: no target
    entry = spec["components"]["schemas"]["AuditEntry"]["properties"]
    assert entry["action"]["enum"] == list(audit.ACTIONS)
    assert entry["target"]["properties"]["type"]["enum"] == list(audit.TARGET_TYPES)


def test_the_small_answers_match_their_schema(authed, clock, spec):
    conforms(spec, schema_of(spec, "/api/models", "get", 200), ok(authed.get("/api/models")))
    conforms(spec, schema_of(spec, "/api/settings", "get", 200), ok(authed.get("/api/settings")))
    conforms(spec, schema_of(spec, "/healthz", "get", 200), ok(authed.get("/healthz")))
    conforms(spec, schema_of(spec, "/v1/models", "get", 200), ok(authed.get("/v1/models")))
    state = ok(authed.get(AUTH + "/session"))
    conforms(spec, schema_of(spec, "/api/dashboard-auth/session", "get", 200), state)
    assert set(state) == required_of(spec, "SessionState")
    start = ok(post(authed, AUTH + "/totp/setup/start"))
    conforms(spec, schema_of(spec, "/api/dashboard-auth/totp/setup/start", "post", 200), start)
    enable_totp(authed, clock)
    conforms(spec, schema_of(spec, "/api/dashboard-auth/session", "get", 200), ok(authed.get(AUTH + "/session")))


def test_errors_match_their_envelopes(client, spec):
    denied = client.get("/api/accounts", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert denied.get_json() == AUTH_REQUIRED
    conforms(spec, schema_of(spec, "/api/accounts", "get", 401), denied.get_json())
    refused = client.get("/v1/models", headers={"Authorization": "Bearer dummy"})
    assert refused.status_code == 401
    conforms(spec, schema_of(spec, "/v1/models", "get", 401), refused.get_json())
    no_model = client.post("/v1/responses", json={"input": "hi"})
    assert no_model.status_code == 400
    conforms(spec, {"$ref": "#/components/schemas/OpenAIError"}, no_model.get_json())
    page = client.get("/accounts")
    assert page.status_code == 200 and page.mimetype in resolve(
        spec, spec["paths"]["/accounts"]["get"]["responses"]["200"])["content"]
