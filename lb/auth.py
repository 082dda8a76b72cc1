"""Dashboard authentication: sessions, cookies, passwords and the guard."""
import hashlib
import hmac
import ipaddress
import math
import secrets
from functools import wraps

import click
from flask import current_app, g, request
from flask_login import LoginManager, UserMixin, current_user
from werkzeug.security import check_password_hash, generate_password_hash

from lb.api import ApiError, iso, now_ms
from lb.store import AuthFailure, DashboardSession, DashboardSettings, TotpSetup, db, portable, settings

COOKIE = "dashboard_session"
SESSION_MS = 12 * 3600 * 1000

# What the guard finds for a request.
NONE, TOTP_PENDING, FULL = "none", "totp_pending", "full"

SESSION_SQL = "SELECT * FROM dashboard_session WHERE token_hash = ? AND expires_at > ?"

login_manager = LoginManager()


class SessionUser(UserMixin):
    """The server-side session behind a request's cookie."""

    def __init__(self, row):
        self.row = row

    def get_id(self):
        return self.row.token_hash


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@login_manager.request_loader
def _load_session(req):
    token = req.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    # Hand-written: this runs on every dashboard request.
    rows = list(DashboardSession.raw(portable(SESSION_SQL), token_hash(token), now_ms()))
    return SessionUser(rows[0]) if rows else None


@login_manager.user_loader
def _no_cookie_users(user_id):
    return None  # sessions come only from the dashboard_session cookie


@login_manager.unauthorized_handler
def unauthorized(code="authentication_required"):
    """The one place that builds the guard's 401 answers."""
    messages = {
        "authentication_required": "Authentication is required",
        "totp_required": "TOTP verification is required for dashboard access",
    }
    raise ApiError(401, code, messages[code])


# -- who is asking -------------------------------------------------------------

def dashboard_settings():
    """The credentials row, read once per request."""
    if "lb_settings" not in g:
        g.lb_settings = settings()
    return g.lb_settings


def save_settings(**fields):
    DashboardSettings.update(**fields).where(DashboardSettings.id == 1).execute()
    g.pop("lb_settings", None)


def current_session():
    """The request's valid session row, or None."""
    return current_user.row if current_user.is_authenticated else None


def is_local_client():
    """Same machine: a loopback address and no proxy header we were not told to trust."""
    # ProxyFix reads X-Forwarded-For for trusted hops; nobody reads Forwarded,
    # so a request that carries it is never taken for a local one.
    if "Forwarded" in request.headers:
        return False
    if not current_app.config["TRUSTED_PROXIES"] and "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def access():
    """NONE, TOTP_PENDING or FULL for this request."""
    config = dashboard_settings()
    if not config.password_hash:
        # First run: open to this machine only.
        return FULL if is_local_client() else NONE
    row = current_session()
    if row is None or not row.password_verified:
        return NONE
    if config.totp_secret and not row.totp_verified:
        return TOTP_PENDING
    return FULL


def login_required(view=None, *, totp=True):
    """Let a request through with a dashboard session; ``totp=False`` accepts one that owes TOTP."""
    if view is None:
        return lambda v: login_required(v, totp=totp)

    @wraps(view)
    def guarded(*args, **kwargs):
        found = access()
        if found == NONE:
            return login_manager.unauthorized()
        if found == TOTP_PENDING and totp:
            return unauthorized("totp_required")
        return view(*args, **kwargs)

    return guarded


def ingest_required(view):
    """A dashboard session, or the ingest bearer token; an Authorization header alone decides."""
    session_guarded = login_required(view)

    @wraps(view)
    def guarded(*args, **kwargs):
        header = request.headers.get("Authorization")
        if header is None:
            return session_guarded(*args, **kwargs)
        expected = current_app.config["INGEST_TOKEN"]
        scheme, _, token = header.partition(" ")
        if not expected or scheme.lower() != "bearer" or not constant_equal(token.strip(), expected):
            return login_manager.unauthorized()
        return view(*args, **kwargs)

    return guarded


def constant_equal(given, expected):
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


# -- the session state object --------------------------------------------------

def state(row=None):
    """The session state object of the contract, for ``row`` or the request's session."""
    config = dashboard_settings()
    row = row if row is not None else current_session()
    has_password = bool(config.password_hash)
    has_totp = has_password and bool(config.totp_secret)
    verified = has_password and row is not None and row.password_verified
    totp_verified = verified and has_totp and row.totp_verified
    if not has_password:
        authenticated = is_local_client()
    else:
        authenticated = verified and (totp_verified or not has_totp)
    return {
        "isPasswordConfigured": has_password,
        "isPasswordVerified": bool(verified),
        "isTotpConfigured": has_totp,
        "isTotpVerified": bool(totp_verified),
        "isTotpRequiredOnLogin": has_totp,
        "authenticated": bool(authenticated),
        "expiresAt": iso(row.expires_at) if (has_password and row is not None) else None,
    }


# -- sessions and cookies -------------------------------------------------------

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


def password_matches(password):
    """Constant-time check against the stored slow salted hash."""
    stored = dashboard_settings().password_hash
    return bool(stored) and check_password_hash(stored, password)


def reset_dashboard_auth():
    """Remove the password, TOTP and every session (the recovery command)."""
    with db.atomic():
        DashboardSettings.update(password_hash=None, totp_secret=None, totp_last_step=0).execute()
        DashboardSession.delete().execute()
        TotpSetup.delete().execute()
    g.pop("lb_settings", None)


def init_app(app):
    login_manager.init_app(app)
    login_manager.session_protection = None  # no Flask session cookie is involved

    @app.cli.command("reset-auth")
    def reset_auth_command():
        """Remove the dashboard password, TOTP and all sessions."""
        with db.connection_context():
            reset_dashboard_auth()
            AuthFailure.delete().execute()
        click.echo("dashboard password, TOTP and sessions removed")
