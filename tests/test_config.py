"""lb.config: defaults, LB_* variables, overrides, the data directory and its files, start-up failures.

A bad setting is one line naming its variable, and a start-up failure is a
ConfigError: one line on stderr and exit code 2, also from the ``flask`` commands,
with no traceback and no password from LB_DATABASE_URL. The factory reads the
environment. Every file the service keeps in the data dir (secret_key,
bootstrap_token, encryption_key, lb.db and its -wal and -shm) is 0600 in a 0700
directory whatever the umask; one found open to others is tightened with a warning.
Asking ``flask`` for help does not reveal the bootstrap token.
"""
import logging
import os
import stat
import subprocess
import sys

import click
import pytest

from helpers.data import PASSWORD, ROOT
from helpers.http import REMOTE, error, post, setup_password
from helpers.servers import free_port
from lb import config, create_app, tables


# -- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("variable, value", [
    ("LB_PORT", "abc"),
    ("LB_PORT", "1.5"),
    ("LB_PORT", "70000"),
    ("LB_BILLING_CYCLE_DAY", "31"),
    ("LB_BILLING_CYCLE_DAY", "29"),
    ("LB_BILLING_CYCLE_DAY", "0"),
    ("LB_TRUSTED_PROXIES", "-1"),
    ("LB_TRUSTED_PROXIES", "many"),
    ("LB_THREADS", "0"),
    ("LB_CAPACITY", "0"),
    ("LB_CAPACITY", "10001"),
    ("LB_CONNECTION_LIMIT", "9"),
    ("LB_MAX_BODY_BYTES", "1MB"),
    ("LB_PROXY_MAX_BODY_BYTES", "100"),
    ("LB_UPSTREAM_READ_TIMEOUT", "forever"),
    ("LB_UPSTREAM_READ_TIMEOUT", "nan"),
    ("LB_UPSTREAM_CONNECT_TIMEOUT", "0"),
    ("LB_UPSTREAM_URL", "chatgpt.com/backend-api"),
    ("LB_UPSTREAM_URL", "ftp://example.com"),
    ("LB_OAUTH_ISSUER", "auth.openai.com"),
    ("LB_STICKY_WAIT_MS", "-1"),
    ("LB_STICKY_WAIT_MS", "60001"),
    ("LB_OAUTH_TOKEN_URL", "file:///etc/passwd"),
])
def test_a_bad_setting_is_a_config_error_naming_the_variable(variable, value):
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={variable: value})
    message = str(raised.value)
    assert message.startswith(variable + " ") and value in message
    assert "\n" not in message


def test_the_proxy_settings_and_their_defaults():
    defaults = config.load(environ={})
    assert (defaults["UPSTREAM_URL"], defaults["UPSTREAM_CONNECT_TIMEOUT"], defaults["UPSTREAM_READ_TIMEOUT"],
            defaults["PROXY_MAX_BODY_BYTES"]) == ("https://chatgpt.com/backend-api", 10.0, 300.0, 32 * 1048576)
    loaded = config.load(environ={"LB_UPSTREAM_URL": "http://127.0.0.1:9000/backend-api/",
                                  "LB_UPSTREAM_READ_TIMEOUT": "0.5", "LB_UPSTREAM_CONNECT_TIMEOUT": "3"})
    assert (loaded["UPSTREAM_URL"], loaded["UPSTREAM_READ_TIMEOUT"], loaded["UPSTREAM_CONNECT_TIMEOUT"]) == (
        "http://127.0.0.1:9000/backend-api", 0.5, 3.0)


def test_the_sign_in_settings_and_their_defaults():
    defaults = config.load(environ={})
    assert (defaults["OAUTH_ISSUER"], defaults["OAUTH_TOKEN_URL"], defaults["OAUTH_CLIENT_ID"]) == (
        "https://auth.openai.com", "https://auth.openai.com/oauth/token", "app_EMoamEEZ73f0CkXaXp7hrann")
    issuer = config.load(environ={"LB_OAUTH_ISSUER": "http://127.0.0.1:9000/"})
    assert (issuer["OAUTH_ISSUER"], issuer["OAUTH_TOKEN_URL"]) == (
        "http://127.0.0.1:9000", "http://127.0.0.1:9000/oauth/token")
    both = config.load(environ={"LB_OAUTH_ISSUER": "http://127.0.0.1:9000",
                                "LB_OAUTH_TOKEN_URL": "http://127.0.0.1:9001/token"})
    assert both["OAUTH_TOKEN_URL"] == "http://127.0.0.1:9001/token"


