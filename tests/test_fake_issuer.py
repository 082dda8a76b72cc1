"""The fake ChatGPT sign-in (tests/fixtureapps/issuer.py) itself: the sign-in tests lean on its checks.

It must issue tokens for the right identity only when the whole PKCE exchange
is right, refuse every part that is wrong, and play the device-code flow with a
code that is checked the same way.
"""
import base64
import http.client
import json
import re
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from fixtureapps.issuer import CLIENT_ID, REDIRECT_URI, SCOPE, Identity, Issuer, challenge_of, pkce
from helpers.data import AUTH_CLAIMS

USERCODE = "/api/accounts/deviceauth/usercode"
DEVICE_TOKEN = "/api/accounts/deviceauth/token"


@pytest.fixture
def issuer():
    server = Issuer().start()
    yield server
    server.stop()


def authorize_url(issuer, challenge, state="state-1", **changes):
    """The Codex CLI's authorize URL; a change to None leaves that parameter out."""
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "scope": SCOPE,
              "code_challenge": challenge, "code_challenge_method": "S256", "id_token_add_organizations": "true",
              "codex_cli_simplified_flow": "true", "state": state, "originator": "codex_cli_rs", **changes}
    return f"{issuer.url}/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def request(issuer, method, path, body=b"", content_type="application/json"):
    """(status, the answer's JSON or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(issuer.url).port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        data = response.read().decode()
    finally:
        conn.close()
    is_json = response.getheader("Content-Type") == "application/json"
    return response.status, json.loads(data) if is_json else data


def exchange(issuer, code, verifier, redirect_uri=REDIRECT_URI, client_id=CLIENT_ID):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "code_verifier": verifier}
    return request(issuer, "POST", "/oauth/token", urlencode(form).encode(), "application/x-www-form-urlencoded")


def signed_in(issuer, challenge):
    """Sign in in the browser; the code on the callback."""
    location = issuer.sign_in(authorize_url(issuer, challenge))
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["state-1"]
    return query["code"][0]


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def post_json(issuer, path, body):
    return request(issuer, "POST", path, json.dumps(body).encode())


def device_code(issuer):
    status, body = post_json(issuer, USERCODE, {"client_id": CLIENT_ID})
    assert status == 200, body
    return body


def poll(issuer, device):
    return post_json(issuer, DEVICE_TOKEN, {"device_auth_id": device["device_auth_id"],
                                            "user_code": device["user_code"]})


# -- the browser flow ---------------------------------------------------------------------------

def test_browser_sign_in_gives_tokens_for_who_signed_in(issuer):
    issuer.user = Identity(email="bob@example.com", account_id="ws_9", plan="pro")
    verifier, challenge = pkce()
    code = signed_in(issuer, challenge)
    issuer.user.email = "carol@example.com"  # too late: the code is bob's
    status, tokens = exchange(issuer, code, verifier)
    assert status == 200, tokens
    identity = claims(tokens["id_token"])
    assert identity["email"] == "bob@example.com"
    assert identity[AUTH_CLAIMS] == {"chatgpt_account_id": "ws_9", "chatgpt_plan_type": "pro"}
    assert abs(claims(tokens["access_token"])["exp"] - (time.time() + 3600)) < 60
    assert tokens["refresh_token"].startswith("rt_")
    assert issuer.token_requests == [{"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                                      "client_id": CLIENT_ID, "code_verifier": verifier}]
    assert issuer.problems == []

    verifier, challenge = pkce()
    again = exchange(issuer, signed_in(issuer, challenge), verifier)[1]
    assert claims(again["id_token"])["email"] == "carol@example.com"
    assert again["access_token"] != tokens["access_token"]
    assert again["refresh_token"] != tokens["refresh_token"]


def test_a_wrong_verifier_is_refused(issuer):
    code = signed_in(issuer, pkce()[1])
    status, body = exchange(issuer, code, pkce()[0])
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "code_verifier" in issuer.problems[-1]


def test_a_short_verifier_is_refused_even_if_it_matches(issuer):
    code = signed_in(issuer, challenge_of("a" * 42))
    assert exchange(issuer, code, "a" * 42)[0] == 400
    assert "43 to 128" in issuer.problems[-1]


def test_a_code_is_used_once(issuer):
    verifier, challenge = pkce()
    code = signed_in(issuer, challenge)
    assert exchange(issuer, code, verifier)[0] == 200
    status, body = exchange(issuer, code, verifier)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert issuer.problems == ["token: code already used"]


def test_the_redirect_uri_must_be_the_one_signed_in_with(issuer):
    verifier, challenge = pkce()
    code = signed_in(issuer, challenge)
    status, body = exchange(issuer, code, verifier, redirect_uri="http://localhost:1456/auth/callback")
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "redirect_uri" in issuer.problems[-1]


def test_the_token_endpoint_wants_a_form(issuer):
    verifier, challenge = pkce()
    form = {"grant_type": "authorization_code", "code": signed_in(issuer, challenge), "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID, "code_verifier": verifier}
    status, body = post_json(issuer, "/oauth/token", form)
    assert (status, body["error"]) == (400, "invalid_request")


def test_a_scripted_exchange_answer(issuer):
    verifier, challenge = pkce()
    code = signed_in(issuer, challenge)
    issuer.exchange_answer = (400, {"error": "invalid_grant"})
    assert exchange(issuer, code, verifier) == (400, {"error": "invalid_grant"})
    assert issuer.token_requests[-1]["code"] == code


@pytest.mark.parametrize("change", [{"code_challenge_method": None}, {"code_challenge_method": "plain"},
                                    {"code_challenge": None}, {"state": None}, {"client_id": "app_other"},
                                    {"scope": "openid email"}, {"redirect_uri": "http://localhost:9/cb"},
                                    {"originator": None}, {"codex_cli_simplified_flow": None}])
def test_authorize_refuses_what_the_cli_would_not_send(issuer, change):
    [name] = change
    with pytest.raises(AssertionError, match=f"400.*invalid_request.*{name}"):
        issuer.sign_in(authorize_url(issuer, pkce()[1], **change))
    assert name in issuer.problems[-1]


def test_a_denied_sign_in_comes_back_with_an_error(issuer):
    issuer.deny = True
    location = issuer.sign_in(authorize_url(issuer, pkce()[1], state="s 2"))
    query = parse_qs(urlsplit(location).query)
    assert location.startswith(REDIRECT_URI + "?")
    assert query["error"] == ["access_denied"] and query["state"] == ["s 2"] and "code" not in query


def test_sign_in_only_goes_to_the_issuer(issuer):
    with pytest.raises(AssertionError, match="not to the issuer"):
        issuer.sign_in("http://127.0.0.1:9/oauth/authorize?x=1")


# -- the device code ----------------------------------------------------------------------------

def test_the_device_flow(issuer):
    device = device_code(issuer)
    assert device["interval"] == "1" and device["expires_in"] == 900
    assert device["device_auth_id"].startswith("dev_") and re.fullmatch(r"[A-Z]{4}-\d{4}", device["user_code"])
    assert poll(issuer, device) == (403, {"error": "authorization_pending"})
    issuer.user = Identity(email="dave@example.com", account_id="ws_7", plan="team")
    issuer.approve(device["user_code"])
    status, body = poll(issuer, device)
    assert status == 200, body
    assert challenge_of(body["code_verifier"]) == body["code_challenge"]
    status, tokens = exchange(issuer, body["authorization_code"], body["code_verifier"],
                              redirect_uri=issuer.url + "/deviceauth/callback")
    assert status == 200, tokens
    assert claims(tokens["id_token"])[AUTH_CLAIMS]["chatgpt_account_id"] == "ws_7"
    assert len(issuer.polls[device["device_auth_id"]]) == 2
    assert issuer.problems == []


def test_a_device_code_is_not_for_the_browser_callback(issuer):
    device = device_code(issuer)
    issuer.approve(device["user_code"])
    body = poll(issuer, device)[1]
    status, answer = exchange(issuer, body["authorization_code"], body["code_verifier"])
    assert (status, answer["error"]) == (400, "invalid_grant")
    assert "redirect_uri" in issuer.problems[-1]


def test_a_rejected_device_and_a_mismatched_pair(issuer):
    device, other = device_code(issuer), device_code(issuer)
    issuer.reject(device["user_code"])
    assert poll(issuer, device) == (400, {"error": "access_denied"})
    status, body = post_json(issuer, DEVICE_TOKEN, {"device_auth_id": device["device_auth_id"],
                                                    "user_code": other["user_code"]})
    assert (status, body["error"]) == (400, "invalid_request")
    assert issuer.problems[-1].startswith("device token:")
    with pytest.raises(AssertionError):
        issuer.approve(device["user_code"])  # no longer pending


def test_usercode_checks_the_client_id(issuer):
    status, body = post_json(issuer, USERCODE, {"client_id": "app_other"})
    assert (status, body["error"]) == (400, "invalid_request")


def test_device_code_disabled_or_interval_changed(issuer):
    issuer.device_interval = 5
    assert device_code(issuer)["interval"] == 5
    issuer.device_enabled = False
    assert post_json(issuer, USERCODE, {"client_id": CLIENT_ID}) == (404, {"error": "not_found"})
    assert post_json(issuer, DEVICE_TOKEN, {})[0] == 404


def test_overlapping_polls_are_counted(issuer):
    device = device_code(issuer)
    poll(issuer, device)
    assert issuer.max_concurrent_polls == 1
    issuer.poll_delay = 0.3
    pollers = [threading.Thread(target=poll, args=(issuer, device)) for _ in range(2)]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    assert issuer.max_concurrent_polls == 2
    assert len(issuer.polls[device["device_auth_id"]]) == 3


def test_the_verification_page_is_there(issuer):
    status, page = request(issuer, "GET", "/codex/device")
    assert status == 200 and "<form" in page
