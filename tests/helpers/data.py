"""What the tests build and store: the clock, secrets, tokens and auth.json files made by hand, rows written and
read directly (as another instance would), and the PostgreSQL pass's database."""
import base64
import json
import os
from datetime import datetime, timezone

import pytest
from playhouse.db_url import connect as connect_url

from fixtureapps.token_server import Answer
from lb import credentials, crypto, refresh, tables

# Set by `make test` for its PostgreSQL pass; unset, the tests use SQLite files.
POSTGRES_URL = os.environ.get("LB_TEST_DATABASE_URL")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

START = datetime(2026, 11, 25, 7, 0, 0, tzinfo=timezone.utc).timestamp()
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
BOOTSTRAP = "bootstrap-token-for-tests"
INGEST = "ingest-token-for-tests"
AUTH_CLAIMS = "https://api.openai.com/auth"
NOW = "2026-11-25T07:00:00Z"
NOW_S = int(START)
NOW_MS = NOW_S * 1000
DAY_S = 86400


class Clock:
    """A settable clock in epoch seconds; tests move it instead of sleeping."""

    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


# -- tokens, built by hand ------------------------------------------------------------------

def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(claims):
    """A JWT with a dummy signature (nobody checks it)."""
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.ZHVtbXktc2lnbmF0dXJl"


def id_token(email="ann@example.com", plan="plus", workspace="ws-personal", **claims):
    auth = {key: value for key, value in (("chatgpt_plan_type", plan), ("chatgpt_account_id", workspace))
            if value is not None}
    body = {"email": email, AUTH_CLAIMS: auth, "sub": "auth0|user-1", **claims}
    return jwt({key: value for key, value in body.items() if value is not None})


def access_token(expires_in=3600, tag="1"):
    """An access-token JWT expiring ``expires_in`` seconds after the test clock's start."""
    return jwt({"exp": NOW_S + expires_in, "jti": f"access-{tag}"})


ID_1, ACCESS_1, REFRESH_1 = id_token(), access_token(), "rt_refresh-token-one-0123456789"
ID_2 = id_token(email="Ann@Example.com", plan="pro")
ACCESS_2, REFRESH_2 = access_token(7200, "2"), "rt_refresh-token-two-0123456789"


def auth_json(id_tok=ID_1, access=ACCESS_1, refresh=REFRESH_1, account_id="ws-personal",
              last_refresh="2026-11-20T06:00:00Z"):
    """An auth.json as the Codex CLI writes it."""
    return {"OPENAI_API_KEY": None, "auth_mode": "chatgpt",
            "tokens": {"id_token": id_tok, "access_token": access, "refresh_token": refresh, "account_id": account_id},
            "last_refresh": last_refresh}


def new_tokens(**tokens):
    """A token endpoint's 200 answer."""
    return Answer(200, {"token_type": "Bearer", "expires_in": 864000, **tokens})


# -- rows, read and written directly -----------------------------------------------------------

def row(app, account_id):
    with app.app_context(), tables.db.connection_context():
        return tables.Account.get_by_id(account_id)


def stored_tokens(app, account_id):
    """(id, access, refresh) tokens as stored, unsealed."""
    account = row(app, account_id)
    fernet = app.extensions["lb_fernet"]
    return tuple(crypto.unseal(getattr(account, name), fernet) for name in credentials.TOKENS)


def write(app, account_id, **fields):
    """Change stored columns directly, as another instance would."""
    with app.app_context(), tables.db.connection_context():
        tables.Account.update(**fields).where(tables.Account.id == account_id).execute()


def set_catalog(app, model_id, **fields):
    """Change one stored catalog row directly (there is no endpoint for it)."""
    with app.app_context(), tables.db.connection_context():
        tables.CatalogModel.update(**fields).where(tables.CatalogModel.id == model_id).execute()


def pool_account(app, clock, name, **columns):
    """An account with credentials, imported as from ``<name>@example.com``'s auth.json in workspace
    ``ws-<name>`` (the fake upstream's plans are keyed by that workspace); ``columns`` are then written."""
    workspace = f"ws-{name}"
    access = jwt({"exp": int(clock()) + 10 * 86400, "jti": f"access-{name}"})  # good for ten days of the clock
    data = auth_json(id_token(email=f"{name}@example.com", workspace=workspace), account_id=workspace, access=access)
    with app.app_context(), tables.db.connection_context():
        account, _ = credentials.import_auth_json(data, int(clock() * 1000))
    if columns:
        write(app, account.id, **columns)
    return account.id


def logs(app):
    """Every stored request log, oldest first."""
    with app.app_context(), tables.db.connection_context():
        return list(tables.RequestLog.select().order_by(tables.RequestLog.id))


def fresh(app, account_id, clock, force=False):
    """fresh_credentials; ``force``: as after an upstream 401 on the stored access token."""
    rejected = stored_tokens(app, account_id)[1] if force else None
    with app.app_context(), tables.db.connection_context():
        return refresh.fresh_credentials(account_id, int(clock() * 1000), rejected=rejected)


def refresh_fails(app, account_id, clock, force=True):
    with pytest.raises(refresh.RefreshFailed) as raised:
        fresh(app, account_id, clock, force=force)
    return raised.value


def empty_postgres():
    """Drop every table of the test database, so the next app starts from nothing."""
    database = connect_url(POSTGRES_URL)
    with database.connection_context(), database.bind_ctx(tables.MODELS):
        database.drop_tables(tables.MODELS, safe=True, cascade=True)
