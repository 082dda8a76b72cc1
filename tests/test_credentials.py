"""lb.credentials: POST /api/accounts/import, the tokens at rest, their refresh, the import-account command.

An auth.json (snake or camel case) makes an account per (email, ChatGPT
workspace), adopts a manual account of the same email, and updates (and
reactivates) one imported before; bad files are 422s naming the field and store
nothing. Tokens are sealed in the database and appear in no answer and no log
line. fresh_credentials refreshes an access token that expires within 5
minutes (or whose expiry is unreadable, 8 days after the last refresh, or when
forced) against a fake token endpoint (tests/fixtureapps/token_server.py):
one call per account however many threads or instances ask, a permanent
failure deactivates the account, a transient one leaves it alone.
"""
import base64
import json
import logging
import os
import stat

import pytest
from fixtureapps.token_server import Answer
from helpers.data import (
    ACCESS_1, ACCESS_2, ID_1, ID_2, NOW, REFRESH_1, REFRESH_2, auth_json, b64, fresh, id_token, new_tokens,
    refresh_fails, row, stored_tokens
)
from helpers.http import ACCOUNTS, IMPORT, REMOTE, create_account, error, imported, listed, names_field, ok, post

from lb import crypto


pytestmark = pytest.mark.uses_token_server


# -- import: created, updated, adopted ---------------------------------------------------------

def test_an_import_creates_the_account_and_a_second_one_updates_it(authed, app, clock):
    response = post(authed, IMPORT, auth_json())
    assert response.status_code == 201
    account = response.get_json()
    assert list(account) == ["id", "email", "planType", "status", "statusReason", "createdAt", "updatedAt",
                             "chatgptAccountId", "hasCredentials", "lastRefreshAt", "resetsAt", "usage",
                             "usageCheckedAt"]
    assert account == {"id": account["id"], "email": "ann@example.com", "planType": "plus", "status": "active",
                       "statusReason": None, "createdAt": NOW, "updatedAt": NOW, "chatgptAccountId": "ws-personal",
                       "hasCredentials": True, "lastRefreshAt": "2026-11-20T06:00:00Z", "resetsAt": None,
                       "usage": None, "usageCheckedAt": None}
    assert stored_tokens(app, account["id"]) == (ID_1, ACCESS_1, REFRESH_1)

    clock.advance(60)
    response = post(authed, IMPORT, auth_json(ID_2, ACCESS_2, REFRESH_2, last_refresh="2026-11-25T07:00:30Z"))
    assert response.status_code == 200
    expected = {**account, "email": "Ann@Example.com", "planType": "pro", "updatedAt": "2026-11-25T07:01:00Z",
                "lastRefreshAt": "2026-11-25T07:00:30Z"}
    assert response.get_json() == expected
    assert stored_tokens(app, account["id"]) == (ID_2, ACCESS_2, REFRESH_2)
    assert listed(authed) == [expected]


@pytest.mark.parametrize("status, reason, after", [
    ("deactivated", "refresh_token_reused", "active"),
    ("paused", "held back by hand", "paused"),
    ("rate_limited", "429 from upstream", "rate_limited"),
])
def test_a_re_import_reactivates_only_a_deactivated_account(authed, status, reason, after):
    account = imported(authed)
    assert ok(authed.patch(f"{ACCOUNTS}/{account['id']}", json={"status": status, "statusReason": reason}))
    again = imported(authed, status=200)
    assert again["id"] == account["id"]
    assert (again["status"], again["statusReason"]) == (after, None if after == "active" else reason)


def tokens_of(payload):
    tokens = payload["tokens"]
    return tuple(tokens.get(snake) or tokens.get(camel) for snake, camel in
                 (("id_token", "idToken"), ("access_token", "accessToken"), ("refresh_token", "refreshToken")))


CAMEL = {"tokens": {"idToken": ID_1, "accessToken": ACCESS_1, "refreshToken": REFRESH_1, "accountId": "ws-personal"},
         "lastRefresh": "2026-11-20T06:00:00Z"}
SNAKE_ONLY = {"tokens": {"id_token": ID_1, "access_token": ACCESS_1, "refresh_token": REFRESH_1,
                         "account_id": "ws-personal"}, "last_refresh": "2026-11-20T06:00:00Z"}
WITHOUT_ACCOUNT_ID = {"tokens": {"id_token": ID_1, "access_token": ACCESS_1, "refresh_token": REFRESH_1}}

