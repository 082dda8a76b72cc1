"""Request-log ingest: the row type, a whole batch validated, then stored in one transaction."""
from typing import NamedTuple, Optional

from lb import money, rollups, store
from lb.errors import ApiError, invalid
from lb.fields import get_choice, get_int, get_str, parse_time
from lb.tables import LOG_STATUSES, Account, ApiKey, db

MAX_BATCH = 1000
MAX_TOKENS = 10**12
FUTURE_MS = 5 * 60 * 1000  # how far ahead of the clock a log may be stamped
INSERT_CHUNK = 500  # rows per INSERT: 5,500 parameters, well under SQLite's limit


class LogRow(NamedTuple):
    """One request log as stored; the field names are the ``request_log`` columns."""

    request_id: Optional[str]
    requested_at: int  # epoch ms
    account_id: Optional[str]
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    status: str = "ok"
    error_code: Optional[str] = None
    latency_ms: Optional[int] = None
    api_key_id: Optional[str] = None
    cost: int = 0  # micro-USD; store_batch prices every row from the catalog


# -- validation -------------------------------------------------------------------

def validate_item(item, index, now):
    """Return the LogRow of one item, or raise a 422 naming ``requests[i].field``."""
    if not isinstance(item, dict):
        raise invalid(f"requests[{index}]", "must be an object")
    try:
        return _row(item, now)
    except ApiError as exc:
        # The field checks name the field; the item's place is added only on failure.
        exc.message = f"requests[{index}].{exc.message}"
        raise


def _row(item, now):
    request_id = get_str(item, "requestId", required=False, min_len=1, max_len=200)
    requested_at = now
    if item.get("requestedAt") is not None:
        requested_at = parse_time(item["requestedAt"], "requestedAt")
        if requested_at > now + FUTURE_MS:
            raise invalid("requestedAt", "must not be more than 5 minutes in the future")
    account_id = get_str(item, "accountId", required=False, max_len=40)
    model = get_str(item, "model", min_len=1, max_len=128)
    input_tokens = get_int(item, "inputTokens", default=0, high=MAX_TOKENS)
    output_tokens = get_int(item, "outputTokens", default=0, high=MAX_TOKENS)
    cached_tokens = get_int(item, "cachedInputTokens", default=0, high=MAX_TOKENS)
    if cached_tokens > input_tokens:
        raise invalid("cachedInputTokens", "must not exceed inputTokens")
    status = get_choice(item, "status", LOG_STATUSES, default="ok")
    error_code = get_str(item, "errorCode", required=False, max_len=200)
    latency = get_int(item, "latencyMs", high=10**9)
    api_key_id = get_str(item, "apiKeyId", required=False, max_len=40)
    return LogRow(request_id, requested_at, account_id, model, input_tokens, output_tokens, cached_tokens,
                  status, error_code, latency, api_key_id)


def validate_batch(data, now):
    """Check the whole ``{"requests": [...]}`` body before anything is stored; return its LogRows."""
    items = data.get("requests")
    if not isinstance(items, list):
        raise invalid("requests", "must be a list")
    if len(items) > MAX_BATCH:
        raise invalid("requests", f"must hold at most {MAX_BATCH} items")
    return [validate_item(item, i, now) for i, item in enumerate(items)]


def _check_references(rows):
    """Each accountId and apiKeyId must name an existing account or key (422 naming the first that does not)."""
    for field, model, attribute, what in (("accountId", Account, "account_id", "account"),
                                          ("apiKeyId", ApiKey, "api_key_id", "API key")):
        wanted = {getattr(row, attribute) for row in rows} - {None}
        if not wanted:
            continue
        known = {m.id for m in model.select(model.id).where(model.id.in_(list(wanted)))}
        for index, row in enumerate(rows):
            if getattr(row, attribute) in wanted - known:
                raise invalid(f"requests[{index}].{field}", f"names no {what}")


# -- storing ------------------------------------------------------------------------

def store_batch(rows, check_references=True, instruments=None):
    """Store LogRows all-or-nothing, priced from the catalog; return (accepted, duplicates).

    Every request log goes through here, so the rollups never drift. A
    ``requestId`` already stored, or seen earlier in the batch, is skipped:
    the unique index decides, so concurrent batches cannot both store one.
    The proxy passes ``check_references=False``: an account deleted mid-stream keeps its log.
    ``instruments`` (lb.metrics), when given, count the rows offered and stored.
    """
    prices = store.price_table()
    # The row with its cost in the last place (cheaper than _replace on this hot path), in requestId order:
    # concurrent batches then take their index entries in one order, and never deadlock on PostgreSQL.
    priced = sorted((row[:-1] + (_cost(prices, row),) for row in rows),
                    key=_request_id_order)
    stored = []
    with db.atomic():
        if check_references:
            _check_references(rows)
        for start in range(0, len(priced), INSERT_CHUNK):
            stored += map(LogRow._make, store.insert_logs(LogRow._fields, priced[start:start + INSERT_CHUNK]))
        rollups.add_rows(stored)  # same transaction: the rollups never drift from the logs
    if instruments is not None:
        instruments.stored(len(rows), stored)
    return len(stored), len(rows) - len(stored)


def _cost(prices, row):
    """A LogRow's cost in micro-USD at the catalog's ``prices`` of its model."""
    return money.cost(prices.get(row.model), row.input_tokens, row.cached_input_tokens, row.output_tokens)


def _request_id_order(row):
    """A LogRow's sort key (as a plain tuple): its requestId, those without one last."""
    return (row[0] is None, row[0] or "")


def ingest(data, now, instruments=None):
    """Validate and store a request body; raise ApiError on a bad batch. ``instruments``: see store_batch."""
    rows = validate_batch(data, now)
    return store_batch(rows, instruments=instruments) if rows else (0, 0)
