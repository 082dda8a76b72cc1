"""lb.oauth: signing in with ChatGPT (contract 13.1) against a fake issuer that really checks PKCE
(tests/fixtureapps/issuer.py).

The browser method gives the Codex CLI's authorization URL and completes
with the address the browser ended on; the device method is polled by the
server itself, one poller per flow across instances. Both make or renew an
account as an import would, re-authentication included; every failure is
named and changes no account; the flow's secrets are sealed, never answered
or logged, and gone once it ends. Then the same end to end under waitress,
across two instances, and through ``flask --app lb login-account``.
"""
import base64
import os
import subprocess
import sys
import time
from urllib.parse import parse_qsl

import pytest

from fixtureapps.issuer import CLIENT_ID, REDIRECT_URI, Identity, Issuer
from helpers.data import NOW_MS, POSTGRES_URL, ROOT, auth_json, id_token, row, stored_tokens
from helpers.http import ACCOUNTS, IMPORT, error, listed, message, names_field, ok, post
from helpers.servers import app_server, call, call_with_cookie, eventually
from lb import oauth, tables
from lb.tables import OAuthFlow

FLOWS = "/api/oauth/flows"
BROWSER_KEYS = {"id", "method", "status", "expiresAt", "accountId", "created", "error", "authorizationUrl",
                "redirectUri"}
DEVICE_KEYS = BROWSER_KEYS - {"authorizationUrl", "redirectUri"} | {"userCode", "verificationUrl", "intervalSeconds"}
FIFTEEN_MINUTES_LATER = "2026-11-25T07:15:00Z"


@pytest.fixture
def app(make_app, issuer):
    return make_app(OAUTH_ISSUER=issuer.url)


def created(response):
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def start(client, method="browser", **body):
    return created(post(client, FLOWS, {"method": method, **body}))


def callback(client, flow_id, address):
    return post(client, f"{FLOWS}/{flow_id}/callback", {"callbackUrl": address})


def flow_row(app, flow_id):
    with app.app_context(), tables.db.connection_context():
        return OAuthFlow.get_or_none(OAuthFlow.id == flow_id)


def flow_count(app):
    with app.app_context(), tables.db.connection_context():
        return OAuthFlow.select().count()


def poll(app, flow_id, now, holder="poller-1"):
    """One step of a device flow's poller, at ``now`` (epoch ms)."""
    with app.app_context(), tables.db.connection_context():
        flow = oauth.poll_device(flow_id, holder, now)
        return flow and flow.status


def device_polls(issuer):
    return sum(len(times) for times in issuer.polls.values())


# -- the browser method ----------------------------------------------------------------------

def test_the_authorization_url_is_the_codex_clis_with_pkce_and_a_long_state(authed, issuer):
    flow = start(authed)
    assert set(flow) == BROWSER_KEYS
    assert (flow["method"], flow["status"], flow["expiresAt"], flow["accountId"], flow["created"], flow["error"],
            flow["redirectUri"]) == ("browser", "pending", FIFTEEN_MINUTES_LATER, None, None, None, REDIRECT_URI)
    assert flow["id"].startswith("flow_")
    base, query = flow["authorizationUrl"].split("?", 1)
    assert base == issuer.url + "/oauth/authorize"
    params = parse_qsl(query)
    assert [name for name, _ in params] == [
        "response_type", "client_id", "redirect_uri", "scope", "code_challenge", "code_challenge_method",
        "id_token_add_organizations", "codex_cli_simplified_flow", "state", "originator"]
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback" in query
    assert "scope=openid+profile+email+offline_access" in query
    values = dict(params)
    assert (values["response_type"], values["client_id"], values["code_challenge_method"],
            values["originator"]) == ("code", CLIENT_ID, "S256", "codex_cli_rs")
    assert len(base64.urlsafe_b64decode(values["state"] + "==")) >= 32
    other = start(authed)  # every flow has its own state and challenge
    assert dict(parse_qsl(other["authorizationUrl"].split("?", 1)[1]))["state"] != values["state"]


