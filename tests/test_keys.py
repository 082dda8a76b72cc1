"""lb.keys and its views (lb.views): the API keys of /api/api-keys, lb.keys.authenticate and `flask create-api-key`.

A key is "sk-clb-" and 43 URL-safe characters, shown once (in the create and
regenerate answers); the service keeps its SHA-256 and its first 15 characters.
Limits report what the key used in their calendar window (UTC day, week from
Monday, billing period), counted from the key's own request logs.
"""
import hashlib
import re
from datetime import datetime
from urllib.parse import quote

import pytest

from helpers.http import (
    AUTH_REQUIRED, LOGS, REMOTE, TOTP_REQUIRED, enable_totp, error, ingest, login, message, names_field, ok, post,
    send_logs
)
from lb import keys, tables

API_KEYS = "/api/api-keys"
FIELDS = {"id", "name", "keyPrefix", "allowedModels", "expiresAt", "enabled", "createdAt", "lastUsedAt", "limits",
          "caps", "capsInUse"}
NO_CAPS = {"requestsPerMinute": None, "tokensPerMinute": None, "concurrentRequests": None}
NOTHING_IN_USE = {"requestsPerMinute": 0, "tokensPerMinute": 0, "concurrentRequests": 0}
NOW = "2026-11-25T07:00:00Z"
KEY = re.compile(r"sk-clb-[A-Za-z0-9_-]{43}")
HOUR_S = 3600


