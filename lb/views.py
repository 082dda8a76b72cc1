"""The dashboard's JSON API: thin views that parse, make one domain call and answer JSON.

This module holds dashboard auth, the overview, request logs, usage, settings,
/healthz and /api/openapi.json; /api/accounts and /api/api-keys have a module each.
"""
import functools
import json
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request

from lb import (account_views, auth, database, ingest, key_views, overview, ratelimit, request_logs, sessions, store,
                totp, usage)
from lb.auth import ingest_required, login_required, password_login_required
from lb.clock import now_ms
from lb.errors import ApiError, body, invalid, takes_json
from lb.fields import get_choice, get_str, get_time
from lb.store import db

auth_bp = Blueprint("dashboard_auth", __name__, url_prefix="/api/dashboard-auth")
dashboard_bp = Blueprint("dashboard", __name__, url_prefix="/api")
logs_bp = Blueprint("request_logs", __name__, url_prefix="/api/request-logs")
usage_bp = Blueprint("usage", __name__, url_prefix="/api/usage")
health_bp = Blueprint("health", __name__)

OK = {"status": "ok"}


def with_session(payload, token, row):
    """Answer ``payload`` and hand the client the session cookie."""
    return sessions.set_cookie(jsonify(payload), token, row.expires_at)


# -- dashboard authentication: password ------------------------------------------

@auth_bp.get("/session")
def session_state():
    return jsonify(auth.state())


@auth_bp.post("/password/setup")
@takes_json
def password_setup():
    data = body()
    if sessions.dashboard_settings().password_hash:
        raise ApiError(409, "password_already_configured", "A dashboard password is already configured")
    if not auth.is_local_client():
        token = get_str(data, "bootstrapToken", required=False, max_len=256)
        if token is None or not sessions.constant_equal(token, current_app.config["BOOTSTRAP_TOKEN"]):
            raise ApiError(401, "bootstrap_required",
                           "Setting the first password from another machine needs the bootstrap token")
    password = get_str(data, "password", min_len=sessions.PASSWORD_MIN_LENGTH, max_len=sessions.PASSWORD_MAX_LENGTH)
    hashed = sessions.hash_password(password)
    with db.atomic():
        # Checked again under the write lock: of two concurrent setups one wins.
        if store.lock_settings().password_hash:
            raise ApiError(409, "password_already_configured", "A dashboard password is already configured")
        sessions.save_settings(password_hash=hashed)
        token, row = sessions.start_session()
    return with_session(auth.state(row), token, row)


@auth_bp.post("/password/login")
@takes_json
def password_login():
    sessions.require_password()
    ratelimit.check_rate_limit()
    sessions.check_password(get_str(body(), "password"))
    with db.atomic():
        sessions.end_session(auth.current_session())  # a login always issues a new token
        token, row = sessions.start_session()
    return with_session(auth.state(row), token, row)


@auth_bp.post("/password/change")
@takes_json
@login_required
def password_change():
    sessions.require_password()
    ratelimit.check_rate_limit()
    data = body()
    current = get_str(data, "currentPassword")
    new = get_str(data, "newPassword", min_len=sessions.PASSWORD_MIN_LENGTH, max_len=sessions.PASSWORD_MAX_LENGTH)
    sessions.check_password(current)
    hashed = sessions.hash_password(new)
    with db.atomic():
        sessions.save_settings(password_hash=hashed)
        sessions.end_other_sessions(auth.current_session())
    return jsonify(OK)


@auth_bp.delete("/password")
@takes_json
@login_required
def password_remove():
    sessions.require_password()
    ratelimit.check_rate_limit()
    sessions.check_password(get_str(body(), "password"))
    sessions.reset_dashboard_auth()
    return sessions.clear_cookie(jsonify(OK))


@auth_bp.post("/logout")
def logout():
    sessions.end_session(auth.current_session())
    return sessions.clear_cookie(jsonify(OK))


# -- dashboard authentication: TOTP ----------------------------------------------

