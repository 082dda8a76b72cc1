"""The browser face: the dashboard's HTML shell on its own paths, and how its static files are cached.

The page is only a shell: its JavaScript asks the JSON API for everything, so
serving it needs neither a session nor the database (lb.database skips its
connection for this blueprint and the static files). Every other path, an
unknown one included, keeps the JSON rules of lb.errors.
"""
import hashlib
import mimetypes
import os

from flask import Blueprint, current_app, render_template, request, url_for

# This package's own folders: its blueprint has the template, the app's static files are STATIC.
STATIC = os.path.join(os.path.dirname(__file__), "static")
bp = Blueprint("pages", __name__, template_folder="templates")

# The screens the dashboard's router knows; "/accounts/" and the like stay the JSON 404.
PATHS = ("/", "/accounts", "/logs", "/usage", "/keys", "/settings")

# Only our own files: no inline script or style, no plugins, no framing, no <base> rewriting.
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
    return render_template("index.html"), 200, PAGE_HEADERS


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
    app.jinja_env.globals.update(asset_version=version,
                                 static_url=lambda path: url_for("static", filename=path, v=version))
    app.after_request(_after)
    app.register_blueprint(bp)
