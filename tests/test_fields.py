"""lb.fields: JSON values to Python values, and a 422 naming the field for anything else.

First through the API (every endpoint's message names the field it refuses), then the
checks themselves: get_str, get_int and get_choice raise lb.errors.ApiError; and parse_time, which takes Z or
an offset, normalises to UTC, refuses a naive timestamp and anything outside 1970..9999 (UTC), each value
worked out by hand (10000-01-01T00:00:00Z is 253_402_300_800 s after the epoch).
"""
import pytest

from helpers.data import PASSWORD
from helpers.http import AUTH, error, message, post, setup_password
from lb.errors import ApiError
from lb.fields import get_choice, get_int, get_str, parse_time

SETUP = AUTH + "/password/setup"
LOGIN = AUTH + "/password/login"
CHANGE = AUTH + "/password/change"


# -- through the API ------------------------------------------------------------------------

@pytest.mark.parametrize("needs_password, path, payload, field", [
    (False, SETUP, {}, "password"),
    (False, SETUP, {"password": "short"}, "password"),
    (False, SETUP, {"password": 12345678}, "password"),
    (False, SETUP, {"password": "x" * 257}, "password"),
    (True, LOGIN, {"password": 5}, "password"),
    (True, CHANGE, {"newPassword": "long enough"}, "currentPassword"),
    (True, CHANGE, {"currentPassword": PASSWORD}, "newPassword"),
    (True, CHANGE, {"currentPassword": PASSWORD, "newPassword": "short"}, "newPassword"),
    (True, "/api/accounts", {}, "email"),
    (True, "/api/accounts", {"email": "not-an-email"}, "email"),
    (True, "/api/accounts", {"email": "a@example.com", "status": "sleeping"}, "status"),
    (True, "/api/request-logs", {"requests": {}}, "requests"),
    (True, "/api/request-logs", {"requests": [{"model": "o3-pro"}, {"inputTokens": 1}]}, "requests[1].model"),
    (True, "/api/request-logs", {"requests": [{"model": "o3-pro", "inputTokens": -1}]},
     "requests[0].inputTokens"),
])
def test_validation_errors_name_the_field(client, needs_password, path, payload, field):
    if needs_password:
        setup_password(client)
    response = post(client, path, payload)
    assert error(response) == (422, "validation_error")
    assert field in message(response)


# -- the checks themselves ----------------------------------------------------------------------

def refusal(check, *args, **kwargs):
    """The ApiError ``check(*args, **kwargs)`` raises: (status, code, message)."""
    with pytest.raises(ApiError) as raised:
        check(*args, **kwargs)
    return raised.value.status, raised.value.code, raised.value.message


@pytest.mark.parametrize("value, options, problem", [
    (None, {}, "is required"),
    (5, {}, "must be a string"),
    (True, {}, "must be a string"),
    (["text"], {}, "must be a string"),
    ("a\x00b", {}, "must not contain NUL characters"),
    ("\x00", {}, "must not contain NUL characters"),
    ("\ud800", {}, "must be valid Unicode text"),  # a lone surrogate: valid JSON, no character
    ("ab\udfffcd", {}, "must be valid Unicode text"),
    ("seven!!", {"min_len": 8}, "must be at least 8 characters"),
    ("x" * 257, {"max_len": 256}, "must be at most 256 characters"),
])
def test_get_str_refuses_with_a_422_naming_the_field(value, options, problem):
    assert refusal(get_str, {"password": value}, "password", **options) == (
        422, "validation_error", f"password {problem}")


def test_get_str_names_the_label_when_one_is_given():
    assert refusal(get_str, {"model": "\ud800"}, "model", "requests[3].model") == (
        422, "validation_error", "requests[3].model must be valid Unicode text")


@pytest.mark.parametrize("obj, options, expected", [
    ({"name": "eight ch"}, {"min_len": 8}, "eight ch"),
    ({"name": "x" * 256}, {"max_len": 256}, "x" * 256),
    ({"name": ""}, {}, ""),
    ({"name": "用户 ünïcödé"}, {"max_len": 10}, "用户 ünïcödé"),  # characters, not bytes, are counted
    ({}, {"required": False, "default": "fallback"}, "fallback"),
    ({"name": None}, {"required": False}, None),
])
def test_get_str_returns_the_value_within_its_bounds(obj, options, expected):
    assert get_str(obj, "name", **options) == expected


