"""lb.settings: GET and PATCH /api/settings.

The settings (apiKeyRequired, stickySessions) are booleans kept in the
database: PATCH changes only the fields it names, and a value that is not a
boolean is a 422 that changes nothing.
"""
import pytest

from helpers.http import AUTH_REQUIRED, REMOTE, error, names_field, token, with_cookie
from lb import alerts, tables

SETTINGS = "/api/settings"
SWITCHES = {"apiKeyRequired": False, "stickySessions": True}
# The settings of section 16 (alerts and retention), and what the last prune did.
OPERATIONS = {"webhookUrl": None, "webhookEvents": list(alerts.EVENTS), "requestLogRetentionDays": None,
              "lastPrune": None}
DEFAULTS = SWITCHES


def settings(client):
    """The body of a 200 GET /api/settings, checking both values are JSON booleans (0 == False in Python)."""
    response = client.get(SETTINGS)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == set(SWITCHES) | set(OPERATIONS), body
    switches = {name: body[name] for name in SWITCHES}
    assert all(isinstance(value, bool) for value in switches.values()), body
    return switches


def stored_settings(app):
    with app.app_context(), tables.db.connection_context():
        row = tables.DashboardSettings.get_by_id(1)
        return {"apiKeyRequired": bool(row.api_key_required), "stickySessions": bool(row.sticky_sessions)}


def test_settings_start_with_their_defaults(authed):
    response = authed.get(SETTINGS)
    assert response.status_code == 200
    assert response.get_json() == {**SWITCHES, **OPERATIONS}
    assert response.get_data(as_text=True).strip().startswith('{"apiKeyRequired":false,')


def test_patch_changes_the_named_fields_and_answers_the_settings(app, authed):
    steps = [
        ({"apiKeyRequired": True}, {"apiKeyRequired": True, "stickySessions": True}),
        ({"stickySessions": False}, {"apiKeyRequired": True, "stickySessions": False}),
        ({}, {"apiKeyRequired": True, "stickySessions": False}),
        ({"apiKeyRequired": False, "stickySessions": True}, DEFAULTS),
        ({"apiKeyRequired": True, "stickySessions": False}, {"apiKeyRequired": True, "stickySessions": False}),
        ({"apiKeyRequired": True}, {"apiKeyRequired": True, "stickySessions": False}),  # the same value again
        ({"theme": "dark", "stickySessions": True}, {"apiKeyRequired": True, "stickySessions": True}),
        ({"theme": 5, "api_key_required": False, "ApiKeyRequired": False}, {"apiKeyRequired": True,
                                                                            "stickySessions": True}),
    ]
    for payload, expected in steps:
        response = authed.patch(SETTINGS, json=payload)
        assert response.status_code == 200, payload
        assert response.get_json() == {**expected, **OPERATIONS}, payload
        assert settings(authed) == expected
        assert stored_settings(app) == expected


@pytest.mark.parametrize("field", ["apiKeyRequired", "stickySessions"])
@pytest.mark.parametrize("value", [1, 0, "true", "false", "", None, [], {}, [True], 1.0])
def test_a_value_that_is_not_a_boolean_is_422_and_changes_nothing(app, authed, field, value):
    authed.patch(SETTINGS, json={"apiKeyRequired": True, "stickySessions": False})
    before = settings(authed)
    response = authed.patch(SETTINGS, json={field: value})
    assert names_field(response, field)
    assert settings(authed) == before == stored_settings(app)


@pytest.mark.parametrize("payload, field", [
    ({"apiKeyRequired": True, "stickySessions": "no"}, "stickySessions"),
    ({"stickySessions": False, "apiKeyRequired": 1}, "apiKeyRequired"),
])
def test_one_bad_value_spoils_the_whole_patch(app, authed, payload, field):
    response = authed.patch(SETTINGS, json=payload)
    assert names_field(response, field)
    assert settings(authed) == DEFAULTS == stored_settings(app)


def test_settings_are_kept_in_the_database(make_app, authed):
    response = authed.patch(SETTINGS, json={"apiKeyRequired": True, "stickySessions": False})
    assert response.status_code == 200
    second = with_cookie(make_app(), token(authed))  # another app on the same database
    assert settings(second) == {"apiKeyRequired": True, "stickySessions": False}


def test_bad_bodies_are_refused_and_change_nothing(authed):
    attempts = [
        authed.patch(SETTINGS, data="apiKeyRequired=true", content_type="application/x-www-form-urlencoded"),
        authed.patch(SETTINGS, data="{", content_type="application/json"),
        authed.patch(SETTINGS, data="[true]", content_type="application/json"),
        authed.patch(SETTINGS),
    ]
    assert [error(r) for r in attempts] == [(415, "unsupported_media_type"), (400, "invalid_json"),
                                            (400, "invalid_json"), (415, "unsupported_media_type")]
    assert settings(authed) == DEFAULTS


@pytest.mark.parametrize("method, payload", [("get", None), ("patch", {"apiKeyRequired": True}), ("patch", {})])
def test_settings_need_a_session_once_a_password_is_set(app, authed, method, payload):
    response = getattr(app.test_client(), method)(SETTINGS, json=payload)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert settings(authed) == DEFAULTS


@pytest.mark.parametrize("method, payload", [("get", None), ("patch", {"apiKeyRequired": True})])
def test_remote_clients_cannot_reach_settings_before_a_password_is_set(app, client, method, payload):
    response = getattr(client, method)(SETTINGS, json=payload, environ_base=REMOTE)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert settings(client) == DEFAULTS == stored_settings(app)