def create_key(client, name="laptop", **fields):
    """POST a key, assert 201, return the answer (the key object and "key")."""
    response = post(client, API_KEYS, {"name": name, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def shown(created):
    """The key object as GET shows it: the create or regenerate answer without "key"."""
    return {name: value for name, value in created.items() if name != "key"}


def listed(client):
    return ok(client.get(API_KEYS))["apiKeys"]


def get_key(client, key_id):
    return ok(client.get(f"{API_KEYS}/{key_id}"))


def authenticated(app, clock, presented):
    """The id of the key lb.keys.authenticate finds for ``presented`` now, or None."""
    with app.app_context(), tables.db.connection_context():
        row = keys.authenticate(presented, int(clock() * 1000))
        return None if row is None else row.id


def stored_row(app, key_id):
    """The ApiKey row's columns, as stored."""
    with app.app_context(), tables.db.connection_context():
        return dict(tables.ApiKey.get_by_id(key_id).__data__)


# -- creating: the key is shown once -------------------------------------------------

def test_the_list_starts_empty(authed):
    assert ok(authed.get(API_KEYS)) == {"apiKeys": []}


def test_create_answers_the_key_object_with_its_defaults_and_the_key(authed):
    response = post(authed, API_KEYS, {"name": "laptop"})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == FIELDS | {"key"}
    key = body["key"]
    assert KEY.fullmatch(key) and len(key) == 50
    assert body["id"].startswith("key_") and len(body["id"]) <= 40
    assert body == {"id": body["id"], "name": "laptop", "keyPrefix": key[:15], "allowedModels": None,
                    "expiresAt": None, "enabled": True, "createdAt": NOW, "lastUsedAt": None, "limits": [],
                    "caps": NO_CAPS, "capsInUse": NOTHING_IN_USE, "key": key}


def test_create_takes_every_field(authed):
    limits = [{"metric": "costUsd", "window": "month", "max": 50},
              {"metric": "totalTokens", "window": "day", "max": 0.5},
              {"metric": "inputTokens", "window": "week", "max": 10**12}]
    body = create_key(authed, "ci bot", allowedModels=["o3-pro", "gpt-5.3-codex"],
                      expiresAt="2026-12-25T09:30:00+02:00", limits=limits,
                      caps={"requestsPerMinute": 60, "concurrentRequests": 4})
    assert shown(body) == {
        "id": body["id"], "name": "ci bot", "keyPrefix": body["key"][:15], "allowedModels": ["o3-pro", "gpt-5.3-codex"],
        "expiresAt": "2026-12-25T07:30:00Z", "enabled": True, "createdAt": NOW, "lastUsedAt": None,
        "limits": [
            {"metric": "costUsd", "window": "month", "max": 50, "used": 0, "resetsAt": "2026-12-01T00:00:00Z"},
            {"metric": "totalTokens", "window": "day", "max": 0.5, "used": 0, "resetsAt": "2026-11-26T00:00:00Z"},
            {"metric": "inputTokens", "window": "week", "max": 10**12, "used": 0,
             "resetsAt": "2026-11-30T00:00:00Z"},
        ],
        "caps": {"requestsPerMinute": 60, "tokensPerMinute": None, "concurrentRequests": 4},  # left out: null
        "capsInUse": NOTHING_IN_USE}


@pytest.mark.parametrize("name", ["x", "x" * 128, "é" * 128, "Ann's laptop (2)", "ключ 🔑"])
def test_names_up_to_128_characters_are_kept_verbatim(authed, name):
    body = create_key(authed, name)
    assert body["name"] == name
    assert get_key(authed, body["id"])["name"] == name


@pytest.mark.parametrize("sent, kept", [
    ("2026-11-25T07:00:00.001Z", "2026-11-25T07:00:00.001Z"),  # a millisecond ahead is the future
    ("2026-11-25T09:00:00.001+02:00", "2026-11-25T07:00:00.001Z"),
    ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
])
def test_any_future_expiry_is_taken_in_utc(authed, sent, kept):
    body = create_key(authed, expiresAt=sent)
    assert body["expiresAt"] == kept
    assert get_key(authed, body["id"])["expiresAt"] == kept


def test_a_repeated_model_is_kept_once(authed):
    body = create_key(authed, allowedModels=["o3-pro", "gpt-4o-mini", "o3-pro"])
    assert body["allowedModels"] == ["o3-pro", "gpt-4o-mini"]
    patched = ok(authed.patch(f"{API_KEYS}/{body['id']}", json={"allowedModels": ["gpt-5.2", "gpt-5.2"]}))
    assert patched["allowedModels"] == ["gpt-5.2"]


@pytest.mark.parametrize("maximum", [1, 0.001, 1e-9, 50, 12.5, 10**12, 10**15 - 1])
def test_any_positive_max_is_kept_as_sent(authed, maximum):
    body = create_key(authed, limits=[{"metric": "totalTokens", "window": "day", "max": maximum}])
    assert body["limits"][0]["max"] == maximum
    assert get_key(authed, body["id"])["limits"][0]["max"] == maximum


def test_eight_limits_are_allowed(authed):
    limits = [{"metric": m, "window": w, "max": 1} for m in keys.METRICS for w in ("day", "month")]
    assert len(limits) == 8
    body = create_key(authed, limits=limits)
    assert [(lim["metric"], lim["window"], lim["max"]) for lim in body["limits"]] == [
        (lim["metric"], lim["window"], 1) for lim in limits]


def test_the_key_is_shown_once_and_never_again(app, authed):
    created = create_key(authed, allowedModels=["o3-pro"], limits=[{"metric": "costUsd", "window": "day", "max": 5}])
    key = created["key"]
    answers = [authed.get(API_KEYS), authed.get(f"{API_KEYS}/{created['id']}"),
               authed.patch(f"{API_KEYS}/{created['id']}", json={"name": "renamed"})]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert set(answers[0].get_json()["apiKeys"][0]) == FIELDS
    assert set(answers[1].get_json()) == FIELDS
    assert set(answers[2].get_json()) == FIELDS
    for response in answers:
        assert key not in response.get_data(as_text=True)
        assert key[15:] not in response.get_data(as_text=True)


def test_only_the_hash_and_prefix_are_stored(app, authed):
    created = create_key(authed)
    key = created["key"]
    row = stored_row(app, created["id"])
    assert row["key_hash"] == hashlib.sha256(key.encode("ascii")).hexdigest()
    assert row["key_prefix"] == key[:15] == created["keyPrefix"]
    assert not any(isinstance(value, str) and key[15:] in value for value in row.values())
    assert not any(isinstance(value, str) and key in value for value in row.values())


def test_every_key_and_id_is_new(authed):
    made = [create_key(authed, f"k{i}") for i in range(5)]
    assert len({k["key"] for k in made}) == 5
    assert len({k["id"] for k in made}) == 5
    assert all(KEY.fullmatch(k["key"]) for k in made)


def test_the_list_is_oldest_first_and_matches_get(authed, clock):
    made = []
    for name in ("first", "second", "third"):
        made.append(shown(create_key(authed, name)))
        clock.advance(1)
    assert listed(authed) == made
    for key in made:
        assert get_key(authed, key["id"]) == key


def test_unknown_fields_are_ignored_and_the_key_cannot_be_chosen(app, authed, clock):
    chosen = "sk-clb-" + "A" * 43
    body = create_key(authed, key=chosen, id="key_mine", keyPrefix="sk-clb-AAAAAAAA", createdAt="2020-01-01T00:00:00Z",
                      enabled=False, lastUsedAt=NOW, color="blue")
    assert body["key"] != chosen and body["id"] != "key_mine" and body["keyPrefix"] == body["key"][:15]
    assert (body["createdAt"], body["enabled"], body["lastUsedAt"]) == (NOW, True, None)
    assert authenticated(app, clock, chosen) is None
    assert authenticated(app, clock, body["key"]) == body["id"]


# -- changing ------------------------------------------------------------------------

def test_patch_changes_each_field_and_keeps_the_others(authed, clock):
    created = shown(create_key(authed, limits=[{"metric": "costUsd", "window": "month", "max": 50}]))
    path = f"{API_KEYS}/{created['id']}"
    clock.advance(60)
    steps = [
        ({"name": "desktop"}, {"name": "desktop"}),
        ({"allowedModels": ["gpt-4o-mini"]}, {"allowedModels": ["gpt-4o-mini"]}),
        ({"expiresAt": "2027-01-01T00:00:00Z"}, {"expiresAt": "2027-01-01T00:00:00Z"}),
        ({"enabled": False}, {"enabled": False}),
        ({"limits": [{"metric": "outputTokens", "window": "week", "max": 7}]},
         {"limits": [{"metric": "outputTokens", "window": "week", "max": 7, "used": 0,
                      "resetsAt": "2026-11-30T00:00:00Z"}]}),
        ({"allowedModels": None, "expiresAt": None}, {"allowedModels": None, "expiresAt": None}),
        ({"enabled": True, "limits": []}, {"enabled": True, "limits": []}),
        ({}, {}),
        ({"shape": "round", "key": "sk-clb-x"}, {}),  # unknown fields are ignored
    ]
    expected = dict(created)
    for payload, changed in steps:
        expected.update(changed)
        response = authed.patch(path, json=payload)
        assert response.status_code == 200, payload
        assert response.get_json() == expected, payload
        assert get_key(authed, created["id"]) == expected
    assert expected["createdAt"] == NOW and expected["keyPrefix"] == created["keyPrefix"]


def test_patch_limits_replace_them_all(authed):
    created = create_key(authed, limits=[{"metric": "costUsd", "window": "month", "max": 50},
                                         {"metric": "totalTokens", "window": "day", "max": 1000}])
    response = authed.patch(f"{API_KEYS}/{created['id']}",
                            json={"limits": [{"metric": "inputTokens", "window": "day", "max": 3}]})
    assert response.status_code == 200
    assert response.get_json()["limits"] == [
        {"metric": "inputTokens", "window": "day", "max": 3, "used": 0, "resetsAt": "2026-11-26T00:00:00Z"}]
    assert get_key(authed, created["id"])["limits"] == response.get_json()["limits"]


# -- regenerating and deleting --------------------------------------------------------

def test_regenerate_kills_the_old_key_and_keeps_the_rest(app, authed, clock):
    created = create_key(authed, "ci", allowedModels=["o3-pro"], expiresAt="2027-01-01T00:00:00Z",
                         limits=[{"metric": "costUsd", "window": "month", "max": 50}])
    old = created["key"]
    assert authenticated(app, clock, old) == created["id"]
    clock.advance(60)
    response = post(authed, f"{API_KEYS}/{created['id']}/regenerate")
    assert response.status_code == 200
    body = response.get_json()
    new = body["key"]
    assert KEY.fullmatch(new) and new != old
    assert body == {**shown(created), "keyPrefix": new[:15], "key": new}
    assert authenticated(app, clock, old) is None
    assert authenticated(app, clock, new) == created["id"]
    assert stored_row(app, created["id"])["key_hash"] == hashlib.sha256(new.encode("ascii")).hexdigest()
    after = authed.get(f"{API_KEYS}/{created['id']}")
    assert after.get_json() == shown(body)
    assert new not in after.get_data(as_text=True) and new not in authed.get(API_KEYS).get_data(as_text=True)


def test_regenerate_twice_leaves_only_the_last_key(app, authed, clock):
    created = create_key(authed)
    first = ok(post(authed, f"{API_KEYS}/{created['id']}/regenerate"))["key"]
    second = ok(post(authed, f"{API_KEYS}/{created['id']}/regenerate"))["key"]
    assert [authenticated(app, clock, k) for k in (created["key"], first, second)] == [None, None, created["id"]]


def test_delete_answers_204_and_the_logs_keep_its_id(app, authed, clock):
    doomed, kept = create_key(authed, "doomed"), create_key(authed, "kept")
    ingest(authed, [{"model": "o3-pro", "requestId": "r1", "apiKeyId": doomed["id"], "inputTokens": 10}])
    response = authed.delete(f"{API_KEYS}/{doomed['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert error(authed.get(f"{API_KEYS}/{doomed['id']}")) == (404, "api_key_not_found")
    assert error(authed.delete(f"{API_KEYS}/{doomed['id']}")) == (404, "api_key_not_found")
    assert listed(authed) == [shown(kept)]
    assert authenticated(app, clock, doomed["key"]) is None
    assert authenticated(app, clock, kept["key"]) == kept["id"]
    logs = ok(authed.get(LOGS))["requests"]
    assert [(log["requestId"], log["apiKeyId"]) for log in logs] == [("r1", doomed["id"])]
    # A deleted key's id is no longer one a new log may name.
    response = send_logs(authed, [{"model": "o3-pro", "apiKeyId": doomed["id"]}])
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("requests[0].apiKeyId ")


# -- authenticate ---------------------------------------------------------------------

def test_a_disabled_key_does_not_authenticate_until_enabled(app, authed, clock):
    created = create_key(authed)
    path = f"{API_KEYS}/{created['id']}"
    assert ok(authed.patch(path, json={"enabled": False}))["enabled"] is False
    assert authenticated(app, clock, created["key"]) is None
    assert ok(authed.patch(path, json={"enabled": True}))["enabled"] is True
    assert authenticated(app, clock, created["key"]) == created["id"]


def test_an_expired_key_does_not_authenticate(app, authed, clock):
    created = create_key(authed, expiresAt="2026-11-25T08:00:00Z")
    clock.advance(HOUR_S - 0.001)  # 07:59:59.999
    assert authenticated(app, clock, created["key"]) == created["id"]
    clock.advance(0.001)  # 08:00:00, the moment it expires
    assert authenticated(app, clock, created["key"]) is None
    clock.advance(10 * HOUR_S)  # still inside the dashboard session's 12 hours
    assert authenticated(app, clock, created["key"]) is None
    assert get_key(authed, created["id"])["expiresAt"] == "2026-11-25T08:00:00Z"


def test_a_later_expiry_revives_an_expired_key(app, authed, clock):
    created = create_key(authed, expiresAt="2026-11-25T08:00:00Z")
    clock.advance(2 * HOUR_S)
    assert authenticated(app, clock, created["key"]) is None
    assert ok(authed.patch(f"{API_KEYS}/{created['id']}", json={"expiresAt": None}))["expiresAt"] is None
    assert authenticated(app, clock, created["key"]) == created["id"]


MALFORMED = {
    "empty": lambda k: "", "prefix-only": lambda k: "sk-clb-", "cut": lambda k: k[:-1], "longer": lambda k: k + "A",
    "upper": lambda k: k.upper(), "padded": lambda k: " " + k, "trailing-newline": lambda k: k + "\n",
    "no-prefix": lambda k: k[7:], "other-prefix": lambda k: "sk-xyz-" + k[7:], "prefix-alone": lambda k: k[:15],
    "hash": lambda k: hashlib.sha256(k.encode()).hexdigest(), "huge": lambda k: k + "A" * 10_000,
    "nul": lambda k: k + "\x00", "unknown": lambda k: "sk-clb-" + "A" * 43, "none": lambda k: None,
    "number": lambda k: 12345, "bytes": lambda k: k.encode(),
}


@pytest.mark.parametrize("variant", MALFORMED.values(), ids=MALFORMED.keys())
def test_unknown_and_malformed_keys_do_not_authenticate(app, authed, clock, variant):
    created = create_key(authed)
    assert authenticated(app, clock, variant(created["key"])) is None
    assert authenticated(app, clock, created["key"]) == created["id"]


# -- the command ------------------------------------------------------------------------

def test_the_command_prints_a_key_that_authenticates(app, authed, clock):
    result = app.test_cli_runner().invoke(args=["create-api-key", "ci bot", "--model", "o3-pro",
                                                "--model", "gpt-4o-mini"])
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"(key_\S+) ci bot: (sk-clb-\S+)\n", result.stdout)
    assert match, result.stdout
    key_id, key = match.groups()
    assert KEY.fullmatch(key)
    assert result.output.count(key) == 1  # printed once, and not in the note on stderr
    assert authenticated(app, clock, key) == key_id
    [listed_key] = listed(authed)
    assert listed_key == {"id": key_id, "name": "ci bot", "keyPrefix": key[:15],
                          "allowedModels": ["o3-pro", "gpt-4o-mini"], "expiresAt": None, "enabled": True,
                          "createdAt": NOW, "lastUsedAt": None, "limits": [], "caps": NO_CAPS,
                          "capsInUse": NOTHING_IN_USE}


def test_the_command_without_models_allows_every_model(app, authed):
    result = app.test_cli_runner().invoke(args=["create-api-key", "anything"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"key_\S+ anything: sk-clb-[A-Za-z0-9_-]{43}\n", result.stdout)
    assert [(k["name"], k["allowedModels"]) for k in listed(authed)] == [("anything", None)]


@pytest.mark.parametrize("args", [
    ["laptop", "--model", "no-such-model"],
    ["laptop", "--model", "o3-pro", "--model", "O3-PRO"],
    [""],
    ["x" * 129],
])
def test_the_command_refuses_bad_input_in_one_line_and_creates_nothing(app, authed, args):
    result = app.test_cli_runner().invoke(args=["create-api-key", *args])
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output and "sk-clb-" not in result.output
    assert listed(authed) == []


# -- validation ----------------------------------------------------------------------------

def limit(**fields):
    return {"metric": "costUsd", "window": "month", "max": 10, **fields}


def without(name):
    return {k: v for k, v in limit().items() if k != name}


BAD_FIELDS = [
    # name
    ({"name": None}, "name"), ({"name": ""}, "name"), ({"name": "x" * 129}, "name"), ({"name": 5}, "name"),
    ({"name": True}, "name"), ({"name": ["laptop"]}, "name"), ({"name": {"a": 1}}, "name"),
    ({"name": "a\x00b"}, "name"), ({"name": "\ud800"}, "name"),
    # allowedModels
    ({"allowedModels": "o3-pro"}, "allowedModels"), ({"allowedModels": {"o3-pro": True}}, "allowedModels"),
    ({"allowedModels": True}, "allowedModels"), ({"allowedModels": 5}, "allowedModels"),
    ({"allowedModels": []}, "allowedModels"),
    ({"allowedModels": ["no-such-model"]}, "allowedModels[0]"),
    ({"allowedModels": ["o3-pro", "gpt-4"]}, "allowedModels[1]"),
    ({"allowedModels": ["O3-PRO"]}, "allowedModels[0]"), ({"allowedModels": [""]}, "allowedModels[0]"),
    ({"allowedModels": [5]}, "allowedModels[0]"), ({"allowedModels": [None]}, "allowedModels[0]"),
    ({"allowedModels": ["o3-pro", ["o3-pro"]]}, "allowedModels[1]"),
    ({"allowedModels": [{"id": "o3-pro"}]}, "allowedModels[0]"),
    # expiresAt
    ({"expiresAt": "tomorrow"}, "expiresAt"), ({"expiresAt": "2026-12-01"}, "expiresAt"),
    ({"expiresAt": "2026-12-01T00:00:00"}, "expiresAt"), ({"expiresAt": "2026-02-30T00:00:00Z"}, "expiresAt"),
    ({"expiresAt": 1798761600000}, "expiresAt"), ({"expiresAt": True}, "expiresAt"), ({"expiresAt": []}, "expiresAt"),
    ({"expiresAt": "2026-11-25T06:59:59.999Z"}, "expiresAt"), ({"expiresAt": NOW}, "expiresAt"),
    ({"expiresAt": "2026-11-25T08:00:00+02:00"}, "expiresAt"),  # 06:00Z: the past
    ({"expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"), ({"expiresAt": "1" * 100}, "expiresAt"),
    # limits
    ({"limits": "none"}, "limits"), ({"limits": {}}, "limits"), ({"limits": 5}, "limits"),
    ({"limits": True}, "limits"), ({"limits": limit()}, "limits"), ({"limits": [limit()] * 9}, "limits"),
    ({"limits": ["costUsd"]}, "limits[0]"), ({"limits": [limit(), None]}, "limits[1]"),
    ({"limits": [limit(metric="tokens")]}, "limits[0].metric"),
    ({"limits": [limit(metric="TotalTokens")]}, "limits[0].metric"),
    ({"limits": [limit(metric="cost")]}, "limits[0].metric"), ({"limits": [limit(metric="")]}, "limits[0].metric"),
    ({"limits": [limit(metric=None)]}, "limits[0].metric"), ({"limits": [limit(metric=1)]}, "limits[0].metric"),
    ({"limits": [limit(metric=["costUsd"])]}, "limits[0].metric"),
    ({"limits": [without("metric")]}, "limits[0].metric"),
    ({"limits": [limit(window="year")]}, "limits[0].window"), ({"limits": [limit(window="hour")]}, "limits[0].window"),
    ({"limits": [limit(window="Day")]}, "limits[0].window"), ({"limits": [limit(window=7)]}, "limits[0].window"),
    ({"limits": [limit(window=None)]}, "limits[0].window"), ({"limits": [without("window")]}, "limits[0].window"),
    ({"limits": [limit(window=["day"])]}, "limits[0].window"),
    ({"limits": [limit(max=0)]}, "limits[0].max"), ({"limits": [limit(max=-1)]}, "limits[0].max"),
    ({"limits": [limit(max=-0.5)]}, "limits[0].max"), ({"limits": [limit(max=0.0)]}, "limits[0].max"),
    ({"limits": [limit(max="5")]}, "limits[0].max"), ({"limits": [limit(max=True)]}, "limits[0].max"),
    ({"limits": [limit(max=False)]}, "limits[0].max"), ({"limits": [limit(max=None)]}, "limits[0].max"),
    ({"limits": [limit(max=[5])]}, "limits[0].max"), ({"limits": [without("max")]}, "limits[0].max"),
    ({"limits": [limit(), limit(window="day", max=0)]}, "limits[1].max"),
    ({"limits": [limit(), limit(), limit(metric="requests")]}, "limits[2].metric"),
]


@pytest.mark.parametrize("fields, field", BAD_FIELDS)
def test_bad_create_bodies_are_422_naming_the_field_and_create_nothing(authed, fields, field):
    response = post(authed, API_KEYS, {"name": "laptop", **fields})
    assert names_field(response, field), message(response)
    assert listed(authed) == []


def test_a_missing_name_is_422(authed):
    response = post(authed, API_KEYS, {"allowedModels": ["o3-pro"]})
    assert error(response) == (422, "validation_error")
    assert message(response).startswith("name ")
    assert listed(authed) == []


BAD_PATCHES = BAD_FIELDS + [
    ({"enabled": "false"}, "enabled"), ({"enabled": 0}, "enabled"), ({"enabled": 1}, "enabled"),
    ({"enabled": None}, "enabled"), ({"enabled": []}, "enabled"), ({"limits": None}, "limits"),
    ({"name": "fine", "enabled": "no"}, "enabled"),  # one bad field spoils the whole patch
    ({"limits": [], "allowedModels": []}, "allowedModels"),
]


@pytest.mark.parametrize("fields, field", BAD_PATCHES)
def test_bad_patch_bodies_are_422_naming_the_field_and_change_nothing(authed, clock, fields, field):
    created = shown(create_key(authed, allowedModels=["o3-pro"], expiresAt="2027-01-01T00:00:00Z",
                               limits=[limit()]))
    clock.advance(60)
    response = authed.patch(f"{API_KEYS}/{created['id']}", json=fields)
    assert names_field(response, field), message(response)
    assert listed(authed) == [created]


WEIRD_IDS = ["nope", "key_", "0", "-1", "key_' OR '1'='1", "%", "\x00", "é", "a.b;c", "x" * 5000]


@pytest.mark.parametrize("method", ["get", "patch", "regenerate", "delete"])
@pytest.mark.parametrize("key_id", WEIRD_IDS)
def test_unknown_ids_are_404(app, authed, clock, method, key_id):
    created = create_key(authed)
    path = f"{API_KEYS}/{quote(key_id, safe='')}"
    if method == "patch":
        response = authed.patch(path, json={"enabled": False})
    elif method == "regenerate":
        response = post(authed, path + "/regenerate")
    else:
        response = getattr(authed, method)(path)
    assert error(response) == (404, "api_key_not_found")
    assert message(response) == "API key not found"
    assert listed(authed) == [shown(created)]
    assert authenticated(app, clock, created["key"]) == created["id"]


def test_failed_writes_change_nothing(app, authed, clock):
    created = create_key(authed, limits=[limit()])
    before = listed(authed)
    clock.advance(60)
    attempts = [
        post(authed, API_KEYS, {"name": "second", "allowedModels": ["o3-pro", "nope"]}),
        post(authed, API_KEYS, {"name": "third", "limits": [limit(), limit(max=0)]}),
        authed.patch(f"{API_KEYS}/{created['id']}", json={"name": "renamed", "limits": [limit(window="year")]}),
        authed.patch(f"{API_KEYS}/{created['id']}", json={"enabled": False, "expiresAt": NOW}),
        authed.patch(f"{API_KEYS}/key_nope", json={"enabled": False}),
        post(authed, f"{API_KEYS}/key_nope/regenerate"),
        authed.delete(f"{API_KEYS}/key_nope"),
        post(authed, API_KEYS, data="name=x", content_type="application/x-www-form-urlencoded"),
        authed.patch(f"{API_KEYS}/{created['id']}", data="{", content_type="application/json"),
    ]
    assert [error(r) for r in attempts] == [
        (422, "validation_error"), (422, "validation_error"), (422, "validation_error"), (422, "validation_error"),
        (404, "api_key_not_found"), (404, "api_key_not_found"), (404, "api_key_not_found"),
        (415, "unsupported_media_type"), (400, "invalid_json"),
    ]
    assert listed(authed) == before
    assert authenticated(app, clock, created["key"]) == created["id"]


# -- the guard --------------------------------------------------------------------------

def requests_for(key_id):
    return [
        ("get", API_KEYS, None),
        ("post", API_KEYS, {"name": "eve"}),
        ("get", f"{API_KEYS}/{key_id}", None),
        ("patch", f"{API_KEYS}/{key_id}", {"enabled": False}),
        ("post", f"{API_KEYS}/{key_id}/regenerate", None),
        ("delete", f"{API_KEYS}/{key_id}", None),
    ]


@pytest.mark.parametrize("index", range(6))
def test_every_endpoint_needs_a_session_once_a_password_is_set(app, authed, clock, index):
    created = create_key(authed)
    method, path, payload = requests_for(created["id"])[index]
    response = getattr(app.test_client(), method)(path, json=payload)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert "sk-clb-" not in response.get_data(as_text=True)
    assert listed(authed) == [shown(created)]
    assert authenticated(app, clock, created["key"]) == created["id"]


@pytest.mark.parametrize("index", range(6))
def test_remote_clients_are_refused_before_a_password_is_set(app, client, clock, index):
    created = create_key(client)
    method, path, payload = requests_for(created["id"])[index]
    response = getattr(client, method)(path, json=payload, environ_base=REMOTE)
    assert response.status_code == 401
    assert response.get_json() == AUTH_REQUIRED
    assert listed(client) == [shown(created)]
    assert authenticated(app, clock, created["key"]) == created["id"]


def test_a_session_owing_totp_is_refused(app, authed, clock):
    enable_totp(authed, clock)
    other = app.test_client()
    assert login(other).status_code == 200
    for response in (other.get(API_KEYS), post(other, API_KEYS, {"name": "eve"})):
        assert response.status_code == 401
        assert response.get_json() == TOTP_REQUIRED
    assert listed(authed) == []


# -- limits: used in this window ---------------------------------------------------------

def spend(key_id, at, model="o3-pro", **tokens):
    return {"model": model, "apiKeyId": key_id, "requestedAt": at, **tokens}


def all_metrics(window, maximum=100):
    return [{"metric": m, "window": window, "max": maximum} for m in keys.METRICS]


def used(key):
    """{metric: used} of a key object whose limits share one window."""
    return {lim["metric"]: lim["used"] for lim in key["limits"]}


WINDOWS = [
    # window, billing cycle day, the window's first instant, its end (resetsAt)
    ("day", 1, "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z"),
    ("week", 1, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"),  # Monday, UTC
    ("month", 1, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
    ("month", 15, "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z"),
    ("month", 28, "2026-10-28T00:00:00Z", "2026-11-28T00:00:00Z"),  # still last month's period
]
BEFORE = {"2026-11-25T00:00:00Z": "2026-11-24T23:59:59.999Z", "2026-11-23T00:00:00Z": "2026-11-22T23:59:59.999Z",
          "2026-11-01T00:00:00Z": "2026-10-31T23:59:59.999Z", "2026-11-15T00:00:00Z": "2026-11-14T23:59:59.999Z",
          "2026-10-28T00:00:00Z": "2026-10-27T23:59:59.999Z"}


@pytest.mark.parametrize("window, cycle_day, start, end", WINDOWS)
def test_used_counts_this_keys_logs_from_the_windows_start(make_app, window, cycle_day, start, end):
    client = make_app(BILLING_CYCLE_DAY=cycle_day).test_client()
    mine = create_key(client, "mine", limits=all_metrics(window))["id"]
    other = create_key(client, "other", limits=all_metrics(window))["id"]
    ingest(client, [
        spend(mine, BEFORE[start], inputTokens=900_000, outputTokens=900_000),  # 1 ms before: not counted
        spend(mine, start, inputTokens=1000, outputTokens=100),  # 0.02 + 0.008
        spend(mine, "2026-11-25T06:59:59.999Z", inputTokens=2000, cachedInputTokens=500, outputTokens=10),
        spend(mine, "2026-11-25T07:00:00Z", model="gpt-5.1-codex-mini", inputTokens=4000, cachedInputTokens=2000,
              outputTokens=500),  # 2000 * 0.25 + 2000 * 0.025 + 500 * 2 micro-USD
        spend(mine, "2026-11-25T07:04:00Z", model="not-in-the-catalog", inputTokens=3, outputTokens=4),  # no price
        spend(other, start, inputTokens=50_000, outputTokens=5_000),
        spend(None, start, inputTokens=70_000, outputTokens=7_000),
        {"model": "o3-pro", "requestedAt": "2026-11-25T06:00:00Z", "inputTokens": 80_000},  # no apiKeyId at all
    ])
    expected = {"inputTokens": 7003, "outputTokens": 614, "totalTokens": 7617,
                "costUsd": 0.02 + 0.008 + 0.04 + 0.0008 + 0.00155}
    key = get_key(client, mine)
    assert used(key)["costUsd"] == pytest.approx(expected["costUsd"], abs=1e-9)
    assert round(used(key)["costUsd"], 6) == used(key)["costUsd"]
    assert {m: u for m, u in used(key).items() if m != "costUsd"} == {
        m: u for m, u in expected.items() if m != "costUsd"}
    assert {lim["resetsAt"] for lim in key["limits"]} == {end}
    assert [lim["max"] for lim in key["limits"]] == [100] * 4
    assert used(get_key(client, other)) == {"inputTokens": 50_000, "outputTokens": 5_000, "totalTokens": 55_000,
                                            "costUsd": pytest.approx(1.4, abs=1e-9)}
    assert {k["id"]: used(k) for k in listed(client)} == {mine: used(key), other: used(get_key(client, other))}


def test_a_key_without_logs_uses_nothing_while_others_spend(authed):
    idle = create_key(authed, "idle", limits=all_metrics("day") + all_metrics("month"))
    ingest(authed, [{"model": "o3-pro", "inputTokens": 1000}])
    key = get_key(authed, idle["id"])
    assert [lim["used"] for lim in key["limits"]] == [0] * 8
    assert [lim["resetsAt"] for lim in key["limits"]] == ["2026-11-26T00:00:00Z"] * 4 + ["2026-12-01T00:00:00Z"] * 4


def test_each_limit_counts_its_own_window(authed):
    windows = [{"metric": "totalTokens", "window": w, "max": 10**9} for w in ("day", "week", "month")]
    mine = create_key(authed, limits=windows)["id"]
    ingest(authed, [
        spend(mine, "2026-11-01T00:00:00Z", inputTokens=1),  # this month
        spend(mine, "2026-11-23T00:00:00Z", inputTokens=10),  # this week
        spend(mine, "2026-11-24T12:00:00Z", outputTokens=100),  # this week
        spend(mine, "2026-11-25T00:00:00Z", inputTokens=1000),  # today
        spend(mine, "2026-11-25T06:30:00Z", outputTokens=10000),  # today, a partial hour
    ])
    key = get_key(authed, mine)
    assert [(lim["window"], lim["used"], lim["resetsAt"]) for lim in key["limits"]] == [
        ("day", 11000, "2026-11-26T00:00:00Z"),
        ("week", 11110, "2026-11-30T00:00:00Z"),
        ("month", 11111, "2026-12-01T00:00:00Z"),
    ]


@pytest.mark.parametrize("window, advance_to, resets_at", [
    ("day", "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"),
    ("week", "2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"),
    ("month", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
])
def test_a_new_window_starts_from_zero_at_its_first_instant(client, clock, window, advance_to, resets_at):
    mine = create_key(client, limits=[{"metric": "inputTokens", "window": window, "max": 10}])["id"]
    ingest(client, [spend(mine, NOW, inputTokens=5)])
    assert get_key(client, mine)["limits"][0]["used"] == 5
    clock.now = datetime.fromisoformat(advance_to).timestamp() - 0.001
    ingest(client, [spend(mine, "2026-11-25T08:00:00Z", inputTokens=1)])
    assert get_key(client, mine)["limits"][0]["used"] == 6  # the last millisecond of the old window
    clock.now = datetime.fromisoformat(advance_to).timestamp()
    [limit_now] = get_key(client, mine)["limits"]
    assert (limit_now["used"], limit_now["resetsAt"]) == (0, resets_at)
    ingest(client, [spend(mine, advance_to, inputTokens=2)])
    assert get_key(client, mine)["limits"][0]["used"] == 2


def test_used_follows_the_key_through_regenerate_and_patch(authed):
    mine = create_key(authed, limits=[{"metric": "outputTokens", "window": "day", "max": 10}])["id"]
    ingest(authed, [spend(mine, NOW, outputTokens=4)])
    assert ok(post(authed, f"{API_KEYS}/{mine}/regenerate"))["limits"][0]["used"] == 4
    patched = ok(authed.patch(f"{API_KEYS}/{mine}", json={"limits": [
        {"metric": "outputTokens", "window": "week", "max": 3}, {"metric": "costUsd", "window": "day", "max": 1}]}))
    assert [(lim["metric"], lim["window"], lim["used"]) for lim in patched["limits"]] == [
        ("outputTokens", "week", 4), ("costUsd", "day", pytest.approx(0.00032, abs=1e-9))]
