"""Server-side dashboard sessions, their cookie, and the password: set, logged in with, changed, removed.

Each of these changes is audited (lb.audit) in its transaction: ``now`` and
the client's address ``ip`` come from the view.
"""
import math
import secrets

import click
from flask import current_app, g, request
from werkzeug.security import check_password_hash, generate_password_hash

from lb import audit, ratelimit, store
from lb.clock import now_ms
from lb.crypto import constant_equal, digest
from lb.errors import ApiError
from lb.fields import get_str
from lb.tables import AuthFailure, DashboardSession, DashboardSettings, TotpSetup, db

COOKIE = "dashboard_session"
SESSION_MS = 12 * 3600 * 1000
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256


# -- the credentials row -------------------------------------------------------

def dashboard_settings():
    """The credentials row, read once per request."""
    if "lb_settings" not in g:
        g.lb_settings = store.settings()
    return g.lb_settings


def save_settings(**fields):
    DashboardSettings.update(**fields).where(DashboardSettings.id == 1).execute()
    g.pop("lb_settings", None)


def require_password():
    if not dashboard_settings().password_hash:
        raise ApiError(400, "password_not_configured", "No dashboard password is configured")


# -- sessions and cookies -------------------------------------------------------

def find(token, now):
    """The live session row behind a cookie's ``token``, or None."""
    if not token or len(token) > 128:
        return None
    return store.live_session(digest(token), now)


def start_session(totp_verified=False, expires_at=None):
    """Create a session and return (token, row); the token goes only into the cookie."""
    token = secrets.token_urlsafe(32)
    now = now_ms() // 1000 * 1000  # whole seconds, so expiresAt and Max-Age agree
    DashboardSession.delete().where(DashboardSession.expires_at <= now).execute()  # housekeeping
    row = DashboardSession.create(
        token_hash=digest(token),
        created_at=now,
        expires_at=expires_at or now + SESSION_MS,
        password_verified=True,
        totp_verified=totp_verified,
    )
    return token, row


def end_session(row):
    if row is not None:
        DashboardSession.delete().where(DashboardSession.token_hash == row.token_hash).execute()


def end_other_sessions(row):
    query = DashboardSession.delete()
    if row is not None:
        query = query.where(DashboardSession.token_hash != row.token_hash)
    query.execute()


def set_cookie(response, token, expires_at):
    max_age = max(0, math.ceil((expires_at - now_ms()) / 1000))
    response.set_cookie(COOKIE, token, max_age=max_age, expires=expires_at / 1000, path="/", httponly=True,
                        samesite="Lax", secure=request.is_secure)
    return response


def clear_cookie(response):
    response.set_cookie(COOKIE, "", max_age=0, expires=0, path="/", httponly=True,
                        samesite="Lax", secure=request.is_secure)
    return response


# -- passwords -----------------------------------------------------------------

def hash_password(password):
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password(password, step):
    """Constant-time check against the stored slow salted hash; a wrong one is a counted (and audited) 401.
    ``step``: which endpoint checks it, for the audit log."""
    stored = dashboard_settings().password_hash
    with ratelimit.attempt(step):
        if not (stored and check_password_hash(stored, password)):
            raise ApiError(401, "invalid_credentials", "Invalid password")


# -- what the password endpoints do (each takes the request's JSON body) ----------------------

def set_first_password(data, local, bootstrap_token, now, ip):
    """Set the first password and start a session: (token, row). From another machine than this one
    (``local`` false) only with ``bootstrap_token``; of two concurrent setups one wins, the other is a 409.
    Audited as password.changed {"change": "set"}."""
    if dashboard_settings().password_hash:
        _already_configured()
    if not local:
        token = get_str(data, "bootstrapToken", required=False, max_len=256)
        if token is None or not constant_equal(token, bootstrap_token):
            raise ApiError(401, "bootstrap_required",
                           "Setting the first password from another machine needs the bootstrap token")
    hashed = hash_password(get_str(data, "password", min_len=PASSWORD_MIN_LENGTH, max_len=PASSWORD_MAX_LENGTH))
    with db.atomic():
        if store.lock_settings().password_hash:  # checked again under the write lock
            _already_configured()
        save_settings(password_hash=hashed)
        audit.record("password.changed", now, ip, detail={"change": "set"})
        return start_session()


def _already_configured():
    raise ApiError(409, "password_already_configured", "A dashboard password is already configured")


def log_in(data, current, now, ip):
    """Check the password (rate limited) and replace the ``current`` session, if any: (token, row).

    login.succeeded is written here only when the password completes the login
    (no TOTP); with TOTP on, the session still owes its code and totp.verify
    writes it."""
    require_password()
    ratelimit.check_rate_limit()
    check_password(get_str(data, "password"), "password_login")
    with db.atomic():
        end_session(current)  # a login always issues a new token
        if not dashboard_settings().totp_secret:
            audit.record("login.succeeded", now, ip, detail={"totp": False})
        return start_session()


def change_password(data, current, now, ip):
    """Replace the password after checking the current one; every session but ``current`` ends."""
    require_password()
    ratelimit.check_rate_limit()
    password = get_str(data, "currentPassword")
    new = get_str(data, "newPassword", min_len=PASSWORD_MIN_LENGTH, max_len=PASSWORD_MAX_LENGTH)
    check_password(password, "password_change")
    hashed = hash_password(new)
    with db.atomic():
        save_settings(password_hash=hashed)
        end_other_sessions(current)
        audit.record("password.changed", now, ip, detail={"change": "changed"})


def remove_password(data, now, ip):
    """Remove the password (and TOTP, and every session) after checking it."""
    require_password()
    ratelimit.check_rate_limit()
    check_password(get_str(data, "password"), "password_remove")
    reset_dashboard_auth(now, ip)


def reset_dashboard_auth(now, ip=None):
    """Remove the password, TOTP and every session (the recovery command: no ``ip``); audited as
    password.changed {"change": "removed"}, and totp.disabled {"reason": "password_removed"} when it was on."""
    with db.atomic():
        config = store.lock_settings()
        if config.password_hash:
            audit.record("password.changed", now, ip, detail={"change": "removed"})
        if config.totp_secret:
            audit.record("totp.disabled", now, ip, detail={"reason": "password_removed"})
        DashboardSettings.update(password_hash=None, totp_secret=None, totp_last_step=0).execute()
        DashboardSession.delete().execute()
        TotpSetup.delete().execute()
    g.pop("lb_settings", None)


def init_app(app):
    @app.cli.command("reset-auth")
    def reset_auth_command():
        """Remove the dashboard password, TOTP and all sessions."""
        with db.connection_context():
            reset_dashboard_auth(now_ms())
            AuthFailure.delete().execute()
        click.echo("dashboard password, TOTP and sessions removed")
