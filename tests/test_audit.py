"""lb.audit: the audit log (contract section 16, GET /api/audit-log).

Every one of the 15 actions is written with its target and the client's
address (the trusted proxy's X-Forwarded-For when LB_TRUSTED_PROXIES says so,
the raw address otherwise), in the transaction of the change it records (a
refused change leaves no entry), and never with a secret in it: the whole
table is scanned for the passwords, API keys, TOTP secret and codes, session
cookies, account tokens and the webhook's path. Then the list: newest first,
keyset-paged like the request logs.
"""
import json

import pyotp
import pytest

from helpers.data import (ACCESS_1, ID_1, NEW_PASSWORD, NOW, NOW_MS, PASSWORD, REFRESH_1, auth_json, stored_tokens)
from helpers.http import (ACCOUNTS, AUTH, AUTH_REQUIRED, IMPORT, REMOTE, change, create_account, denied,
                          enable_totp, error, imported, message, names_field, ok, post, remove,
                          setup_password, token)
from lb import audit, oauth, request_logs, tables

AUDIT = "/api/audit-log"
KEYS = "/api/api-keys"
FLOWS = "/api/oauth/flows"
SETTINGS = "/api/settings"
WEBHOOK = "https://hooks.example.com/services/T0001/B0002/webhook-path-secret"


def entries(app):
    """Every entry as the API shows it, oldest first."""
    with app.app_context(), tables.db.connection_context():
        return [audit.as_json(entry) for entry in tables.AuditEntry.select().order_by(tables.AuditEntry.id)]


def actions(app):
    return [entry["action"] for entry in entries(app)]


def last(app):
    return entries(app)[-1]


def table_text(app):
    """The text columns of every entry (the numbers, id and at, left out: a six-digit code could be part of a
    timestamp), as one text to look for secrets in."""
    with app.app_context(), tables.db.connection_context():
        return json.dumps(list(tables.AuditEntry.select(
            tables.AuditEntry.action, tables.AuditEntry.target_type, tables.AuditEntry.target_id,
            tables.AuditEntry.ip, tables.AuditEntry.detail).dicts()))


def target(kind, target_id):
    return {"type": kind, "id": target_id}


def login(client, password=PASSWORD, **kwargs):
    return post(client, AUTH + "/password/login", {"password": password}, **kwargs)


