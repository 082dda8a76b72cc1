"""The dashboard in a real browser (Debian's chromium through Playwright), against the real server.

One walk through what an administrator does on a fresh install: first run,
every screen of the nav, accounts, a key with caps (shown once, then kept
nowhere in the page), traffic through the proxy, the key's caps listed with
their use and edited, the overview agreeing with the API, a pause, the logs
filtered, TOTP on, log out, log in again, the key regenerated and deleted,
then accounts signed in with ChatGPT at a fake issuer: one added with a
device code (after an attempt cancelled and one declined), one deactivated
by a usage refresh and re-authenticated in the browser method.
Every screen is photographed at desktop and phone width and checked for
sideways overflow at 375 px; the console must stay free of errors but the
browser's reports of the 422 and the 400 the walk provokes. The asset size and the
overview's first paint are measured and printed, not asserted on time.
"""
import json
import os
import re
import time
import urllib.request

import pyotp
import pytest
from playwright.sync_api import expect

from fixtureapps.issuer import Identity, Issuer
from fixtureapps.upstream import Stream, Usage
from helpers.data import INGEST, PASSWORD, ROOT, auth_json, id_token, jwt
from helpers.servers import app_server
from lb.web import pages

pytestmark = pytest.mark.browser

SHOTS = os.path.join(ROOT, "screenshots")
LIMITS = pages.SHELL_DATA["limits"]


def labels(page, select):
    return page.locator(f"{select} option").all_inner_texts()


def in_page_memory(page, text):
    """Whether ``text`` is a string anywhere in the page's JavaScript heap, once garbage is collected."""
    cdp = page.context.new_cdp_session(page)
    chunks = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    try:
        cdp.send("HeapProfiler.enable")
        cdp.send("HeapProfiler.collectGarbage")
        cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    finally:
        cdp.detach()
    return text in "".join(chunks)


def count(page):
    """The count beside the screen's title ("2 accounts")."""
    return page.locator("#main .page-head p")


@pytest.fixture
def issuer():
    """The fake ChatGPT sign-in on the real clock: its tokens must look fresh to the server, which runs on it."""
    server = Issuer().start()
    yield server
    server.stop()


@pytest.fixture
def served(tmp_path, upstream, issuer):
    # The issuer is also the token endpoint (its /oauth/token): the imported tokens are fresh for ten days, never
    # refreshed. No background usage poll: the walk's Refresh is the one check of an account's usage.
    server = app_server(tmp_path / "data", UPSTREAM_URL=upstream.url, OAUTH_ISSUER=issuer.url, USAGE_POLL_SECONDS=0,
                        THREADS=16)
    server.start()
    yield server
    server.stop()


def account_json(name):
    workspace = f"ws-{name}"
    access = jwt({"exp": int(time.time()) + 10 * 86400, "jti": f"access-{name}"})
    return auth_json(id_token(email=f"{name}@example.com", workspace=workspace), account_id=workspace, access=access)


def post(port, path, payload, headers):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(payload).encode(),
                                     {"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.read()


def on(page, screen):
    page.wait_for_selector(f"#main[data-screen={screen}]", timeout=10_000)


def go(page, link, screen):
    page.get_by_role("link", name=link, exact=True).click()
    on(page, screen)


def shoot(page, name):
    """A screenshot at desktop width, then at 375 px, where nothing may stick out sideways."""
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})
    try:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: {overflow} px of horizontal overflow at 375 px"
        page.screenshot(path=os.path.join(SHOTS, f"{name}-phone.png"), full_page=True)
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


def card(page, name):
    return page.get_attribute(f"[data-testid=card-{name}]", "data-value")


def num(page, n):
    """``n`` as the page writes a number (format.js's num: the browser's locale, no decimals)."""
    return page.evaluate("n => new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 }).format(n)", n)


def caps(rpm, tpm, concurrent):
    return {"requestsPerMinute": rpm, "tokensPerMinute": tpm, "concurrentRequests": concurrent}


def stored_caps(page, base):
    """The one key's caps, as the JSON API has them."""
    (key,) = page.request.get(base + "/api/api-keys").json()["apiKeys"]
    return key["caps"]


