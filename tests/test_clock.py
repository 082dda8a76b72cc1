"""lb.clock: epoch milliseconds inside, ISO-8601 UTC outside (read back by lb.fields.parse_time, tested there).

iso() writes a trailing Z and a millisecond fraction only when there is one.
Every expected value is worked out by hand (1 day = 86_400_000 ms;
10000-01-01T00:00:00Z is 253_402_300_800 s after the epoch).
"""
import pytest

from lb.clock import iso

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
