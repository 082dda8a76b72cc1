"""Secrets: one Fernet key seals what the database must not hold in clear; hashes for what it only compares.

The key comes from ``LB_ENCRYPTION_KEY``, or else is generated once into the
data dir (``encryption_key``, mode 0600). Every instance of a deployment must
share it: without it the stored TOTP secret and account tokens cannot be
read.
"""
import hashlib
import hmac
import os

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from lb import config

FERNET_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte and a 64-bit time)


class Unreadable(Exception):
    """A sealed value that this key does not open."""


def load_key(app):
    """The app's Fernet, from the setting or the data dir's key file; a bad key stops start-up."""
    key = app.config["ENCRYPTION_KEY"]
    label = "LB_ENCRYPTION_KEY"
    if not key:
        path = os.path.join(app.config["DATA_DIR"], "encryption_key")
        key = config.secret_file(path, make=lambda: Fernet.generate_key().decode("ascii"))
        label = path
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise config.ConfigError(f"{label} must be a Fernet key: 32 random bytes, URL-safe base64") from None


def seal(text, fernet=None):
    """``text`` encrypted and authenticated, as ASCII."""
    return (fernet or current_app.extensions["lb_fernet"]).encrypt(text.encode("utf-8")).decode("ascii")


def unseal(token, fernet=None):
    """The text sealed in ``token``; Unreadable if this key did not seal it."""
    try:
        return (fernet or current_app.extensions["lb_fernet"]).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise Unreadable("a stored secret does not open with this encryption key") from None


def digest(text):
    """The SHA-256 of ``text`` in hex: how a session token, an API key or a prompt_cache_key is kept."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def constant_equal(given, expected):
    """Whether two secrets are equal, in time that does not tell how much of them matched."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def is_sealed(value):
    return isinstance(value, str) and value.startswith(FERNET_PREFIX)


def init_app(app):
    app.extensions["lb_fernet"] = load_key(app)
