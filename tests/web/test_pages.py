"""lb.web.pages: the dashboard's HTML shell and the caching of its static files.

The shell is served on "/" and the five screens' paths, HEAD included, with a
strict Content-Security-Policy, and needs neither a session nor the database.
Every other path keeps the JSON rules: an unknown path, a trailing slash or a
missing static file is the JSON 404. Static URLs carry ?v=<asset version>,
a hash of every file under lb/web/static; the current version is cached for a
year, anything else revalidated. Every answer of the app says nosniff.
These tests use the frontend's files only as files: any content will do.
"""
import configparser
import glob
import json
import os
import re

import pytest
from flask import render_template_string
from peewee import OperationalError

from helpers.data import ROOT
from helpers.http import REMOTE, error, setup_password
from lb import accounts, alerts, audit, caps, keys, request_logs, sessions, settings, tables, totp, usage
from lb.web import pages

PAGES = ["/", "/accounts", "/logs", "/usage", "/keys", "/settings", "/activity"]
STATIC = os.path.join(os.path.dirname(pages.__file__), "static")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
IMMUTABLE = "public, max-age=31536000, immutable"


def a_static_file(suffix=""):
    """The path under /static/ of some file of the frontend's (the first ending in ``suffix``)."""
    for root, _, files in sorted(os.walk(STATIC)):
        for name in sorted(files):
            if name.endswith(suffix):
                return os.path.relpath(os.path.join(root, name), STATIC).replace(os.sep, "/")
    raise AssertionError(f"no {suffix or 'file'} under {STATIC}")


def fetch(client, path, **kwargs):
    """GET ``path`` and close the answer: a static file's is an open file until then."""
    with client.get(path, **kwargs) as response:
        response.get_data()
        return response


def headers_of(response):
    return {name: response.headers.get(name) for name in PAGE_HEADERS}


def shell_data(html):
    """The JSON the page hands its scripts, from its one data block."""
    blocks = re.findall(r'<script type="application/json" id="shell-data">(.*?)</script>', html, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


# -- the pages ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_each_screen_is_the_html_shell_with_its_security_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html" and response.mimetype_params == {"charset": "utf-8"}
    assert response.get_data(as_text=True).strip()
    assert headers_of(response) == PAGE_HEADERS


@pytest.mark.parametrize("path", PAGES)
def test_head_answers_the_headers_without_a_body(client, path):
    response = client.head(path)
    assert response.status_code == 200 and response.data == b""
    assert response.mimetype == "text/html"
    assert int(response.headers["Content-Length"]) == len(client.get(path).data)
    assert headers_of(response) == PAGE_HEADERS


def test_the_policy_allows_no_inline_code():
    directives = dict(part.strip().split(" ", 1) for part in pages.CSP.split(";"))
    assert "unsafe" not in pages.CSP  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["script-src"] == directives["style-src"] == "'self'"


def test_the_page_and_its_scripts_have_no_inline_code_or_markup_from_strings():
    # What the policy would refuse (inline script, style, handlers) or what would let API data become markup.
    web_dir = os.path.join(ROOT, "lb", "web")
    with open(os.path.join(web_dir, "templates", "index.html"), encoding="utf-8") as f:
        html = f.read()
    # Code comes from files; the one script element without a src is JSON data, which a browser never runs.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == ['<script type="application/json" id="shell-data">']
    assert re.findall(r"<style|\sstyle=|\son[a-z]+=", html) == []
    scripts = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(web_dir, "static"))
               for name in names if name.endswith(".js")]
    assert len(scripts) > 5
    for path in scripts:
        with open(path, encoding="utf-8") as f:
            code = re.sub(r"^\s*//.*$", "", f.read(), flags=re.M)  # comments may name what the code avoids
        assert re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                          r"setAttribute\(\s*['\"](?:style|on)", code) == [], path


def test_the_shell_data_is_json_that_cannot_close_its_element(client, monkeypatch):
    # A label with markup in it stays inside the block: tojson escapes "<", ">" and "&".
    monkeypatch.setitem(pages.SHELL_DATA, "codexModel", "</script><script>alert(1)</script>")
    html = client.get("/").get_data(as_text=True)
    assert shell_data(html)["codexModel"] == "</script><script>alert(1)</script>"
    assert "<script>" not in html


# -- the one table of screens, and the API's limits handed to the scripts --------------------