@pytest.mark.parametrize("pasted", ["address", "query", "question mark and query", "address with spaces"])
def test_the_pasted_address_completes_the_sign_in_and_makes_the_account(app, authed, clock, issuer, pasted):
    flow = start(authed)
    clock.advance(30)
    landed = issuer.sign_in(flow["authorizationUrl"])
    assert landed.startswith(REDIRECT_URI + "?code=")
    query = landed.split("?", 1)[1]
    address = {"address": landed, "query": query, "question mark and query": "?" + query,
               "address with spaces": f"  {landed}\n"}[pasted]
    done = ok(callback(authed, flow["id"], address))
    assert (done["status"], done["created"], done["error"], done["authorizationUrl"]) == (
        "completed", True, None, None)
    [form] = issuer.token_requests
    assert (form["grant_type"], form["redirect_uri"], form["client_id"]) == (
        "authorization_code", REDIRECT_URI, CLIENT_ID)
    assert issuer.problems == []  # the verifier matched the challenge the issuer saw
    account = ok(authed.get(f"{ACCOUNTS}/{done['accountId']}"))
    assert (account["email"], account["chatgptAccountId"], account["planType"], account["status"],
            account["hasCredentials"], account["lastRefreshAt"]) == (
        "alice@example.com", "ws_1", "plus", "active", True, "2026-11-25T07:00:30Z")
    assert stored_tokens(app, done["accountId"])[2].startswith("rt_")
    assert flow_row(app, flow["id"]).secrets is None  # gone once the flow ended
    assert ok(authed.get(f"{FLOWS}/{flow['id']}")) == done


def test_a_flow_started_on_one_instance_is_finished_on_another(app, make_app, authed, issuer):
    flow = start(authed)
    other = make_app(OAUTH_ISSUER=issuer.url).test_client()
    other.set_cookie("dashboard_session", authed.get_cookie("dashboard_session").value)
    done = ok(callback(other, flow["id"], issuer.sign_in(flow["authorizationUrl"])))
    assert done["status"] == "completed" and len(listed(authed)) == 1


def test_an_address_from_another_sign_in_is_refused_and_the_flow_waits_for_the_right_one(authed, issuer):
    flow, stranger = start(authed), start(authed)
    wrong = issuer.sign_in(stranger["authorizationUrl"])
    response = callback(authed, flow["id"], wrong)
    assert error(response) == (400, "oauth_state_mismatch")
    assert ok(authed.get(f"{FLOWS}/{flow['id']}"))["status"] == "pending" and listed(authed) == []
    assert ok(callback(authed, flow["id"], issuer.sign_in(flow["authorizationUrl"])))["status"] == "completed"


def test_a_declined_sign_in_fails_the_flow_and_makes_no_account(app, authed, issuer):
    flow = start(authed)
    issuer.deny = True
    response = callback(authed, flow["id"], issuer.sign_in(flow["authorizationUrl"]))
    assert error(response) == (400, "oauth_denied") and "access_denied" in message(response)
    failed = ok(authed.get(f"{FLOWS}/{flow['id']}"))
    assert (failed["status"], failed["error"]["code"], failed["authorizationUrl"]) == ("failed", "oauth_denied", None)
    assert listed(authed) == [] and issuer.token_requests == [] and flow_row(app, flow["id"]).secrets is None


def test_a_refused_exchange_is_named_with_the_issuers_code_and_makes_no_account(authed, issuer):
    flow = start(authed)
    landed = issuer.sign_in(flow["authorizationUrl"])
    issuer.exchange_answer = (400, {"error": "invalid_grant", "error_description": "<script>x</script>"})
    response = callback(authed, flow["id"], landed)
    assert error(response) == (502, "oauth_exchange_failed")
    assert "invalid_grant" in message(response) and "<script>" not in message(response)
    failed = ok(authed.get(f"{FLOWS}/{flow['id']}"))
    assert (failed["status"], failed["error"]["code"]) == ("failed", "oauth_exchange_failed")
    assert listed(authed) == []