VARIANTS = [
    ("the CLI's file", auth_json(), {"chatgptAccountId": "ws-personal", "planType": "plus"}),
    ("snake case only", SNAKE_ONLY, {"chatgptAccountId": "ws-personal", "lastRefreshAt": "2026-11-20T06:00:00Z"}),
    ("camel case", CAMEL, {"chatgptAccountId": "ws-personal", "planType": "plus",
                           "lastRefreshAt": "2026-11-20T06:00:00Z"}),
    ("account_id missing: the claims name it", WITHOUT_ACCOUNT_ID,
     {"chatgptAccountId": "ws-personal", "lastRefreshAt": NOW}),
    ("account_id null", auth_json(account_id=None), {"chatgptAccountId": "ws-personal"}),
    ("account_id empty", auth_json(account_id=""), {"chatgptAccountId": "ws-personal"}),
    ("account_id wins over the claims", auth_json(account_id="ws-from-file"), {"chatgptAccountId": "ws-from-file"}),
    ("account_id only in the file", auth_json(id_tok=id_token(workspace=None), account_id="ws-file-only"),
     {"chatgptAccountId": "ws-file-only"}),
    ("no plan claim", auth_json(id_tok=id_token(plan=None)), {"planType": None}),
    ("an opaque access token", auth_json(access="opaque-access-token"), {"hasCredentials": True}),
    ("last_refresh with nanoseconds", auth_json(last_refresh="2026-11-20T06:00:00.123456789Z"),
     {"lastRefreshAt": "2026-11-20T06:00:00.123Z"}),
    ("last_refresh with an offset", auth_json(last_refresh="2026-11-20T07:00:00+01:00"),
     {"lastRefreshAt": "2026-11-20T06:00:00Z"}),
    ("last_refresh null: the import time", auth_json(last_refresh=None), {"lastRefreshAt": NOW}),
    ("last_refresh ahead of the clock: now", auth_json(last_refresh="2027-01-01T00:00:00Z"), {"lastRefreshAt": NOW}),
]


@pytest.mark.parametrize("payload, expected", [v[1:] for v in VARIANTS], ids=[v[0] for v in VARIANTS])
def test_auth_json_variants(authed, app, payload, expected):
    account = imported(authed, payload)
    assert {key: account[key] for key in expected} == expected
    assert account["email"] == "ann@example.com"
    assert stored_tokens(app, account["id"]) == tokens_of(payload)
    assert listed(authed) == [account]


def test_the_same_email_in_two_workspaces_is_two_accounts(authed, clock):
    personal = imported(authed)
    clock.advance(1)
    team = imported(authed, auth_json(id_token(plan="team", workspace="ws-team"), account_id=None))
    assert team["id"] != personal["id"]
    assert [(a["email"], a["chatgptAccountId"], a["planType"]) for a in listed(authed)] == [
        ("ann@example.com", "ws-personal", "plus"), ("ann@example.com", "ws-team", "team")]
    again = imported(authed, auth_json(id_token(plan="enterprise", workspace="ws-team"), account_id=None), status=200)
    assert (again["id"], again["planType"]) == (team["id"], "enterprise")
    assert [a["planType"] for a in listed(authed)] == ["plus", "enterprise"]


def test_a_manual_account_is_adopted_by_an_import_of_its_email(authed, app, clock):
    manual = create_account(authed, "ANN@example.com", planType="free", status="paused")
    assert (manual["chatgptAccountId"], manual["hasCredentials"]) == (None, False)
    clock.advance(30)
    response = post(authed, IMPORT, auth_json())
    assert response.status_code == 200
    adopted = response.get_json()
    assert adopted == {**manual, "email": "ann@example.com", "planType": "plus", "updatedAt": "2026-11-25T07:00:30Z",
                       "chatgptAccountId": "ws-personal", "hasCredentials": True,
                       "lastRefreshAt": "2026-11-20T06:00:00Z"}
    assert stored_tokens(app, manual["id"]) == (ID_1, ACCESS_1, REFRESH_1)
    assert listed(authed) == [adopted]
    # The email's other workspace is an account of its own: the manual one is gone.
    clock.advance(1)
    team = imported(authed, auth_json(id_token(workspace="ws-team"), account_id=None))
    assert [a["id"] for a in listed(authed)] == [manual["id"], team["id"]]


def test_a_manual_create_beside_an_imported_account_works_once(authed, clock):
    account = imported(authed)
    clock.advance(1)  # the list is oldest first
    manual = create_account(authed, "Ann@example.com")
    assert manual["id"] != account["id"] and manual["chatgptAccountId"] is None
    response = post(authed, ACCOUNTS, {"email": "ann@EXAMPLE.com"})
    assert error(response) == (409, "account_exists")
    assert [a["id"] for a in listed(authed)] == [account["id"], manual["id"]]