def test_the_nav_and_the_routers_table_are_the_one_list_of_screens(client):
    html = client.get("/").get_data(as_text=True)
    nav = re.search(r'<nav id="nav"[^>]*>(.*?)</nav>', html, re.S).group(1)
    links = re.findall(r'<a href="([^"]*)">([^<]*)</a>', nav)
    assert [path for path, _ in links] == list(pages.PATHS) == PAGES
    assert links == [(screen.path, screen.label) for screen in pages.SCREENS]
    assert shell_data(html)["screens"] == [{"path": path, "label": label, "name": name}
                                           for path, label, name in pages.SCREENS]
    for screen in pages.SCREENS:  # the router loads screens/<name>.js
        assert os.path.isfile(os.path.join(STATIC, "screens", f"{screen.name}.js")), screen


def test_no_script_or_template_keeps_its_own_copy_of_the_screens():
    paths = [path for path in pages.PATHS if path != "/"]  # "/", home, is everywhere: the brand link, log-out
    assert len(paths) == len(PAGES) - 1
    with open(os.path.join(os.path.dirname(pages.__file__), "templates", "index.html"), encoding="utf-8") as f:
        template = f.read()
    copies = [path for path in paths if path in template]
    for root, _, names in os.walk(STATIC):
        for name in (name for name in names if name.endswith(".js")):
            with open(os.path.join(root, name), encoding="utf-8") as f:
                code = f.read()
            copies += [(name, path) for path in paths if re.search(f"['\"`]{re.escape(path)}['\"`]", code)]
    assert copies == []


def test_the_page_hands_its_scripts_the_apis_own_limits_and_choices(client):
    data = shell_data(client.get("/").get_data(as_text=True))
    assert data["limits"] == {
        "passwordMinLength": sessions.PASSWORD_MIN_LENGTH, "passwordMaxLength": sessions.PASSWORD_MAX_LENGTH,
        "totpDigits": totp.DIGITS, "emailMaxLength": accounts.EMAIL_MAX_LENGTH,
        "planTypeMaxLength": accounts.PLAN_TYPE_MAX_LENGTH, "keyNameMaxLength": keys.NAME_MAX_LENGTH,
        "keyLimits": keys.MAX_LIMITS, "capMax": caps.MAX_CAP, "logPageSize": request_logs.DEFAULT_LIMIT,
        "webhookUrlMaxLength": settings.WEBHOOK_URL_MAX_LENGTH}
    assert [name for name, _ in data["keyMetrics"]] == list(keys.METRICS)
    assert [name for name, _ in data["keyWindows"]] == list(keys.WINDOWS)
    assert [name for name, _ in data["usageGroups"]] == list(usage.GROUPS)
    assert data["logStatuses"] == list(tables.LOG_STATUSES)
    assert [name for name, _ in data["alertEvents"]] == list(alerts.EVENTS)
    assert [name for name, _ in data["auditActions"]] == list(audit.ACTIONS)
    assert data["codexModel"] == "gpt-5.3-codex"
    assert all(label for _, label in data["keyMetrics"] + data["keyWindows"] + data["usageGroups"]
               + data["alertEvents"] + data["auditActions"])


def test_the_password_limits_the_page_hands_on_are_the_ones_the_api_holds_to(client):
    limits = shell_data(client.get("/").get_data(as_text=True))["limits"]
    for length in (limits["passwordMinLength"] - 1, limits["passwordMaxLength"] + 1):
        response = client.post("/api/dashboard-auth/password/setup", json={"password": "x" * length})
        assert error(response) == (422, "validation_error"), length
    response = client.post("/api/dashboard-auth/password/setup", json={"password": "x" * limits["passwordMinLength"]})
    assert response.status_code == 200


def test_the_cap_maximum_the_page_hands_on_is_the_one_the_api_holds_to(authed):
    cap_max = shell_data(authed.get("/").get_data(as_text=True))["limits"]["capMax"]
    response = authed.post("/api/api-keys", json={"name": "k", "caps": {"requestsPerMinute": cap_max + 1}})
    assert error(response) == (422, "validation_error")
    response = authed.post("/api/api-keys", json={"name": "k", "caps": {"requestsPerMinute": cap_max}})
    assert response.status_code == 201 and response.get_json()["caps"]["requestsPerMinute"] == cap_max


def test_a_name_without_a_label_stops_the_app_from_starting():
    assert pages.labelled(("a", "b"), {"a": "A", "b": "B"}) == [["a", "A"], ["b", "B"]]
    with pytest.raises(KeyError):
        pages.labelled(("a", "new"), {"a": "A"})


def test_the_page_needs_no_session_even_from_another_machine(app, client):
    setup_password(client)
    response = app.test_client().get("/", environ_base=REMOTE)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert app.test_client().get("/api/dashboard/overview", environ_base=REMOTE).status_code == 401


