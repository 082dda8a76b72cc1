"""JSON values to Python values: each check returns the value or raises a 422 naming the field."""
from datetime import datetime, timedelta

from lb.clock import EPOCH, LATEST_MS
from lb.errors import invalid


def get_str(obj, name, label=None, *, required=True, default=None, min_len=0, max_len=None):
    label = label or name
    value = obj.get(name)
    if value is None:
        if required:
            raise invalid(label, "is required")
        return default
    if not isinstance(value, str):
        raise invalid(label, "must be a string")
    if "\x00" in value:  # PostgreSQL cannot store it, and no name needs it
        raise invalid(label, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone \ud800 escape: valid JSON, but no character
            raise invalid(label, "must be valid Unicode text") from None
    if len(value) < min_len:
        raise invalid(label, f"must be at least {min_len} characters")
    if max_len is not None and len(value) > max_len:
        raise invalid(label, f"must be at most {max_len} characters")
    return value


def get_int(obj, name, label=None, *, default=None, low=0, high=None):
    label = label or name
    value = obj.get(name)
    if value is None:
        return default
    huge = value in (float("inf"), float("-inf"))  # an integer of more than 100 digits (see errors.py)
    # bool is an int in Python; JSON true is not a number.
    if not huge and (isinstance(value, bool) or not isinstance(value, int)):
        raise invalid(label, "must be an integer")
    if huge or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise invalid(label, f"must be {bound}")
    return value


def get_choice(obj, name, choices, label=None, *, default=None):
    label = label or name
    value = obj.get(name)
    if value is None:
        return default
    if value not in choices or not isinstance(value, str):
        raise invalid(label, "must be one of " + ", ".join(choices))
    return value


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


def get_time(args, name, default=None):
    """A timestamp from a query string; a '+' left unescaped arrives as a space."""
    value = args.get(name)
    return default if value is None else parse_time(value.replace(" ", "+"), name)