# -- import: bad files ---------------------------------------------------------------------------

def with_tokens(**changes):
    """auth_json() with its tokens object changed (a None value removes the key)."""
    payload = auth_json()
    tokens = {**payload["tokens"], **changes}
    payload["tokens"] = {key: value for key, value in tokens.items() if value is not None}
    return payload


NOT_JSON_PAYLOAD = base64.urlsafe_b64encode(b"not json").decode().rstrip("=")
BAD_FILES = [
    ({}, "tokens"),
    ({"OPENAI_API_KEY": "sk-proj-123", "tokens": None}, "tokens"),
    ({"tokens": ID_1}, "tokens"),
    ({"tokens": [ID_1, ACCESS_1, REFRESH_1]}, "tokens"),
    (with_tokens(id_token=None), "tokens.id_token"),
    (with_tokens(id_token=""), "tokens.id_token"),
    (with_tokens(id_token=5), "tokens.id_token"),
    (with_tokens(id_token="not-a-jwt"), "tokens.id_token"),
    (with_tokens(id_token=ID_1.rsplit(".", 1)[0]), "tokens.id_token"),  # two parts
    (with_tokens(id_token=f"{b64({'alg': 'none'})}.{NOT_JSON_PAYLOAD}.sig"), "tokens.id_token"),
    (with_tokens(id_token=f"{b64({'alg': 'none'})}.{b64(['ann@example.com'])}.sig"), "tokens.id_token"),
    (with_tokens(id_token="é.é.é"), "tokens.id_token"),
    (with_tokens(id_token=id_token(email=None)), "tokens.id_token"),
    (with_tokens(id_token=id_token(email="not-an-email")), "tokens.id_token"),
    (with_tokens(id_token=id_token(email=42)), "tokens.id_token"),
    (with_tokens(id_token=id_token(plan=5)), "tokens.id_token"),
    (with_tokens(id_token=id_token(plan="p" * 65)), "tokens.id_token"),
    (with_tokens(id_token=id_token(workspace=None), account_id=None), "tokens.account_id"),
    (with_tokens(id_token=id_token(workspace=None), account_id=""), "tokens.account_id"),
    (with_tokens(account_id=7), "tokens.account_id"),
    (with_tokens(account_id="w" * 129), "tokens.account_id"),
    (with_tokens(access_token=None), "tokens.access_token"),
    (with_tokens(access_token=""), "tokens.access_token"),
    (with_tokens(access_token=["x"]), "tokens.access_token"),
    (with_tokens(refresh_token=None), "tokens.refresh_token"),
    (with_tokens(refresh_token=""), "tokens.refresh_token"),
    (with_tokens(refresh_token="rt\x00"), "tokens.refresh_token"),
    ({**CAMEL, "tokens": {**CAMEL["tokens"], "idToken": "nope"}}, "tokens.idToken"),
    ({**CAMEL, "tokens": {**CAMEL["tokens"], "refreshToken": ""}}, "tokens.refreshToken"),
    ({**auth_json(), "last_refresh": "last tuesday"}, "last_refresh"),
    ({**auth_json(), "last_refresh": "2026-11-20T06:00:00"}, "last_refresh"),  # no zone
    ({**CAMEL, "lastRefresh": 1764000000}, "lastRefresh"),
]


@pytest.mark.parametrize("payload, field", BAD_FILES)
def test_bad_files_are_422_naming_the_field_and_store_nothing(authed, payload, field):
    response = post(authed, IMPORT, payload)
    assert names_field(response, field)
    assert listed(authed) == []


@pytest.mark.parametrize("data", ["[]", '"tokens"', "{", "null"])
def test_a_body_that_is_not_a_json_object_is_400(authed, data):
    response = authed.post(IMPORT, data=data, content_type="application/json")
    assert error(response) == (400, "invalid_json")
    assert listed(authed) == []


def test_a_bad_re_import_changes_nothing(authed, app, clock):
    account = imported(authed)
    clock.advance(60)
    response = post(authed, IMPORT, with_tokens(refresh_token=""))
    assert error(response) == (422, "validation_error")
    assert listed(authed) == [account]
    assert stored_tokens(app, account["id"]) == (ID_1, ACCESS_1, REFRESH_1)


def test_import_needs_a_session(app, authed):
    response = post(app.test_client(), IMPORT, auth_json())
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "authentication_required"
    assert listed(authed) == []