def test_tokens_that_cannot_make_an_account_fail_the_exchange(authed, issuer):
    flow = start(authed)
    landed = issuer.sign_in(flow["authorizationUrl"])
    issuer.exchange_answer = (200, {"id_token": id_token(email=None), "access_token": "a", "refresh_token": "r"})
    response = callback(authed, flow["id"], landed)
    assert error(response) == (502, "oauth_exchange_failed") and "email" in message(response)
    assert listed(authed) == []


def test_a_finished_or_expired_flow_takes_no_callback(app, authed, clock, issuer):
    flow = start(authed)
    landed = issuer.sign_in(flow["authorizationUrl"])
    ok(callback(authed, flow["id"], landed))
    assert error(callback(authed, flow["id"], landed)) == (409, "oauth_flow_finished")
    late = start(authed)
    landed = issuer.sign_in(late["authorizationUrl"])
    clock.advance(15 * 60)
    expired = ok(authed.get(f"{FLOWS}/{late['id']}"))
    assert (expired["status"], expired["error"]["code"], expired["authorizationUrl"]) == (
        "expired", "oauth_flow_expired", None)
    assert flow_row(app, late["id"]).secrets is None
    assert error(callback(authed, late["id"], landed)) == (409, "oauth_flow_finished")
    assert len(issuer.token_requests) == 1 and len(listed(authed)) == 1


def test_flows_that_expired_unseen_lose_their_secrets_and_are_deleted_a_day_later(app, authed, clock):
    forgotten = start(authed)
    clock.advance(15 * 60)
    start(authed)  # starting a flow sweeps the others
    assert (flow_row(app, forgotten["id"]).status, flow_row(app, forgotten["id"]).secrets) == ("expired", None)
    clock.advance(86400 + 1)  # past the dashboard session too: the sweep is run directly
    with app.app_context(), tables.db.connection_context():
        oauth.start({"method": "browser"}, int(clock() * 1000))
    assert flow_row(app, forgotten["id"]) is None and flow_count(app) == 2


@pytest.mark.parametrize("body, field", [
    ({}, "method"),
    ({"method": "sms"}, "method"),
    ({"method": ["browser"]}, "method"),
    ({"method": "browser", "accountId": 7}, "accountId"),
])
def test_a_bad_start_is_a_422_and_starts_nothing(app, authed, body, field):
    assert names_field(post(authed, FLOWS, body), field)
    assert flow_count(app) == 0


def test_re_authenticating_an_unknown_account_is_404(app, authed):
    assert error(post(authed, FLOWS, {"method": "browser", "accountId": "acc_nobody"})) == (404, "account_not_found")
    assert flow_count(app) == 0


@pytest.mark.parametrize("body, field", [
    ({}, "callbackUrl"),
    ({"callbackUrl": 7}, "callbackUrl"),
    ({"callbackUrl": REDIRECT_URI}, "callbackUrl"),  # no state, no code
    ({"callbackUrl": "x" * 8193}, "callbackUrl"),
])
def test_a_bad_callback_is_a_422_and_the_flow_stays_pending(app, authed, body, field):
    flow = start(authed)
    assert names_field(post(authed, f"{FLOWS}/{flow['id']}/callback", body), field)
    assert flow_row(app, flow["id"]).status == "pending"


def test_an_address_without_a_code_is_a_422_naming_it(authed, issuer):
    flow = start(authed)
    state = dict(parse_qsl(flow["authorizationUrl"].split("?", 1)[1]))["state"]
    response = callback(authed, flow["id"], f"{REDIRECT_URI}?state={state}")
    assert names_field(response, "callbackUrl") and "no code" in message(response)
    assert issuer.token_requests == []


