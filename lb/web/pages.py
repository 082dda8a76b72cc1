"""The browser face: the dashboard's HTML shell on its own paths, and how its static files are cached.

The page is only a shell: its JavaScript asks the JSON API for everything, so
serving it needs neither a session nor the database (lb.database skips its
connection for this blueprint and the static files). Every other path, an
unknown one included, keeps the JSON rules of lb.errors. SCREENS is the one
table of the dashboard's screens: their paths here, the nav in the template,
and, in the page's JSON data block with the API's limits, app.js's router.
"""
import hashlib
import mimetypes
import os
from collections import namedtuple

from flask import Blueprint, current_app, render_template, request, url_for

from lb import accounts, alerts, audit, caps, keys, request_logs, sessions, settings, tables, totp, usage

# This package's own folders: its blueprint has the template, the app's static files are STATIC.
STATIC = os.path.join(os.path.dirname(__file__), "static")
bp = Blueprint("pages", __name__, template_folder="templates")

Screen = namedtuple("Screen", "path label name")  # name: its module under static/screens/, its data-screen
# The dashboard's screens in the nav's order: the one table behind the shell's paths, the nav's links and
# the router's (app.js). "/accounts/" and the like stay the JSON 404.
SCREENS = (
    Screen("/", "Overview", "overview"),
    Screen("/accounts", "Accounts", "accounts"),
    Screen("/logs", "Request logs", "logs"),
    Screen("/usage", "Usage", "usage"),
    Screen("/keys", "API keys", "keys"),
    Screen("/settings", "Settings", "settings"),
    Screen("/activity", "Activity", "activity"),
)
PATHS = tuple(screen.path for screen in SCREENS)


def labelled(names, labels):
    """[name, label] pairs in the API's order; a name without a label fails here, as the app starts."""
    return [[name, labels[name]] for name in names]


# What the page hands its scripts as JSON (app.js reads it): the screens, and the API's own limits and
# choices, so that no script keeps a copy of its own.
SHELL_DATA = {
    "screens": [screen._asdict() for screen in SCREENS],
    "limits": {
        "passwordMinLength": sessions.PASSWORD_MIN_LENGTH,
        "passwordMaxLength": sessions.PASSWORD_MAX_LENGTH,
        "totpDigits": totp.DIGITS,
        "emailMaxLength": accounts.EMAIL_MAX_LENGTH,
        "planTypeMaxLength": accounts.PLAN_TYPE_MAX_LENGTH,
        "keyNameMaxLength": keys.NAME_MAX_LENGTH,
        "keyLimits": keys.MAX_LIMITS,
        "capMax": caps.MAX_CAP,
        "logPageSize": request_logs.DEFAULT_LIMIT,
        "webhookUrlMaxLength": settings.WEBHOOK_URL_MAX_LENGTH,
    },
    "keyMetrics": labelled(keys.METRICS, {"totalTokens": "Total tokens", "inputTokens": "Input tokens",
                                          "outputTokens": "Output tokens", "costUsd": "Cost (USD)"}),
    "keyWindows": labelled(keys.WINDOWS, {"day": "Day", "week": "Week", "month": "Month (billing period)"}),
    "logStatuses": list(tables.LOG_STATUSES),
    "alertEvents": labelled(alerts.EVENTS, {
        "account.rate_limited": "An account reaches a usage limit", "account.deactivated": "An account is deactivated",
        "account.recovered": "An account is active again", "pool.exhausted": "Every account is at its limit",
        "pool.recovered": "The pool serves again", "api_key.limit_reached": "An API key reaches one of its limits"}),
    "usageGroups": labelled(usage.GROUPS, {"day": "Day", "model": "Model", "account": "Account", "apiKey": "API key"}),
    "auditActions": labelled(audit.ACTIONS, {
        "login.succeeded": "Logged in", "login.failed": "Login failed", "totp.enabled": "TOTP enabled",
        "totp.disabled": "TOTP disabled", "password.changed": "Password changed", "account.created": "Account created",
        "account.imported": "Account imported", "account.signed_in": "Account signed in",
        "account.updated": "Account updated", "account.deleted": "Account deleted", "api_key.created": "API key created",
        "api_key.updated": "API key updated", "api_key.regenerated": "API key regenerated",
        "api_key.deleted": "API key deleted", "settings.changed": "Settings changed"}),
    # The seed catalog's first model: the one a new key's examples (Codex, OpenAI SDK) name when it allows every model.
    "codexModel": tables.SEED_CATALOG[0][0],
}

# Only our own files: no inline script or style (the page's JSON data block is never run), no plugins,
# no framing, no <base> rewriting.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    # same-origin, not no-referrer: other sites learn nothing either way, but under no-referrer a
    # form's POST to the API carries "Origin: null" (fetch's does not), defeating any Origin check.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # The shell names the versioned assets: it must be revalidated to pick up a new version.
    "Cache-Control": "no-cache",
}
IMMUTABLE = "public, max-age=31536000, immutable"


def asset_version(folder):
    """The first 12 hex chars of a SHA-256 over every file under ``folder``: its relative path and contents."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()  # a stable order, whatever the file system's
        for name in sorted(files):
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                content = hashlib.sha256(file.read()).digest()
            digest.update(os.path.relpath(path, folder).replace(os.sep, "/").encode() + b"\0" + content)
    return digest.hexdigest()[:12]


def page():
    return render_template("index.html", screens=SCREENS, shell_data=SHELL_DATA), 200, PAGE_HEADERS


for path in PATHS:
    bp.add_url_rule(path, "page", page, methods=["GET"])


def _after(response):
    """nosniff on every answer; versioned static files are kept for a year, the others revalidated."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint == "static":
        current = request.args.get("v") == current_app.extensions["lb_asset_version"]
        fresh = current and response.status_code in (200, 304)  # never a cached 404
        response.headers["Cache-Control"] = IMMUTABLE if fresh else "no-cache"
    return response


def init_app(app):
    # RFC 9239; Python 3.11's own table says application/javascript where /etc/mime.types is absent.
    mimetypes.add_type("text/javascript", ".js")
    app.static_folder = STATIC  # Flask's own route, /static/<path> (endpoint "static"), serves this package's files
    version = app.extensions["lb_asset_version"] = asset_version(app.static_folder)
    app.jinja_env.globals.update(static_url=lambda path: url_for("static", filename=path, v=version))
    app.after_request(_after)
    app.register_blueprint(bp)
