"""Section 7 and configuration: health check, settings, the entry point, secrets on disk, CLI."""
import logging
import os
import stat

import pytest

import app as entry
from helpers import BOOTSTRAP, PASSWORD, REMOTE, error, post, setup_password
from lb import config, create_app, store


# -- health --------------------------------------------------------------------------------

def test_healthz_answers_ok_without_auth(authed, app):
    response = app.test_client().get("/healthz", environ_base=REMOTE)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.sqlite_only
def test_healthz_is_unavailable_when_the_database_cannot_be_reached(app, client, tmp_path, caplog):
    assert store.db.is_closed()  # every request and the factory give their connection back
    database = store.db.obj
    if hasattr(database, "close_all"):
        database.close_all()  # a pool keeps idle connections open
    database.database = str(tmp_path / "missing-dir" / "lb.db")
    response = client.get("/healthz")
    assert error(response) == (503, "service_unavailable")
    assert "Traceback" not in response.get_data(as_text=True)
    assert any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)


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


# -- the entry point -------------------------------------------------------------------------

class FakeServe:
    """Stands in for waitress.serve and records how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, app, **options):
        self.calls.append((app, options))


def test_main_serves_on_the_loopback_default(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    serve = FakeServe()
    assert entry.main(argv=[], serve=serve) == 0
    (app, options), = serve.calls
    assert (options["host"], options["port"], options["threads"]) == ("127.0.0.1", 2455, 8)
    assert options["max_request_body_size"] > app.config["MAX_BODY_BYTES"]
    assert capsys.readouterr().err == ""


def test_main_honours_host_port_and_threads(monkeypatch, tmp_path):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LB_HOST", "0.0.0.0")
    monkeypatch.setenv("LB_PORT", "8080")
    monkeypatch.setenv("LB_THREADS", "4")
    serve = FakeServe()
    assert entry.main(argv=["--waitress"], serve=serve) == 0
    (_, options), = serve.calls
    assert (options["host"], options["port"], options["threads"]) == ("0.0.0.0", 8080, 4)


@pytest.mark.parametrize("variable, value", [
    ("LB_PORT", "abc"),
    ("LB_PORT", "-1"),
    ("LB_THREADS", "0"),
    ("LB_BILLING_CYCLE_DAY", "31"),
    ("LB_DATA_DIR", None),  # under a regular file: cannot be created
])
def test_main_exits_2_with_one_line_naming_the_variable(monkeypatch, tmp_path, capsys, variable, value):
    monkeypatch.setenv("LB_DATA_DIR", str(tmp_path / "data"))
    if value is None:
        (tmp_path / "file").write_text("not a directory")
        value = str(tmp_path / "file" / "data")
    monkeypatch.setenv(variable, value)
    serve = FakeServe()
    assert entry.main(argv=[], serve=serve) == 2
    assert serve.calls == []
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and variable in lines[0]
    assert captured.out == ""


# -- secrets on disk and in the log ----------------------------------------------------------

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


def test_the_bootstrap_token_is_logged_only_while_no_password_is_set(make_app, caplog):
    caplog.set_level(logging.DEBUG)
    app = make_app()
    assert [r.levelno for r in caplog.records if BOOTSTRAP in r.getMessage()] == [logging.WARNING]
    setup_password(app.test_client())
    caplog.clear()
    again = make_app()
    assert again.test_client().get("/api/dashboard-auth/session").get_json()["isPasswordConfigured"] is True
    assert BOOTSTRAP not in caplog.text and "bootstrap token" not in caplog.text
    assert PASSWORD not in caplog.text


def test_the_password_never_reaches_a_log(authed, caplog):
    caplog.set_level(logging.DEBUG)
    new = "another long password"
    changed = post(authed, "/api/dashboard-auth/password/change", {"currentPassword": PASSWORD, "newPassword": new})
    assert changed.status_code == 200 and changed.get_json() == {"status": "ok"}
    wrong = post(authed, "/api/dashboard-auth/password/login", {"password": "a wrong password"})
    assert error(wrong) == (401, "invalid_credentials")
    for secret in (PASSWORD, new, "a wrong password"):
        assert secret not in caplog.text


# -- command line and the stored catalog ---------------------------------------------------------

def catalog_ids(app):
    with app.app_context(), store.db.connection_context():
        return [m.id for m in store.CatalogModel.select().order_by(store.CatalogModel.position)]


def test_init_db_is_idempotent_and_keeps_data(app, authed):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "schema ready" in result.output
    assert catalog_ids(app) == [m[0] for m in store.SEED_CATALOG]
    session = authed.get("/api/dashboard-auth/session")
    assert session.status_code == 200
    assert session.get_json()["isPasswordConfigured"] is True and session.get_json()["authenticated"] is True


def test_the_catalog_survives_a_restart_and_is_seeded_once(make_app):
    first = make_app()
    with first.app_context(), store.db.connection_context():
        store.CatalogModel.update(name="Renamed", enabled=False).where(store.CatalogModel.id == "o3-pro").execute()
        store.CatalogModel.update(name="GPT-4o Mini (custom)").where(store.CatalogModel.id == "gpt-4o-mini").execute()
    second = make_app()
    assert catalog_ids(second) == [m[0] for m in store.SEED_CATALOG]  # no second copy
    response = second.test_client().get("/api/models")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert {"id": "gpt-4o-mini", "name": "GPT-4o Mini (custom)"} in models
    assert "o3-pro" not in [m["id"] for m in models]
    assert len(models) == len(store.SEED_CATALOG) - 1
