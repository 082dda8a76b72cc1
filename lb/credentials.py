"""Account credentials: the Codex CLI's auth.json read, its claims parsed, its tokens imported sealed.

Keeping them fresh is lb/refresh.py. No answer, log line or error message
carries a token.
"""
import base64
import binascii
import json
import logging

import click
from flask import current_app
from peewee import IntegrityError

from lb import accounts, audit, crypto
from lb.clock import now_ms
from lb.errors import ApiError, invalid, loads
from lb.fields import get_str, parse_time
from lb.tables import Account, db

log = logging.getLogger(__name__)

TOKENS = ("id_token", "access_token", "refresh_token")
AUTH_CLAIMS = "https://api.openai.com/auth"


# -- the id_token's claims -----------------------------------------------------------------

def jwt_claims(token):
    """The payload of a JWT as a dict (the signature is not checked), or None when ``token`` is not one."""
    parts = token.split(".") if isinstance(token, str) else ()
    if len(parts) != 3:
        return None
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in parts[:2])
    except (ValueError, binascii.Error, RecursionError):  # bad base64, bytes or JSON
        return None
    return payload if isinstance(header, dict) and isinstance(payload, dict) else None


def profile(claims, label):
    """(email, email key, plan type, ChatGPT account id or None) from an id_token's claims; 422 naming ``label``."""
    email, email_key = accounts.get_email(claims, "email", f"{label} email claim")
    auth = claims.get(AUTH_CLAIMS)
    auth = auth if isinstance(auth, dict) else {}
    plan = get_str(auth, "chatgpt_plan_type", f"{label} chatgpt_plan_type claim", required=False, max_len=64)
    workspace = get_str(auth, "chatgpt_account_id", f"{label} chatgpt_account_id claim", required=False,
                        max_len=128)
    return email, email_key, plan or None, workspace or None


# -- import ------------------------------------------------------------------------------------

def _key(obj, snake, camel):
    """Which of a field's two spellings to read: snake_case unless only the camelCase one is given."""
    return camel if obj.get(snake) is None and obj.get(camel) is not None else snake


def _token(tokens, snake, camel):
    key = _key(tokens, snake, camel)
    value = get_str(tokens, key, f"tokens.{key}")
    if not value:
        raise invalid(f"tokens.{key}", "must not be empty")
    return value


def read_auth_json(data, now):
    """The account an auth.json describes: a dict of Account fields with the tokens still in clear; 422s."""
    tokens = data.get("tokens")
    if tokens is None:
        raise invalid("tokens", "is required")
    if not isinstance(tokens, dict):
        raise invalid("tokens", "must be an object")
    id_key = _key(tokens, "id_token", "idToken")
    id_token = _token(tokens, "id_token", "idToken")
    claims = jwt_claims(id_token)
    if claims is None:
        raise invalid(f"tokens.{id_key}", "must be a JWT")
    email, email_key, plan, claimed_workspace = profile(claims, f"tokens.{id_key}")
    access_token = _token(tokens, "access_token", "accessToken")
    refresh_token = _token(tokens, "refresh_token", "refreshToken")
    account_key = _key(tokens, "account_id", "accountId")
    workspace = get_str(tokens, account_key, f"tokens.{account_key}", required=False, max_len=128)
    workspace = workspace or claimed_workspace  # tokens.account_id wins; "" counts as absent
    if not workspace:
        raise invalid(f"tokens.{account_key}", "is required: the id_token's claims name no ChatGPT account either")
    refreshed_key = _key(data, "last_refresh", "lastRefresh")
    refreshed = data.get(refreshed_key)
    # A file stamped ahead of this clock counts as refreshed now, so the 8-day rule cannot be put off.
    refreshed = now if refreshed is None else min(parse_time(refreshed, refreshed_key), now)
    return {"email": email, "email_key": email_key, "chatgpt_account_id": workspace, "plan_type": plan,
            "id_token": id_token, "access_token": access_token, "refresh_token": refresh_token,
            "last_refresh_at": refreshed}


def _store_imported(values, now):
    """In one transaction: update the account (email, workspace), else adopt the manual account of that
    email, else create one. (account, created), or None when a concurrent change got in the way."""
    same_email = Account.email_key == values["email_key"]
    for workspace in (values["chatgpt_account_id"], ""):
        found = Account.get_or_none(same_email & (Account.chatgpt_account_id == workspace))
        if found is None:
            continue
        changes = dict(values, updated_at=now)
        if found.status == "deactivated":
            changes.update(status="active", status_reason=None)
        # The workspace expected: of two imports adopting one manual account, one wins.
        if not accounts.apply(found.id, changes, now, expect={"chatgpt_account_id": workspace}):
            return None
        return Account.get_by_id(found.id), False
    return Account.create(id=accounts.new_id(), status="active", created_at=now, updated_at=now, **values), True


def import_auth_json(data, now, ip=None):
    """Import a Codex CLI auth.json body at ``now``; (account, created). Nothing is stored on a 422.
    Audited as account.imported (email, workspace, created) with the client's address ``ip``."""
    def audited(account, created):
        audit.record("account.imported", now, ip, target=("account", account.id),
                     detail={"email": account.email, "chatgptAccountId": account.chatgpt_account_id,
                             "created": created})

    return save(read_auth_json(data, now), now, then=audited)


def save(values, now, then=None):
    """Store the account ``values`` describe (read_auth_json's, tokens in clear), as an import does:
    (account, created). ``then(account, created)`` runs in the same transaction; what it raises undoes
    the whole write."""
    fernet = current_app.extensions["lb_fernet"]
    values = dict(values, **{name: crypto.seal(values[name], fernet) for name in TOKENS})
    for _ in range(3):
        try:
            with db.atomic():
                result = _store_imported(values, now)
                if result is not None and then is not None:
                    then(*result)
        except IntegrityError:  # a concurrent import created the same account first: update it instead
            continue
        if result is not None:
            account, created = result
            log.info("account %s imported (%s)", account.id, "created" if created else "updated")
            return result
    raise ApiError(409, "account_exists", "The account changed while it was imported; try again")


# -- the command --------------------------------------------------------------------------------

def init_app(app):
    @app.cli.command("import-account")
    @click.argument("path")
    def import_account_command(path):
        """Import a Codex CLI auth.json file, as POST /api/accounts/import does."""
        limit = current_app.config["MAX_BODY_BYTES"]
        try:
            with open(path, "rb") as f:
                raw = f.read(limit + 1)
        except OSError as exc:
            raise click.ClickException(f"{path}: cannot be read: {exc.strerror}") from None
        if len(raw) > limit:
            raise click.ClickException(f"{path}: larger than {limit} bytes")
        try:
            data = loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # never the decoder's message: it may quote the file
            raise click.ClickException(f"{path}: not valid JSON") from None
        if not isinstance(data, dict):
            raise click.ClickException(f"{path}: must hold a JSON object")
        with db.connection_context():
            try:
                account, created = import_auth_json(data, now_ms())
            except ApiError as exc:
                raise click.ClickException(f"{path}: {exc.message}") from None
        click.echo(f"imported {account.email} ({account.chatgpt_account_id}): {'created' if created else 'updated'}")
