"""Settings: defaults, then the environment, then the caller's mapping."""
import os
import secrets
import time

DEFAULTS = {
    "HOST": "127.0.0.1",
    "PORT": 2455,
    "DATA_DIR": "./data",
    "DATABASE_URL": None,
    "SECRET_KEY": None,
    "BILLING_CYCLE_DAY": 1,
    "BOOTSTRAP_TOKEN": None,
    "INGEST_TOKEN": None,
    "MAX_BODY_BYTES": 1048576,
    "THREADS": 8,
    "TRUSTED_PROXIES": 0,
}

# Integer settings and their allowed ranges.
RANGES = {
    "PORT": (0, 65535),
    "BILLING_CYCLE_DAY": (1, 28),
    "MAX_BODY_BYTES": (1024, 1 << 30),
    "THREADS": (1, 256),
    "TRUSTED_PROXIES": (0, 16),
}


class ConfigError(Exception):
    """A setting has a value the service cannot start with."""


def load(environ=None, overrides=None):
    """Return the settings: defaults, then ``LB_*`` variables, then ``overrides``."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for name in DEFAULTS:
        value = environ.get("LB_" + name)
        if value not in (None, ""):
            config[name] = _parse("LB_" + name, name, value)
    for name, value in (overrides or {}).items():
        config[name] = _parse(name, name, value) if name in RANGES else value
    config.setdefault("CLOCK", time.time)
    return config


def _parse(label, name, value):
    if name not in RANGES:
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be a whole number, not {value!r}") from None
    low, high = RANGES[name]
    if not low <= number <= high:
        raise ConfigError(f"{label} must be between {low} and {high}, not {number}")
    return number


def prepare_data_dir(path):
    """Create the data directory (owner-only) if it is missing."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"LB_DATA_DIR {path!r} cannot be created: {exc.strerror}") from None


def secret_file(path):
    """Return the secret kept in ``path``, generating it (mode 0600) on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value
