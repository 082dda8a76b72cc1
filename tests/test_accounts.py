"""lb.accounts: the CRUD endpoints of /api/accounts, the account object, validation and guards (contract section 4)."""
from urllib.parse import quote

import pytest

from helpers.data import NOW_MS, pool_account, row
from helpers.http import (
    AUTH_REQUIRED, REMOTE, TOTP_REQUIRED, create_account, enable_totp, error, ingest, login, message, names_field,
    ok, overview, post, setup_password
)
from lb import accounts
from lb.tables import Account, db

ACCOUNTS = "/api/accounts"
KEYS = ["id", "email", "planType", "status", "statusReason", "createdAt", "updatedAt",
        "chatgptAccountId", "hasCredentials", "lastRefreshAt", "resetsAt", "usage", "usageCheckedAt"]
STATUSES = ("active", "paused", "rate_limited", "quota_exceeded", "deactivated")
NOW = "2026-11-25T07:00:00Z"


def listed(client):
    return ok(client.get(ACCOUNTS))["accounts"]


def by_id(accounts):
    return {a["id"]: a for a in accounts}


# -- the happy paths -------------------------------------------------------------

def test_list_starts_empty(authed):
    assert ok(authed.get(ACCOUNTS)) == {"accounts": []}


def test_create_returns_the_account_with_defaults(authed):
    account = create_account(authed, "ann@example.com")  # 201
    assert list(account) == KEYS
    assert isinstance(account["id"], str) and account["id"]
    assert account == {"id": account["id"], "email": "ann@example.com", "planType": None, "status": "active",
                       "statusReason": None, "createdAt": NOW, "updatedAt": NOW, "chatgptAccountId": None,
                       "hasCredentials": False, "lastRefreshAt": None, "resetsAt": None, "usage": None,
                       "usageCheckedAt": None}


@pytest.mark.parametrize("status", STATUSES)
def test_create_with_plan_and_status(authed, status):
    account = create_account(authed, "bob@example.com", planType="plus", status=status)
    assert (account["planType"], account["status"]) == ("plus", status)


def test_read_and_list_give_the_same_objects(authed):
    ann = create_account(authed, "ann@example.com")
    bob = create_account(authed, "bob@example.com", planType="pro", status="paused")
    for account in (ann, bob):
        response = authed.get(f"{ACCOUNTS}/{account['id']}")
        assert response.status_code == 200
        assert response.get_json() == account
    assert by_id(listed(authed)) == {ann["id"]: ann, bob["id"]: bob}


def set_columns(app, account_id, **columns):
    """Write columns that only the proxy writes (usage, resets_at) directly."""
    if columns:
        with app.app_context(), db.connection_context():
            Account.update(**columns).where(Account.id == account_id).execute()


RESETS = 1795594800000  # 2026-11-25T08:20:00Z


@pytest.mark.parametrize("columns, usage", [
    ({}, None),
    ({"primary_used_percent": 42.5}, {"primaryUsedPercent": 42.5, "primaryResetsAt": None,
                                      "secondaryUsedPercent": None, "secondaryResetsAt": None}),
    ({"secondary_resets_at": RESETS}, {"primaryUsedPercent": None, "primaryResetsAt": None,
                                       "secondaryUsedPercent": None, "secondaryResetsAt": "2026-11-25T08:20:00Z"}),
    ({"primary_used_percent": 100.0, "primary_resets_at": RESETS, "secondary_used_percent": 7.0,
      "secondary_resets_at": RESETS + 250},
     {"primaryUsedPercent": 100.0, "primaryResetsAt": "2026-11-25T08:20:00Z", "secondaryUsedPercent": 7.0,
      "secondaryResetsAt": "2026-11-25T08:20:00.250Z"}),
])
def test_usage_is_null_until_the_upstream_has_answered(app, authed, columns, usage):
    account = create_account(authed)
    set_columns(app, account["id"], **columns)
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == {**account, "usage": usage}
    assert listed(authed) == [{**account, "usage": usage}]


