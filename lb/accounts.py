"""Accounts: the ChatGPT/Codex accounts behind the balancer."""
import re
import secrets

from peewee import IntegrityError

from lb.clock import iso
from lb.errors import ApiError, invalid
from lb.fields import get_choice, get_str
from lb.store import ACCOUNT_STATUSES, Account, db

# One @, a dot in the domain, no white space or control characters.
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.][^@\s\x00-\x1f\x7f]*\.[^@\s\x00-\x1f\x7f.]+")


# What new_id can produce (older or hand-made ids included); anything else is unknown.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def new_id():
    # 96 random bits: an id is never handed out twice, even after a delete.
    return "acc_" + secrets.token_urlsafe(12)


def as_json(account):
    return {
        "id": account.id,
        "email": account.email,
        "planType": account.plan_type,
        "status": account.status,
        "statusReason": account.status_reason,
        "createdAt": iso(account.created_at),
        "updatedAt": iso(account.updated_at),
    }


def find(account_id):
    account = Account.get_or_none(Account.id == account_id) if ACCOUNT_ID.fullmatch(account_id) else None
    if account is None:
        raise ApiError(404, "account_not_found", "Account not found")
    return account


def _email(data):
    """The email and its lower-cased key, both within the column's 254 characters."""
    email = get_str(data, "email", max_len=254)
    if not EMAIL.fullmatch(email):
        raise invalid("email", "must be an email address")
    key = email.lower()
    if len(key) > 254:  # lower-casing can lengthen it: "İ" becomes two characters
        raise invalid("email", "must be at most 254 characters once lower-cased")
    return email, key


def _optional_text(data, name, max_len):
    """A nullable text field: absent keeps, null clears, a string sets."""
    return get_str(data, name, required=False, max_len=max_len)


def create(data, now):
    """Create an account from a request body at ``now``; 409 if the email is taken (any case)."""
    email, email_key = _email(data)
    plan_type = _optional_text(data, "planType", 64)
    status = get_choice(data, "status", ACCOUNT_STATUSES, default="active")
    reason = _optional_text(data, "statusReason", 500)
    try:
        with db.atomic():
            return Account.create(id=new_id(), email=email, email_key=email_key, plan_type=plan_type,
                                  status=status, status_reason=reason, created_at=now, updated_at=now)
    except IntegrityError:
        # The unique index on the lower-cased email decides, concurrent creates included.
        raise ApiError(409, "account_exists", "An account with this email already exists") from None


def update(account_id, data, now):
    """Apply a PATCH body: status, planType, statusReason (null clears the text fields)."""
    changes = {}
    if "status" in data:
        if data["status"] is None:
            raise invalid("status", "must be one of " + ", ".join(ACCOUNT_STATUSES))
        changes["status"] = get_choice(data, "status", ACCOUNT_STATUSES)
    if "planType" in data:
        changes["plan_type"] = _optional_text(data, "planType", 64)
    if "statusReason" in data:
        changes["status_reason"] = _optional_text(data, "statusReason", 500)
    with db.atomic():
        account = find(account_id)
        if changes:
            changes["updated_at"] = now
            Account.update(**changes).where(Account.id == account.id).execute()
            account = Account.get_by_id(account.id)
    return account


def delete(account_id):
    """Remove the account; its request logs keep its id."""
    with db.atomic():
        find(account_id).delete_instance()


def all_accounts():
    return [as_json(a) for a in Account.select().order_by(Account.created_at, Account.id)]
