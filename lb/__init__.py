"""Codex-LB: the dashboard service. ``create_app`` is the one factory."""
import logging
import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from lb import (alerts, auth, backup, config, credentials, crypto, database, demo, errors, jobs, keys, metrics, oauth,
                proxy, refresh, retention, rollups, sessions, store, tables, totp, views, web)

log = logging.getLogger(__name__)


def create_app(overrides=None):
    """Build a fresh app: defaults, then ``LB_*`` environment variables, then ``overrides``."""
    settings = config.load(overrides=overrides)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config.prepare_data_dir(settings["DATA_DIR"])
    secret_path = os.path.join(settings["DATA_DIR"], "secret_key")
    settings["SECRET_KEY"] = settings["SECRET_KEY"] or config.secret_file(secret_path)
    settings.setdefault("PASSWORD_HASH_METHOD", "scrypt")

    app = Flask(__name__)
    app.config.update(settings)
    if settings["TRUSTED_PROXIES"]:
        hops = settings["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    errors.init_app(app)
    crypto.init_app(app)
    database.init_app(app, reshaped=rollups.rebuild)
    refresh.init_app(app)
    oauth.init_app(app)  # sign-in with ChatGPT; its device poller starts with jobs.start
    totp.init_app(app)
    auth.init_app(app)
    metrics.init_app(app)  # GET /metrics, when LB_METRICS_TOKEN is set; the faces count through it
    views.init_app(app)
    proxy.init_app(app)
    web.init_app(app)  # the browser face: the HTML shell and its static files
    jobs.init_app(app)  # the usage poll, started when a server starts serving (jobs.start)
    alerts.init_app(app)  # the webhook's sender, started with jobs.start
    retention.init_app(app)  # the request logs' pruner (started by jobs.start) and `flask prune`
    # The maintenance commands.
    sessions.init_app(app)
    rollups.init_app(app)
    credentials.init_app(app)
    keys.init_app(app)
    demo.init_app(app)
    backup.init_app(app)
    app.config["BOOTSTRAP_TOKEN"] = bootstrap_token(app)
    return app


def bootstrap_token(app):
    """The token that lets a remote client set the first password: from the settings, or kept in the data dir."""
    path = os.path.join(app.config["DATA_DIR"], "bootstrap_token")
    return app.config["BOOTSTRAP_TOKEN"] or config.secret_file(path)


def announce_bootstrap_token(app):
    """While no password is set, log the bootstrap token (the server calls this as it starts)."""
    with tables.db.connection_context():
        configured = bool(store.settings().password_hash)
    if not configured:
        # The one secret allowed in a log: it only works until a password exists.
        log.warning("no dashboard password is set; bootstrap token: %s", app.config["BOOTSTRAP_TOKEN"])