def new_account(client, email, **kwargs):
    """POST a manual account with request options (headers, environ_base); assert 201, return it."""
    response = post(client, ACCOUNTS, {"email": email}, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def totp_code(secret, clock):
    return pyotp.TOTP(secret).at(clock())


# -- the dashboard's own sign-in -------------------------------------------------------------------

def test_setting_the_first_password_is_a_password_change_without_a_target(app, client):
    setup_password(client)
    [entry] = entries(app)
    assert entry == {"id": entry["id"], "at": NOW, "action": "password.changed", "ip": "127.0.0.1",
                     "detail": {"change": "set"}}  # no target: the key is left out


def test_a_login_by_password_alone_succeeds_at_the_password_step(app, authed, clock):
    client = app.test_client()
    clock.advance(5)
    ok(login(client, environ_base=REMOTE))
    assert last(app) == {"id": last(app)["id"], "at": "2026-11-25T07:00:05Z", "action": "login.succeeded",
                         "ip": "203.0.113.9", "detail": {"totp": False}}


def test_a_wrong_password_is_a_failed_login_although_the_answer_is_401(app, authed):
    client = app.test_client()
    assert error(login(client, "not the password", environ_base=REMOTE)) == (401, "invalid_credentials")
    entry = last(app)
    assert (entry["action"], entry["ip"], entry["detail"], "target" in entry) == (
        "login.failed", "203.0.113.9", {"reason": "invalid_credentials", "step": "password_login"}, False)


def test_only_the_attempts_the_rate_limiter_lets_through_are_audited(app, authed):
    client = app.test_client()
    for _ in range(8):
        assert error(login(client, "wrong wrong", environ_base=REMOTE)) == (401, "invalid_credentials")
    assert error(login(client, "wrong wrong", environ_base=REMOTE))[0] == 429  # refused before any check
    assert error(login(client, PASSWORD, environ_base=REMOTE))[0] == 429
    assert actions(app).count("login.failed") == 8 and "login.succeeded" not in actions(app)


def test_with_totp_the_login_succeeds_at_the_code_and_says_so(app, authed, clock):
    secret = enable_totp(authed, clock)
    assert last(app)["action"] == "totp.enabled" and last(app)["detail"] == {}
    client = app.test_client()
    ok(login(client, environ_base=REMOTE))
    assert last(app)["action"] == "totp.enabled"  # the password step alone is no login yet
    wrong = "000000" if totp_code(secret, clock) != "000000" else "111111"
    response = post(client, AUTH + "/totp/verify", {"code": wrong}, environ_base=REMOTE)
    assert error(response) == (400, "invalid_totp_code")
    assert (last(app)["action"], last(app)["detail"]) == (
        "login.failed", {"reason": "invalid_totp_code", "step": "totp_verify"})
    clock.advance(30)  # the confirm used this step's code: a replay would be refused
    ok(post(client, AUTH + "/totp/verify", {"code": totp_code(secret, clock)}, environ_base=REMOTE))
    assert (last(app)["action"], last(app)["ip"], last(app)["detail"]) == (
        "login.succeeded", "203.0.113.9", {"totp": True})


def test_disabling_totp_is_audited_and_a_wrong_code_disables_nothing(app, authed, clock):
    secret = enable_totp(authed, clock)
    clock.advance(30)
    wrong = "000000" if totp_code(secret, clock) != "000000" else "111111"
    assert error(post(authed, AUTH + "/totp/disable", {"code": wrong}))[1] == "invalid_totp_code"
    assert "totp.disabled" not in actions(app)
    assert last(app)["detail"] == {"reason": "invalid_totp_code", "step": "totp_disable"}
    ok(post(authed, AUTH + "/totp/disable", {"code": totp_code(secret, clock)}))
    assert (last(app)["action"], last(app)["detail"]) == ("totp.disabled", {"reason": "disabled"})


def test_a_wrong_code_or_setup_token_at_totp_setup_is_a_failed_login_and_enables_nothing(app, authed, clock):
    start = post(authed, AUTH + "/totp/setup/start").get_json()
    right = totp_code(start["secret"], clock)
    wrong = "000000" if right != "000000" else "111111"
    response = post(authed, AUTH + "/totp/setup/confirm", {"setupToken": start["setupToken"], "code": wrong})
    assert error(response) == (400, "invalid_totp_code")
    assert last(app)["detail"] == {"reason": "invalid_totp_code", "step": "totp_setup"}
    response = post(authed, AUTH + "/totp/setup/confirm", {"setupToken": "not-a-token", "code": right})
    assert error(response) == (400, "invalid_setup_token")
    assert last(app)["detail"] == {"reason": "invalid_setup_token", "step": "totp_setup"}
    assert "totp.enabled" not in actions(app)
    text = table_text(app)
    assert start["secret"] not in text and start["setupToken"] not in text and wrong not in text


def test_changing_and_removing_the_password(app, authed, clock):
    assert error(change(authed, current="not it at all")) == (401, "invalid_credentials")
    assert actions(app) == ["password.changed", "login.failed"]
    assert last(app)["detail"]["step"] == "password_change"
    ok(change(authed))
    assert last(app)["detail"] == {"change": "changed"} and last(app)["action"] == "password.changed"
    enable_totp(authed, clock)
    ok(remove(authed, NEW_PASSWORD))
    removed, totp_off = entries(app)[-2:]
    assert (removed["action"], removed["detail"]) == ("password.changed", {"change": "removed"})
    assert (totp_off["action"], totp_off["detail"]) == ("totp.disabled", {"reason": "password_removed"})


def test_the_recovery_command_is_audited_without_an_address(app, authed):
    result = app.test_cli_runner().invoke(args=["reset-auth"])
    assert result.exit_code == 0, result.output
    assert (last(app)["action"], last(app)["ip"], last(app)["detail"]) == (
        "password.changed", None, {"change": "removed"})


# -- accounts ---------------------------------------------------------------------------------------

def test_account_created_updated_deleted_with_their_target(app, authed):
    account = create_account(authed, "bob@example.com")
    created = last(app)
    assert (created["action"], created["target"], created["detail"]) == (
        "account.created", target("account", account["id"]), {"email": "bob@example.com", "status": "active"})
    ok(authed.patch(f"{ACCOUNTS}/{account['id']}", json={"status": "paused", "planType": "pro"}))
    assert (last(app)["action"], last(app)["target"], last(app)["detail"]) == (
        "account.updated", target("account", account["id"]),
        {"email": "bob@example.com", "fields": ["status", "planType"], "status": "paused"})
    ok(authed.patch(f"{ACCOUNTS}/{account['id']}", json={"status": "paused"}))  # nothing changes: no entry
    assert actions(app).count("account.updated") == 1
    assert authed.delete(f"{ACCOUNTS}/{account['id']}").status_code == 204
    assert (last(app)["action"], last(app)["target"], last(app)["detail"]) == (
        "account.deleted", target("account", account["id"]), {"email": "bob@example.com"})


def test_a_refused_account_change_writes_no_entry(app, authed):
    account = create_account(authed, "bob@example.com")
    before = entries(app)
    assert error(post(authed, ACCOUNTS, {"email": "BOB@example.com"})) == (409, "account_exists")  # rolled back
    assert names_field(authed.patch(f"{ACCOUNTS}/{account['id']}", json={"status": "sleeping"}), "status")
    assert names_field(post(authed, IMPORT, auth_json(refresh="")), "tokens.refresh_token")
    assert error(authed.delete(f"{ACCOUNTS}/acc_nobody")) == (404, "account_not_found")
    assert entries(app) == before


def test_an_import_is_audited_with_the_workspace_and_whether_it_created(app, authed):
    account = imported(authed)
    assert (last(app)["action"], last(app)["target"], last(app)["detail"]) == (
        "account.imported", target("account", account["id"]),
        {"email": "ann@example.com", "chatgptAccountId": "ws-personal", "created": True})
    imported(authed, status=200)
    assert last(app)["detail"]["created"] is False and actions(app).count("account.imported") == 2


# -- signing in with ChatGPT ---------------------------------------------------------------------

@pytest.fixture
def issuer_app(make_app, issuer):
    return make_app(OAUTH_ISSUER=issuer.url)


def test_a_completed_browser_sign_in_is_audited_with_the_clients_address(issuer_app, issuer):
    client = issuer_app.test_client()
    setup_password(client)
    flow = post(client, FLOWS, {"method": "browser"}).get_json()
    landed = issuer.sign_in(flow["authorizationUrl"])
    done = ok(post(client, f"{FLOWS}/{flow['id']}/callback", {"callbackUrl": landed}, environ_base=REMOTE))
    entry = last(issuer_app)
    assert (entry["action"], entry["target"], entry["ip"], entry["detail"]) == (
        "account.signed_in", target("account", done["accountId"]), "203.0.113.9",
        {"email": "alice@example.com", "chatgptAccountId": entry["detail"]["chatgptAccountId"],
         "method": "browser", "created": True})
    assert "account.imported" not in actions(issuer_app)
    secrets_of_the_account = stored_tokens(issuer_app, done["accountId"])
    assert not any(secret in table_text(issuer_app) for secret in secrets_of_the_account)
    assert landed.split("code=")[1].split("&")[0] not in table_text(issuer_app)  # nor the authorization code


def test_a_device_sign_in_completed_by_the_poller_has_no_address(issuer_app, issuer):
    client = issuer_app.test_client()
    setup_password(client)
    flow = post(client, FLOWS, {"method": "device"}).get_json()
    issuer.approve(flow["userCode"])
    with issuer_app.app_context(), tables.db.connection_context():
        assert oauth.poll_device(flow["id"], "poller", NOW_MS + 1000).status == "completed"
    entry = last(issuer_app)
    assert (entry["action"], entry["ip"], entry["detail"]["method"]) == ("account.signed_in", None, "device")
    assert flow["userCode"] not in table_text(issuer_app)


def test_a_failed_sign_in_writes_no_entry(issuer_app, issuer):
    client = issuer_app.test_client()
    setup_password(client)
    flow = post(client, FLOWS, {"method": "device"}).get_json()
    issuer.reject(flow["userCode"])
    with issuer_app.app_context(), tables.db.connection_context():
        assert oauth.poll_device(flow["id"], "poller", NOW_MS + 1000).status == "failed"
    assert actions(issuer_app) == ["password.changed"]


# -- API keys and settings ----------------------------------------------------------------------------

def test_api_keys_are_audited_by_name_and_never_by_key(app, authed):
    made = post(authed, KEYS, {"name": "laptop"})
    assert made.status_code == 201
    key = made.get_json()
    assert (last(app)["action"], last(app)["target"], last(app)["detail"]) == (
        "api_key.created", target("api_key", key["id"]), {"name": "laptop"})
    ok(authed.patch(f"{KEYS}/{key['id']}", json={"name": "desk", "enabled": False, "limits": []}))
    assert (last(app)["action"], last(app)["detail"]) == (
        "api_key.updated", {"name": "desk", "fields": ["name", "enabled", "limits"], "enabled": False})
    again = ok(post(authed, f"{KEYS}/{key['id']}/regenerate"))
    assert (last(app)["action"], last(app)["target"], last(app)["detail"]) == (
        "api_key.regenerated", target("api_key", key["id"]), {"name": "desk"})
    assert authed.delete(f"{KEYS}/{key['id']}").status_code == 204
    assert (last(app)["action"], last(app)["detail"]) == ("api_key.deleted", {"name": "desk"})
    text = table_text(app)
    assert key["key"] not in text and again["key"] not in text and key["keyPrefix"] not in text


def test_a_refused_key_change_writes_no_entry(app, authed):
    key = post(authed, KEYS, {"name": "laptop"}).get_json()
    before = entries(app)
    assert names_field(post(authed, KEYS, {"name": ""}), "name")
    assert names_field(authed.patch(f"{KEYS}/{key['id']}", json={"enabled": "yes"}), "enabled")
    assert error(post(authed, f"{KEYS}/key_nobody/regenerate"))[0] == 404
    assert entries(app) == before


def test_settings_changes_target_the_settings_and_keep_only_the_webhooks_origin(app, authed):
    ok(authed.patch(SETTINGS, json={"apiKeyRequired": True, "webhookUrl": WEBHOOK}))
    entry = last(app)
    assert (entry["action"], entry["target"]) == ("settings.changed", {"type": "settings", "id": None})
    assert entry["detail"] == {"apiKeyRequired": True, "webhookUrl": "https://hooks.example.com/…"}
    assert names_field(authed.patch(SETTINGS, json={"requestLogRetentionDays": 1}), "requestLogRetentionDays")
    assert actions(app).count("settings.changed") == 1
    assert "webhook-path-secret" not in table_text(app) and "/services/" not in table_text(app)


class Refused(Exception):
    pass


def test_a_change_whose_entry_cannot_be_written_is_undone(app, authed, monkeypatch):
    """The entry and the change share one transaction: when the entry fails, nothing of the change stays."""
    account = create_account(authed, "bob@example.com")
    key = post(authed, KEYS, {"name": "laptop"}).get_json()

    def refuse(*args, **kwargs):
        raise Refused()

    monkeypatch.setattr(audit, "record", refuse)
    for request in (lambda: post(authed, ACCOUNTS, {"email": "carol@example.com"}),
                    lambda: authed.patch(f"{ACCOUNTS}/{account['id']}", json={"status": "paused"}),
                    lambda: authed.delete(f"{ACCOUNTS}/{account['id']}"),
                    lambda: post(authed, IMPORT, auth_json()),
                    lambda: post(authed, KEYS, {"name": "desk"}),
                    lambda: authed.patch(f"{KEYS}/{key['id']}", json={"enabled": False}),
                    lambda: post(authed, f"{KEYS}/{key['id']}/regenerate"),
                    lambda: authed.delete(f"{KEYS}/{key['id']}"),
                    lambda: authed.patch(SETTINGS, json={"apiKeyRequired": True}),
                    lambda: change(authed)):
        with pytest.raises(Refused):
            request()
    monkeypatch.undo()
    assert [a["email"] for a in ok(authed.get(ACCOUNTS))["accounts"]] == ["bob@example.com"]
    assert ok(authed.get(f"{ACCOUNTS}/{account['id']}"))["status"] == "active"
    [kept] = ok(authed.get(KEYS))["apiKeys"]
    assert (kept["id"], kept["enabled"], kept["keyPrefix"]) == (key["id"], True, key["keyPrefix"])
    assert ok(authed.get(SETTINGS))["apiKeyRequired"] is False
    assert login(app.test_client()).status_code == 200  # the password is the old one
    assert actions(app) == ["password.changed", "account.created", "api_key.created", "login.succeeded"]


# -- the client's address ---------------------------------------------------------------------------

def test_behind_a_trusted_proxy_the_forwarded_address_is_kept(make_app):
    client = make_app(TRUSTED_PROXIES=1).test_client()
    setup_password(client)
    new_account(client, "bob@example.com", headers={"X-Forwarded-For": "198.51.100.7"},
                environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert last(client.application)["ip"] == "198.51.100.7"


def test_without_trusted_proxies_the_forwarded_header_is_ignored(app, authed):
    new_account(authed, "bob@example.com", headers={"X-Forwarded-For": "198.51.100.7"}, environ_base=REMOTE)
    assert last(app)["ip"] == "203.0.113.9"


# -- every action, and no secret in any ------------------------------------------------------------

def test_every_action_is_written_and_none_holds_a_secret(make_app, issuer, clock):
    app = make_app(OAUTH_ISSUER=issuer.url)
    client = app.test_client()
    setup_password(client)
    cookies = [token(client)]
    secret = enable_totp(client, clock)
    codes = [totp_code(secret, clock)]
    other = app.test_client()
    ok(login(other))
    cookies.append(token(other))
    assert error(login(other, "a wrong password"))[0] == 401
    clock.advance(30)
    codes.append(totp_code(secret, clock))
    ok(post(other, AUTH + "/totp/verify", {"code": codes[-1]}))
    cookies.append(token(other))
    clock.advance(30)
    codes.append(totp_code(secret, clock))
    ok(post(client, AUTH + "/totp/disable", {"code": codes[-1]}))
    ok(change(client))
    account = create_account(client, "bob@example.com")
    ok(client.patch(f"{ACCOUNTS}/{account['id']}", json={"statusReason": "on holiday"}))
    assert client.delete(f"{ACCOUNTS}/{account['id']}").status_code == 204
    ann = imported(client)
    flow = post(client, FLOWS, {"method": "browser"}).get_json()
    signed = ok(post(client, f"{FLOWS}/{flow['id']}/callback",
                     {"callbackUrl": issuer.sign_in(flow["authorizationUrl"])}))
    key = post(client, KEYS, {"name": "laptop"}).get_json()
    ok(client.patch(f"{KEYS}/{key['id']}", json={"enabled": False}))
    again = ok(post(client, f"{KEYS}/{key['id']}/regenerate"))
    assert client.delete(f"{KEYS}/{key['id']}").status_code == 204
    ok(client.patch(SETTINGS, json={"webhookUrl": WEBHOOK}))

    assert set(actions(app)) == set(audit.ACTIONS)
    text = table_text(app)
    found = [name for name, value in {
        "password": PASSWORD, "new password": NEW_PASSWORD, "TOTP secret": secret,
        **{f"TOTP code {i}": code for i, code in enumerate(codes)},
        **{f"cookie {i}": value for i, value in enumerate(cookies)},
        "API key": key["key"], "regenerated API key": again["key"],
        "imported id token": ID_1, "imported access token": ACCESS_1, "imported refresh token": REFRESH_1,
        **{f"signed-in token {i}": value for i, value in enumerate(stored_tokens(app, signed["accountId"]))},
        "webhook path": "webhook-path-secret",
    }.items() if value in text]
    assert found == []
    assert ann["id"] in text  # the scan does look at what is there


# -- the list ------------------------------------------------------------------------------------------

def fetch(client, **query):
    return ok(client.get(AUDIT, query_string=query))


def test_the_list_is_newest_first_in_the_contracts_shape(app, authed, clock):
    clock.advance(1)
    account = new_account(authed, "bob@example.com", environ_base=REMOTE)
    answer = fetch(authed)
    assert set(answer) == {"entries", "nextCursor"} and answer["nextCursor"] is None
    newest, oldest = answer["entries"]
    assert newest == {"id": newest["id"], "at": "2026-11-25T07:00:01Z", "action": "account.created",
                      "target": {"type": "account", "id": account["id"]}, "ip": "203.0.113.9",
                      "detail": {"email": "bob@example.com", "status": "active"}}
    assert oldest["action"] == "password.changed" and "target" not in oldest and newest["id"] > oldest["id"]


def test_keyset_paging_follows_the_cursor_to_the_end(app, authed):
    for i in range(4):
        create_account(authed, f"user{i}@example.com")  # five entries with the first password
    first = fetch(authed, limit=2)
    assert len(first["entries"]) == 2 and first["nextCursor"]
    second = fetch(authed, limit=2, cursor=first["nextCursor"])
    create_account(authed, "late@example.com")  # newer than the pages read: never in a later one
    third = fetch(authed, limit=2, cursor=second["nextCursor"])
    assert (len(second["entries"]), len(third["entries"]), third["nextCursor"]) == (2, 1, None)
    ids = [entry["id"] for page in (first, second, third) for entry in page["entries"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert third["entries"][0]["action"] == "password.changed"
    assert fetch(authed, limit=5)["nextCursor"] is not None  # the late one makes six
    assert fetch(authed, limit=6)["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "501", "-1", "two", "1.5", "9" * 40])
def test_a_bad_limit_is_422(authed, limit):
    response = authed.get(AUDIT, query_string={"limit": limit})
    assert error(response) == (422, "validation_error") and message(response).startswith("limit ")


def test_the_default_page_is_the_request_logs_and_500_is_allowed(authed):
    for i in range(50):
        post(authed, KEYS, {"name": f"key {i}"})
    assert len(fetch(authed)["entries"]) == 50 and fetch(authed)["nextCursor"] is not None
    assert len(fetch(authed, limit="500")["entries"]) == 51


def test_a_bad_or_foreign_cursor_is_422(app, authed):
    create_account(authed)
    cursor = fetch(authed, limit=1)["nextCursor"]
    # A request-log cursor is signed with the same key: still not this list's.
    foreign = request_logs.encode_cursor(NOW_MS, 1, app.config["SECRET_KEY"])
    for bad in ("garbage", cursor[:-1] + ("0" if cursor[-1] != "0" else "1"), cursor + "x", foreign, "é.é"):
        response = authed.get(AUDIT, query_string={"cursor": bad})
        assert names_field(response, "cursor"), bad


def test_the_list_needs_a_dashboard_session(app, authed):
    assert denied(app.test_client().get(AUDIT)) == AUTH_REQUIRED
    assert denied(app.test_client().get(AUDIT, query_string={"cursor": "garbage"})) == AUTH_REQUIRED


def test_an_unknown_action_or_target_is_refused_by_the_writer(app):
    with app.app_context(), tables.db.connection_context():
        with pytest.raises(ValueError):
            audit.record("account.renamed", NOW_MS, None)
        with pytest.raises(ValueError):
            audit.record("account.updated", NOW_MS, None, target=("user", "u1"))
    assert entries(app) == []