def test_unknown_flows_are_404_for_every_method(authed):
    for response in (authed.get(f"{FLOWS}/flow_nope"), callback(authed, "flow_nope", REDIRECT_URI),
                     authed.delete(f"{FLOWS}/flow_nope")):
        assert error(response) == (404, "oauth_flow_not_found")


def test_cancelling_deletes_the_flow(app, authed):
    flow = start(authed)
    assert authed.delete(f"{FLOWS}/{flow['id']}").status_code == 204
    assert error(authed.get(f"{FLOWS}/{flow['id']}")) == (404, "oauth_flow_not_found")
    assert error(authed.delete(f"{FLOWS}/{flow['id']}")) == (404, "oauth_flow_not_found")
    assert flow_count(app) == 0


def test_the_flows_need_a_dashboard_session(app, authed):
    client = app.test_client()  # a password is set; this client has no session
    for response in (post(client, FLOWS, {"method": "browser"}), client.get(f"{FLOWS}/flow_x"),
                     callback(client, "flow_x", REDIRECT_URI), client.delete(f"{FLOWS}/flow_x")):
        assert error(response) == (401, "authentication_required")


# -- re-authentication ---------------------------------------------------------------------------

def alices_account(client, status="deactivated"):
    data = auth_json(id_token(email="alice@example.com", workspace="ws_1"), account_id="ws_1")
    account = created(post(client, IMPORT, data))
    return ok(client.patch(f"{ACCOUNTS}/{account['id']}",
                           json={"status": status, "statusReason": "refresh_token_expired"}))


def test_re_authentication_renews_a_deactivated_accounts_tokens_and_brings_it_back(app, authed, issuer):
    account = alices_account(authed)
    before = stored_tokens(app, account["id"])
    flow = start(authed, accountId=account["id"])
    done = ok(callback(authed, flow["id"], issuer.sign_in(flow["authorizationUrl"])))
    assert (done["accountId"], done["created"]) == (account["id"], False)
    renewed = ok(authed.get(f"{ACCOUNTS}/{account['id']}"))
    assert (renewed["status"], renewed["statusReason"]) == ("active", None)
    after = stored_tokens(app, account["id"])
    assert after[1] != before[1] and after[2] != before[2] and len(listed(authed)) == 1


@pytest.mark.parametrize("who", [Identity(email="bob@example.com"), Identity(account_id="ws_team")])
def test_re_authenticating_as_someone_else_fails_and_changes_nothing(app, authed, issuer, who):
    account = alices_account(authed)
    before = stored_tokens(app, account["id"])
    flow = start(authed, accountId=account["id"])
    issuer.user = who
    response = callback(authed, flow["id"], issuer.sign_in(flow["authorizationUrl"]))
    assert error(response) == (409, "oauth_account_mismatch") and "alice@example.com" in message(response)
    assert ok(authed.get(f"{FLOWS}/{flow['id']}"))["error"]["code"] == "oauth_account_mismatch"
    assert stored_tokens(app, account["id"]) == before
    assert row(app, account["id"]).status == "deactivated" and len(listed(authed)) == 1


def test_a_manual_account_of_the_same_email_is_re_authenticated_by_adoption(app, authed, issuer):
    manual = created(post(authed, ACCOUNTS, {"email": "Alice@Example.com"}))
    flow = start(authed, accountId=manual["id"])
    done = ok(callback(authed, flow["id"], issuer.sign_in(flow["authorizationUrl"])))
    assert (done["accountId"], done["created"]) == (manual["id"], False)
    assert ok(authed.get(f"{ACCOUNTS}/{manual['id']}"))["chatgptAccountId"] == "ws_1"


# -- the device method -------------------------------------------------------------------------

