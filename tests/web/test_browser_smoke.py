"""The browser face in a real browser: Debian's chromium loads "/" from the real server (waitress).

One page load, kept cheap: the answer is the HTML shell under its
Content-Security-Policy, its scripts draw the first screen, and nothing went to the
console as an error (a script or style the policy refused would). The
dashboard's own walk through its screens is another module's.
"""
import time

import pytest

from lb.web import pages

pytestmark = pytest.mark.browser


def test_chromium_loads_the_dashboard_shell_without_errors(server, page):
    started = time.perf_counter()
    response = page.goto(f"http://127.0.0.1:{server.port}/")
    print(f"page.goto: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == pages.CSP
    # The modules loaded and ran under the policy: they asked the API and drew the first screen (no password
    # is set yet: the setup form). The <main> of the HTML alone would prove nothing.
    page.wait_for_selector("#main[data-screen=setup]", timeout=10_000)
    assert page.locator("#main form").count() == 1
    assert page.console_errors == []
