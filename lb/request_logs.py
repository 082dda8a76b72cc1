"""Browsing request logs: filters and keyset pagination, newest first."""
import base64
import hashlib
import hmac

from lb.clock import iso
from lb.errors import invalid
from lb.fields import get_choice, get_str, get_time
from lb.money import dollars
from lb.tables import LOG_STATUSES, RequestLog

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def as_json(log):
    return {
        "id": log.id,
        "requestId": log.request_id,
        "requestedAt": iso(log.requested_at),
        "accountId": log.account_id,
        "apiKeyId": log.api_key_id,
        "model": log.model,
        "inputTokens": log.input_tokens,
        "outputTokens": log.output_tokens,
        "cachedInputTokens": log.cached_input_tokens,
        "status": log.status,
        "errorCode": log.error_code,
        "latencyMs": log.latency_ms,
        "cost": dollars(log.cost),
    }


def time_range(query, since, until):
    if since is not None:
        query = query.where(RequestLog.requested_at >= since)
    if until is not None:
        query = query.where(RequestLog.requested_at < until)
    return query


# -- the cursor: the last row's (requestedAt, id), signed so it cannot be forged --

def _signature(payload, secret):
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()[:32]


def sign_cursor(text, secret):
    """An ASCII ``text`` as an opaque cursor: URL-safe base64, a dot, its signature (lb.audit's too)."""
    payload = text.encode("ascii")
    return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=") + "." + _signature(payload, secret)


def read_cursor(cursor, secret):
    """The text of a cursor sign_cursor made; 422 for anything else."""
    try:
        encoded, signature = cursor.split(".")
        if not signature.isascii():
            raise ValueError("bad signature")  # compare_digest refuses non-ASCII text
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if not hmac.compare_digest(signature, _signature(payload, secret)):
            raise ValueError("bad signature")
        return payload.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise invalid("cursor", "is not a cursor this service issued") from None


def encode_cursor(requested_at, row_id, secret):
    return sign_cursor(f"{requested_at}:{row_id}", secret)


def decode_cursor(cursor, secret):
    try:
        requested_at, row_id = (int(part) for part in read_cursor(cursor, secret).split(":"))
        return requested_at, row_id
    except ValueError:
        raise invalid("cursor", "is not a cursor this service issued") from None


def get_limit(args):
    """The page size of a query string: ``limit``, 1 to MAX_LIMIT, DEFAULT_LIMIT when absent; 422."""
    limit = args.get("limit", str(DEFAULT_LIMIT))
    # The length check first: int() refuses strings of thousands of digits.
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 9) or not 1 <= int(limit) <= MAX_LIMIT:
        raise invalid("limit", f"must be an integer between 1 and {MAX_LIMIT}")
    return int(limit)


def page(args, secret):
    """One page of logs for the query-string mapping ``args``; returns (rows, next cursor).

    ``secret`` signs the cursor, so a client cannot forge one.
    """
    limit = get_limit(args)
    query = time_range(RequestLog.select(), get_time(args, "since"), get_time(args, "until"))
    if "accountId" in args:
        query = query.where(RequestLog.account_id == get_str(args, "accountId"))
    if "apiKeyId" in args:
        query = query.where(RequestLog.api_key_id == get_str(args, "apiKeyId"))
    if "model" in args:
        query = query.where(RequestLog.model == get_str(args, "model"))
    if "status" in args:
        query = query.where(RequestLog.status == get_choice(args, "status", LOG_STATUSES))
    if "cursor" in args:
        at, row_id = decode_cursor(args["cursor"], secret)
        # Keyset: strictly after the last row in (requestedAt, id) descending order.
        query = query.where((RequestLog.requested_at <= at)
                            & ((RequestLog.requested_at < at) | (RequestLog.id < row_id)))
    rows = list(query.order_by(RequestLog.requested_at.desc(), RequestLog.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1].requested_at, rows[-1].id, secret) if more else None
    return [as_json(r) for r in rows], cursor