def test_the_device_flow_is_polled_at_the_issuers_interval_and_completes_by_itself(app, authed, clock, issuer):
    flow = start(authed, "device")
    assert set(flow) == DEVICE_KEYS
    assert (flow["status"], flow["verificationUrl"], flow["intervalSeconds"], flow["expiresAt"]) == (
        "pending", issuer.url + "/codex/device", 1, FIFTEEN_MINUTES_LATER)
    assert poll(app, flow["id"], NOW_MS) == "pending" and device_polls(issuer) == 0  # not due for a second
    assert poll(app, flow["id"], NOW_MS + 1000) == "pending" and device_polls(issuer) == 1  # 403: not yet
    issuer.approve(flow["userCode"])
    assert poll(app, flow["id"], NOW_MS + 1500) == "pending" and device_polls(issuer) == 1  # not due again yet
    assert poll(app, flow["id"], NOW_MS + 2000) == "completed" and device_polls(issuer) == 2
    [form] = issuer.token_requests
    assert form["redirect_uri"] == issuer.url + "/deviceauth/callback" and issuer.problems == []
    done = ok(authed.get(f"{FLOWS}/{flow['id']}"))
    assert (done["status"], done["created"], done["userCode"]) == ("completed", True, None)
    assert ok(authed.get(f"{ACCOUNTS}/{done['accountId']}"))["email"] == "alice@example.com"
    assert flow_row(app, flow["id"]).secrets is None


def test_the_issuers_interval_may_be_a_number_and_its_expiry_shortens_the_flow(authed, issuer):
    issuer.device_interval, issuer.device_expires_in = 3, 120
    flow = start(authed, "device")
    assert (flow["intervalSeconds"], flow["expiresAt"]) == (3, "2026-11-25T07:02:00Z")


def test_a_rejected_device_code_fails_the_flow(app, authed, issuer):
    flow = start(authed, "device")
    issuer.reject(flow["userCode"])
    assert poll(app, flow["id"], NOW_MS + 1000) == "failed"
    assert ok(authed.get(f"{FLOWS}/{flow['id']}"))["error"]["code"] == "oauth_denied" and listed(authed) == []


def test_an_unapproved_device_flow_expires(app, authed, clock, issuer):
    flow = start(authed, "device")
    assert poll(app, flow["id"], NOW_MS + 15 * 60 * 1000) == "expired"
    assert device_polls(issuer) == 0 and flow_row(app, flow["id"]).secrets is None


def test_device_codes_turned_off_or_an_unreachable_issuer_is_502_and_starts_nothing(app, make_app, authed, issuer):
    issuer.device_enabled = False
    response = post(authed, FLOWS, {"method": "device"})
    assert error(response) == (502, "oauth_unavailable") and "not enabled" in message(response)
    assert flow_count(app) == 0
    nowhere = make_app().test_client()  # the tests' default issuer: nothing listens there
    nowhere.set_cookie("dashboard_session", authed.get_cookie("dashboard_session").value)
    assert error(post(nowhere, FLOWS, {"method": "device"})) == (502, "oauth_unavailable")
    assert flow_count(app) == 0


def test_one_poller_holds_a_device_flow_until_its_lease_runs_out(app, authed, issuer):
    flow = start(authed, "device")
    assert poll(app, flow["id"], NOW_MS + 1000, holder="instance-1") == "pending" and device_polls(issuer) == 1
    for at in (NOW_MS + 2000, NOW_MS + 30000):  # due, but the first poller holds it
        assert poll(app, flow["id"], at, holder="instance-2") == "pending"
    assert device_polls(issuer) == 1
    assert poll(app, flow["id"], NOW_MS + 2000, holder="instance-1") == "pending" and device_polls(issuer) == 2
    lapsed = NOW_MS + 2000 + 1000 + oauth.LEASE_MS  # the first poller is gone: its lease runs out
    assert poll(app, flow["id"], lapsed, holder="instance-2") == "pending" and device_polls(issuer) == 3
    assert poll(app, flow["id"], lapsed + 1000, holder="instance-1") == "pending" and device_polls(issuer) == 3


