"""Settings: defaults, then the environment, then the caller's mapping."""
import logging
import os
import secrets
import socket
import stat
import time

import click

log = logging.getLogger(__name__)

DEFAULTS = {
    "HOST": "127.0.0.1",
    "PORT": 2455,
    "DATA_DIR": "./data",
    "DATABASE_URL": None,
    "SECRET_KEY": None,
    "BILLING_CYCLE_DAY": 1,
    "BOOTSTRAP_TOKEN": None,
    "INGEST_TOKEN": None,
    # Bearer token of GET /metrics; unset, there are no metrics.
    "METRICS_TOKEN": None,
    "ENCRYPTION_KEY": None,
    # Sign-in with ChatGPT and token refreshes: the Codex CLI's own issuer and client id; unset, the
    # token endpoint is <issuer>/oauth/token.
    "OAUTH_ISSUER": "https://auth.openai.com",
    "OAUTH_TOKEN_URL": None,
    "OAUTH_CLIENT_ID": "app_EMoamEEZ73f0CkXaXp7hrann",
    "MAX_BODY_BYTES": 1048576,
    # The proxy: where the Codex backend is, its timeouts in seconds (the read
    # timeout is the silence allowed between two events), and its body limit
    # (a long Codex conversation is resent whole on every turn).
    "UPSTREAM_URL": "https://chatgpt.com/backend-api",
    "UPSTREAM_CONNECT_TIMEOUT": 10.0,
    "UPSTREAM_READ_TIMEOUT": 300.0,
    "PROXY_MAX_BODY_BYTES": 32 * 1048576,
    # Proxied requests one process carries at once (a stream holds one for its whole length);
    # past it a new one is answered 503 server_busy at once.
    "CAPACITY": 1000,
    # waitress threads: a proxied request holds one; unset, CAPACITY + RESERVED_THREADS,
    # so that the dashboard and the refusals always find one.
    "THREADS": None,
    "TRUSTED_PROXIES": 0,
    # waitress: open connections at most (unset: twice THREADS), and seconds before an
    # idle or half-sent one is closed.
    "CONNECTION_LIMIT": None,
    "CHANNEL_TIMEOUT": 120,
    # waitress processes serving one address (codex-lb --waitress --workers N), and the seconds each
    # gives its requests in flight to end when it is stopped (SIGTERM, Ctrl-C).
    "WORKERS": 1,
    "SHUTDOWN_GRACE": 30,
    # Milliseconds a request waits for its conversation's account when that one is cooling down only
    # that long (a momentary 429), rather than going to another account and leaving the prompt cache.
    "STICKY_WAIT_MS": 2000,
    # Seconds between two /wham/usage polls of an account (0: never), spread over the interval.
    "USAGE_POLL_SECONDS": 300,
    # Seconds between two prunes of the raw request logs, across instances, when retention is on (0: never).
    "PRUNE_INTERVAL_SECONDS": 600,
    # Database connections one process keeps at most; a request waits for a free one.
    "DATABASE_POOL": 32,
    # SQLite: how often a background thread looks at the WAL (0: never).
    "CHECKPOINT_SECONDS": 10,
}

# The waitress threads beyond CAPACITY: the dashboard's requests, and the proxy's refusals when it is full.
RESERVED_THREADS = 32

# Integer settings and their allowed ranges.
RANGES = {
    "PORT": (0, 65535),
    "BILLING_CYCLE_DAY": (1, 28),
    "MAX_BODY_BYTES": (1024, 1 << 30),
    "PROXY_MAX_BODY_BYTES": (1024, 1 << 30),
    "CAPACITY": (1, 10000),
    "THREADS": (1, 10100),
    "TRUSTED_PROXIES": (0, 16),
    "CONNECTION_LIMIT": (10, 100000),
    "CHANNEL_TIMEOUT": (5, 86400),
    "CHECKPOINT_SECONDS": (0, 3600),
    "DATABASE_POOL": (1, 1000),
    "WORKERS": (1, 64),
    "USAGE_POLL_SECONDS": (0, 86400),
    "PRUNE_INTERVAL_SECONDS": (0, 86400),
    "SHUTDOWN_GRACE": (0, 3600),
    "STICKY_WAIT_MS": (0, 60000),
}
URLS = ("UPSTREAM_URL", "OAUTH_ISSUER", "OAUTH_TOKEN_URL")
# Settings in seconds that may have a fraction, and their allowed ranges.
SECONDS = {
    "UPSTREAM_CONNECT_TIMEOUT": (0.1, 600.0),
    "UPSTREAM_READ_TIMEOUT": (0.1, 86400.0),
}


