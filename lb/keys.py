"""API keys: minted once, kept as SHA-256, checked against the catalog, limited per calendar window."""
import json
import re
import secrets
from datetime import datetime, timezone
from typing import NamedTuple, Optional

import click

from lb import audit, caps, rollups, store
from lb.clock import DAY_MS, iso, now_ms
from lb.crypto import digest
from lb.errors import ApiError, invalid
from lb.fields import get_str, parse_time
from lb.money import dollars
from lb.overview import billing_period
from lb.tables import ApiKey, CatalogModel, KeySlot, KeyUse, db

PREFIX = "sk-clb-"
PREFIX_LENGTH = 15  # what keyPrefix shows: "sk-clb-" and 8 characters
METRICS = ("totalTokens", "inputTokens", "outputTokens", "costUsd")
WINDOWS = ("day", "week", "month")
MAX_LIMITS = 8
NAME_MAX_LENGTH = 128
# What a PATCH body may change, in the order api_key.updated names them.
PATCHED = ("name", "allowedModels", "expiresAt", "enabled", "limits", "caps")


def mint():
    """A new key: (the key, shown once; its SHA-256; its prefix)."""
    key = PREFIX + secrets.token_urlsafe(32)
    return key, digest(key), key[:PREFIX_LENGTH]


KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")  # what create makes; anything else names no key


class Key(NamedTuple):
    """An API key as the service uses it, whoever read it: its JSON columns parsed once, ``enabled`` a bool."""

    id: str
    name: str
    key_prefix: str
    allowed_models: Optional[tuple]  # catalog ids, in the order given; None: every enabled model
    limits: list  # of {metric, window, max}
    expires_at: Optional[int]
    enabled: bool
    created_at: int
    last_used_at: Optional[int]
    caps: caps.Caps


def as_key(row):
    """The Key of an api_key row: a model instance or the store's named tuple (booleans as stored)."""
    allowed = tuple(json.loads(row.allowed_models)) if row.allowed_models is not None else None
    return Key(row.id, row.name, row.key_prefix, allowed, json.loads(row.limits), row.expires_at, bool(row.enabled),
               row.created_at, row.last_used_at, caps.of_row(row))


def find(key_id):
    key = ApiKey.get_or_none(ApiKey.id == key_id) if KEY_ID.fullmatch(key_id) else None
    if key is None:
        raise ApiError(404, "api_key_not_found", "API key not found")
    return as_key(key)


# -- fields --------------------------------------------------------------------------

def _allowed_models(value):
    """null (every enabled model) or a non-empty list of catalog ids, as JSON text for the column."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("allowedModels", "must be a list of model ids or null")
    if not value:
        raise invalid("allowedModels", "must name at least one model (null allows every model)")
    catalog = {m.id for m in CatalogModel.select(CatalogModel.id)}
    for i, model in enumerate(value):
        if not isinstance(model, str) or model not in catalog:
            raise invalid(f"allowedModels[{i}]", "is not a model of the catalog")
    return json.dumps(list(dict.fromkeys(value)))


def _expires_at(value, now):
    if value is None:
        return None
    expires = parse_time(value, "expiresAt")
    if expires <= now:
        raise invalid("expiresAt", "must be in the future")
    return expires


def _limits(value):
    if not isinstance(value, list):
        raise invalid("limits", "must be a list")
    if len(value) > MAX_LIMITS:
        raise invalid("limits", f"must hold at most {MAX_LIMITS} limits")
    limits = []
    for i, limit in enumerate(value):
        if not isinstance(limit, dict):
            raise invalid(f"limits[{i}]", "must be an object")
        metric, window, maximum = limit.get("metric"), limit.get("window"), limit.get("max")
        if metric not in METRICS or not isinstance(metric, str):
            raise invalid(f"limits[{i}].metric", "must be one of " + ", ".join(METRICS))
        if window not in WINDOWS or not isinstance(window, str):
            raise invalid(f"limits[{i}].window", "must be one of " + ", ".join(WINDOWS))
        if isinstance(maximum, bool) or not isinstance(maximum, (int, float)) or not 0 < maximum < 1e15:
            raise invalid(f"limits[{i}].max", "must be a number greater than 0 and below 10^15")
        limits.append({"metric": metric, "window": window, "max": maximum})
    return json.dumps(limits)


def _name(data):
    return get_str(data, "name", min_len=1, max_len=NAME_MAX_LENGTH)


# -- the key's life ----------------------------------------------------------------------

def create(data, now, ip=None):
    """A key from a request body; returns (row, the key itself, shown this once). Audited (api_key.created:
    its name, never the key) with the client's address ``ip``."""
    fields = {"name": _name(data), "allowed_models": _allowed_models(data.get("allowedModels")),
              "expires_at": _expires_at(data.get("expiresAt"), now), "limits": _limits(data.get("limits", [])),
              **caps.parse(data.get("caps"))}
    key, hashed, prefix = mint()
    with db.atomic():
        row = ApiKey.create(id="key_" + secrets.token_urlsafe(12), key_hash=hashed, key_prefix=prefix,
                            created_at=now, **fields)
        audit.record("api_key.created", now, ip, target=("api_key", row.id), detail={"name": row.name})
    return as_key(row), key