@pytest.mark.parametrize("signed_in", [False, True])
def test_the_page_and_its_files_are_served_while_the_database_is_down(app, client, monkeypatch, signed_in):
    def down(*args, **kwargs):
        raise OperationalError("the database is down")

    if signed_in:  # the session cookie is not looked up either
        setup_password(client)
    monkeypatch.setattr(tables.db.obj, "connect", down)
    assert error(client.get("/api/dashboard-auth/session")) == (503, "service_unavailable")
    assert client.get("/logs").status_code == 200
    assert fetch(client, "/static/" + a_static_file()).status_code == 200
    assert error(client.get("/static/nope.js")) == (404, "not_found")


@pytest.mark.parametrize("path", ["/api/nope", "/nope", "/accounts/", "/settings/", "/static/nope.js",
                                  "/static/", "/static/../lb.db"])
def test_any_other_path_is_the_json_404(client, path):
    response = client.get(path)
    assert error(response) == (404, "not_found")
    assert "Content-Security-Policy" not in response.headers


def test_a_page_takes_no_other_method(client):
    response = client.post("/accounts")
    assert error(response) == (405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_every_answer_says_nosniff(client):
    for response in (client.get("/healthz"), client.get("/api/dashboard-auth/session"), client.get("/api/nope"),
                     client.get("/v1/models"), client.post("/api/accounts", data="x")):
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.request.path


# -- the asset version and the static files ---------------------------------------------------

def test_templates_get_static_url_with_the_asset_version(app, client):
    assert app.static_folder == STATIC and app.static_url_path == "/static"
    version = pages.asset_version(STATIC)
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    with app.test_request_context("/"):
        rendered = render_template_string("{{ static_url('app.js') }}")
    assert rendered == f"/static/app.js?v={version}"
    # app.js takes the version from its own URL for every module it loads: the page must give it one.
    assert f'<script type="module" src="/static/app.js?v={version}"></script>' in client.get("/").get_data(as_text=True)


def test_the_version_changes_with_any_file_its_name_or_a_new_one(tmp_path):
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "app.js").write_text("one")
    (tmp_path / "app.css").write_text("body {}")
    first = pages.asset_version(tmp_path)
    assert pages.asset_version(tmp_path) == first
    (tmp_path / "js" / "app.js").write_text("two")
    second = pages.asset_version(tmp_path)
    (tmp_path / "js" / "app.js").rename(tmp_path / "js" / "main.js")
    third = pages.asset_version(tmp_path)
    (tmp_path / "js" / "empty.js").write_text("")
    fourth = pages.asset_version(tmp_path)
    assert len({first, second, third, fourth}) == 4
    assert all(re.fullmatch(r"[0-9a-f]{12}", version) for version in (first, second, third, fourth))


def test_the_version_is_taken_once_at_start(make_app, app):
    assert app.extensions["lb_asset_version"] == pages.asset_version(STATIC)
    assert make_app().extensions["lb_asset_version"] == app.extensions["lb_asset_version"]


def test_the_current_version_is_cached_for_a_year(app, client):
    path = "/static/" + a_static_file()
    response = fetch(client, path, query_string={"v": app.extensions["lb_asset_version"]})
    assert response.status_code == 200 and response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    again = fetch(client, path, query_string={"v": app.extensions["lb_asset_version"]},
                       headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Cache-Control"] == IMMUTABLE


@pytest.mark.parametrize("query", [{}, {"v": "000000000000"}, {"v": ""}])
def test_an_unversioned_or_old_url_is_revalidated(client, query):
    response = fetch(client, "/static/" + a_static_file(), query_string=query)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-cache"


def test_a_missing_file_is_never_cached(app, client):
    response = client.get("/static/nope.js", query_string={"v": app.extensions["lb_asset_version"]})
    assert error(response) == (404, "not_found")
    assert response.headers["Cache-Control"] == "no-cache"


def test_javascript_is_text_javascript(client):
    response = fetch(client, "/static/" + a_static_file(".js"))
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"


def test_the_package_data_ships_every_file_of_the_browser_face():
    # setup.cfg's globs, as setuptools reads them (relative to their package's folder, "*" within one folder).
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    globs = [os.path.join(ROOT, *package.split("."), pattern)
             for package, patterns in config["options.package_data"].items() for pattern in patterns.split()]
    shipped = {path for pattern in globs for path in glob.glob(pattern) if os.path.isfile(path)}
    web = {os.path.join(root, name) for folder in (STATIC, os.path.join(os.path.dirname(pages.__file__), "templates"))
           for root, _, names in os.walk(folder) for name in names}
    assert len(web) > 10 and web <= shipped