def test_settings_come_from_defaults_then_environment_then_overrides():
    loaded = config.load(environ={"LB_PORT": "8080", "LB_HOST": "0.0.0.0", "LB_BILLING_CYCLE_DAY": "15",
                                  "LB_INGEST_TOKEN": "", "LB_UNKNOWN": "x"},
                         overrides={"BILLING_CYCLE_DAY": 3})
    assert (loaded["HOST"], loaded["PORT"], loaded["BILLING_CYCLE_DAY"]) == ("0.0.0.0", 8080, 3)
    assert loaded["INGEST_TOKEN"] is None  # an empty variable means unset
    assert loaded["TRUSTED_PROXIES"] == 0 and loaded["MAX_BODY_BYTES"] == 1048576
    assert "UNKNOWN" not in loaded


def test_threads_and_connections_follow_the_capacity_unless_set():
    defaults = config.load(environ={})
    # A thread for each request the capacity allows, and 32 for the dashboard and the refusals.
    assert (defaults["CAPACITY"], defaults["THREADS"], defaults["CONNECTION_LIMIT"]) == (1000, 1032, 2064)
    smaller = config.load(environ={"LB_CAPACITY": "100"})
    assert (smaller["THREADS"], smaller["CONNECTION_LIMIT"]) == (132, 264)
    set_apart = config.load(environ={"LB_CAPACITY": "100", "LB_THREADS": "50", "LB_CONNECTION_LIMIT": "70"})
    assert (set_apart["CAPACITY"], set_apart["THREADS"], set_apart["CONNECTION_LIMIT"]) == (100, 50, 70)


def test_a_bad_override_names_the_setting():
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={}, overrides={"BILLING_CYCLE_DAY": 31})
    assert str(raised.value).startswith("BILLING_CYCLE_DAY ")