def test_each_instances_poller_waits_for_its_turn_and_sleeps_when_nothing_is_pending(app, make_app, authed,
                                                                                    issuer):
    first, second = app.extensions["lb_oauth"], make_app(OAUTH_ISSUER=issuer.url).extensions["lb_oauth"]

    def round_at(poller, now):
        with poller.app.app_context(), tables.db.connection_context():
            return poller.round(now)

    assert round_at(first, NOW_MS) is None  # nothing pending: it sleeps until woken
    flow = start(authed, "device")
    assert round_at(first, NOW_MS) == 1.0 and device_polls(issuer) == 0  # due in a second
    assert round_at(first, NOW_MS + 1000) == 1.0 and device_polls(issuer) == 1  # polled: the next in a second
    # The other instance's poller leaves it to the first until the first's lease would run out.
    assert round_at(second, NOW_MS + 2000) == (1000 + 1000 + oauth.LEASE_MS - 2000) / 1000
    assert device_polls(issuer) == 1
    issuer.approve(flow["userCode"])
    assert round_at(first, NOW_MS + 2000) is None and device_polls(issuer) == 2  # completed: none pending
    assert ok(authed.get(f"{FLOWS}/{flow['id']}"))["status"] == "completed"


def test_a_cancelled_device_flow_is_polled_no_more(app, authed, issuer):
    flow = start(authed, "device")
    assert authed.delete(f"{FLOWS}/{flow['id']}").status_code == 204
    assert poll(app, flow["id"], NOW_MS + 1000) is None and device_polls(issuer) == 0


def test_a_device_flow_takes_no_callback(authed):
    flow = start(authed, "device")
    assert names_field(callback(authed, flow["id"], REDIRECT_URI + "?code=x&state=y"), "callbackUrl")


# -- secrets ------------------------------------------------------------------------------------------

def test_no_secret_of_a_flow_is_answered_stored_in_clear_or_logged(app, authed, clock, issuer, caplog):
    caplog.set_level("DEBUG")
    answers = []
    browser = start(authed)
    answers.append(browser)
    state = dict(parse_qsl(browser["authorizationUrl"].split("?", 1)[1]))["state"]
    sealed = flow_row(app, browser["id"]).secrets
    answers.append(ok(callback(authed, browser["id"], issuer.sign_in(browser["authorizationUrl"]))))
    issuer.user = Identity(email="bob@example.com")
    device = start(authed, "device")
    answers.append(device)
    issuer.approve(device["userCode"])
    poll(app, device["id"], NOW_MS + 1000)
    answers.append(ok(authed.get(f"{FLOWS}/{device['id']}")))
    answers.append(ok(authed.get(ACCOUNTS)))
    verifiers = [form["code_verifier"] for form in issuer.token_requests]
    codes = [form["code"] for form in issuer.token_requests]
    [device_id] = issuer.polls
    tokens = [token for account in listed(authed) for token in stored_tokens(app, account["id"])]
    secrets = [*verifiers, *codes, device_id, *tokens]
    assert len(secrets) == 11
    texts = [str(answer) for answer in answers]
    assert [secret for secret in secrets for text in texts + [caplog.text] if secret in text] == []
    assert state not in caplog.text and [text for text in texts[1:] if state in text] == []
    assert verifiers[0] not in sealed and state not in sealed  # sealed at rest


# -- end to end: the real server, two instances, the command ----------------------------------------

@pytest.fixture
def live_issuer():
    """The fake issuer on the real clock: a server under waitress reads its tokens' expiry."""
    server = Issuer().start()
    yield server
    server.stop()


def signed_in(port):
    status, _, cookie = call_with_cookie(port, "POST", "/api/dashboard-auth/password/setup",
                                         {"password": "a long enough password"})
    assert status == 200 and cookie
    return cookie