@pytest.mark.parametrize("value, options, problem", [
    (True, {}, "must be an integer"),  # bool is an int in Python, not a JSON number
    (False, {}, "must be an integer"),
    (1.5, {}, "must be an integer"),
    (10.0, {}, "must be an integer"),
    ("5", {}, "must be an integer"),
    ([5], {}, "must be an integer"),
    (-1, {}, "must be >= 0"),
    (4, {"low": 5}, "must be >= 5"),
    (-1, {"high": 10}, "must be between 0 and 10"),
    (11, {"high": 10}, "must be between 0 and 10"),
])
def test_get_int_refuses_with_a_422_naming_the_field(value, options, problem):
    assert refusal(get_int, {"inputTokens": value}, "inputTokens", **options) == (
        422, "validation_error", f"inputTokens {problem}")


@pytest.mark.parametrize("obj, options, expected", [
    ({"n": 0}, {}, 0),
    ({"n": 0}, {"high": 10}, 0),
    ({"n": 10}, {"high": 10}, 10),
    ({"n": 10**12}, {"high": 10**12}, 10**12),
    ({}, {"default": 7}, 7),
    ({"n": None}, {}, None),
])
def test_get_int_returns_the_value_within_its_bounds(obj, options, expected):
    assert get_int(obj, "n", **options) == expected


STATUSES = ("active", "paused")


@pytest.mark.parametrize("value", ["ACTIVE", "Active", "", "deleted", 1, True, ["active"]])
def test_get_choice_refuses_anything_but_a_listed_string(value):
    assert refusal(get_choice, {"status": value}, "status", STATUSES) == (
        422, "validation_error", "status must be one of active, paused")


@pytest.mark.parametrize("obj, expected", [
    ({"status": "active"}, "active"),
    ({"status": "paused"}, "paused"),
    ({}, "active"),
    ({"status": None}, "active"),
])
def test_get_choice_returns_the_choice_or_the_default(obj, expected):
    assert get_choice(obj, "status", STATUSES, default="active") == expected


# -- parse_time ----------------------------------------------------------------------------

LAST_MS = 253_402_300_800_000 - 1  # 9999-12-31T23:59:59.999Z


@pytest.mark.parametrize("text, ms", [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:00+00:00", 0),
    ("1970-01-01T01:00:00+01:00", 0),  # offsets are normalised to UTC
    ("1970-01-01T00:00:00.001Z", 1),
    ("1970-01-01T00:00:00.5Z", 500),
    ("1970-01-01T00:00:00-00:30", 1_800_000),
    ("1970-01-02T05:30:00+05:30", 86_400_000),
    ("2026-11-25T07:00:00Z", 1_795_590_000_000),
    ("2026-11-25T08:00:00.250+01:00", 1_795_590_000_250),
    ("2026-11-24T23:00:00-08:00", 1_795_590_000_000),  # the day before, in another zone
    ("9999-12-31T23:59:59.999Z", LAST_MS),
    ("9999-12-31T23:59:59.999+00:00", LAST_MS),
])
def test_parse_time_answers_utc_epoch_milliseconds(text, ms):
    assert parse_time(text, "since") == ms


def time_refusal(value):
    with pytest.raises(ApiError) as raised:
        parse_time(value, "requestedAt")
    return raised.value.status, raised.value.code, raised.value.message


@pytest.mark.parametrize("value", ["2026-11-25T07:00:00", "2026-11-25T07:00:00.123", "2026-11-25"])
def test_a_naive_timestamp_is_refused(value):
    assert time_refusal(value) == (422, "validation_error", "requestedAt must carry Z or a UTC offset")


@pytest.mark.parametrize("value", [
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:59:59.999+01:00",  # 1969 in UTC
    "1970-01-01T00:00:00+00:01",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59.999-00:01",  # year 10000 in UTC
    "9999-12-31T20:00:00-05:00",
])
def test_outside_1970_to_9999_utc_is_refused(value):
    assert time_refusal(value) == (422, "validation_error", "requestedAt must lie between 1970 and 9999 (UTC)")


@pytest.mark.parametrize("value", [
    "yesterday", "", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-25T24:00:01Z",
    "1" * 41, 1_795_590_000, None, ["2026-11-25T07:00:00Z"],
])
def test_anything_else_is_not_a_timestamp(value):
    assert time_refusal(value) == (422, "validation_error", "requestedAt must be an ISO-8601 timestamp")
