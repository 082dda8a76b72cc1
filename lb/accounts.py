"""Accounts: the ChatGPT/Codex accounts behind the balancer, and the one door their status changes go through."""
import re
import secrets

from peewee import IntegrityError

from lb import alerts, audit, store
from lb.clock import iso
from lb.errors import ApiError, invalid
from lb.fields import get_choice, get_str
from lb.tables import ACCOUNT_STATUSES, Account, db

# The statuses an account comes back from on its own; resetsAt says when.
WAITING_STATUSES = ("rate_limited", "quota_exceeded")
# What a change of status writes; a pause keeps them as they are.
STATUS_COLUMNS = ("status", "resets_at", "status_reason", "updated_at")
# The columns' lengths (lb.tables).
EMAIL_MAX_LENGTH = 254
PLAN_TYPE_MAX_LENGTH = 64


def has_credentials(account):
    """Whether the account holds the tokens the upstream needs (sealed; never shown)."""
    return account.access_token is not None and account.refresh_token is not None


# One @, a dot in the domain, no white space or control characters.
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.][^@\s\x00-\x1f\x7f]*\.[^@\s\x00-\x1f\x7f.]+")


# What new_id can produce (older or hand-made ids included); anything else is unknown.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def new_id():
    # 96 random bits: an id is never handed out twice, even after a delete.
    return "acc_" + secrets.token_urlsafe(12)


def as_json(account):
    """The account object of the API; never a token, only whether there are any."""
    usage = (account.primary_used_percent, account.primary_resets_at, account.secondary_used_percent,
             account.secondary_resets_at)
    return {
        "id": account.id,
        "email": account.email,
        "planType": account.plan_type,
        "status": account.status,
        "statusReason": account.status_reason,
        "createdAt": iso(account.created_at),
        "updatedAt": iso(account.updated_at),
        "chatgptAccountId": account.chatgpt_account_id or None,
        "hasCredentials": has_credentials(account),
        "lastRefreshAt": iso(account.last_refresh_at),
        "resetsAt": iso(account.resets_at) if account.status in WAITING_STATUSES else None,
        "usage": None if all(value is None for value in usage) else {
            "primaryUsedPercent": account.primary_used_percent,
            "primaryResetsAt": iso(account.primary_resets_at),
            "secondaryUsedPercent": account.secondary_used_percent,
            "secondaryResetsAt": iso(account.secondary_resets_at),
        },
        "usageCheckedAt": iso(account.usage_checked_at),
    }


def find(account_id):
    account = Account.get_or_none(Account.id == account_id) if ACCOUNT_ID.fullmatch(account_id) else None
    if account is None:
        raise ApiError(404, "account_not_found", "Account not found")
    return account


def get_email(data, name="email", label=None):
    """The email and its lower-cased key, both within the column's 254 characters."""
    label = label or name
    email = get_str(data, name, label, max_len=EMAIL_MAX_LENGTH)
    if not EMAIL.fullmatch(email):
        raise invalid(label, "must be an email address")
    key = email.lower()
    if len(key) > EMAIL_MAX_LENGTH:  # lower-casing can lengthen it: "İ" becomes two characters
        raise invalid(label, f"must be at most {EMAIL_MAX_LENGTH} characters once lower-cased")
    return email, key


def _optional_text(data, name, max_len):
    """A nullable text field: absent keeps, null clears, a string sets."""
    return get_str(data, name, required=False, max_len=max_len)


def create(data, now, ip=None):
    """Create a manual account (no ChatGPT workspace) at ``now``; 409 if another manual one has the email.
    Audited (account.created) with the client's address ``ip``."""
    email, email_key = get_email(data)
    plan_type = _optional_text(data, "planType", PLAN_TYPE_MAX_LENGTH)
    status = get_choice(data, "status", ACCOUNT_STATUSES, default="active")
    reason = _optional_text(data, "statusReason", 500)
    try:
        with db.atomic():
            account = Account.create(id=new_id(), email=email, email_key=email_key, plan_type=plan_type,
                                     status=status, status_reason=reason, created_at=now, updated_at=now)
            audit.record("account.created", now, ip, target=("account", account.id),
                         detail={"email": email, "status": status})
            return account
    except IntegrityError:
        # The unique index on (lower-cased email, workspace "") decides, concurrent creates included;
        # an imported account of the same email is another workspace and no conflict.
        raise ApiError(409, "account_exists", "An account with this email already exists") from None


# A PATCH body's fields and their columns: what account.updated names.
PATCHED = {"status": "status", "planType": "plan_type", "statusReason": "status_reason"}


def update(account_id, data, now, ip=None):
    """Apply a PATCH body: status, planType, statusReason (null clears the text fields). What changes is
    audited (account.updated: the fields' names, and the new status)."""
    changes = {}
    if "status" in data:
        if data["status"] is None:
            raise invalid("status", "must be one of " + ", ".join(ACCOUNT_STATUSES))
        changes["status"] = get_choice(data, "status", ACCOUNT_STATUSES)
    if "planType" in data:
        changes["plan_type"] = _optional_text(data, "planType", PLAN_TYPE_MAX_LENGTH)
    if "statusReason" in data:
        changes["status_reason"] = _optional_text(data, "statusReason", 500)
    with db.atomic():
        account = find(account_id)
        if changes:
            changed = [name for name, column in PATCHED.items()
                       if column in changes and changes[column] != getattr(account, column)]
            apply(account.id, {**changes, "updated_at": now}, now, admin=True)
            if changed:
                detail = {"email": account.email, "fields": changed}
                if "status" in changed:
                    detail["status"] = changes["status"]
                audit.record("account.updated", now, ip, target=("account", account.id), detail=detail)
            account = Account.get_by_id(account.id)
    return account


def apply(account_id, changes, now, *, admin=False, expect=None):
    """Write ``changes`` (column: value) to one account: the one door for its status, resets_at and
    status_reason, whoever changes them (the admin, the proxy, a refresh, an import). Whether it was written.

    A change of status stamps updated_at. Only the admin pauses an account or
    ends a pause: any other change of status (with its resets_at and
    status_reason) leaves a paused account's status as it is, while the other
    columns (its usage, its plan) are written all the same; the answer then
    says whether the status was. ``expect``: columns that must still hold
    these values, so of two concurrent changes made from one read, one wins.
    """
    if not changes:
        return False
    automatic = not admin and "status" in changes
    if automatic and changes["status"] == "paused":
        raise ValueError("only the admin pauses an account")
    if "status" not in changes:
        return store.update_account(account_id, changes, expect=expect)
    changes = {"updated_at": now, **changes}
    with db.atomic():  # the change and the alert it causes (lb.alerts), together or not at all
        before = store.account_status(account_id)
        if automatic:
            status = {name: value for name, value in changes.items() if name in STATUS_COLUMNS}
            others = {name: value for name, value in changes.items() if name not in STATUS_COLUMNS}
            if others:
                store.update_account(account_id, others, expect=expect)
            written = store.update_account(account_id, status, keep_pause=True, expect=expect)
        else:
            written = store.update_account(account_id, changes, expect=expect)
        if written and before != changes["status"]:
            alerts.status_changed(account_id, before, now)
    return written


def delete(account_id, now, ip=None):
    """Remove the account; its request logs (and audit entries) keep its id."""
    with db.atomic():
        account = find(account_id)
        account.delete_instance()
        audit.record("account.deleted", now, ip, target=("account", account.id), detail={"email": account.email})


def all_accounts():
    return [as_json(a) for a in Account.select().order_by(Account.created_at, Account.id)]