def test_both_methods_end_to_end_under_waitress_across_two_instances(make_app, tmp_path, live_issuer):
    make_app()  # the test's database, empty
    servers = [app_server(tmp_path / "data", OAUTH_ISSUER=live_issuer.url).start() for _ in range(2)]
    try:
        first, second = (server.port for server in servers)
        cookie = signed_in(first)
        # Browser: started on one instance, the address pasted on the other.
        status, flow = call(first, "POST", FLOWS, {"method": "browser"}, cookie)
        assert status == 201
        landed = live_issuer.sign_in(flow["authorizationUrl"])
        status, done = call(second, "POST", f"{FLOWS}/{flow['id']}/callback", {"callbackUrl": landed}, cookie)
        assert (status, done["status"], done["created"]) == (200, "completed", True)
        # Device: both instances are asked about it, and each wakes its poller; one of them polls it.
        live_issuer.user, live_issuer.poll_delay = Identity(email="bob@example.com"), 0.3
        status, flow = call(first, "POST", FLOWS, {"method": "device"}, cookie)
        assert status == 201
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert all(call(port, "GET", f"{FLOWS}/{flow['id']}", None, cookie)[1]["status"] == "pending"
                       for port in (first, second))
            time.sleep(0.2)
        [times] = live_issuer.polls.values()
        assert len(times) >= 2 and live_issuer.max_concurrent_polls == 1
        assert all(later - earlier >= 0.9 for earlier, later in zip(times, times[1:]))  # once an interval
        live_issuer.approve(flow["userCode"])
        assert eventually(lambda: call(second, "GET", f"{FLOWS}/{flow['id']}", None, cookie)[1]["status"]
                          == "completed")
        status, listing = call(second, "GET", ACCOUNTS, None, cookie)
        assert sorted(account["email"] for account in listing["accounts"]) == ["alice@example.com", "bob@example.com"]
        assert live_issuer.problems == []
        logs = "".join(server.log() for server in servers)
        assert flow["userCode"] not in logs and landed.split("code=", 1)[1].split("&")[0] not in logs
    finally:
        for server in servers:
            server.stop()


def login_account(tmp_path, issuer, *args):
    """``flask --app lb login-account`` in its own process, on the test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LB_")}
    env.update(LB_DATA_DIR=str(tmp_path / "data"), LB_OAUTH_ISSUER=issuer.url)
    if POSTGRES_URL:
        env["LB_DATABASE_URL"] = POSTGRES_URL
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "lb", "login-account", *args], cwd=ROOT,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def read_until(stream, start=""):
    """The next line of ``stream`` that starts with ``start`` (by default: the next one not blank)."""
    for line in stream:
        if line.strip() and line.strip().startswith(start):
            return line.strip()
    raise AssertionError(f"no line starting with {start!r}")


def test_the_command_signs_in_with_a_pasted_address(app, authed, tmp_path, issuer):
    process = login_account(tmp_path, issuer)
    url = read_until(process.stdout, issuer.url)
    process.stdin.write(issuer.sign_in(url) + "\n")
    process.stdin.flush()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    [account] = listed(authed)
    assert out.strip().endswith(f"signed in: alice@example.com (ws_1), created as {account['id']}")


def test_the_command_signs_in_with_a_device_code_and_re_authenticates(app, authed, tmp_path, issuer):
    account = alices_account(authed)
    process = login_account(tmp_path, issuer, "--device", "--account", account["id"])
    read_until(process.stdout, "Open " + issuer.url + "/codex/device")
    issuer.approve(read_until(process.stdout))  # the code, on a line of its own
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip().endswith(f"signed in: alice@example.com (ws_1), renewed as {account['id']}")
    assert row(app, account["id"]).status == "active"


def test_the_command_names_a_failure_in_one_line(app, tmp_path, issuer):
    issuer.device_enabled = False
    process = login_account(tmp_path, issuer, "--device")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1] == ("Error: Device codes are not enabled for this workspace: "
                                            "use the browser method")
