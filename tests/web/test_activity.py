"""The Activity screen (the audit log) in a real browser (Debian's chromium through Playwright), against the real
server: newest first, a page at a time with "Load more", targets named, and no secret on the page.

The entries are made through the JSON API with the browser's own session
(page.request shares its cookies); the console must stay free of errors, so a
script or style the strict CSP refused would fail the test.
"""
import pytest
from playwright.sync_api import expect

from helpers.data import PASSWORD
from lb.web import pages

pytestmark = pytest.mark.browser

PAGE_SIZE = pages.SHELL_DATA["limits"]["logPageSize"]  # the audit log pages like the request logs


def on(page, screen):
    page.wait_for_selector(f"#main[data-screen={screen}]", timeout=10_000)


def test_the_activity_screen_pages_the_audit_log_newest_first(server, page):
    base = f"http://127.0.0.1:{server.port}"
    page.goto(base + "/")
    on(page, "setup")
    page.fill("#setup-password", PASSWORD)
    page.get_by_role("button", name="Set password").click()
    on(page, "overview")

    # One more entry than a page: the first password, then keys; the last key is deleted (its id stays).
    made = [page.request.post(base + "/api/api-keys", data={"name": f"key {i}"}) for i in range(PAGE_SIZE - 1)]
    assert all(answer.status == 201 for answer in made)
    plaintexts = [answer.json()["key"] for answer in made]
    gone = made[-1].json()["id"]
    assert page.request.delete(f"{base}/api/api-keys/{gone}").status == 204
    assert page.request.patch(base + "/api/settings", data={"apiKeyRequired": True}).status == 200

    page.get_by_role("link", name="Activity", exact=True).click()
    on(page, "activity")
    assert page.title() == "Activity · Codex-LB" and page.url == base + "/activity"
    rows = page.locator("#main tbody tr")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(page.locator("#main .page-head p")).to_have_text(f"{PAGE_SIZE} entries shown, more available")
    newest, deleted = rows.nth(0), rows.nth(1)
    assert newest.get_attribute("data-action") == "settings.changed"
    expect(newest.locator("td").nth(1)).to_have_text("Settings changed")
    expect(newest.locator("td").nth(2)).to_have_text("Settings")
    expect(newest.locator("td").nth(3)).to_have_text("127.0.0.1")
    expect(newest.locator("td").nth(4)).to_have_text("apiKeyRequired: true")
    assert deleted.get_attribute("data-action") == "api_key.deleted"
    expect(deleted.locator("td").nth(2)).to_have_text(gone)  # a deleted key is shown by its id
    expect(rows.nth(2).locator("td").nth(2)).to_have_text(gone)  # its creation too
    expect(rows.nth(3).locator("td").nth(2)).to_have_text(f"key {PAGE_SIZE - 3}")  # a live key by its name

    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(rows).to_have_count(PAGE_SIZE + 2)
    expect(more).to_be_hidden()
    expect(page.locator("#main .page-head p")).to_have_text(f"{PAGE_SIZE + 2} entries shown")
    oldest = rows.nth(PAGE_SIZE + 1)
    assert oldest.get_attribute("data-action") == "password.changed"
    expect(oldest.locator("td").nth(2)).to_have_text("—")  # no target
    ids = [int(value) for value in rows.evaluate_all("rows => rows.map(r => r.dataset.auditId)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)

    text = page.inner_text("#main")
    assert PASSWORD not in text and not any(key in text for key in plaintexts)
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert page.console_errors == []
