"""The audit log: who changed what, when and from where; written in the transaction of the change it
records, never pruned, and never holding a secret.

The domain modules call ``record`` with plain values (``now``, the client's
address, which the view reads through lb.ratelimit.client_address); a change
made without a request (a command, the device sign-in poller) has no address.
``detail`` names what changed (an email, a key's name, field names), never a
password, key, token, TOTP code or secret, cookie or webhook path.
"""
import json

from lb import request_logs
from lb.clock import iso
from lb.errors import invalid
from lb.tables import AuditEntry

ACTIONS = ("login.succeeded", "login.failed", "totp.enabled", "totp.disabled", "password.changed",
           "account.created", "account.imported", "account.signed_in", "account.updated", "account.deleted",
           "api_key.created", "api_key.updated", "api_key.regenerated", "api_key.deleted", "settings.changed")
TARGET_TYPES = ("account", "api_key", "settings")
# Its own cursor text, so that a request-log cursor (signed with the same key) is no audit-log cursor.
CURSOR_PREFIX = "audit:"


def record(action, now, ip, target=None, detail=None):
    """Write one entry on the open connection (inside the caller's transaction). ``target``: (type, id)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    target_type, target_id = target if target is not None else (None, None)
    if target_type is not None and target_type not in TARGET_TYPES:
        raise ValueError(f"unknown audit target {target_type!r}")
    AuditEntry.create(at=now, action=action, target_type=target_type, target_id=target_id,
                      ip=None if ip is None else ip[:64], detail=json.dumps(detail or {}, sort_keys=True))


def as_json(entry):
    """An entry of the API; ``target`` is left out when the action has none (the contract's optional key)."""
    answer = {"id": entry.id, "at": iso(entry.at), "action": entry.action, "ip": entry.ip,
              "detail": json.loads(entry.detail)}
    if entry.target_type is not None:
        answer["target"] = {"type": entry.target_type, "id": entry.target_id}
    return answer


def _after(cursor, secret):
    """The entry id a cursor of this log stands for; 422 for any other text."""
    text = request_logs.read_cursor(cursor, secret)
    number = text[len(CURSOR_PREFIX):]
    if not (text.startswith(CURSOR_PREFIX) and number.isascii() and number.isdigit() and len(number) <= 19):
        raise invalid("cursor", "is not a cursor this service issued")
    return int(number)


def page(args, secret):
    """One page of entries, newest first, for the query-string mapping ``args`` (limit, cursor): (entries,
    next cursor or None). Keyset on the id alone: ids only grow, so a page never shifts as entries are added;
    paged like the request logs (their limits and their 422s), with a cursor signed by ``secret``."""
    limit = request_logs.get_limit(args)
    query = AuditEntry.select()
    if "cursor" in args:
        query = query.where(AuditEntry.id < _after(args["cursor"], secret))
    rows = list(query.order_by(AuditEntry.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = request_logs.sign_cursor(f"{CURSOR_PREFIX}{rows[-1].id}", secret) if more else None
    return [as_json(row) for row in rows], cursor
