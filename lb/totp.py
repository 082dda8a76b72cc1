"""TOTP (RFC 6238 through pyotp): setup, code checks and replay protection; turning it on or off, and a login
completed by its code, audited (lb.audit) in the transaction of the change."""
import hmac
import re
import secrets

import pyotp
import segno

from lb import audit, crypto, ratelimit, store
from lb.clock import now_ms
from lb.config import ConfigError
from lb.errors import ApiError
from lb.crypto import constant_equal, digest
from lb.fields import get_str
from lb.sessions import dashboard_settings, end_session, require_password, save_settings, start_session
from lb.tables import DashboardSession, DashboardSettings, TotpSetup, db

ISSUER = "Codex-LB"
STEP = 30
DIGITS = 6  # pyotp's default, what authenticator apps show
# ASCII digits only: \d takes other scripts' digits, which compare_digest refuses with a TypeError.
CODE = re.compile(f"[0-9]{{{DIGITS}}}")
SETUP_MS = 10 * 60 * 1000


def require_totp():
    if not dashboard_settings().totp_secret:
        raise ApiError(400, "totp_not_configured", "TOTP is not configured")


def refuse_if_totp(config=None):
    if (config or dashboard_settings()).totp_secret:
        raise ApiError(409, "totp_already_configured", "TOTP is already configured")


def normalize_code(code):
    return re.sub(r"[\s-]", "", code) if isinstance(code, str) else ""


def matching_step(secret, code):
    """The time step (within one step either side of now) whose code is ``code``, or None."""
    code = normalize_code(code)
    if not CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    now_step = now_ms() // 1000 // STEP
    found = None
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def accept_code(code, step):
    """Verify a code against the configured secret, refusing replays; record the step. ``step``: which
    endpoint checks it, for the audit log of a failure."""
    with ratelimit.attempt(step), db.atomic():
        config = store.lock_settings()  # re-read under the write lock: of two uses of a code, one wins
        step = matching_step(crypto.unseal(config.totp_secret), code) if config.totp_secret else None
        if step is None or step <= config.totp_last_step:
            refuse_code()
        DashboardSettings.update(totp_last_step=step).where(DashboardSettings.id == 1).execute()


def refuse_code():
    """A wrong or replayed code (counted as a failure by the attempt around the check)."""
    raise ApiError(400, "invalid_totp_code", "The TOTP code is invalid or was already used")


def provisioning_uri(secret):
    return pyotp.TOTP(secret).provisioning_uri(name="admin", issuer_name=ISSUER)


def start_totp_setup(row):
    """Begin TOTP setup for the session ``row``; return the contract's setup object."""
    secret = pyotp.random_base32()
    token = secrets.token_urlsafe(32)
    now = now_ms()
    with db.atomic():
        TotpSetup.delete().where(TotpSetup.expires_at <= now).execute()
        TotpSetup.create(token_hash=digest(token), session_hash=row.token_hash,
                         secret=crypto.seal(secret), expires_at=now + SETUP_MS)
    uri = provisioning_uri(secret)
    qr = segno.make(uri, error="m").svg_data_uri()
    return {"secret": secret, "otpauthUri": uri, "qrSvgDataUri": qr, "setupToken": token}


def pending_setup(token, row):
    """The unexpired setup named by ``token`` that belongs to session ``row``, or None."""
    if not isinstance(token, str) or not token or len(token) > 128:
        return None
    setup = TotpSetup.get_or_none(TotpSetup.token_hash == digest(token))
    if setup is None or setup.expires_at <= now_ms() or not constant_equal(setup.session_hash, row.token_hash):
        return None
    return setup


def confirm_setup(setup_token, code, row, now, ip):
    """Turn TOTP on with the setup that ``code`` proves; return the session ``row``, now verified."""
    with ratelimit.attempt("totp_setup"):
        setup = pending_setup(setup_token, row)
        if setup is None:
            refuse_if_totp(store.settings())  # another confirm won and removed every setup: 409
            raise ApiError(400, "invalid_setup_token", "The setup token is unknown, used or expired")
        step = matching_step(crypto.unseal(setup.secret), code)
        if step is None:
            refuse_code()
    with db.atomic():
        # Checked again under the write lock: of two sessions confirming at once, one wins, the other gets 409.
        refuse_if_totp(store.lock_settings())
        save_settings(totp_secret=setup.secret, totp_last_step=step)
        TotpSetup.delete().execute()
        # Every other session must prove the new second factor before its next request.
        DashboardSession.update(totp_verified=False).where(DashboardSession.token_hash != row.token_hash).execute()
        DashboardSession.update(totp_verified=True).where(DashboardSession.token_hash == row.token_hash).execute()
        audit.record("totp.enabled", now, ip)
    return DashboardSession.get_by_id(row.token_hash)


# -- what the TOTP endpoints do ----------------------------------------------------------------

def begin_setup(row):
    """POST /totp/setup/start for session ``row``: a fresh secret to confirm."""
    require_password()
    refuse_if_totp()
    return start_totp_setup(row)


def confirm(data, row, now, ip):
    """POST /totp/setup/confirm: TOTP is on once the body's code proves its setup; ``row``, now verified."""
    require_password()
    refuse_if_totp()
    ratelimit.check_rate_limit()
    setup_token = get_str(data, "setupToken", max_len=1024)
    code = get_str(data, "code", max_len=64)
    return confirm_setup(setup_token, code, row, now, ip)


def verify(data, row, now, ip):
    """POST /totp/verify: the second factor of session ``row``; a new session replaces it: (token, row).
    The login is complete: login.succeeded {"totp": true}."""
    require_password()
    require_totp()
    ratelimit.check_rate_limit()
    accept_code(get_str(data, "code", max_len=64), "totp_verify")
    with db.atomic():
        # A new token once the second factor is proven; the expiry stays.
        end_session(row)
        audit.record("login.succeeded", now, ip, detail={"totp": True})
        return start_session(totp_verified=True, expires_at=row.expires_at)


def disable(data, now, ip):
    """POST /totp/disable: TOTP off, once the body's code is right."""
    require_password()
    require_totp()
    ratelimit.check_rate_limit()
    accept_code(get_str(data, "code", max_len=64), "totp_disable")
    with db.atomic():
        save_settings(totp_secret=None, totp_last_step=0)
        audit.record("totp.disabled", now, ip, detail={"reason": "disabled"})


def init_app(app):
    """Seal a TOTP secret stored in clear by an older version; refuse to start with a key that cannot open it."""
    with db.connection_context(), app.app_context():
        secret = store.settings().totp_secret
        if secret and not crypto.is_sealed(secret):
            DashboardSettings.update(totp_secret=crypto.seal(secret)).where(DashboardSettings.id == 1).execute()
        elif secret:
            try:
                crypto.unseal(secret)
            except crypto.Unreadable:
                raise ConfigError("LB_ENCRYPTION_KEY does not open the stored TOTP secret: "
                                  "every instance must share one key") from None
