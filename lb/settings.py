"""The service's settings (GET and PATCH /api/settings): what the admin switches, kept in the settings row."""
import json
import re
from typing import Callable, NamedTuple
from urllib.parse import urlsplit

from lb import alerts, audit, sessions, store
from lb.clock import iso
from lb.errors import invalid
from lb.tables import db

RETENTION_MIN_DAYS = 7
RETENTION_MAX_DAYS = 36500
WEBHOOK_URL_MAX_LENGTH = 2000
# White space and control characters: never in a URL that is sent as it is.
_URL_BAD = re.compile(r"[\s\x00-\x1f\x7f]")


def _boolean(name, value):
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def _retention_days(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (
            RETENTION_MIN_DAYS <= value <= RETENTION_MAX_DAYS):
        raise invalid(name, f"must be null or an integer between {RETENTION_MIN_DAYS} and {RETENTION_MAX_DAYS}")
    return value


def _webhook_url(name, value):
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > WEBHOOK_URL_MAX_LENGTH or _URL_BAD.search(value):
        raise invalid(name, f"must be null or an http(s) URL of at most {WEBHOOK_URL_MAX_LENGTH} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise invalid(name, "must be null or an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(name, "must be null or an http(s) URL")
    return value


def _webhook_events(name, value):
    if not isinstance(value, list) or any(not isinstance(e, str) or e not in alerts.EVENTS for e in value):
        raise invalid(name, "must be a list of events: " + ", ".join(alerts.EVENTS))
    return json.dumps([e for e in alerts.EVENTS if e in value])  # the catalog's order, each once


def _events_out(stored):
    return list(alerts.EVENTS) if stored is None else json.loads(stored)


def _url_out(url):
    """What the audit log keeps of a webhook URL: its origin (the path of an incoming webhook is its secret)."""
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{'' if parts.port is None else f':{parts.port}'}/…"


class Setting(NamedTuple):
    column: str
    parse: Callable  # (name, JSON value) -> the column's value; raises a 422
    show: Callable = lambda value: value  # the column's value -> JSON
    audit: Callable = lambda value: value  # the column's value -> what the audit log may keep


# Each setting's JSON name, its column, and how it is read and shown.
SETTINGS = {
    "apiKeyRequired": Setting("api_key_required", _boolean),
    "stickySessions": Setting("sticky_sessions", _boolean),
    "webhookUrl": Setting("webhook_url", _webhook_url, audit=_url_out),
    "webhookEvents": Setting("webhook_events", _webhook_events, _events_out, _events_out),
    "requestLogRetentionDays": Setting("request_log_retention_days", _retention_days),
}


def last_prune(row):
    """What the last prune of the request logs did (lb.retention), or None before the first."""
    if row.last_prune_at is None:
        return None
    return {"at": iso(row.last_prune_at), "removed": row.last_prune_removed, "before": iso(row.logs_pruned_before)}


def as_json():
    row = store.settings()
    values = {name: setting.show(getattr(row, setting.column)) for name, setting in SETTINGS.items()}
    return {**values, "lastPrune": last_prune(row)}


def update(data, now, ip=None):
    """Apply a PATCH body (each setting checked; others ignored) and audit what changed, in one transaction;
    the settings as they now are."""
    changes = {name: setting.parse(name, data[name]) for name, setting in SETTINGS.items() if name in data}
    if changes:
        with db.atomic():
            row = store.settings()
            changed = {name: value for name, value in changes.items()
                       if getattr(row, SETTINGS[name].column) != value}
            if changed:
                sessions.save_settings(**{SETTINGS[name].column: value for name, value in changed.items()})
                audit.record("settings.changed", now, ip, target=("settings", None),
                             detail={name: SETTINGS[name].audit(value) for name, value in changed.items()})
    return as_json()
