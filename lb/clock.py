"""Time: the injected clock, and timestamps as integer milliseconds inside, ISO-8601 outside."""
from datetime import datetime, timedelta, timezone

from flask import current_app

from lb.errors import invalid

HOUR_MS = 3600 * 1000
HOURS_PER_DAY = 24
DAY_MS = HOUR_MS * HOURS_PER_DAY

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - EPOCH) // timedelta(milliseconds=1)


def now_ms():
    """Now, in epoch milliseconds, from the app's clock (``CLOCK``: a function of epoch seconds)."""
    return int(current_app.config["CLOCK"]() * 1000)


def iso(ms):
    """Format epoch milliseconds as ISO-8601 UTC with a trailing Z."""
    if ms is None:
        return None
    moment = EPOCH + timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else text + "Z"


def parse_time(value, label):
    """Parse an ISO-8601 timestamp that names its zone (Z or an offset) into epoch ms."""
    if not isinstance(value, str) or len(value) > 40:
        raise invalid(label, "must be an ISO-8601 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(label, "must be an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise invalid(label, "must carry Z or a UTC offset")
    try:
        ms = (moment - EPOCH) // timedelta(milliseconds=1)
    except OverflowError:
        ms = -1
    if not 0 <= ms <= LATEST_MS:
        raise invalid(label, "must lie between 1970 and 9999 (UTC)")
    return ms

