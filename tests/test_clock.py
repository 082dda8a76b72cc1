"""lb.clock: epoch milliseconds inside, ISO-8601 UTC outside.

iso() writes a trailing Z and a millisecond fraction only when there is one;
parse_time() takes Z or an offset, normalises to UTC, refuses a naive timestamp
and anything outside 1970..9999 (UTC) with a 422 naming the field. Every expected
value is worked out by hand (1 day = 86_400_000 ms; 10000-01-01T00:00:00Z is
253_402_300_800 s after the epoch).
"""
import pytest

from lb.clock import iso
from lb.fields import parse_time
from lb.errors import ApiError

LAST_MS = 253_402_300_800_000 - 1  # 9999-12-31T23:59:59.999Z


@pytest.mark.parametrize("ms, text", [
    (0, "1970-01-01T00:00:00Z"),
    (1, "1970-01-01T00:00:00.001Z"),
    (10, "1970-01-01T00:00:00.010Z"),
    (1_000, "1970-01-01T00:00:01Z"),  # whole seconds: no fraction
    (1_500, "1970-01-01T00:00:01.500Z"),  # always three digits
    (86_399_999, "1970-01-01T23:59:59.999Z"),
    (86_400_000, "1970-01-02T00:00:00Z"),
    (1_795_590_000_000, "2026-11-25T07:00:00Z"),
    (1_795_590_000_250, "2026-11-25T07:00:00.250Z"),
    (LAST_MS, "9999-12-31T23:59:59.999Z"),
])
def test_iso_writes_utc_with_milliseconds_only_when_there_are_some(ms, text):
    assert iso(ms) == text


def test_iso_of_nothing_is_nothing():
    assert iso(None) is None


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


def refusal(value):
    with pytest.raises(ApiError) as raised:
        parse_time(value, "requestedAt")
    return raised.value.status, raised.value.code, raised.value.message


@pytest.mark.parametrize("value", ["2026-11-25T07:00:00", "2026-11-25T07:00:00.123", "2026-11-25"])
def test_a_naive_timestamp_is_refused(value):
    assert refusal(value) == (422, "validation_error", "requestedAt must carry Z or a UTC offset")


@pytest.mark.parametrize("value", [
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:59:59.999+01:00",  # 1969 in UTC
    "1970-01-01T00:00:00+00:01",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59.999-00:01",  # year 10000 in UTC
    "9999-12-31T20:00:00-05:00",
])
def test_outside_1970_to_9999_utc_is_refused(value):
    assert refusal(value) == (422, "validation_error", "requestedAt must lie between 1970 and 9999 (UTC)")


@pytest.mark.parametrize("value", [
    "yesterday", "", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-25T24:00:01Z",
    "1" * 41, 1_795_590_000, None, ["2026-11-25T07:00:00Z"],
])
def test_anything_else_is_not_a_timestamp(value):
    assert refusal(value) == (422, "validation_error", "requestedAt must be an ISO-8601 timestamp")
