"""lb.ingest: POST /api/request-logs, validation, duplicates, cost, and who may ingest (contract section 5)."""
import pytest

from helpers.data import INGEST
from helpers.http import (
    AUTH_REQUIRED, BEARER, LOGS, REMOTE, create_account, error, ingest, message, ok, overview, post, send_logs,
    setup_password
)


def item(**fields):
    return {"model": "gpt-4o-mini", **fields}


def stored(client):
    """Every stored log, newest first (read with the dashboard session)."""
    return ok(client.get(f"{LOGS}?limit=500"))["requests"]


# -- accepting batches -----------------------------------------------------------

def test_a_batch_is_accepted(authed):
    assert ingest(authed, [item(requestId="r1"), item(requestId="r2", model="o3-pro")]) == {
        "accepted": 2, "duplicates": 0}
    assert sorted(log["requestId"] for log in stored(authed)) == ["r1", "r2"]


def test_an_empty_batch_is_201_with_zeros(authed):
    assert ingest(authed, []) == {"accepted": 0, "duplicates": 0}
    assert stored(authed) == []


def test_item_defaults(authed, clock):
    clock.advance(90)
    assert ingest(authed, [{"model": "gpt-4o-mini"}]) == {"accepted": 1, "duplicates": 0}
    [log] = stored(authed)
    assert log == {"id": log["id"], "requestId": None, "requestedAt": "2026-11-25T07:01:30Z", "accountId": None,
                   "apiKeyId": None, "model": "gpt-4o-mini", "inputTokens": 0, "outputTokens": 0,
                   "cachedInputTokens": 0,
                   "status": "ok", "errorCode": None, "latencyMs": None, "cost": 0}


def test_every_field_round_trips(authed):
    account_id = create_account(authed)["id"]
    key_id = post(authed, "/api/api-keys", {"name": "laptop"}).get_json()["id"]
    sent = {"requestId": "req-1", "requestedAt": "2026-11-25T06:59:59.250Z", "accountId": account_id,
            "apiKeyId": key_id, "model": "o3-pro", "inputTokens": 1000, "outputTokens": 100, "cachedInputTokens": 500,
            "status": "rate_limit", "errorCode": "upstream_429", "latencyMs": 1234}
    assert ingest(authed, [sent]) == {"accepted": 1, "duplicates": 0}
    [log] = stored(authed)
    assert log == {"id": log["id"], **sent, "cost": 0.028}


@pytest.mark.parametrize("sent, kept", [
    ("2026-11-25T08:00:00+02:00", "2026-11-25T06:00:00Z"),
    ("2026-11-25T01:30:00-05:30", "2026-11-25T07:00:00Z"),
    ("2026-11-24T23:59:59.5+00:00", "2026-11-24T23:59:59.500Z"),
    ("2026-11-25T07:05:00Z", "2026-11-25T07:05:00Z"),  # exactly 5 minutes ahead is allowed
    ("2026-11-25T09:05:00+02:00", "2026-11-25T07:05:00Z"),
    ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
])
def test_timestamps_are_normalised_to_utc(authed, sent, kept):
    assert ingest(authed, [item(requestedAt=sent)]) == {"accepted": 1, "duplicates": 0}
    assert [log["requestedAt"] for log in stored(authed)] == [kept]


@pytest.mark.parametrize("fields", [
    {"inputTokens": 10**12, "cachedInputTokens": 10**12, "outputTokens": 10**12},
    {"inputTokens": 5, "cachedInputTokens": 5},
    {"requestId": "r" * 200},
    {"status": "cancelled"}, {"status": "quota"}, {"status": "error", "errorCode": None},
    {"status": None, "requestedAt": None, "requestId": None, "accountId": None},
    {"model": "m" * 128},
])
def test_items_at_the_limits_are_accepted(authed, fields):
    assert ingest(authed, [item(**fields)]) == {"accepted": 1, "duplicates": 0}


def test_a_full_batch_of_1000_is_accepted(authed):
    assert ingest(authed, [item(requestId=f"r{i}") for i in range(1000)]) == {"accepted": 1000, "duplicates": 0}
    assert overview(authed)["requestCount"] == 1000


def test_unknown_fields_and_a_client_cost_are_ignored(authed):
    sent = item(inputTokens=1000, cost=99.5, foo="bar", id=7, totalTokens=3)
    assert ingest(authed, [sent]) == {"accepted": 1, "duplicates": 0}
    [log] = stored(authed)
    assert log["cost"] == 0.00015 and log["id"] != 7
    assert "foo" not in log and "totalTokens" not in log


# -- one bad item spoils the batch ------------------------------------------------