@pytest.mark.parametrize("status, shown", [("rate_limited", True), ("quota_exceeded", True), ("active", False),
                                           ("paused", False), ("deactivated", False)])
def test_resets_at_shows_only_while_the_account_waits_for_it(app, authed, status, shown):
    account = create_account(authed, status=status)
    set_columns(app, account["id"], resets_at=RESETS)
    expected = {**account, "resetsAt": "2026-11-25T08:20:00Z" if shown else None}
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}")) == expected


def test_patch_changes_fields_and_updated_at(authed, clock):
    account = create_account(authed)
    clock.advance(90)
    response = authed.patch(f"{ACCOUNTS}/{account['id']}",
                            json={"status": "rate_limited", "planType": "team", "statusReason": "429 from upstream"})
    assert response.status_code == 200
    expected = {**account, "status": "rate_limited", "planType": "team", "statusReason": "429 from upstream",
                "updatedAt": "2026-11-25T07:01:30Z"}
    assert response.get_json() == expected
    assert authed.get(f"{ACCOUNTS}/{account['id']}").get_json() == expected


def test_patch_null_clears_text_fields_and_absent_fields_are_kept(authed):
    account = create_account(authed, planType="plus", status="paused")
    authed.patch(f"{ACCOUNTS}/{account['id']}", json={"statusReason": "manual pause"})
    response = authed.patch(f"{ACCOUNTS}/{account['id']}", json={"planType": None})
    assert response.status_code == 200
    assert response.get_json() == {**account, "planType": None, "statusReason": "manual pause"}
    response = authed.patch(f"{ACCOUNTS}/{account['id']}", json={"statusReason": None})
    assert response.status_code == 200
    assert response.get_json() == {**account, "planType": None, "statusReason": None}
    response = authed.patch(f"{ACCOUNTS}/{account['id']}", json={})
    assert response.status_code == 200
    assert response.get_json() == {**account, "planType": None, "statusReason": None}


@pytest.mark.parametrize("field, limit", [("planType", 64), ("statusReason", 500)])
def test_text_fields_take_their_full_length(authed, field, limit):
    account = create_account(authed)
    response = authed.patch(f"{ACCOUNTS}/{account['id']}", json={field: "é" * limit})
    assert response.status_code == 200
    assert response.get_json()[field] == "é" * limit


