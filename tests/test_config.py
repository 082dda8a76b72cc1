"""lb.config: defaults, LB_* variables, overrides, and the data directory's secret files.

A bad setting is one line naming its variable; the factory reads the environment;
secret_key and bootstrap_token are created private (0600 in a 0700 directory) and reused.
"""
import os
import stat

import pytest

from helpers import PASSWORD, REMOTE, error, post
from lb import config, create_app


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
    ("LB_MAX_BODY_BYTES", "1MB"),
])
def test_a_bad_setting_is_a_config_error_naming_the_variable(variable, value):
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={variable: value})
    message = str(raised.value)
    assert message.startswith(variable + " ") and value in message
    assert "\n" not in message


def test_settings_come_from_defaults_then_environment_then_overrides():
    loaded = config.load(environ={"LB_PORT": "8080", "LB_HOST": "0.0.0.0", "LB_BILLING_CYCLE_DAY": "15",
                                  "LB_INGEST_TOKEN": "", "LB_UNKNOWN": "x"},
                         overrides={"BILLING_CYCLE_DAY": 3})
    assert (loaded["HOST"], loaded["PORT"], loaded["BILLING_CYCLE_DAY"]) == ("0.0.0.0", 8080, 3)
    assert loaded["INGEST_TOKEN"] is None  # an empty variable means unset
    assert loaded["THREADS"] == 8 and loaded["TRUSTED_PROXIES"] == 0 and loaded["MAX_BODY_BYTES"] == 1048576
    assert "UNKNOWN" not in loaded


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
