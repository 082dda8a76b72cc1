"""The guards: who is asking (a dashboard session, a bearer token, an API key), and the one place that answers
401 for the dashboard. The Authorization header is read here alone (bearer_token)."""
import ipaddress
from functools import wraps

from flask import current_app, g, request
from flask_login import LoginManager, UserMixin, current_user

from lb import crypto, keys, sessions, store
from lb.clock import iso, now_ms
from lb.errors import ApiError

# What the guard finds for a request.
NONE, TOTP_PENDING, FULL = "none", "totp_pending", "full"
MESSAGES = {
    "authentication_required": "Authentication is required",
    "totp_required": "TOTP verification is required for dashboard access",
}

login_manager = LoginManager()


class SessionUser(UserMixin):
    """The server-side session behind a request's cookie."""

    def __init__(self, row):
        self.row = row

    def get_id(self):
        return self.row.token_hash


@login_manager.request_loader
def _load_session(req):
    row = sessions.find(req.cookies.get(sessions.COOKIE), now_ms())
    return SessionUser(row) if row is not None else None


@login_manager.user_loader
def _no_cookie_users(user_id):
    return None  # sessions come only from the dashboard_session cookie


@login_manager.unauthorized_handler
def unauthorized(code="authentication_required"):
    """The one place that builds the guard's 401 answers."""
    raise ApiError(401, code, MESSAGES[code])


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


def access(row=None):
    """NONE, TOTP_PENDING or FULL for session ``row`` (by default the request's)."""
    config = sessions.dashboard_settings()
    if not config.password_hash:
        # First run: open to this machine only.
        return FULL if is_local_client() else NONE
    row = row if row is not None else current_session()
    if row is None or not row.password_verified:
        return NONE
    if config.totp_secret and not row.totp_verified:
        return TOTP_PENDING
    return FULL


def state(row=None):
    """The contract's session state object, derived from the guard's own decision."""
    config = sessions.dashboard_settings()
    row = row if row is not None else current_session()
    found = access(row)
    has_password = bool(config.password_hash)
    has_totp = has_password and bool(config.totp_secret)
    return {
        "isPasswordConfigured": has_password,
        "isPasswordVerified": has_password and found != NONE,
        "isTotpConfigured": has_totp,
        "isTotpVerified": has_totp and found == FULL,
        "isTotpRequiredOnLogin": has_totp,
        "authenticated": found == FULL,
        "expiresAt": iso(row.expires_at) if (has_password and row is not None) else None,
    }


def login_required(view):
    """Let a request through with a full dashboard session (password and, if on, TOTP)."""
    @wraps(view)
    def guarded(*args, **kwargs):
        found = access()
        if found == TOTP_PENDING:
            return unauthorized("totp_required")
        if found != FULL:
            return login_manager.unauthorized()
        return view(*args, **kwargs)

    return guarded


def password_login_required(view):
    """Like ``login_required``, but a session that still owes its TOTP code gets through too."""
    @wraps(view)
    def guarded(*args, **kwargs):
        if access() == NONE:
            return login_manager.unauthorized()
        return view(*args, **kwargs)

    return guarded


def bearer_token():
    """The token of the request's Authorization header: None without the header, "" when it bears no Bearer
    token (which no key or token matches)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def token_required(setting):
    """A guard for the bearer token in the setting named (``INGEST_TOKEN``, ``METRICS_TOKEN``); an unset
    setting lets nobody in."""
    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            token, expected = bearer_token(), current_app.config[setting]
            if not (token and expected and crypto.constant_equal(token, expected)):
                return login_manager.unauthorized()
            return view(*args, **kwargs)

        return guarded

    return decorate


def ingest_required(view):
    """A dashboard session, or the ingest bearer token; an Authorization header alone decides."""
    session_guarded, token_guarded = login_required(view), token_required("INGEST_TOKEN")(view)

    @wraps(view)
    def guarded(*args, **kwargs):
        if request.headers.get("Authorization") is None:
            return session_guarded(*args, **kwargs)
        return token_guarded(*args, **kwargs)

    return guarded


def key_required(view):
    """The proxy's guard: the request's API key in ``g.api_key`` (None where none is needed), else 401."""
    @wraps(view)
    def guarded(*args, **kwargs):
        g.api_key = client_key(now_ms())
        return view(*args, **kwargs)

    return guarded


def client_key(now):
    """A key that is sent is always checked; without one, only this machine, and only while keys are optional."""
    presented = bearer_token()
    if presented is not None:
        key = keys.authenticate(presented, now)
        if key is None:
            raise ApiError(401, "invalid_api_key", "The API key is not valid: unknown, disabled or expired")
        return key
    if store.settings().api_key_required or not is_local_client():
        raise ApiError(401, "invalid_api_key", "An API key is required (Authorization: Bearer sk-clb-...)")
    return None


def init_app(app):
    # No current_user in templates: it would look the session up in the database, and the
    # dashboard's page is served without one (lb/web/pages.py); its script asks the API instead.
    login_manager.init_app(app, add_context_processor=False)
    login_manager.session_protection = None  # no Flask session cookie is involved