def test_the_factory_reads_lb_variables(monkeypatch, make_app, clock, tmp_path):
    monkeypatch.setenv("LB_BILLING_CYCLE_DAY", "15")
    monkeypatch.setenv("LB_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("LB_PORT", "9000")
    app = make_app()
    assert (app.config["BILLING_CYCLE_DAY"], app.config["MAX_BODY_BYTES"], app.config["PORT"]) == (15, 4096, 9000)
    client = app.test_client()
    overview = client.get("/api/dashboard/overview")
    assert overview.status_code == 200
    assert overview.get_json()["usageSummary"]["periodStart"] == "2026-11-15T00:00:00Z"
    big = client.post("/api/dashboard-auth/password/setup", data="x" * 5000, content_type="application/json")
    assert error(big) == (413, "payload_too_large")


def test_the_factory_reads_the_data_dir_and_tokens_from_the_environment(monkeypatch, clock, tmp_path):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("LB_BOOTSTRAP_TOKEN", "env-bootstrap")
    monkeypatch.setenv("LB_SECRET_KEY", "env-secret")
    app = create_app({"CLOCK": clock, "PASSWORD_HASH_METHOD": "scrypt:4096:8:1"})
    files = os.listdir(tmp_path / "from-env")
    assert "lb.db" in files and "secret_key" not in files and "bootstrap_token" not in files
    assert (app.config["SECRET_KEY"], app.config["BOOTSTRAP_TOKEN"]) == ("env-secret", "env-bootstrap")
    response = post(app.test_client(), "/api/dashboard-auth/password/setup",
                    {"password": PASSWORD, "bootstrapToken": "env-bootstrap"}, environ_base=REMOTE)
    assert response.status_code == 200 and response.get_json()["authenticated"] is True


@pytest.mark.parametrize("trusted, forwarded_for, expected", [
    ("0", "127.0.0.1", 401),  # an untrusted proxy header: not this machine
    ("1", "127.0.0.1", 200),  # one trusted hop says the client is local
    ("1", "203.0.113.9", 401),
])
def test_trusted_proxies_come_from_the_environment(monkeypatch, make_app, trusted, forwarded_for, expected):
    monkeypatch.setenv("LB_TRUSTED_PROXIES", trusted)
    client = make_app().test_client()
    response = client.get("/api/models", headers={"X-Forwarded-For": forwarded_for})
    assert response.status_code == expected
    if expected == 401:
        assert error(response) == (401, "authentication_required")
    else:
        assert response.get_json()["models"]


# -- secrets on disk -------------------------------------------------------------------------

def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_secret_files_are_private_and_reused(make_app, tmp_path):
    first = make_app(BOOTSTRAP_TOKEN=None)
    data = tmp_path / "data"
    assert mode(data) == 0o700
    for name in ("secret_key", "bootstrap_token"):
        assert mode(data / name) == 0o600
    assert len(first.config["SECRET_KEY"]) >= 32 and len(first.config["BOOTSTRAP_TOKEN"]) >= 32
    second = make_app(BOOTSTRAP_TOKEN=None)
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    assert second.config["BOOTSTRAP_TOKEN"] == first.config["BOOTSTRAP_TOKEN"]
    assert (data / "bootstrap_token").read_text().strip() == first.config["BOOTSTRAP_TOKEN"]


def test_the_stored_bootstrap_token_lets_a_remote_client_set_the_password(make_app):
    app = make_app(BOOTSTRAP_TOKEN=None)
    client = app.test_client()
    refused = post(client, "/api/dashboard-auth/password/setup", {"password": PASSWORD}, environ_base=REMOTE)
    assert error(refused) == (401, "bootstrap_required")
    response = post(client, "/api/dashboard-auth/password/setup",
                    {"password": PASSWORD, "bootstrapToken": app.config["BOOTSTRAP_TOKEN"]}, environ_base=REMOTE)
    assert response.status_code == 200 and response.get_json()["isPasswordConfigured"] is True


@pytest.fixture
def umask_zero():
    """Run the test under umask 0, so only the service's own modes keep files private."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_data_dir_and_its_secret_files_are_private_whatever_the_umask(make_app, tmp_path, umask_zero):
    make_app(BOOTSTRAP_TOKEN=None)
    data = tmp_path / "data"
    assert mode(data) == 0o700
    assert {name: mode(data / name) for name in ("secret_key", "bootstrap_token", "encryption_key")} == {
        "secret_key": 0o600, "bootstrap_token": 0o600, "encryption_key": 0o600}


@pytest.mark.sqlite_only
def test_the_database_and_its_wal_files_are_private_whatever_the_umask(make_app, tmp_path, umask_zero):
    client = make_app().test_client()
    setup_password(client)  # a write: SQLite now has its -wal and -shm files
    data = tmp_path / "data"
    assert {name: mode(data / name) for name in ("lb.db", "lb.db-wal", "lb.db-shm")} == {
        "lb.db": 0o600, "lb.db-wal": 0o600, "lb.db-shm": 0o600}


def test_an_open_data_dir_is_made_owner_only_with_a_warning(make_app, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    caplog.set_level(logging.WARNING)
    make_app()
    assert mode(data) == 0o700
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(data) in line and "0700" in line for line in warnings), warnings


@pytest.mark.sqlite_only
def test_an_open_database_file_is_made_owner_only_with_a_warning(make_app, tmp_path, caplog):
    make_app()
    tables.db.obj.close_all()
    database = tmp_path / "data" / "lb.db"
    os.chmod(database, 0o644)
    caplog.set_level(logging.WARNING)
    client = make_app().test_client()
    assert mode(database) == 0o600
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(database) in line and "0600" in line for line in warnings), warnings
    assert client.get("/healthz").get_json() == {"status": "ok"}


# -- start-up failures ----------------------------------------------------------------------------

def flask_command(tmp_path, *args, **variables):
    """``flask --app lb *args`` in its own process, with only these LB_* variables (and a fresh data dir)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LB_", "FLASK_"))}
    env.update(LB_DATA_DIR=str(tmp_path / "data"), **variables)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "lb", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_config_error_is_a_click_exception_with_exit_code_2():
    assert issubclass(config.ConfigError, click.ClickException)
    assert config.ConfigError("LB_PORT must be a whole number").exit_code == 2


def test_a_flask_command_with_a_bad_setting_exits_2_with_one_line(tmp_path):
    result = flask_command(tmp_path, "init-db", LB_PORT="abc")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "LB_PORT" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "schema ready" not in result.stdout


def test_flask_help_does_not_reveal_the_bootstrap_token(tmp_path):
    result = flask_command(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "init-db" in result.stdout and "demo-data" in result.stdout  # the app was loaded
    everything = result.stdout + result.stderr
    bootstrap = (tmp_path / "data" / "bootstrap_token").read_text().strip()
    assert len(bootstrap) >= 32
    assert bootstrap not in everything
    assert "bootstrap token" not in everything.lower()


def test_a_host_that_is_no_address_is_a_config_error():
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={"LB_HOST": "not a host"})
    message = str(raised.value)
    assert message.startswith("LB_HOST ") and "not a host" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "0.0.0.0"])
def test_an_address_or_a_resolvable_name_is_a_host(host):
    assert config.load(environ={"LB_HOST": host})["HOST"] == host


def test_an_unreachable_database_is_a_config_error_without_its_password(make_app):
    url = f"postgresql://user:secret-pw@127.0.0.1:{free_port()}/x"
    with pytest.raises(config.ConfigError) as raised:
        make_app(DATABASE_URL=url)
    message = str(raised.value)
    assert "LB_DATABASE_URL" in message and "\n" not in message
    assert "secret-pw" not in message
