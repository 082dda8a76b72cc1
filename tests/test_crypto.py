"""lb.crypto: secrets at rest, sealed with one Fernet key.

seal and unseal round-trip, and a token another key sealed is Unreadable. The
TOTP secret is stored sealed, never in clear; one stored in clear by an older
version is sealed at the next start. The key comes from LB_ENCRYPTION_KEY or is
generated once into the data dir (encryption_key, 0600) and reused; a malformed
key, or a key that does not open the stored secret, stops start-up with a
ConfigError naming LB_ENCRYPTION_KEY.
"""
import os
import stat

import pyotp
import pytest
from cryptography.fernet import Fernet

from helpers.data import PASSWORD
from helpers.http import AUTH, enable_totp, login, ok, post, setup_password
from lb import crypto, tables
from lb.config import ConfigError
from lb.totp import STEP


def stored_secret(app):
    """The dashboard_settings.totp_secret column as stored."""
    with app.app_context(), tables.db.connection_context():
        return tables.DashboardSettings.get_by_id(1).totp_secret


def store_secret(app, value):
    """Write the totp_secret column directly, as an older version would have."""
    with app.app_context(), tables.db.connection_context():
        tables.DashboardSettings.update(totp_secret=value).where(tables.DashboardSettings.id == 1).execute()


def with_totp(app, clock):
    """Set a password and TOTP up on ``app``; return the TOTP secret."""
    client = app.test_client()
    setup_password(client)
    return enable_totp(client, clock)


def verifies(app, clock, secret):
    """Whether a fresh sign-in on ``app`` passes TOTP with a code for ``secret`` (at the next step)."""
    clock.advance(STEP)  # the step of the last code used is spent
    client = app.test_client()
    assert login(client, PASSWORD).status_code == 200
    response = post(client, AUTH + "/totp/verify", {"code": pyotp.TOTP(secret).at(clock())})
    return ok(response)["isTotpVerified"]


# -- seal and unseal ----------------------------------------------------------------------

@pytest.mark.parametrize("text", ["JBSWY3DPEHPK3PXP", "", "ünïcödé 用户"])
def test_seal_and_unseal_round_trip(text):
    fernet = Fernet(Fernet.generate_key())
    token = crypto.seal(text, fernet)
    assert token.isascii() and token.startswith(crypto.FERNET_PREFIX) and crypto.is_sealed(token)
    assert crypto.unseal(token, fernet) == text


@pytest.mark.parametrize("token", [
    crypto.seal("JBSWY3DPEHPK3PXP", Fernet(Fernet.generate_key())),  # another key sealed it
    "gAAAAABnot-a-fernet-token",
    "JBSWY3DPEHPK3PXP",  # a secret in clear
    "ünïcödé",
])
def test_unseal_refuses_what_this_key_did_not_seal(token):
    with pytest.raises(crypto.Unreadable):
        crypto.unseal(token, Fernet(Fernet.generate_key()))


@pytest.mark.parametrize("value, sealed", [
    (crypto.seal("x", Fernet(Fernet.generate_key())), True),
    ("JBSWY3DPEHPK3PXP", False),
    ("", False),
    (None, False),
])
def test_is_sealed_tells_a_fernet_token(value, sealed):
    assert crypto.is_sealed(value) is sealed


# -- the TOTP secret at rest ---------------------------------------------------------------

def test_the_totp_secret_is_stored_sealed(app, clock):
    secret = with_totp(app, clock)
    stored = stored_secret(app)
    assert secret not in stored
    assert stored.startswith("gAAAAA")
    assert crypto.unseal(stored, app.extensions["lb_fernet"]) == secret
    assert verifies(app, clock, secret) is True


def test_a_secret_stored_in_clear_is_sealed_at_the_next_start(make_app, clock):
    first = make_app()
    secret = with_totp(first, clock)
    store_secret(first, secret)  # as an older version kept it
    assert stored_secret(first) == secret
    second = make_app()
    stored = stored_secret(second)
    assert secret not in stored and stored.startswith("gAAAAA")
    assert crypto.unseal(stored, second.extensions["lb_fernet"]) == secret
    assert verifies(second, clock, secret) is True


# -- the key ---------------------------------------------------------------------------------

def test_without_a_key_one_is_generated_into_the_data_dir_and_reused(make_app, tmp_path, clock):
    first = make_app()
    path = tmp_path / "data" / "encryption_key"
    key = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    Fernet(key.strip())  # a valid Fernet key
    secret = with_totp(first, clock)
    second = make_app()
    assert path.read_text() == key
    assert verifies(second, clock, secret) is True


def test_a_key_from_the_environment_is_used_and_no_key_file_is_made(monkeypatch, make_app, tmp_path, clock):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("LB_ENCRYPTION_KEY", key)
    app = make_app()
    secret = with_totp(app, clock)
    assert not (tmp_path / "data" / "encryption_key").exists()
    assert crypto.unseal(stored_secret(app), Fernet(key)) == secret


@pytest.mark.parametrize("first_key", [None, Fernet.generate_key().decode()], ids=["key file", "setting"])
def test_a_key_that_does_not_open_the_stored_secret_stops_start_up(make_app, clock, first_key):
    first = make_app(ENCRYPTION_KEY=first_key)
    secret = with_totp(first, clock)
    with pytest.raises(ConfigError) as raised:
        make_app(ENCRYPTION_KEY=Fernet.generate_key().decode())
    message = str(raised.value)
    assert "LB_ENCRYPTION_KEY" in message and "\n" not in message
    assert secret not in message
    again = make_app(ENCRYPTION_KEY=first_key)  # the right key still starts, and TOTP works
    assert verifies(again, clock, secret) is True


@pytest.mark.parametrize("key", [
    "not-a-key",
    "c2hvcnQ=",  # base64, but not 32 bytes
    Fernet.generate_key().decode()[:-2],
])
def test_a_malformed_key_stops_start_up(make_app, key):
    with pytest.raises(ConfigError) as raised:
        make_app(ENCRYPTION_KEY=key)
    message = str(raised.value)
    assert message.startswith("LB_ENCRYPTION_KEY ") and "\n" not in message


def test_a_malformed_key_file_stops_start_up_naming_the_file(make_app, tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "encryption_key").write_text("not-a-key\n")
    with pytest.raises(ConfigError) as raised:
        make_app()
    assert str(raised.value).startswith(str(data / "encryption_key") + " ")