def test_an_administrator_walks_through_the_dashboard(served, upstream, issuer, page):
    base = f"http://127.0.0.1:{served.port}"
    loaded = set()
    page.on("response", lambda r: loaded.add(r.url) if "/static/" in r.url else None)

    # First run: set the password; the overview starts at zero.
    page.goto(base + "/")
    on(page, "setup")
    shoot(page, "setup")
    # The password's lengths are the API's, from the page's data.
    assert page.get_attribute("#setup-password", "minlength") == str(LIMITS["passwordMinLength"])
    assert page.get_attribute("#setup-password", "maxlength") == str(LIMITS["passwordMaxLength"])
    page.fill("#setup-password", PASSWORD)
    page.get_by_role("button", name="Set password").click()
    on(page, "overview")
    assert (card(page, "accounts"), card(page, "tokens"), card(page, "requests")) == ("0", "0", "0")

    # The nav is the server's table of screens, and the router's: each link draws its screen, titled by its label.
    for screen in pages.SCREENS[1:] + pages.SCREENS[:1]:
        go(page, screen.label, screen.name)
        assert page.title() == f"{screen.label} · Codex-LB"
        assert page.url == base + screen.path

    # Two accounts, imported by pasting their auth.json; the count beside the title follows.
    go(page, "Accounts", "accounts")
    expect(count(page)).to_have_text("0 accounts")
    expect(page.locator("#main tbody tr.empty")).to_have_count(1)
    for name, counted in (("a", "1 account"), ("b", "2 accounts")):
        page.fill("#import-json", json.dumps(account_json(name)))
        page.get_by_role("button", name="Import").click()
        page.wait_for_selector(f"tr[data-account-id] >> text={name}@example.com")
        expect(count(page)).to_have_text(counted)
    assert page.locator("tr[data-account-id]").count() == 2
    expect(page.locator("tr[data-account-id] td.reason span.muted")).to_have_text(["—", "—"])  # no status reason

    # A key limited to one model, with caps; it is shown once, with the Codex CLI's config.
    go(page, "API keys", "keys")
    changes = []  # what the page asks of the keys API other than reading them
    page.on("request", lambda r: changes.append(r) if "/api/api-keys" in r.url and r.method != "GET" else None)
    assert page.get_attribute("#key-name", "maxlength") == str(LIMITS["keyNameMaxLength"])
    page.fill("#key-name", "laptop")
    page.get_by_role("button", name="Add limit").click()  # its choices are the API's; without a maximum, refused
    expect(page.locator("#limit-metric-1")).to_be_focused()
    assert labels(page, "#limit-metric-1") == [label for _, label in pages.SHELL_DATA["keyMetrics"]]
    assert labels(page, "#limit-window-1") == [label for _, label in pages.SHELL_DATA["keyWindows"]]
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_have_text("limits: every limit needs a maximum above 0.")
    expect(page.locator("#limit-max-1")).to_be_focused()
    page.get_by_role("button", name="Remove this limit").click()
    expect(page.locator(".limit-row")).to_have_count(0)
    expect(page.get_by_role("button", name="Add limit")).to_be_focused()
    # A cap is empty or a whole number up to the API's maximum, from the page's data; anything else is
    # refused in the page, that cap's input focused, and no request is sent.
    assert page.get_attribute("#key-cap-tokensPerMinute", "max") == str(LIMITS["capMax"])
    for bad in ("0", "2.5", str(LIMITS["capMax"] + 1)):
        page.fill("#key-cap-tokensPerMinute", bad)
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_role("alert")).to_have_text("caps.tokensPerMinute: leave it empty for no cap, or give a "
                                                       f"whole number from 1 to {num(page, LIMITS['capMax'])}.")
        expect(page.locator("#key-cap-tokensPerMinute")).to_be_focused()
    assert changes == [] and page.request.get(base + "/api/api-keys").json()["apiKeys"] == []
    page.fill("#key-cap-requestsPerMinute", "60")
    page.fill("#key-cap-tokensPerMinute", "100000")
    page.fill("#key-cap-concurrentRequests", "4")
    page.check("fieldset#key-models input[value='gpt-5.3-codex']")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("[data-testid=new-key]").inner_text().strip()
    assert key.startswith("sk-clb-")
    snippet = page.locator("pre[data-testid=codex-snippet]").inner_text()
    assert f'base_url = "{base}/backend-api/codex"' in snippet and 'env_key = "CODEX_LB_API_KEY"' in snippet
    assert key in snippet
    # Beside it, for OpenAI-compatible tools: the base URL and the key, each with its Copy button, and the
    # SDK's variables. The base URL's button copies it (the clipboard is granted for the rest of the walk).
    openai = page.get_by_test_id("openai-snippet")
    expect(openai.get_by_test_id("openai-base-url")).to_have_text(f"{base}/v1")
    expect(openai.get_by_test_id("openai-key")).to_have_text(key)
    expect(openai.get_by_test_id("openai-example")).to_contain_text(f"OPENAI_BASE_URL={base}/v1 OPENAI_API_KEY={key}")
    expect(openai.get_by_test_id("openai-example")).to_contain_text('model="gpt-5.3-codex"')
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    base_url = openai.get_by_role("group", name="Base URL")
    base_url.get_by_role("button", name="Copy").click()
    expect(base_url.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == f"{base}/v1"
    expect(count(page)).to_have_text("1 key")
    (created,) = changes
    assert created.method == "POST" and created.post_data_json["caps"] == caps(60, 100_000, 4) == stored_caps(page, base)
    key_row = page.locator("tr[data-key-id]", has_text="laptop")
    expect(key_row.locator(".cap")).to_have_text(["0 / 60 req/min", f"0 / {num(page, 100_000)} tok/min", "0 / 4 in flight"])
    expect(page.locator("#key-cap-requestsPerMinute")).to_have_value("")  # the form is ready for another key
    shoot(page, "keys")
    assert in_page_memory(page, key)  # while shown: the search finds it
    page.get_by_role("button", name="Done").click()
    assert not in_page_memory(page, key)  # shown once: the table's list of keys kept no copy

    # Disabled and enabled again: the row is drawn anew, focus on the new row's button.
    for press, then in (("Disable", "Enable"), ("Enable", "Disable")):
        key_row.get_by_role("button", name=press).click()
        expect(key_row.get_by_role("button", name=then)).to_be_focused()

    # Traffic: three requests through the proxy with the key, and two ingested logs (one failed).
    upstream.default = Stream(text="hello from the walk")
    body = {"model": "gpt-5.3-codex", "stream": True, "input": [], "store": False}
    for _ in range(3):
        status, streamed = post(served.port, "/backend-api/codex/responses", body, {"Authorization": f"Bearer {key}"})
        assert status == 200 and b"response.completed" in streamed
    post(served.port, "/api/request-logs", {"requests": [
        {"model": "o3-pro", "inputTokens": 1000, "outputTokens": 100, "status": "ok"},
        {"model": "o3-pro", "status": "error", "errorCode": "upstream_error"}]},
        {"Authorization": f"Bearer {INGEST}"})

    # The key's caps with their use: its three requests and their tokens of the last minute, none in flight now.
    go(page, "API keys", "keys")
    expect(key_row.locator(".cap")).to_have_text(["3 / 60 req/min", f"450 / {num(page, 100_000)} tok/min", "0 / 4 in flight"])
    # Edited in a dialog that starts from them. A 422 of the server's (the request spoilt on its way) is shown
    # in the dialog, the cap it names focused; what was typed stays.
    key_row.get_by_role("button", name="Edit caps").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#edit-cap-requestsPerMinute")).to_be_focused()
    for name, value in caps("60", "100000", "4").items():
        expect(dialog.locator(f"#edit-cap-{name}")).to_have_value(value)
    page.fill("#edit-cap-requestsPerMinute", "3")  # reached by the three requests
    page.fill("#edit-cap-tokensPerMinute", "")  # cleared: no cap
    page.fill("#edit-cap-concurrentRequests", "2")

    spoilt = []

    def spoil(route):
        spoilt.append(route.request.url)
        route.continue_(post_data=json.dumps({"caps": {**route.request.post_data_json["caps"], "concurrentRequests": 0}}))

    page.route("**/api/api-keys/*", spoil)
    dialog.get_by_role("button", name="Save caps").click()
    expect(dialog.get_by_role("alert")).to_have_text(re.compile(r"^caps\.concurrentRequests must be null or a whole number"))
    expect(page.locator("#edit-cap-concurrentRequests")).to_be_focused()
    expect(page.locator("#edit-cap-concurrentRequests")).to_have_value("2")
    page.unroute("**/api/api-keys/*", spoil)
    shoot(page, "key-caps")
    dialog.get_by_role("button", name="Save caps").click()
    expect(dialog).to_have_count(0)
    expect(key_row.get_by_role("button", name="Edit caps")).to_be_focused()  # the new row's
    expect(key_row.locator(".cap")).to_have_text(["3 / 3 req/min", "0 / 2 in flight"])
    reached = re.compile(r"\berror-text\b")  # the next request would be refused
    expect(key_row.locator("[data-cap=requestsPerMinute]")).to_have_class(reached)
    expect(key_row.locator("[data-cap=concurrentRequests]")).not_to_have_class(reached)
    edited = changes[-1]
    assert edited.method == "PATCH" and edited.post_data_json == {"caps": caps(3, None, 2)}
    assert stored_caps(page, base) == caps(3, None, 2)
    # Every cap cleared: the muted dash.
    key_row.get_by_role("button", name="Edit caps").click()
    for name in caps(1, 1, 1):
        page.fill(f"#edit-cap-{name}", "")
    dialog.get_by_role("button", name="Save caps").click()
    expect(key_row.locator("td.caps-cell > .muted")).to_have_text("—")
    expect(key_row.locator(".cap")).to_have_count(0)
    assert changes[-1].post_data_json == {"caps": caps(None, None, None)} == {"caps": stored_caps(page, base)}

    # The overview's cards say what the API says; first paint with data is measured.
    started = time.perf_counter()
    page.goto(base + "/")
    on(page, "overview")
    paint_ms = page.evaluate("performance.now()")
    wall_ms = (time.perf_counter() - started) * 1000
    api = page.request.get(base + "/api/dashboard/overview").json()
    assert card(page, "accounts") == str(api["accountCounts"]["active"]) == "2"
    assert page.get_attribute("[data-testid=card-accounts]", "data-total") == "2"
    assert card(page, "tokens") == str(api["usageSummary"]["totalTokens"]) == str(3 * 150 + 1100)
    assert float(card(page, "cost")) == pytest.approx(api["usageSummary"]["totalCost"])
    assert card(page, "requests") == str(api["requestCount"]) == "5"
    assert float(card(page, "error-rate")) == pytest.approx(api["errorRate"])
    # The prompt cache's share of the input: 3 x 20 cached of 3 x 120 + 1000, 4.41 %, with its two decimals.
    assert float(card(page, "cache")) == api["cachedInputShare"] == 4.41
    expect(page.locator("[data-testid=card-cache] .card-value")).to_have_text(
        page.evaluate("new Intl.NumberFormat(undefined, { minimumFractionDigits: 2 }).format(4.41)") + "%")
    assert page.locator("svg[data-testid=usage-chart]").count() == 1
    # Drawn as SVG (its namespace): an HTML element of that name would lay out no bars.
    assert page.locator("svg[data-testid=usage-chart] rect.hit").first.bounding_box()["height"] > 0
    shoot(page, "overview")

    # Pausing an account changes the count.
    go(page, "Accounts", "accounts")
    row = page.locator("tr[data-account-id]", has_text="a@example.com")
    row.get_by_role("button", name="Pause").click()
    page.wait_for_selector("tr[data-account-id]:has-text('a@example.com') [data-testid=account-status]:text('paused')")
    expect(row.get_by_role("button", name="Resume")).to_be_focused()  # the new row's, the old one is gone
    shoot(page, "accounts")
    go(page, "Overview", "overview")
    expect(page.locator("[data-testid=card-accounts]")).to_have_attribute("data-value", "1")

    # The logs, filtered by status.
    go(page, "Request logs", "logs")
    assert page.locator("tr[data-request-id]").count() == 5
    expect(count(page)).to_have_text("5 requests shown")
    # Each request's cached input, as the API has it: the proxied ones' 20, none for the ingested ones.
    logged = page.request.get(base + "/api/request-logs").json()["requests"]
    assert sorted(r["cachedInputTokens"] for r in logged) == [0, 0, 20, 20, 20]
    expect(page.locator("tr[data-request-id] [data-testid=log-cached]")).to_have_text(
        [num(page, r["cachedInputTokens"]) for r in logged])
    assert page.locator("#filter-status option").count() == 1 + len(pages.SHELL_DATA["logStatuses"])
    page.select_option("#filter-status", "error")
    expect(page.locator("tr[data-request-id]")).to_have_count(1)  # no wait_for_function: the CSP forbids eval
    assert page.locator("[data-testid=log-status]").inner_text().strip() == "error"
    expect(count(page)).to_have_text("1 request shown")
    expect(page.locator("#main tbody")).not_to_have_class(re.compile(r"\bstale\b"))  # the reload is over
    expect(page.locator("tr[data-request-id]", has_text="o3-pro").locator("td").nth(4)).to_have_text("—")  # no key
    shoot(page, "logs")

    # Usage: the totals the API gives; grouped by account, rows named by the accounts' emails.
    go(page, "Usage", "usage")
    assert labels(page, "#usage-group") == [label for _, label in pages.SHELL_DATA["usageGroups"]]
    totals = page.request.get(base + "/api/usage?groupBy=day").json()["totals"]
    expect(page.locator("#main tfoot td.num").first).to_have_text(str(totals["requests"]))
    expect(page.locator("#main thead th").first).to_have_text("Day")
    assert totals["cachedInputShare"] == 4.41  # the cache hits column, with its two decimals
    expect(page.locator("#main tfoot [data-testid=cache-share]")).to_have_text(
        page.evaluate("new Intl.NumberFormat(undefined, { minimumFractionDigits: 2 }).format(4.41)") + "%")
    page.select_option("#usage-group", "account")
    expect(page.locator("#main tbody tr", has_text="a@example.com")).to_have_count(1)
    expect(page.locator("#main thead th").first).to_have_text("Account")  # the column is named by the grouping
    expect(page.locator("#main tbody")).not_to_have_class(re.compile(r"\bstale\b"))
    shoot(page, "usage")

    # TOTP on, confirmed with a code from the secret the page shows.
    go(page, "Settings", "settings")
    # Retention: kept forever at first; under 7 days is refused in the page's words, 30 is saved.
    expect(page.locator("#retention-forever")).to_be_checked()
    expect(page.locator("[data-testid=last-prune]")).to_have_text("No request logs pruned yet.")
    keep = page.locator("section", has_text="Retention")
    page.fill("#retention-days", "6")
    expect(page.locator("#retention-limited")).to_be_checked()
    keep.get_by_role("button", name="Save").click()
    expect(keep.locator(".alert")).to_have_text("Keep at least 7 days (a whole number up to 36500).")
    page.fill("#retention-days", "30")
    keep.get_by_role("button", name="Save").click()
    expect(keep.locator(".alert.ok")).to_have_text("Saved: request logs older than 30 days are pruned.")
    assert page.request.get(base + "/api/settings").json()["requestLogRetentionDays"] == 30
    page.get_by_role("button", name="Enable TOTP").click()
    page.wait_for_selector("img[data-testid=totp-qr]")
    secret = page.locator("[data-testid=totp-secret]").inner_text().strip().replace(" ", "")
    totp, step = pyotp.TOTP(secret), int(time.time()) // 30
    page.fill("#totp-confirm-code", "12 34-56 78")  # digits only, as many as a code has
    expect(page.locator("#totp-confirm-code")).to_have_value("123456")
    page.fill("#totp-confirm-code", totp.at(step * 30))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_selector("button:has-text('Disable TOTP')")
    shoot(page, "settings")

    # Log out, log in: the TOTP prompt (a later code: a used one is refused), then the overview again.
    page.get_by_role("button", name="Log out").click()
    on(page, "login")
    shoot(page, "login")
    page.fill("#login-password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    on(page, "totp")
    shoot(page, "totp")
    code = totp.at((step + 1) * 30)
    page.fill("#totp-code", f"{code[:3]} {code[3:]}")  # the space is dropped; submits itself on the sixth digit
    on(page, "overview")
    assert card(page, "accounts") == "1"

    # The key regenerated (shown once, a new one), then deleted: the table is empty again.
    go(page, "API keys", "keys")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".reveal h2")).to_have_text("Regenerated key “laptop”")
    regenerated = page.locator("[data-testid=new-key]").inner_text().strip()
    assert regenerated.startswith("sk-clb-") and regenerated != key
    assert in_page_memory(page, regenerated)  # on show: the search finds it
    page.get_by_role("button", name="Done").click()
    expect(page.locator(".reveal")).to_be_hidden()
    assert not in_page_memory(page, regenerated)  # shown once: the screen's list of keys kept no copy
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#main tbody tr.empty")).to_have_text("No API keys yet. Create one above.")
    expect(count(page)).to_have_text("0 keys")

    # Sign in with ChatGPT, with a device code. A first attempt, cancelled: its flow is deleted with the dialog.
    go(page, "Accounts", "accounts")
    expect(count(page)).to_have_text("2 accounts")
    page.get_by_role("button", name="Sign in with ChatGPT").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="Browser sign-in")).to_be_focused()
    dialog.get_by_role("button", name="Device code").click()
    user_code = dialog.locator("[data-testid=oauth-user-code]")
    expect(user_code).to_have_text(re.compile(r"^[A-Z]{4}-\d{4}$"))
    with page.expect_request(lambda r: r.method == "DELETE" and "/api/oauth/flows/" in r.url) as cancelled:
        dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert page.request.get(cancelled.value.url).status == 404
    # One the person declines at the issuer: the server's poll fails the flow, the dialog says why and offers
    # to start again.
    page.get_by_role("button", name="Sign in with ChatGPT").click()
    dialog.get_by_role("button", name="Device code").click()
    expect(user_code).to_have_text(re.compile(r"^[A-Z]{4}-\d{4}$"))
    issuer.reject(user_code.inner_text())
    expect(dialog.get_by_role("alert")).to_have_text("The issuer refused the device code: access_denied", timeout=10_000)
    expect(dialog.get_by_role("button", name="Start again")).to_be_focused()
    dialog.get_by_role("button", name="Start again").click()
    expect(dialog.get_by_role("alert")).to_be_hidden()
    # Then one the fake issuer approves: the page shows the code, copies it, counts down to the flow's end and
    # reads the flow each second until the server's own poll of the issuer completes it; the list follows.
    dialog.get_by_role("button", name="Device code").click()
    expect(user_code).to_have_text(re.compile(r"^[A-Z]{4}-\d{4}$"))
    expect(dialog.locator("[data-testid=oauth-countdown]")).to_have_text(re.compile(r"^1[45]:[0-5]\d$"))
    device_page = dialog.get_by_role("link", name="Open the device page")
    expect(device_page).to_have_attribute("href", issuer.url + "/codex/device")
    expect(device_page).to_have_attribute("target", "_blank")
    expect(device_page).to_have_attribute("rel", "noopener noreferrer")
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == user_code.inner_text()
    shoot(page, "sign-in-device")
    issuer.approve(user_code.inner_text())
    expect(dialog.get_by_role("alert")).to_have_text("Signed in as alice@example.com: the account was added.",
                                                     timeout=10_000)
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    expect(count(page)).to_have_text("3 accounts")
    alice = page.locator("tr[data-account-id]", has_text="alice@example.com")
    expect(alice.get_by_test_id("account-status")).to_have_text("active")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)

    # Refresh asks the upstream for an account's usage now: the row shows it and when it was checked.
    b_row = page.locator("tr[data-account-id]", has_text="b@example.com")
    expect(b_row.get_by_test_id("usage-checked")).to_have_text(re.compile(r"^never checked"))
    b_row.get_by_role("button", name="Refresh").click()
    expect(b_row.get_by_test_id("usage-checked")).to_have_text(re.compile(r"^checked just now"))
    expect(b_row.get_by_role("progressbar", name="Primary")).to_have_attribute("aria-valuenow", "25")
    expect(b_row.get_by_role("button", name="Refresh")).to_be_focused()  # the new row's
    # A 403 from the usage API deactivates the account: Re-authenticate, in the browser method, brings it back.
    upstream.usage["ws-b"] = [Usage(status=403, body={"detail": "Forbidden"})]
    b_row.get_by_role("button", name="Refresh").click()
    expect(b_row.get_by_test_id("account-status")).to_have_text("deactivated")
    expect(b_row.get_by_role("button", name="Re-authenticate")).to_have_class(re.compile(r"\bprimary\b"))
    b_row.get_by_role("button", name="Re-authenticate").click()
    expect(dialog.get_by_role("heading")).to_have_text("Re-authenticate b@example.com")
    dialog.get_by_role("button", name="Browser sign-in").click()
    authorize = dialog.get_by_role("link", name="Open the ChatGPT sign-in page")
    expect(authorize).to_have_attribute("target", "_blank")
    expect(authorize).to_have_attribute("rel", "noopener noreferrer")
    issuer.user = Identity(email="b@example.com", account_id="ws-b", plan="pro")
    ended_on = issuer.sign_in(authorize.get_attribute("href"))
    # An address of another sign-in (its state is not this one's) is refused; the flow waits for the right one.
    page.fill("#oauth-callback", re.sub(r"state=[^&]+", "state=not-this-one", ended_on))
    page.get_by_role("button", name="Finish sign-in").click()
    expect(dialog.get_by_role("alert")).to_contain_text("state does not match")
    shoot(page, "sign-in-browser")
    page.fill("#oauth-callback", ended_on)
    page.get_by_role("button", name="Finish sign-in").click()
    expect(dialog.get_by_role("alert")).to_have_text("Signed in as b@example.com: the account was re-authenticated.")
    expect(b_row.get_by_test_id("account-status")).to_have_text("active")
    expect(b_row.locator("td").nth(1)).to_have_text("pro")
    dialog.get_by_role("button", name="Close").click()
    expect(b_row.get_by_role("button", name="Re-authenticate")).to_be_focused()  # the reloaded list's
    expect(count(page)).to_have_text("3 accounts")
    assert issuer.problems == []

    # The console's errors are the browser's own reports of the 422 and the 400 the walk provoked.
    (spoilt_url,) = spoilt
    assert len(page.console_errors) == 2, page.console_errors
    assert " 422 " in page.console_errors[0] and f"({spoilt_url})" in page.console_errors[0]
    assert " 400 " in page.console_errors[1] and "/callback)" in page.console_errors[1]
    # Every module came with the page's asset version (app.js hands its own on), so none is ever stale.
    version = page.request.get(base + "/").text().split("/static/app.js?v=")[1][:12]
    assert {url.split("?")[1] for url in loaded} == {f"v={version}"}
    assert {url.split("?")[0].rsplit("/static/")[1] for url in loaded} >= {"app.js", "ui.js", "screens/keys.js"}
    static = os.path.join(ROOT, "lb", "web", "static")
    files = [os.path.join(d, f) for d, _, names in os.walk(static) for f in names]
    files.append(os.path.join(ROOT, "lb", "web", "templates", "index.html"))
    total = sum(os.path.getsize(f) for f in files)
    print(f"\ndashboard assets: {total:,} bytes in {len(files)} files ({len(loaded)} loaded by the walk); "
          f"overview with data painted {paint_ms:.0f} ms after navigation ({wall_ms:.0f} ms as the test saw it); "
          f"screenshots in {SHOTS}")
    assert total <= 150 * 1024