BAD_ITEMS = [
    ({}, "model"), (item(model=None), "model"), (item(model=""), "model"), (item(model=5), "model"),
    (item(model=["gpt-4o-mini"]), "model"), (item(model="m" * 129), "model"),
    (item(model="\ud800"), "model"),  # a lone surrogate: valid JSON, not storable text
    (item(inputTokens=-1), "inputTokens"), (item(outputTokens=-5), "outputTokens"),
    (item(cachedInputTokens=-1), "cachedInputTokens"), (item(inputTokens=1.5), "inputTokens"),
    (item(outputTokens=10.0), "outputTokens"), (item(inputTokens=True), "inputTokens"),
    (item(outputTokens=False), "outputTokens"), (item(inputTokens="5"), "inputTokens"),
    (item(inputTokens=10**12 + 1), "inputTokens"), (item(outputTokens=10**30), "outputTokens"),
    (item(inputTokens=5, cachedInputTokens=6), "cachedInputTokens"), (item(cachedInputTokens=1), "cachedInputTokens"),
    (item(requestedAt="2026-11-25T07:00:00"), "requestedAt"), (item(requestedAt="yesterday"), "requestedAt"),
    (item(requestedAt=""), "requestedAt"), (item(requestedAt=1764054000), "requestedAt"),
    (item(requestedAt="2026-13-01T00:00:00Z"), "requestedAt"), (item(requestedAt="2026-11-25"), "requestedAt"),
    (item(requestedAt="2026-11-25T07:05:00.001Z"), "requestedAt"),
    (item(requestedAt="2026-11-25T09:05:01+02:00"), "requestedAt"),
    (item(requestedAt="2027-01-01T00:00:00Z"), "requestedAt"),
    (item(requestedAt="0001-01-01T00:00:00+01:00"), "requestedAt"),
    (item(status="OK"), "status"), (item(status="success"), "status"), (item(status=""), "status"),
    (item(status=1), "status"), (item(accountId="acc_nope"), "accountId"), (item(accountId=5), "accountId"),
    (item(accountId=""), "accountId"), (item(apiKeyId="key_nope"), "apiKeyId"), (item(apiKeyId=7), "apiKeyId"),
    (item(requestId="r" * 201), "requestId"), (item(requestId=5), "requestId"),
    (item(latencyMs=-1), "latencyMs"), (item(latencyMs="fast"), "latencyMs"), (item(errorCode=429), "errorCode"),
]


@pytest.mark.parametrize("bad, field", BAD_ITEMS)
def test_a_bad_item_is_422_naming_it_and_nothing_is_stored(authed, bad, field):
    response = send_logs(authed, [item(requestId="good"), bad])
    assert error(response) == (422, "validation_error")
    assert message(response).startswith(f"requests[1].{field} ")
    assert stored(authed) == []


@pytest.mark.parametrize("bad", ["x", 5, None, [], [item()], True])
def test_an_item_that_is_not_an_object_is_422(authed, bad):
    response = send_logs(authed, [item(), bad])
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("requests[1] ")
    assert stored(authed) == []


@pytest.mark.parametrize("payload", [
    {}, {"requests": None}, {"requests": {}}, {"requests": "x"}, {"requests": 5}, {"requests": {"0": item()}},
    {"request": [item()]}, {"requests": [item()] * 1001},
])
def test_a_bad_batch_is_422(authed, payload):
    response = post(authed, LOGS, payload)
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("requests ")
    assert stored(authed) == []


@pytest.mark.parametrize("bad, field", [
    ({"model": "gpt-4o-mini", "inputTokens": -1}, "inputTokens"),
    ({"model": "gpt-4o-mini", "accountId": "acc_gone"}, "accountId"),
    ({}, "model"),
])
def test_the_500th_item_spoils_the_batch(authed, bad, field):
    items = [item(requestId=f"r{i}", inputTokens=10) for i in range(499)] + [bad]
    response = send_logs(authed, items)
    assert error(response) == (422, "validation_error")
    assert message(response).startswith(f"requests[499].{field} ")
    assert stored(authed) == []
    assert overview(authed)["requestCount"] == 0 and overview(authed)["usageSummary"]["inputTokens"] == 0


# -- duplicates -------------------------------------------------------------------

def test_duplicates_are_skipped_inside_and_across_batches(authed):
    batch = [item(requestId="a", inputTokens=100), item(requestId="a", inputTokens=999), item(requestId="b")]
    assert ingest(authed, batch) == {"accepted": 2, "duplicates": 1}
    assert ingest(authed, batch + [item(requestId="c")]) == {"accepted": 1, "duplicates": 3}
    logs = stored(authed)
    assert sorted((log["requestId"], log["inputTokens"]) for log in logs) == [("a", 100), ("b", 0), ("c", 0)]
    figures = overview(authed)
    assert figures["requestCount"] == 3 and figures["usageSummary"]["inputTokens"] == 100


def test_items_without_a_request_id_are_never_deduplicated(authed):
    for _ in range(2):
        assert ingest(authed, [item(inputTokens=7), item(inputTokens=7)]) == {"accepted": 2, "duplicates": 0}
    assert overview(authed)["requestCount"] == 4


# -- cost ---------------------------------------------------------------------------

