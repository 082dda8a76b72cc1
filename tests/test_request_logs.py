"""lb.request_logs: browsing request logs, filters and the signed cursor (contract section 5, GET /api/request-logs)."""
from datetime import datetime

import pytest

from helpers.http import (
    AUTH_REQUIRED, LOGS, REMOTE, create_account, error, ingest, message, names_field, ok, post, token, with_cookie
)

KEYS = {"id", "requestId", "requestedAt", "accountId", "apiKeyId", "model", "inputTokens", "outputTokens",
        "cachedInputTokens", "status", "errorCode", "latencyMs", "cost"}
STATUSES = ("ok", "error", "rate_limit", "quota", "cancelled")


def fetch(client, query=""):
    return ok(client.get(f"{LOGS}?{query}"))


def request_ids(client, query=""):
    return [log["requestId"] for log in fetch(client, query)["requests"]]


@pytest.fixture
def hours(authed):
    """Five logs an hour apart, 06:00Z (h0) back to 02:00Z (h4), ingested out of order."""
    account = create_account(authed)["id"]
    items = [{"requestId": f"h{i}", "requestedAt": f"2026-11-25T{6 - i:02d}:00:00Z", "status": STATUSES[i],
              "model": "o3-pro" if i % 2 else "gpt-4o-mini", "accountId": account if i < 2 else None}
             for i in (3, 0, 4, 1, 2)]
    ingest(authed, items)
    return account


def test_an_empty_log_answers_an_empty_page(authed):
    response = authed.get(LOGS)
    assert response.status_code == 200
    assert response.get_json() == {"requests": [], "nextCursor": None}


def test_items_have_exactly_the_contract_keys(authed):
    ingest(authed, [{"model": "gpt-4o-mini", "requestId": "r1", "inputTokens": 1000, "cachedInputTokens": 200,
                     "outputTokens": 10, "status": "error", "errorCode": "upstream_500", "latencyMs": 12}])
    page = fetch(authed)
    assert set(page) == {"requests", "nextCursor"} and page["nextCursor"] is None
    [log] = page["requests"]
    assert set(log) == KEYS
    assert log == {"id": log["id"], "requestId": "r1", "requestedAt": "2026-11-25T07:00:00Z", "accountId": None,
                   "apiKeyId": None, "model": "gpt-4o-mini", "inputTokens": 1000, "outputTokens": 10,
                   "cachedInputTokens": 200,
                   "status": "error", "errorCode": "upstream_500", "latencyMs": 12, "cost": 0.000141}


def test_logs_come_newest_first(authed, hours):
    page = fetch(authed)
    assert [log["requestId"] for log in page["requests"]] == ["h0", "h1", "h2", "h3", "h4"]
    assert [log["requestedAt"][11:13] for log in page["requests"]] == ["06", "05", "04", "03", "02"]
    assert page["nextCursor"] is None


@pytest.mark.parametrize("query, expected", [
    ("since=2026-11-25T04:00:00Z", ["h0", "h1", "h2"]),  # since is inclusive
    ("since=2026-11-25T04:00:00.001Z", ["h0", "h1"]),
    ("until=2026-11-25T04:00:00Z", ["h3", "h4"]),  # until is exclusive
    ("until=2026-11-25T04:00:00.001Z", ["h2", "h3", "h4"]),
    ("since=2026-11-25T03:00:00Z&until=2026-11-25T05:00:00Z", ["h2", "h3"]),
    ("since=2026-11-25T05:00:00%2B01:00&until=2026-11-25T06:00:00%2B01:00", ["h2"]),
    ("since=2026-11-25T04:00:00+00:00", ["h0", "h1", "h2"]),  # '+' unescaped arrives as a space
    ("since=2026-11-25T03:00:00+00:00&until=2026-11-25T05:00:00+00:00", ["h2", "h3"]),
    ("since=2026-11-25T06:00:00Z&until=2026-11-25T06:00:00Z", []),
    ("since=2026-11-25T07:00:00Z", []),
    ("model=o3-pro", ["h1", "h3"]),
    ("model=gpt-4o-mini&since=2026-11-25T03:00:00Z", ["h0", "h2"]),
    ("model=gpt-4", []),
    ("model=", []),
    ("accountId=nope", []),
    ("status=ok", ["h0"]), ("status=error", ["h1"]), ("status=rate_limit", ["h2"]),
    ("status=quota", ["h3"]), ("status=cancelled", ["h4"]),
    ("status=error&model=o3-pro", ["h1"]), ("status=error&model=gpt-4o-mini", []),
])
def test_filters(authed, hours, query, expected):
    assert request_ids(authed, query) == expected


def test_the_account_filter_keeps_working_after_a_delete(authed, hours):
    assert request_ids(authed, f"accountId={hours}") == ["h0", "h1"]
    assert authed.delete(f"/api/accounts/{hours}").status_code == 204
    assert request_ids(authed, f"accountId={hours}") == ["h0", "h1"]