@auth_bp.post("/totp/setup/start")
@login_required
def totp_setup_start():
    sessions.require_password()
    totp.refuse_if_totp()
    return jsonify(totp.start_totp_setup(auth.current_session()))


@auth_bp.post("/totp/setup/confirm")
@takes_json
@login_required
def totp_setup_confirm():
    sessions.require_password()
    totp.refuse_if_totp()
    ratelimit.check_rate_limit()
    data = body()
    setup_token = get_str(data, "setupToken", max_len=1024)
    code = get_str(data, "code", max_len=64)
    return jsonify(auth.state(totp.confirm_setup(setup_token, code, auth.current_session())))


@auth_bp.post("/totp/verify")
@takes_json
@password_login_required
def totp_verify():
    sessions.require_password()
    totp.require_totp()
    ratelimit.check_rate_limit()
    totp.accept_code(get_str(body(), "code", max_len=64))
    old = auth.current_session()
    with db.atomic():
        # A new token once the second factor is proven; the expiry stays.
        sessions.end_session(old)
        token, row = sessions.start_session(totp_verified=True, expires_at=old.expires_at)
    return with_session(auth.state(row), token, row)


@auth_bp.post("/totp/disable")
@takes_json
@login_required
def totp_disable():
    sessions.require_password()
    totp.require_totp()
    ratelimit.check_rate_limit()
    totp.accept_code(get_str(body(), "code", max_len=64))
    sessions.save_settings(totp_secret=None, totp_last_step=0)
    return jsonify(OK)


# -- overview and models ---------------------------------------------------------

@dashboard_bp.get("/dashboard/overview")
@login_required
def dashboard_overview():
    return jsonify(overview.overview(now_ms(), current_app.config["BILLING_CYCLE_DAY"]))


@dashboard_bp.get("/models")
@login_required
def models():
    return jsonify(models=[{"id": mid, "name": name} for mid, name, _ in store.enabled_models()])


# -- request logs and usage ------------------------------------------------------

@logs_bp.post("")
@takes_json
@ingest_required
def ingest_logs():
    accepted, duplicates = ingest.ingest(body(), now_ms())
    return jsonify(accepted=accepted, duplicates=duplicates), 201


@logs_bp.get("")
@login_required
def list_logs():
    rows, cursor = request_logs.page(request.args, current_app.config["SECRET_KEY"])
    return jsonify(requests=rows, nextCursor=cursor)


@usage_bp.get("")
@login_required
def usage_breakdown():
    start, end = overview.billing_period(now_ms(), current_app.config["BILLING_CYCLE_DAY"])
    since = get_time(request.args, "since", default=start)
    until = get_time(request.args, "until", default=end)
    group_by = get_choice(request.args, "groupBy", usage.GROUPS, default="day")
    return jsonify(usage.breakdown(since, until, group_by))


# -- settings --------------------------------------------------------------------

SETTINGS = {"apiKeyRequired": "api_key_required", "stickySessions": "sticky_sessions"}


def settings_json():
    row = store.settings()
    return {name: getattr(row, column) for name, column in SETTINGS.items()}


@dashboard_bp.get("/settings")
@login_required
def get_settings():
    return jsonify(settings_json())


@dashboard_bp.patch("/settings")
@takes_json
@login_required
def patch_settings():
    data, changes = body(), {}
    for name, column in SETTINGS.items():
        if name in data:
            if not isinstance(data[name], bool):
                raise invalid(name, "must be true or false")
            changes[column] = data[name]
    if changes:
        sessions.save_settings(**changes)
    return jsonify(settings_json())


@health_bp.get("/healthz")
def healthz():
    store.ping()
    try:
        database.check_writable(current_app)
    except store.Unavailable as exc:
        current_app.logger.warning("health check: %s", exc.message)
        raise
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
    for blueprint in (auth_bp, dashboard_bp, logs_bp, usage_bp, health_bp, account_views.bp, key_views.bp):
        app.register_blueprint(blueprint)
