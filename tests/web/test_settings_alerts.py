"""The Settings screen's Alerts in a real browser, against the real server and a webhook receiver on loopback:
the URL and the events saved as the API keeps them, a bad URL refused beside the form, and "Send a test"
telling what the receiver answered."""
import pytest
from playwright.sync_api import expect

from fixtureapps.token_server import Answer, TokenServer
from helpers.data import PASSWORD
from helpers.servers import app_server
from lb.web import pages

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver():
    server = TokenServer()
    server.default = Answer(204, b"")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def served(tmp_path):
    server = app_server(tmp_path / "data", USAGE_POLL_SECONDS=0, THREADS=8)
    server.start()
    yield server
    server.stop()


def test_the_administrator_sets_up_alerts_and_sends_a_test(served, receiver, page):
    base = f"http://127.0.0.1:{served.port}"
    page.goto(base + "/")
    page.wait_for_selector("#main[data-screen=setup]")
    page.fill("#setup-password", PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_selector("#main[data-screen=overview]")
    page.get_by_role("link", name="Settings", exact=True).click()
    page.wait_for_selector("#main[data-screen=settings]")

    form = page.locator("section", has=page.get_by_role("heading", name="Alerts"))
    boxes = form.locator("input[type=checkbox]")
    expect(boxes).to_have_count(len(pages.SHELL_DATA["alertEvents"]))
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))  # every event by default
    expect(form.get_by_role("button", name="Send a test")).to_be_disabled()  # no URL yet

    page.fill("#webhook-url", "ftp://example.com/hook")
    form.get_by_role("button", name="Save").click()
    expect(form.locator("[role=alert]")).to_contain_text("webhookUrl")
    assert page.request.get(base + "/api/settings").json()["webhookUrl"] is None

    page.fill("#webhook-url", receiver.base_url + "/hook")
    page.uncheck("#event-pool-recovered")
    form.get_by_role("button", name="Save").click()
    expect(form.locator("[role=alert]")).to_have_text("Saved.")
    saved = page.request.get(base + "/api/settings").json()
    assert saved["webhookUrl"] == receiver.base_url + "/hook"
    assert "pool.recovered" not in saved["webhookEvents"] and len(saved["webhookEvents"]) == len(boxes.all()) - 1

    form.get_by_role("button", name="Send a test").click()
    expect(form.locator("[role=alert]")).to_have_text("Delivered: the receiver answered 204.")
    assert [body["event"] for body in receiver.bodies] == ["test"]

    receiver.default = Answer(500, {"error": "down"})
    form.get_by_role("button", name="Send a test").click()
    expect(form.locator("[role=alert]")).to_have_text("Not delivered: the receiver answered 500")
    assert [m for m in page.console_errors if "422" not in m] == []  # the browser reports the 422 it got