def test_delete_answers_204_with_an_empty_body(authed):
    ann, bob = create_account(authed, "ann@example.com"), create_account(authed, "bob@example.com")
    response = authed.delete(f"{ACCOUNTS}/{ann['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert error(authed.get(f"{ACCOUNTS}/{ann['id']}")) == (404, "account_not_found")
    assert error(authed.delete(f"{ACCOUNTS}/{ann['id']}")) == (404, "account_not_found")
    assert listed(authed) == [bob]


def test_ids_are_opaque_and_never_reused(authed):
    seen = set()
    for _ in range(5):
        account = create_account(authed, "same@example.com")
        assert isinstance(account["id"], str) and account["id"] not in seen
        seen.add(account["id"])
        assert authed.delete(f"{ACCOUNTS}/{account['id']}").status_code == 204
    assert listed(authed) == []


# -- emails ----------------------------------------------------------------------

GOOD_EMAILS = [
    "a@b.co",
    "first.last+tag@mail.example.org",
    "o'brien@example.com",
    "robert');DROP--TABLE@example.com",
    '"quoted"@example.com',
    "用户@例子.广告",
    "ünïcödé@exämple.de",
    "a" * 242 + "@example.com",  # 254 characters, the limit
]

BAD_EMAILS = [
    "", "plain", "a@b", "a.b@example", "@example.com", "ann@", "a@@example.com", "a@b@example.com",
    "a b@example.com", " ann@example.com", "ann@example.com ", "ann@example.com\n", "a\t@example.com",
    "a\u00a0b@example.com", "ann\u3000@example.com",  # unicode spaces
    "a\x00@example.com", "ann@example.com\x00",
    "x' OR '1'='1@example.com", "ann@example.com'; DROP TABLE account; --",
    "a" * 243 + "@example.com",  # 255 characters
    "a" * 100_000 + "@example.com",
    "\ud800@example.com",  # a lone surrogate: valid JSON, not storable text
    "\u0130" * 240 + "@x.io",  # 245 characters, but 485 once lower-cased: "İ" becomes "i̇"
]


@pytest.mark.parametrize("email", GOOD_EMAILS)
def test_good_emails_are_stored_verbatim(authed, email):
    account = create_account(authed, email)
    assert account["email"] == email
    assert authed.get(f"{ACCOUNTS}/{account['id']}").get_json()["email"] == email


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_bad_emails_are_refused(authed, email):
    response = post(authed, ACCOUNTS, {"email": email})
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("email ")
    assert listed(authed) == []


def test_an_email_whose_lower_case_is_longer_still_fits_when_it_can(authed):
    email = "\u0130" * 120 + "@x.io"  # 245 characters once lower-cased
    assert create_account(authed, email)["email"] == email
    response = post(authed, ACCOUNTS, {"email": email.lower()})
    assert error(response) == (409, "account_exists")


@pytest.mark.parametrize("first, second", [
    ("Ann@Example.com", "ann@example.com"),
    ("ann@example.com", "ANN@EXAMPLE.COM"),
    ("Änn@Exämple.de", "änn@exämple.de"),
])
def test_emails_are_unique_regardless_of_case(authed, first, second):
    account = create_account(authed, first)
    response = post(authed, ACCOUNTS, {"email": second, "status": "paused"})
    assert error(response) == (409, "account_exists")
    assert listed(authed) == [account]


def test_an_email_is_free_again_after_a_delete(authed):
    first = create_account(authed, "ann@example.com")
    authed.delete(f"{ACCOUNTS}/{first['id']}")
    second = create_account(authed, "ANN@example.com")
    assert second["id"] != first["id"] and second["email"] == "ANN@example.com"


# -- bad inputs ------------------------------------------------------------------

BAD_CREATES = [
    ({}, "email"), ({"email": None}, "email"), ({"email": 5}, "email"), ({"email": True}, "email"),
    ({"email": ["a@b.co"]}, "email"), ({"email": {"a": "b"}}, "email"), ({"planType": "plus"}, "email"),
    ({"email": "a@b.co", "planType": 5}, "planType"),
    ({"email": "a@b.co", "planType": "x" * 65}, "planType"),
    ({"email": "a@b.co", "status": "ACTIVE"}, "status"),
    ({"email": "a@b.co", "status": "deleted"}, "status"),
    ({"email": "a@b.co", "status": ""}, "status"),
    ({"email": "a@b.co", "status": 1}, "status"),
    ({"email": "a@b.co", "status": ["active"]}, "status"),
]


@pytest.mark.parametrize("payload, field", BAD_CREATES)
def test_bad_create_bodies_are_422(authed, payload, field):
    response = post(authed, ACCOUNTS, payload)
    assert names_field(response, field)
    assert listed(authed) == []


BAD_PATCHES = [
    ({"status": "unknown"}, "status"), ({"status": None}, "status"), ({"status": 5}, "status"),
    ({"status": "Active"}, "status"), ({"planType": "x" * 65}, "planType"), ({"planType": 5}, "planType"),
    ({"planType": ["plus"]}, "planType"), ({"statusReason": "x" * 501}, "statusReason"),
    ({"statusReason": {}}, "statusReason"), ({"statusReason": "\ud800"}, "statusReason"),
    ({"planType": "team", "status": "bogus"}, "status"),  # one bad field spoils the whole patch
]


@pytest.mark.parametrize("payload, field", BAD_PATCHES)
def test_bad_patch_bodies_are_422_and_change_nothing(authed, clock, payload, field):
    account = create_account(authed, planType="plus")
    clock.advance(60)
    response = authed.patch(f"{ACCOUNTS}/{account['id']}", json=payload)
    assert names_field(response, field)
    assert listed(authed) == [account]


WEIRD_IDS = ["nope", "acc_", "0", "-1", "acc_' OR '1'='1", "%", "\x00", "é", "a.b;c", "x" * 5000]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
@pytest.mark.parametrize("account_id", WEIRD_IDS)
def test_unknown_ids_are_404(authed, method, account_id):
    create_account(authed)
    kwargs = {"json": {"status": "paused"}} if method == "patch" else {}
    response = getattr(authed, method)(f"{ACCOUNTS}/{quote(account_id, safe='')}", **kwargs)
    assert error(response) == (404, "account_not_found")
    assert message(response) == "Account not found"
    assert [a["status"] for a in listed(authed)] == ["active"]


BAD_BODIES = [
    ({}, 415, "unsupported_media_type"),
    ({"data": "email=a@b.co", "content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ({"data": '{"email": "a@b.co"}', "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ({"data": "", "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": "{", "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": "[]", "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": '["a@b.co"]', "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": '"a@b.co"', "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": "null", "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": '{"email": "a@b.co", "planType": NaN}', "content_type": "application/json"}, 400, "invalid_json"),
    ({"data": b'{"email": "\xff@b.co"}', "content_type": "application/json"}, 400, "invalid_json"),
]


@pytest.mark.parametrize("method", ["post", "patch"])
@pytest.mark.parametrize("kwargs, status, code", BAD_BODIES)
def test_bad_bodies_are_refused_and_change_nothing(authed, method, kwargs, status, code):
    account = create_account(authed)
    path = ACCOUNTS if method == "post" else f"{ACCOUNTS}/{account['id']}"
    assert error(getattr(authed, method)(path, **kwargs)) == (status, code)
    assert listed(authed) == [account]


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_BODY_BYTES=2048).test_client()
    setup_password(client)
    account = create_account(client)
    big = {"email": "bob@example.com", "statusReason": "x" * 3000}
    assert error(post(client, ACCOUNTS, big)) == (413, "payload_too_large")
    assert error(client.patch(f"{ACCOUNTS}/{account['id']}", json=big)) == (413, "payload_too_large")
    assert listed(client) == [account]


def test_failed_writes_change_nothing(authed, clock):
    account = create_account(authed, planType="plus")
    before = listed(authed)
    clock.advance(60)
    attempts = [
        post(authed, ACCOUNTS, {"email": "ANN@example.com"}),
        post(authed, ACCOUNTS, {"email": "bob@example.com", "status": "gone"}),
        authed.patch(f"{ACCOUNTS}/{account['id']}", json={"planType": "pro", "statusReason": 7}),
        authed.patch(f"{ACCOUNTS}/nope", json={"status": "paused"}),
        authed.delete(f"{ACCOUNTS}/nope"),
    ]
    assert [error(r) for r in attempts] == [
        (409, "account_exists"), (422, "validation_error"), (422, "validation_error"),
        (404, "account_not_found"), (404, "account_not_found"),
    ]
    assert listed(authed) == before


# -- the guard -------------------------------------------------------------------

def requests_for(account_id):
    return [
        ("get", ACCOUNTS, None),
        ("post", ACCOUNTS, {"email": "eve@example.com"}),
        ("get", f"{ACCOUNTS}/{account_id}", None),
        ("patch", f"{ACCOUNTS}/{account_id}", {"status": "deactivated"}),
        ("delete", f"{ACCOUNTS}/{account_id}", None),
    ]


@pytest.mark.parametrize("index", range(5))
def test_every_endpoint_needs_a_session_once_a_password_is_set(app, authed, index):
    account = create_account(authed)
    method, path, payload = requests_for(account["id"])[index]
    response = getattr(app.test_client(), method)(path, json=payload)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert listed(authed) == [account]


@pytest.mark.parametrize("index", range(5))
def test_remote_clients_are_refused_before_a_password_is_set(client, index):
    account = create_account(client)
    method, path, payload = requests_for(account["id"])[index]
    response = getattr(client, method)(path, json=payload, environ_base=REMOTE)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert listed(client) == [account]


def test_a_session_owing_totp_is_refused(app, authed, clock):
    enable_totp(authed, clock)
    other = app.test_client()
    assert login(other).status_code == 200
    response = other.get(ACCOUNTS)
    assert response.status_code == 401
    assert response.get_json() == TOTP_REQUIRED


# -- accounts in the overview and in the logs -------------------------------------

def counts(client):
    return overview(client)["accountCounts"]


def test_overview_counts_accounts_and_forgets_deleted_ones(authed):
    made = [create_account(authed, f"u{i}@example.com", status=s) for i, s in enumerate(STATUSES + ("active",))]
    assert counts(authed) == {"total": 6, "active": 2, "paused": 1, "rateLimited": 1, "quotaExceeded": 1,
                              "deactivated": 1}
    authed.patch(f"{ACCOUNTS}/{made[0]['id']}", json={"status": "paused"})
    authed.delete(f"{ACCOUNTS}/{made[1]['id']}")
    authed.delete(f"{ACCOUNTS}/{made[4]['id']}")
    assert counts(authed) == {"total": 4, "active": 1, "paused": 1, "rateLimited": 1, "quotaExceeded": 1,
                              "deactivated": 0}


def test_a_deleted_accounts_logs_keep_its_id_and_usage(authed):
    account = create_account(authed)
    items = [{"model": "gpt-4o-mini", "accountId": account["id"], "inputTokens": 1000, "outputTokens": 500},
             {"model": "o3-pro", "inputTokens": 10}]
    assert ingest(authed, items) == {"accepted": 2, "duplicates": 0}
    summary = overview(authed)["usageSummary"]
    assert authed.delete(f"{ACCOUNTS}/{account['id']}").status_code == 204

    logs = authed.get("/api/request-logs").get_json()["requests"]
    assert sorted(log["accountId"] or "" for log in logs) == ["", account["id"]]
    usage = authed.get("/api/usage?groupBy=account").get_json()
    assert [(row["key"], row["requests"], row["inputTokens"]) for row in usage["rows"]] == [
        (account["id"], 1, 1000), (None, 1, 10)]
    after = overview(authed)
    assert after["usageSummary"] == summary
    assert after["accountCounts"]["total"] == 0


# -- accounts.apply: the one door for status changes -------------------------------------------

def test_an_automatic_status_change_never_touches_a_paused_accounts_status(app, clock):
    paused = pool_account(app, clock, "a", status="paused")
    active = pool_account(app, clock, "b")
    with app.app_context(), db.connection_context():
        assert not accounts.apply(paused, {"status": "rate_limited", "resets_at": NOW_MS + 1,
                                           "primary_used_percent": 90.0}, NOW_MS + 5)
        assert row(app, paused).primary_used_percent == 90.0  # its usage is recorded all the same
        assert accounts.apply(active, {"status": "rate_limited", "resets_at": NOW_MS + 1}, NOW_MS + 5)
        assert accounts.apply(paused, {"primary_used_percent": 40.0}, NOW_MS + 6)  # no status: written
        with pytest.raises(ValueError):
            accounts.apply(active, {"status": "paused"}, NOW_MS + 7)
    assert (row(app, paused).status, row(app, paused).resets_at, row(app, paused).updated_at) == ("paused", None,
                                                                                                   NOW_MS)
    assert row(app, paused).primary_used_percent == 40.0
    assert (row(app, active).status, row(app, active).updated_at) == ("rate_limited", NOW_MS + 5)


def test_the_admin_ends_a_pause_and_a_compare_and_set_writes_only_while_its_columns_hold(app, clock):
    paused = pool_account(app, clock, "a", status="paused")
    with app.app_context(), db.connection_context():
        assert accounts.apply(paused, {"status": "active"}, NOW_MS + 5, admin=True)
        assert not accounts.apply(paused, {"status": "deactivated"}, NOW_MS + 6, expect={"chatgpt_account_id": "x"})
        assert accounts.apply(paused, {"status": "deactivated"}, NOW_MS + 7, expect={"chatgpt_account_id": "ws-a"})
    assert (row(app, paused).status, row(app, paused).updated_at) == ("deactivated", NOW_MS + 7)