@pytest.mark.parametrize("query, field", [
    ("status=OK", "status"), ("status=failed", "status"), ("status=", "status"),
    ("since=yesterday", "since"), ("since=", "since"), ("since=2026-11-25T04:00:00", "since"),
    ("since=2026-11-25", "since"), ("until=2026-02-30T00:00:00Z", "until"), ("until=1764050400", "until"),
    ("since=" + "9" * 1000, "since"),
])
def test_bad_filters_are_422(authed, hours, query, field):
    response = authed.get(f"{LOGS}?{query}")
    assert names_field(response, field)


# -- limit and pagination ------------------------------------------------------------

def test_the_default_limit_is_50(authed):
    ingest(authed, [{"model": "m", "requestId": f"r{i}"} for i in range(60)])
    page = fetch(authed)
    assert len(page["requests"]) == 50 and isinstance(page["nextCursor"], str)
    rest = fetch(authed, f"cursor={page['nextCursor']}")
    assert len(rest["requests"]) == 10 and rest["nextCursor"] is None


@pytest.mark.parametrize("limit, count", [("1", 1), ("2", 2), ("499", 499), ("500", 500)])
def test_limits_in_range(authed, limit, count):
    ingest(authed, [{"model": "m"}] * 501)
    page = fetch(authed, f"limit={limit}")
    assert len(page["requests"]) == count and page["nextCursor"] is not None


@pytest.mark.parametrize("limit", ["0", "501", "abc", "-1", "", "1.5", " 5", "5 ", "+5", "1e2", "٥", "9" * 5000])
def test_limits_out_of_range_are_422(authed, limit):
    response = authed.get(f"{LOGS}?limit={limit}")
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("limit ")


def test_the_last_page_has_no_cursor_even_when_full(authed):
    ingest(authed, [{"model": "m", "requestId": f"r{i}"} for i in range(4)])
    first = fetch(authed, "limit=2")
    assert first["nextCursor"] is not None
    last = fetch(authed, f"limit=2&cursor={first['nextCursor']}")
    assert len(last["requests"]) == 2 and last["nextCursor"] is None
    assert set(request_ids(authed)) == {log["requestId"] for log in first["requests"] + last["requests"]}


def walk(client, query):
    """Follow the cursors to the end; return the pages' logs in order."""
    logs, cursor = [], None
    while True:
        page = fetch(client, query + (f"&cursor={cursor}" if cursor else ""))
        logs += page["requests"]
        cursor = page["nextCursor"]
        if cursor is None:
            return logs
        assert page["requests"], "a page with a cursor must not be empty"


@pytest.fixture
def crowd(authed):
    """1200 logs over only three distinct timestamps, in two batches; returns their requestIds."""
    stamps = ["2026-11-25T05:00:00Z", "2026-11-25T06:00:00Z", "2026-11-25T06:00:00.001Z"]
    items = [{"model": "o3-pro" if i % 5 else "gpt-4o-mini", "requestId": f"r{i}", "requestedAt": stamps[i % 3]}
             for i in range(1200)]
    ingest(authed, items[:1000])
    ingest(authed, items[1000:])
    return {item["requestId"] for item in items}


@pytest.mark.parametrize("limit", [1, 7, 500])
def test_pagination_never_skips_or_repeats_a_row(authed, crowd, limit):
    logs = walk(authed, f"limit={limit}")
    ids = [log["requestId"] for log in logs]
    assert len(ids) == len(crowd) and set(ids) == crowd
    assert len({log["id"] for log in logs}) == len(crowd)
    stamps = [datetime.fromisoformat(log["requestedAt"]) for log in logs]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize("query, wanted", [
    ("model=gpt-4o-mini&limit=7", lambda i: i % 5 == 0),
    ("since=2026-11-25T06:00:00Z&limit=33", lambda i: i % 3 != 0),
    ("until=2026-11-25T06:00:00.001Z&model=o3-pro&limit=100", lambda i: i % 3 != 2 and i % 5 != 0),
])
def test_pagination_with_filters(authed, crowd, query, wanted):
    ids = [log["requestId"] for log in walk(authed, query)]
    assert len(ids) == len(set(ids))
    assert set(ids) == {f"r{i}" for i in range(1200) if wanted(i)}


def flip(text, index):
    """``text`` with the character at ``index`` replaced by a different one."""
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


