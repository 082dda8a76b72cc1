"""TOTP (RFC 6238 through pyotp): setup, code checks and replay protection."""
import hmac
import re
import secrets

import pyotp
import segno

from lb.clock import now_ms
from lb.errors import ApiError
from lb.ratelimit import fail
from lb.sessions import constant_equal, dashboard_settings, save_settings, token_hash
from lb.store import DashboardSession, DashboardSettings, TotpSetup, db

ISSUER = "Codex-LB"
STEP = 30
SETUP_MS = 10 * 60 * 1000


def require_totp():
    if not dashboard_settings().totp_secret:
        raise ApiError(400, "totp_not_configured", "TOTP is not configured")


def refuse_if_totp():
    if dashboard_settings().totp_secret:
        raise ApiError(409, "totp_already_configured", "TOTP is already configured")


def normalize_code(code):
    return re.sub(r"[\s-]", "", code) if isinstance(code, str) else ""


def matching_step(secret, code):
    """The time step (within one step either side of now) whose code is ``code``, or None."""
    code = normalize_code(code)
    # ASCII digits only: \d takes other scripts' digits, which compare_digest refuses with a TypeError.
    if not re.fullmatch(r"[0-9]{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    now_step = now_ms() // 1000 // STEP
    found = None
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def accept_code(code):
    """Verify a code against the configured secret, refusing replays; record the step."""
    with db.atomic():
        config = DashboardSettings.get_by_id(1)  # re-read inside the write lock
        step = matching_step(config.totp_secret, code)
        if step is not None and step > config.totp_last_step:
            DashboardSettings.update(totp_last_step=step).where(DashboardSettings.id == 1).execute()
            return True
    refuse_code()


def refuse_code():
    """Count a wrong or replayed code as a failure and answer it."""
    fail("invalid_totp_code", "The TOTP code is invalid or was already used", 400)


def provisioning_uri(secret):
    return pyotp.TOTP(secret).provisioning_uri(name="admin", issuer_name=ISSUER)


def start_totp_setup(row):
    """Begin TOTP setup for the session ``row``; return the contract's setup object."""
    secret = pyotp.random_base32()
    token = secrets.token_urlsafe(32)
    now = now_ms()
    with db.atomic():
        TotpSetup.delete().where(TotpSetup.expires_at <= now).execute()
        TotpSetup.create(token_hash=token_hash(token), session_hash=row.token_hash,
                         secret=secret, expires_at=now + SETUP_MS)
    uri = provisioning_uri(secret)
    qr = segno.make(uri, error="m").svg_data_uri()
    return {"secret": secret, "otpauthUri": uri, "qrSvgDataUri": qr, "setupToken": token}


def pending_setup(token, row):
    """The unexpired setup named by ``token`` that belongs to session ``row``, or None."""
    if not isinstance(token, str) or not token or len(token) > 128:
        return None
    setup = TotpSetup.get_or_none(TotpSetup.token_hash == token_hash(token))
    if setup is None or setup.expires_at <= now_ms() or not constant_equal(setup.session_hash, row.token_hash):
        return None
    return setup


def confirm_setup(setup_token, code, row):
    """Turn TOTP on with the setup that ``code`` proves; return the session ``row``, now verified."""
    setup = pending_setup(setup_token, row)
    if setup is None:
        fail("invalid_setup_token", "The setup token is unknown, used or expired", 400)
    step = matching_step(setup.secret, code)
    if step is None:
        refuse_code()
    with db.atomic():
        save_settings(totp_secret=setup.secret, totp_last_step=step)
        TotpSetup.delete().execute()
        # Every other session must prove the new second factor before its next request.
        DashboardSession.update(totp_verified=False).where(DashboardSession.token_hash != row.token_hash).execute()
        DashboardSession.update(totp_verified=True).where(DashboardSession.token_hash == row.token_hash).execute()
    return DashboardSession.get_by_id(row.token_hash)
