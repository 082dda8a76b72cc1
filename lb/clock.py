"""Time: the injected clock, and timestamps as integer milliseconds inside, ISO-8601 outside (parsed by lb.fields)."""
from datetime import datetime, timedelta, timezone

from flask import current_app

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