TAMPERS = {
    "garbage": lambda c: "garbage", "empty": lambda c: "", "dot": lambda c: ".", "dots": lambda c: "..",
    "three-parts": lambda c: "a.b.c", "appended": lambda c: c + "A", "cut-end": lambda c: c[:-1],
    "cut-start": lambda c: c[1:], "payload": lambda c: flip(c, 0), "middle": lambda c: flip(c, len(c) // 2),
    "signature": lambda c: flip(c, -1), "upper": lambda c: c.upper(), "doubled": lambda c: c + "." + c,
    "unicode-start": lambda c: "ü" + c, "unicode-end": lambda c: c + "é", "unicode-signature": lambda c: "abc.é",
    "unicode-payload": lambda c: "é.abc", "nul": lambda c: "\x00", "long": lambda c: "A" * 10_000,
    "forged": lambda c: "MTox.00000000000000000000000000000000",
}


@pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
def test_tampered_cursors_are_422(authed, tamper):
    ingest(authed, [{"model": "m", "requestId": f"r{i}"} for i in range(3)])
    cursor = fetch(authed, "limit=1")["nextCursor"]
    bad = tamper(cursor)
    assert bad != cursor
    response = authed.get(LOGS, query_string={"limit": "1", "cursor": bad})
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("cursor ")


def test_a_cursor_signed_with_another_key_is_422(make_app, authed):
    ingest(authed, [{"model": "m"}] * 3)
    cursor = fetch(authed, "limit=1")["nextCursor"]
    other = with_cookie(make_app(SECRET_KEY="another installation's key"), token(authed))
    response = other.get(LOGS, query_string={"cursor": cursor})
    assert error(response) == (422, "validation_error")


# -- the guard --------------------------------------------------------------------

GUARDED = ["", "limit=1", "status=bogus", "cursor=garbage", "limit=0"]


@pytest.mark.parametrize("query", GUARDED)
def test_reading_needs_a_session_once_a_password_is_set(app, authed, query):
    ingest(authed, [{"model": "m"}])
    response = app.test_client().get(f"{LOGS}?{query}")
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


@pytest.mark.parametrize("query", GUARDED)
def test_remote_clients_cannot_read_before_a_password_is_set(client, query):
    ingest(client, [{"model": "m"}])
    response = client.get(f"{LOGS}?{query}", environ_base=REMOTE)
    assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED


# -- the apiKeyId filter ------------------------------------------------------------

def create_key(client, name):
    response = post(client, "/api/api-keys", {"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


@pytest.fixture
def keyed(authed):
    """Six logs an hour apart, k0 (06:00Z) back to k5: keys A, B, none, A, none, B; returns (A, B)."""
    a, b = create_key(authed, "a"), create_key(authed, "b")
    owners = [a, b, None, a, None, b]
    ingest(authed, [{"requestId": f"k{i}", "requestedAt": f"2026-11-25T{6 - i:02d}:00:00Z", "apiKeyId": owners[i],
                     "model": "o3-pro" if i < 3 else "gpt-4o-mini"} for i in (4, 1, 5, 0, 2, 3)])
    return a, b


def test_every_log_carries_its_api_key_id(authed, keyed):
    a, b = keyed
    logs = fetch(authed)["requests"]
    assert [(log["requestId"], log["apiKeyId"]) for log in logs] == [
        ("k0", a), ("k1", b), ("k2", None), ("k3", a), ("k4", None), ("k5", b)]
    assert all(set(log) == KEYS for log in logs)


@pytest.mark.parametrize("which, query, expected", [
    (0, "", ["k0", "k3"]),
    (1, "", ["k1", "k5"]),
    (0, "&model=gpt-4o-mini", ["k3"]),
    (1, "&since=2026-11-25T05:00:00Z", ["k1"]),
    (1, "&until=2026-11-25T05:00:00Z", ["k5"]),
    (0, "&status=error", []),
])
def test_the_api_key_filter(authed, keyed, which, query, expected):
    assert request_ids(authed, f"apiKeyId={keyed[which]}{query}") == expected


@pytest.mark.parametrize("value", ["key_nope", "", "%25", "KEY", "x" * 5000])
def test_an_api_key_id_that_names_no_logs_finds_none(authed, keyed, value):
    response = authed.get(f"{LOGS}?apiKeyId={value}")
    assert response.status_code == 200
    assert response.get_json() == {"requests": [], "nextCursor": None}


def test_the_api_key_filter_walks_pages(authed, keyed):
    a, _ = keyed
    first = fetch(authed, f"apiKeyId={a}&limit=1")
    assert [log["requestId"] for log in first["requests"]] == ["k0"] and first["nextCursor"]
    second = fetch(authed, f"apiKeyId={a}&limit=1&cursor={first['nextCursor']}")
    assert [log["requestId"] for log in second["requests"]] == ["k3"] and second["nextCursor"] is None


def test_the_api_key_filter_keeps_working_after_a_delete(authed, keyed):
    a, _ = keyed
    assert authed.delete(f"/api/api-keys/{a}").status_code == 204
    assert request_ids(authed, f"apiKeyId={a}") == ["k0", "k3"]
    assert [log["apiKeyId"] for log in fetch(authed, f"apiKeyId={a}")["requests"]] == [a, a]


def test_a_nul_in_the_api_key_filter_is_422(authed, keyed):
    response = authed.get(f"{LOGS}?apiKeyId=%00")
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("apiKeyId ")


def test_the_api_key_filter_needs_a_session(app, authed, keyed):
    for kwargs in ({}, {"environ_base": REMOTE}):
        response = app.test_client().get(f"{LOGS}?apiKeyId={keyed[0]}", **kwargs)
        assert response.status_code == 401 and response.get_json() == AUTH_REQUIRED
