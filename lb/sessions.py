"""Server-side dashboard sessions, their cookie, and the password."""
import hashlib
import hmac
import math
import secrets

import click
from flask import current_app, g, request
from werkzeug.security import check_password_hash, generate_password_hash

from lb import ratelimit, store
from lb.clock import now_ms
from lb.errors import ApiError
from lb.store import AuthFailure, DashboardSession, DashboardSettings, TotpSetup, db

COOKIE = "dashboard_session"
SESSION_MS = 12 * 3600 * 1000
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def constant_equal(given, expected):
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


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
    return store.live_session(token_hash(token), now)


def start_session(totp_verified=False, expires_at=None):
    """Create a session and return (token, row); the token goes only into the cookie."""
    token = secrets.token_urlsafe(32)
    now = now_ms() // 1000 * 1000  # whole seconds, so expiresAt and Max-Age agree
    DashboardSession.delete().where(DashboardSession.expires_at <= now).execute()  # housekeeping
    row = DashboardSession.create(
        token_hash=token_hash(token),
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


def check_password(password):
    """Constant-time check against the stored slow salted hash; a wrong one is a counted 401."""
    stored = dashboard_settings().password_hash
    with ratelimit.attempt():
        if not (stored and check_password_hash(stored, password)):
            raise ApiError(401, "invalid_credentials", "Invalid password")


def reset_dashboard_auth():
    """Remove the password, TOTP and every session (the recovery command)."""
    with db.atomic():
        DashboardSettings.update(password_hash=None, totp_secret=None, totp_last_step=0).execute()
        DashboardSession.delete().execute()
        TotpSetup.delete().execute()
    g.pop("lb_settings", None)


def init_app(app):
    @app.cli.command("reset-auth")
    def reset_auth_command():
        """Remove the dashboard password, TOTP and all sessions."""
        with db.connection_context():
            reset_dashboard_auth()
            AuthFailure.delete().execute()
        click.echo("dashboard password, TOTP and sessions removed")