def test_a_remote_client_cannot_import_before_a_password_is_set(client):
    response = post(client, IMPORT, auth_json(), environ_base=REMOTE)
    assert error(response) == (401, "authentication_required")
    assert listed(client) == []


# -- tokens at rest and out of sight ---------------------------------------------------------------

def test_tokens_are_stored_sealed_with_the_data_dir_key(authed, app, tmp_path):
    account = imported(authed)
    stored = row(app, account["id"])
    for column, token in ((stored.id_token, ID_1), (stored.access_token, ACCESS_1), (stored.refresh_token, REFRESH_1)):
        assert column.startswith("gAAAAA") and token not in column
        assert crypto.unseal(column, app.extensions["lb_fernet"]) == token
    key_file = tmp_path / "data" / "encryption_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_no_token_is_ever_answered_or_logged(authed, app, clock, token_server, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [ID_1, ACCESS_1, REFRESH_1, ID_2, ACCESS_2, REFRESH_2]
    answers = [post(authed, IMPORT, auth_json())]
    account = answers[0].get_json()
    answers += [authed.get(ACCOUNTS), authed.get(f"{ACCOUNTS}/{account['id']}")]
    token_server.answer(new_tokens(id_token=ID_2, access_token=ACCESS_2, refresh_token=REFRESH_2),
                        Answer(401, {"error": {"code": "refresh_token_reused"}}))
    assert fresh(app, account["id"], clock, force=True).access_token == ACCESS_2
    failure = refresh_fails(app, account["id"], clock)
    answers += [post(authed, IMPORT, auth_json(access="")), authed.get(f"{ACCOUNTS}/{account['id']}")]
    assert [r.status_code for r in answers] == [201, 200, 200, 422, 200]
    assert answers[-1].get_json()["statusReason"] == "refresh_token_reused"
    texts = [r.get_data(as_text=True) for r in answers] + [caplog.text, str(failure)]
    assert "tokens refreshed" in caplog.text and "refresh_token_reused" in caplog.text
    assert [secret for secret in secrets for text in texts if secret in text] == []


# -- the import-account command --------------------------------------------------------------------------

def run_import(app, path):
    return app.test_cli_runner().invoke(args=["import-account", str(path)])


def test_the_command_reads_json_as_the_api_does(authed, app, tmp_path):
    # A 5000-digit number in a field it ignores is still valid JSON, for the file as for the API.
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(auth_json())[:-1] + ', "spare": ' + "9" * 5000 + "}")
    assert post(authed, IMPORT, data=path.read_text(), content_type="application/json").status_code == 201
    result = run_import(app, path)
    assert (result.exit_code, result.stdout) == (0, "imported ann@example.com (ws-personal): updated\n")
    path.write_text(json.dumps(auth_json())[:-1] + ', "spare": NaN}')
    refused = run_import(app, path)
    assert refused.exit_code == 1 and refused.stderr == f"Error: {path}: not valid JSON\n"


def test_the_command_imports_a_file_and_says_what_it_did(authed, app, tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(auth_json()))
    first = run_import(app, path)
    assert (first.exit_code, first.stdout, first.stderr) == (0, "imported ann@example.com (ws-personal): created\n", "")
    path.write_text(json.dumps(auth_json(ID_2, ACCESS_2, REFRESH_2)))
    second = run_import(app, path)
    assert (second.exit_code, second.stdout) == (0, "imported Ann@Example.com (ws-personal): updated\n")
    [account] = listed(authed)
    assert (account["email"], account["planType"], account["hasCredentials"]) == ("Ann@Example.com", "pro", True)
    assert stored_tokens(app, account["id"]) == (ID_2, ACCESS_2, REFRESH_2)
    for secret in (ID_1, ACCESS_1, REFRESH_1, ID_2, ACCESS_2, REFRESH_2):
        assert secret not in first.output + second.output


@pytest.mark.parametrize("content, problem", [
    (None, "cannot be read"),
    ("{", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ('{"tokens": NaN}', "not valid JSON"),
    ("[]", "must hold a JSON object"),
    (json.dumps({"OPENAI_API_KEY": "sk-proj-secret", "tokens": None}), "tokens is required"),
    (json.dumps(with_tokens(id_token="not-a-jwt")), "tokens.id_token must be a JWT"),
])
def test_the_command_refuses_a_bad_file_in_one_line(authed, app, tmp_path, content, problem):
    path = tmp_path / "auth.json"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_import(app, path)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"Error: {path}: ")
    assert problem in result.stderr
    assert ACCESS_1 not in result.output and REFRESH_1 not in result.output and "sk-proj-secret" not in result.output
    assert listed(authed) == []
