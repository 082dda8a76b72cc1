"""The audit log: who changed what, when and from where; written in the transaction of the change it
records, never pruned, and never holding a secret."""
import json

from lb.tables import AuditEntry

ACTIONS = ("login.succeeded", "login.failed", "totp.enabled", "totp.disabled", "password.changed",
           "account.created", "account.imported", "account.signed_in", "account.updated", "account.deleted",
           "api_key.created", "api_key.updated", "api_key.regenerated", "api_key.deleted", "settings.changed")
TARGET_TYPES = ("account", "api_key", "settings")


def record(action, now, ip, target=None, detail=None):
    """Write one entry on the open connection (inside the caller's transaction). ``target``: (type, id)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    target_type, target_id = target if target is not None else (None, None)
    if target_type is not None and target_type not in TARGET_TYPES:
        raise ValueError(f"unknown audit target {target_type!r}")
    AuditEntry.create(at=now, action=action, target_type=target_type, target_id=target_id,
                      ip=None if ip is None else ip[:64], detail=json.dumps(detail or {}, sort_keys=True))
