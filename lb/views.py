"""The dashboard's JSON API: thin views that parse, make one domain call and answer JSON.

A blueprint per URL family: dashboard auth, accounts, API keys, the overview
and models, request logs, usage, settings, the audit log, and the health and
description routes. No query and no rule in here: those live in the domain
modules. A view that changes something hands its domain call the time and the
client's address (``ip()``), which the change's audit entry keeps.
"""
import functools
import json
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request

from lb import (accounts, audit, auth, credentials, database, ingest, keys, metrics, oauth, overview, quota,
                ratelimit, request_logs, sessions, settings, store, totp, usage)
from lb.auth import ingest_required, login_required, password_login_required
from lb.clock import now_ms
from lb.errors import ApiError, body, takes_json
from lb.fields import get_choice, get_time

auth_bp = Blueprint("dashboard_auth", __name__, url_prefix="/api/dashboard-auth")
accounts_bp = Blueprint("accounts", __name__, url_prefix="/api/accounts")
oauth_bp = Blueprint("oauth", __name__, url_prefix="/api/oauth/flows")
keys_bp = Blueprint("api_keys", __name__, url_prefix="/api/api-keys")
dashboard_bp = Blueprint("dashboard", __name__, url_prefix="/api")
logs_bp = Blueprint("request_logs", __name__, url_prefix="/api/request-logs")
usage_bp = Blueprint("usage", __name__, url_prefix="/api/usage")
audit_bp = Blueprint("audit_log", __name__, url_prefix="/api/audit-log")
health_bp = Blueprint("health", __name__)

OK = {"status": "ok"}


def with_session(payload, started):
    """Answer ``payload`` and hand the client the cookie of the session ``started``: (token, row)."""
    token, row = started
    return sessions.set_cookie(jsonify(payload), token, row.expires_at)


def signed_in(started):
    """The session state of a session just ``started``, with its cookie."""
    return with_session(auth.state(started[1]), started)


def ip():
    """The client's address for the audit log: after the trusted proxies' X-Forwarded-For (LB_TRUSTED_PROXIES)."""
    return ratelimit.client_address()


def billing_cycle_day():
    return current_app.config["BILLING_CYCLE_DAY"]


# -- dashboard authentication: password ------------------------------------------

@auth_bp.get("/session")
def session_state():
    return jsonify(auth.state())


@auth_bp.post("/password/setup")
@takes_json
def password_setup():
    return signed_in(sessions.set_first_password(body(), auth.is_local_client(),
                                                 current_app.config["BOOTSTRAP_TOKEN"], now_ms(), ip()))


@auth_bp.post("/password/login")
@takes_json
def password_login():
    return signed_in(sessions.log_in(body(), auth.current_session(), now_ms(), ip()))


@auth_bp.post("/password/change")
@takes_json
@login_required
def password_change():
    sessions.change_password(body(), auth.current_session(), now_ms(), ip())
    return jsonify(OK)


@auth_bp.delete("/password")
@takes_json
@login_required
def password_remove():
    sessions.remove_password(body(), now_ms(), ip())
    return sessions.clear_cookie(jsonify(OK))


@auth_bp.post("/logout")
def logout():
    sessions.end_session(auth.current_session())
    return sessions.clear_cookie(jsonify(OK))


# -- dashboard authentication: TOTP ----------------------------------------------

@auth_bp.post("/totp/setup/start")
@login_required
def totp_setup_start():
    return jsonify(totp.begin_setup(auth.current_session()))


@auth_bp.post("/totp/setup/confirm")
@takes_json
@login_required
def totp_setup_confirm():
    return jsonify(auth.state(totp.confirm(body(), auth.current_session(), now_ms(), ip())))


@auth_bp.post("/totp/verify")
@takes_json
@password_login_required
def totp_verify():
    return signed_in(totp.verify(body(), auth.current_session(), now_ms(), ip()))


@auth_bp.post("/totp/disable")
@takes_json
@login_required
def totp_disable():
    totp.disable(body(), now_ms(), ip())
    return jsonify(OK)


# -- accounts --------------------------------------------------------------------

@accounts_bp.get("")
@login_required
def list_accounts():
    return jsonify(accounts=accounts.all_accounts())


@accounts_bp.post("")
@takes_json
@login_required
def create_account():
    return jsonify(accounts.as_json(accounts.create(body(), now_ms(), ip()))), 201


@accounts_bp.post("/import")
@takes_json
@login_required
def import_account():
    account, created = credentials.import_auth_json(body(), now_ms(), ip())
    return jsonify(accounts.as_json(account)), 201 if created else 200


@accounts_bp.get("/<account_id>")
@login_required
def get_account(account_id):
    return jsonify(accounts.as_json(accounts.find(account_id)))


@accounts_bp.patch("/<account_id>")
@takes_json
@login_required
def patch_account(account_id):
    return jsonify(accounts.as_json(accounts.update(account_id, body(), now_ms(), ip())))


@accounts_bp.post("/<account_id>/refresh-usage")
@login_required
def refresh_usage(account_id):
    upstream = current_app.extensions["lb_proxy"].upstream
    return jsonify(accounts.as_json(quota.refresh_now(account_id, now_ms(), upstream)))


