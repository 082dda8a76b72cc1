"""Blueprints: dashboard authentication, the dashboard API and the health check."""
import segno
from flask import Blueprint, current_app, jsonify
from peewee import DatabaseError

from lb import auth, ratelimit, totp
from lb.api import ApiError, body, get_str, now_ms, takes_json
from lb.auth import login_required
from lb.stats import enabled_models, overview
from lb.store import DashboardSettings, db

auth_bp = Blueprint("dashboard_auth", __name__, url_prefix="/api/dashboard-auth")
dashboard_bp = Blueprint("dashboard", __name__, url_prefix="/api")
health_bp = Blueprint("health", __name__)

OK = {"status": "ok"}


def require_password():
    if not auth.dashboard_settings().password_hash:
        raise ApiError(400, "password_not_configured", "No dashboard password is configured")


def require_totp():
    if not auth.dashboard_settings().totp_secret:
        raise ApiError(400, "totp_not_configured", "TOTP is not configured")


def refuse_if_totp():
    if auth.dashboard_settings().totp_secret:
        raise ApiError(409, "totp_already_configured", "TOTP is already configured")


def check_password_attempt(password):
    """A wrong password is a counted failure answered 401 invalid_credentials."""
    if not auth.password_matches(password):
        ratelimit.fail("invalid_credentials", "Invalid password", 401)


def with_session(payload, token, row):
    """Answer ``payload`` and hand the client the session cookie."""
    return auth.set_cookie(jsonify(payload), token, row.expires_at)


# -- password ------------------------------------------------------------------

@auth_bp.get("/session")
def session_state():
    return jsonify(auth.state())


@auth_bp.post("/password/setup")
@takes_json
def password_setup():
    data = body()
    if auth.dashboard_settings().password_hash:
        raise ApiError(409, "password_already_configured", "A dashboard password is already configured")
    if not auth.is_local_client():
        token = get_str(data, "bootstrapToken", required=False, max_len=256)
        if token is None or not auth.constant_equal(token, current_app.config["BOOTSTRAP_TOKEN"]):
            raise ApiError(401, "bootstrap_required",
                           "Setting the first password from another machine needs the bootstrap token")
    password = get_str(data, "password", min_len=8, max_len=256)
    hashed = auth.hash_password(password)
    with db.atomic():
        # Checked again under the write lock: of two concurrent setups one wins.
        if DashboardSettings.get_by_id(1).password_hash:
            raise ApiError(409, "password_already_configured", "A dashboard password is already configured")
        auth.save_settings(password_hash=hashed)
        token, row = auth.start_session()
    return with_session(auth.state(row), token, row)


@auth_bp.post("/password/login")
@takes_json
def password_login():
    require_password()
    ratelimit.check_rate_limit()
    password = get_str(body(), "password")
    check_password_attempt(password)
    with db.atomic():
        auth.end_session(auth.current_session())  # a login always issues a new token
        token, row = auth.start_session()
    return with_session(auth.state(row), token, row)


@auth_bp.post("/password/change")
@takes_json
@login_required
def password_change():
    require_password()
    ratelimit.check_rate_limit()
    data = body()
    current = get_str(data, "currentPassword")
    new = get_str(data, "newPassword", min_len=8, max_len=256)
    check_password_attempt(current)
    hashed = auth.hash_password(new)
    with db.atomic():
        auth.save_settings(password_hash=hashed)
        auth.end_other_sessions(auth.current_session())
    return jsonify(OK)


@auth_bp.delete("/password")
@takes_json
@login_required
def password_remove():
    require_password()
    ratelimit.check_rate_limit()
    check_password_attempt(get_str(body(), "password"))
    auth.reset_dashboard_auth()
    return auth.clear_cookie(jsonify(OK))


# -- TOTP ----------------------------------------------------------------------

@auth_bp.post("/totp/setup/start")
@login_required
def totp_setup_start():
    require_password()
    refuse_if_totp()
    secret, token = totp.start_totp_setup(auth.current_session())
    uri = totp.provisioning_uri(secret)
    qr = segno.make(uri, error="m").svg_data_uri()
    return jsonify(secret=secret, otpauthUri=uri, qrSvgDataUri=qr, setupToken=token)


@auth_bp.post("/totp/setup/confirm")
@takes_json
@login_required
def totp_setup_confirm():
    require_password()
    refuse_if_totp()
    ratelimit.check_rate_limit()
    data = body()
    setup_token = get_str(data, "setupToken", max_len=1024)
    code = get_str(data, "code", max_len=64)
    row = auth.current_session()
    setup = totp.pending_setup(setup_token, row)
    if setup is None:
        ratelimit.fail("invalid_setup_token", "The setup token is unknown, used or expired", 400)
    step = totp.matching_step(setup.secret, code)
    if step is None:
        totp.refuse_code()
    return jsonify(auth.state(totp.enable(setup, step, row)))


@auth_bp.post("/totp/verify")
@takes_json
@login_required(totp=False)
def totp_verify():
    require_password()
    require_totp()
    ratelimit.check_rate_limit()
    code = get_str(body(), "code", max_len=64)
    totp.accept_code(code)
    old = auth.current_session()
    with db.atomic():
        # A new token once the second factor is proven; the expiry stays.
        auth.end_session(old)
        token, row = auth.start_session(totp_verified=True, expires_at=old.expires_at)
    return with_session(auth.state(row), token, row)


@auth_bp.post("/totp/disable")
@takes_json
@login_required
def totp_disable():
    require_password()
    require_totp()
    ratelimit.check_rate_limit()
    totp.accept_code(get_str(body(), "code", max_len=64))
    auth.save_settings(totp_secret=None, totp_last_step=0)
    return jsonify(OK)


@auth_bp.post("/logout")
def logout():
    auth.end_session(auth.current_session())
    return auth.clear_cookie(jsonify(OK))


# -- dashboard -----------------------------------------------------------------

@dashboard_bp.get("/dashboard/overview")
@login_required
def dashboard_overview():
    return jsonify(overview(now_ms(), current_app.config["BILLING_CYCLE_DAY"]))


@dashboard_bp.get("/models")
@login_required
def models():
    return jsonify(models=enabled_models())


@health_bp.get("/healthz")
def healthz():
    try:
        # A real table, not SELECT 1: a pooled connection answers that without the file.
        db.execute_sql("SELECT id FROM dashboard_settings WHERE id = 1").fetchone()
    except DatabaseError:
        current_app.logger.exception("health check failed")
        raise ApiError(503, "service_unavailable", "The database does not answer") from None
    return jsonify(OK)


def init_app(app):
    for blueprint in (auth_bp, dashboard_bp, health_bp):
        app.register_blueprint(blueprint)