def update(key_id, data, now, ip=None):
    """Apply a PATCH body: name, allowedModels, expiresAt, enabled, limits and caps (each of the last two
    replaces them all). Audited (api_key.updated: the fields the body named, and ``enabled`` when it did)."""
    changes = {}
    if "name" in data:
        changes["name"] = _name(data)
    if "allowedModels" in data:
        changes["allowed_models"] = _allowed_models(data["allowedModels"])
    if "expiresAt" in data:
        changes["expires_at"] = _expires_at(data["expiresAt"], now)
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise invalid("enabled", "must be true or false")
        changes["enabled"] = data["enabled"]
    if "limits" in data:
        changes["limits"] = _limits(data["limits"])
    if "caps" in data:
        changes.update(caps.parse(data["caps"]))
    with db.atomic():
        key = find(key_id)
        if changes:
            ApiKey.update(**changes).where(ApiKey.id == key.id).execute()
            detail = {"name": changes.get("name", key.name), "fields": [name for name in PATCHED if name in data]}
            if "enabled" in changes:
                detail["enabled"] = changes["enabled"]
            audit.record("api_key.updated", now, ip, target=("api_key", key.id), detail=detail)
            key = as_key(ApiKey.get_by_id(key.id))
    return key


def regenerate(key_id, now, ip=None):
    """A new key for the same id; the old one stops working at once. Returns (row, the new key)."""
    key, hashed, prefix = mint()
    with db.atomic():
        row = find(key_id)
        ApiKey.update(key_hash=hashed, key_prefix=prefix).where(ApiKey.id == row.id).execute()
        audit.record("api_key.regenerated", now, ip, target=("api_key", row.id), detail={"name": row.name})
        return as_key(ApiKey.get_by_id(row.id)), key


def delete(key_id, now, ip=None):
    """Remove the key; its request logs (and audit entries) keep its id."""
    with db.atomic():
        key = find(key_id)
        ApiKey.delete().where(ApiKey.id == key.id).execute()
        audit.record("api_key.deleted", now, ip, target=("api_key", key.id), detail={"name": key.name})
        KeySlot.delete().where(KeySlot.api_key_id == key.id).execute()
        KeyUse.delete().where(KeyUse.api_key_id == key.id).execute()


def authenticate(presented, now):
    """The enabled, unexpired key behind a presented ``sk-clb-...`` string, or None (constant work: a hash lookup)."""
    if not isinstance(presented, str) or not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    row = store.api_key_by_hash(digest(presented))
    if row is None or not row.enabled or (row.expires_at is not None and row.expires_at <= now):
        return None
    return as_key(row)


# -- limits: used this window, from the rollups ---------------------------------------------

def window(name, now, cycle_day):
    """[start, end) of the calendar window holding ``now``: the UTC day, the week from Monday, the billing period."""
    day = now // DAY_MS * DAY_MS
    if name == "day":
        return day, day + DAY_MS
    if name == "week":
        monday = day - datetime.fromtimestamp(day / 1000, tz=timezone.utc).weekday() * DAY_MS
        return monday, monday + 7 * DAY_MS
    return billing_period(now, cycle_day)


def metric_value(sums, metric):
    """A metric of ``rollups.Sums``: tokens as integers, costUsd in USD to 6 decimals."""
    if metric == "costUsd":
        return dollars(sums.cost)
    if metric == "inputTokens":
        return sums.input_tokens
    if metric == "outputTokens":
        return sums.output_tokens
    return sums.input_tokens + sums.output_tokens


def allows(key, model):
    """Whether ``key`` (None: no key) may use ``model``, a model of the enabled catalog."""
    return key is None or key.allowed_models is None or model in key.allowed_models


def limits_used(key, now, cycle_day):
    """The key's limits, each with ``used`` this window and ``resetsAt``; one rollup read per window."""
    limits = key.limits
    spans = {name: window(name, now, cycle_day) for name in {limit["window"] for limit in limits}}
    sums = {name: rollups.range_sums(start, end, api_key_id=key.id)[None] for name, (start, end) in spans.items()}
    return [dict(limit, used=metric_value(sums[limit["window"]], limit["metric"]),
                 resetsAt=iso(spans[limit["window"]][1])) for limit in limits]


def as_json(key, now, cycle_day):
    return {
        "id": key.id,
        "name": key.name,
        "keyPrefix": key.key_prefix,
        "allowedModels": list(key.allowed_models) if key.allowed_models is not None else None,
        "expiresAt": iso(key.expires_at),
        "enabled": key.enabled,
        "createdAt": iso(key.created_at),
        "lastUsedAt": iso(key.last_used_at),
        "limits": limits_used(key, now, cycle_day),
        "caps": caps.as_json(key.caps),
        "capsInUse": caps.in_use(key.id, now),
    }


def all_keys(now, cycle_day):
    return [as_json(as_key(k), now, cycle_day) for k in ApiKey.select().order_by(ApiKey.created_at, ApiKey.id)]


def init_app(app):
    @app.cli.command("create-api-key")
    @click.argument("name")
    @click.option("--model", "models", multiple=True, help="a catalog model the key may use (repeat; default: all)")
    def create_api_key_command(name, models):
        """Create an API key for the proxy and print it (this once)."""
        with db.connection_context():
            try:
                row, key = create({"name": name, "allowedModels": list(models) or None}, now_ms())
            except ApiError as exc:
                raise click.ClickException(exc.message) from None
        click.echo(f"{row.id} {row.name}: {key}")
        click.echo("The key is shown only now; the service keeps its SHA-256 alone.", err=True)