# (model, (input, cached, output), status, the log's cost, the overview's totalCost rounded half up)
COSTS = [
    ("gpt-4o-mini", (1_000_000, 200_000, 500_000), "ok", 0.435, 0.435),
    ("gpt-4o-mini", (12_345, 345, 6_789), "ok", 0.005899, 0.0059),  # 5899.275 micro-USD
    ("gpt-4o-mini", (1_000, 0, 0), "ok", 0.00015, 0.0002),
    ("gpt-4o-mini", (7, 0, 0), "ok", 0.000001, 0.0),  # 1.05 micro-USD
    ("gpt-4o-mini", (1_000, 1_000, 0), "ok", 0.000075, 0.0001),
    ("o3-pro", (1_000, 500, 100), "ok", 0.028, 0.028),
    ("o3-pro", (1, 0, 0), "ok", 0.00002, 0.0),
    ("o3-pro", (10**12, 10**12, 10**12), "ok", 100_000_000.0, 100_000_000.0),
    ("o3-pro", (2_000, 0, 1_000), "error", 0.12, 0.12),  # a failed request still cost its tokens
    ("gpt-4o-mini", (1_000_000, 0, 0), "quota", 0.15, 0.15),
    ("gpt-4o-mini", (1_000_000, 0, 0), "cancelled", 0.15, 0.15),
    ("local-llama-3", (1_000_000, 0, 1_000_000), "ok", 0, 0),  # unpriced
]


@pytest.mark.parametrize("model, tokens, status, cost, total", COSTS)
def test_cost_comes_from_the_catalog(authed, model, tokens, status, cost, total):
    input_tokens, cached, output = tokens
    sent = item(model=model, inputTokens=input_tokens, cachedInputTokens=cached, outputTokens=output, status=status)
    assert ingest(authed, [sent]) == {"accepted": 1, "duplicates": 0}
    [log] = stored(authed)
    assert log["cost"] == cost
    assert overview(authed)["usageSummary"]["totalCost"] == total


# -- who may ingest -----------------------------------------------------------------

def test_the_ingest_token_is_accepted_without_a_session(app, authed):
    assert ingest(app.test_client(), [item(requestId="r1")], headers=BEARER) == {"accepted": 1, "duplicates": 0}
    assert [log["requestId"] for log in stored(authed)] == ["r1"]


def test_the_ingest_token_works_from_a_remote_client_before_a_password_exists(client):
    assert ingest(client, [item()], headers=BEARER, environ_base=REMOTE) == {"accepted": 1, "duplicates": 0}
    response = send_logs(client, [item()], environ_base=REMOTE)
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


WRONG_HEADERS = [
    "Bearer wrong", f"Bearer {INGEST}x", f"Bearer {INGEST[:-1]}", "Bearer ", "Bearer", "", INGEST,
    f"Basic {INGEST}", f"Token {INGEST}", "Bearer ingest-token-for-testü",
]


@pytest.mark.parametrize("header", WRONG_HEADERS)
def test_a_wrong_authorization_header_is_401_even_with_a_session(authed, header):
    response = send_logs(authed, [item()], headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert stored(authed) == []


def test_without_a_header_the_session_decides(app, authed):
    assert ingest(authed, [item()]) == {"accepted": 1, "duplicates": 0}
    response = send_logs(app.test_client(), [item()])
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED
    assert len(stored(authed)) == 1


@pytest.mark.parametrize("header", [f"Bearer {INGEST}", "Bearer None", "Bearer ", "Bearer null"])
def test_an_unconfigured_token_refuses_every_bearer(make_app, header):
    client = make_app(INGEST_TOKEN=None).test_client()
    setup_password(client)
    response = send_logs(client, [item()], headers={"Authorization": header})
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED
    assert ingest(client, [item()]) == {"accepted": 1, "duplicates": 0}  # the session still works without a header


@pytest.mark.parametrize("path", [LOGS, "/api/usage", "/api/accounts", "/api/dashboard/overview"])
def test_the_ingest_token_cannot_read(app, authed, path):
    ingest(authed, [item()])
    response = app.test_client().get(path, headers=BEARER)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED


@pytest.mark.parametrize("kwargs, status, code", [
    ({}, 415, "unsupported_media_type"),
    ({"data": "requests=[]", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ({"data": '{"requests": [', "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": '[{"model": "gpt-4o-mini"}]', "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": '{"requests": [{"model": "m", "inputTokens": Infinity}]}', "content_type": "application/json"},
     400, "invalid_json"),
])
def test_bad_bodies_are_refused_before_the_token_is_checked(authed, kwargs, status, code):
    response = authed.post(LOGS, headers={"Authorization": "Bearer wrong"}, **kwargs)
    assert error(response) == (status, code)
    assert stored(authed) == []


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_BODY_BYTES=2048).test_client()
    response = send_logs(client, [item(requestId=f"r{i}") for i in range(100)], headers=BEARER)
    assert error(response) == (413, "payload_too_large")
    assert ingest(client, [item()], headers=BEARER) == {"accepted": 1, "duplicates": 0}