class ConfigError(click.ClickException):
    """The service cannot start with these settings: one line for the operator, exit code 2.

    A ClickException, so the ``flask`` commands print it as one line too.
    """

    exit_code = 2


def load(environ=None, overrides=None):
    """Return the settings: defaults, then ``LB_*`` variables, then ``overrides``."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for name in DEFAULTS:
        value = environ.get("LB_" + name)
        if value not in (None, ""):
            config[name] = _parse("LB_" + name, name, value)
    for name, value in (overrides or {}).items():
        parsed = value is not None and (name in RANGES or name in SECONDS or name in URLS)
        config[name] = _parse(name, name, value) if parsed else value
    config.setdefault("CLOCK", time.time)
    config.setdefault("SLEEP", time.sleep)  # injected with CLOCK: a test's sleep moves its clock
    if config["THREADS"] is None:
        config["THREADS"] = config["CAPACITY"] + RESERVED_THREADS
    if config["CONNECTION_LIMIT"] is None:
        config["CONNECTION_LIMIT"] = 2 * config["THREADS"]
    if config["OAUTH_TOKEN_URL"] is None:
        config["OAUTH_TOKEN_URL"] = config["OAUTH_ISSUER"] + "/oauth/token"
    return config


def _parse(label, name, value):
    if name == "HOST":
        return _host(label, value)
    if name in SECONDS:
        return _seconds(label, name, value)
    if name in URLS:
        return _url(label, value)
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


def _seconds(label, name, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be a number of seconds, not {value!r}") from None
    low, high = SECONDS[name]
    if not low <= number <= high:  # NaN fails this too
        raise ConfigError(f"{label} must be between {low:g} and {high:g} seconds, not {value!r}")
    return number


def _url(label, value):
    if not isinstance(value, str) or not value.startswith(("http://", "https://")) or len(value) > 2000:
        raise ConfigError(f"{label} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


def _host(label, value):
    """An address to bind: an IP address or a name this machine resolves."""
    try:
        socket.getaddrinfo(value, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ConfigError(f"{label} must be an IP address or a host name that resolves, not {value!r}") from None
    return value


def _owner_only(path, mode):
    """Tighten ``path`` to ``mode`` if others may use it, saying so."""
    found = stat.S_IMODE(os.stat(path).st_mode)
    if found & 0o077:
        os.chmod(path, mode)
        log.warning("%s was open to others (mode 0%o); it is now 0%o", path, found, mode)


def prepare_data_dir(path):
    """Create the data directory owner-only, or make an existing one so (it holds the database and keys)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        _owner_only(path, 0o700)
    except OSError as exc:
        raise ConfigError(f"LB_DATA_DIR {path!r} cannot be created or secured: {exc.strerror}") from None


def private_file(path, create=True):
    """Create ``path`` empty with mode 0600, whatever the umask, or tighten it to 0600 if it exists."""
    try:
        if not create and not os.path.exists(path):
            return
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        _owner_only(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"the database file {path!r} cannot be created or secured: {exc.strerror}") from None


def secret_file(path, make=lambda: secrets.token_urlsafe(32)):
    """Return the secret kept in ``path``, generating it with ``make`` (mode 0600) on first use."""
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _owner_only(path, 0o600)
            with open(path, encoding="ascii") as f:
                return f.read().strip()
        value = make()
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value + "\n")
        return value
    except OSError as exc:
        raise ConfigError(f"LB_DATA_DIR: {path!r} cannot be read or written: {exc.strerror}") from None