@accounts_bp.delete("/<account_id>")
@login_required
def delete_account(account_id):
    accounts.delete(account_id, now_ms(), ip())
    return "", 204


# -- signing in with ChatGPT -------------------------------------------------------

@oauth_bp.post("")
@takes_json
@login_required
def start_flow():
    return jsonify(oauth.as_json(oauth.start(body(), now_ms()))), 201


@oauth_bp.get("/<flow_id>")
@login_required
def get_flow(flow_id):
    return jsonify(oauth.as_json(oauth.watch(flow_id, now_ms())))


@oauth_bp.post("/<flow_id>/callback")
@takes_json
@login_required
def flow_callback(flow_id):
    return jsonify(oauth.as_json(oauth.callback(flow_id, body(), now_ms(), ip())))


@oauth_bp.delete("/<flow_id>")
@login_required
def cancel_flow(flow_id):
    oauth.cancel(flow_id)
    return "", 204


# -- API keys --------------------------------------------------------------------

def key_json(key, plaintext=None):
    """The key object (with the key itself, ``plaintext``, only when it was just made)."""
    payload = keys.as_json(key, now_ms(), billing_cycle_day())
    return payload if plaintext is None else {**payload, "key": plaintext}


@keys_bp.get("")
@login_required
def list_keys():
    return jsonify(apiKeys=keys.all_keys(now_ms(), billing_cycle_day()))


@keys_bp.post("")
@takes_json
@login_required
def create_key():
    return jsonify(key_json(*keys.create(body(), now_ms(), ip()))), 201


@keys_bp.get("/<key_id>")
@login_required
def get_key(key_id):
    return jsonify(key_json(keys.find(key_id)))


@keys_bp.patch("/<key_id>")
@takes_json
@login_required
def patch_key(key_id):
    return jsonify(key_json(keys.update(key_id, body(), now_ms(), ip())))


@keys_bp.post("/<key_id>/regenerate")
@login_required
def regenerate_key(key_id):
    return jsonify(key_json(*keys.regenerate(key_id, now_ms(), ip())))


@keys_bp.delete("/<key_id>")
@login_required
def delete_key(key_id):
    keys.delete(key_id, now_ms(), ip())
    return "", 204


# -- overview, models, settings --------------------------------------------------

@dashboard_bp.get("/dashboard/overview")
@login_required
def dashboard_overview():
    return jsonify(overview.overview(now_ms(), billing_cycle_day()))


@dashboard_bp.get("/models")
@login_required
def models():
    return jsonify(models=[{"id": entry.id, "name": entry.name} for entry in store.enabled_models()])


@dashboard_bp.get("/settings")
@login_required
def get_settings():
    return jsonify(settings.as_json())


@dashboard_bp.patch("/settings")
@takes_json
@login_required
def patch_settings():
    return jsonify(settings.update(body(), now_ms(), ip()))


@dashboard_bp.post("/settings/webhook-test")
@login_required
def webhook_test():
    result = current_app.extensions["lb_alerts"].test(now_ms())
    if result is None:
        raise ApiError(409, "webhook_not_configured", "Set webhookUrl first")
    return jsonify(result)


# -- request logs and usage ------------------------------------------------------

@logs_bp.post("")
@takes_json
@ingest_required
def ingest_logs():
    accepted, duplicates = ingest.ingest(body(), now_ms(), metrics.current())
    return jsonify(accepted=accepted, duplicates=duplicates), 201


@logs_bp.get("")
@login_required
def list_logs():
    rows, cursor = request_logs.page(request.args, current_app.config["SECRET_KEY"])
    return jsonify(requests=rows, nextCursor=cursor)


@usage_bp.get("")
@login_required
def usage_breakdown():
    start, end = overview.billing_period(now_ms(), billing_cycle_day())
    since = get_time(request.args, "since", default=start)
    until = get_time(request.args, "until", default=end)
    group_by = get_choice(request.args, "groupBy", usage.GROUPS, default="day")
    return jsonify(usage.breakdown(since, until, group_by))


# -- the audit log ---------------------------------------------------------------

@audit_bp.get("")
@login_required
def audit_log():
    entries, cursor = audit.page(request.args, current_app.config["SECRET_KEY"])
    return jsonify(entries=entries, nextCursor=cursor)


# -- health and the description ----------------------------------------------------

@health_bp.get("/healthz")
def healthz():
    database.check_health(current_app)
    return jsonify(OK)


@health_bp.get("/api/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of every endpoint (lb/openapi.json, read once at start); no auth."""
    return Response(current_app.extensions["lb_openapi"], mimetype="application/json")


@functools.cache
def load_openapi():
    """lb/openapi.json, parsed (a broken file stops the start, not a request) and serialized compactly, once per
    process."""
    document = json.loads(resources.files("lb").joinpath("openapi.json").read_text(encoding="utf-8"))
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def init_app(app):
    app.extensions["lb_openapi"] = load_openapi()
    for blueprint in (auth_bp, accounts_bp, oauth_bp, keys_bp, dashboard_bp, logs_bp, usage_bp, audit_bp,
                      health_bp):
        app.register_blueprint(blueprint)
